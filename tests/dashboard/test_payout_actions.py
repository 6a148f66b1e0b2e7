"""The ways out of a stopped payout from the dashboard (refit/dashboard/payout_actions.py):
each button is the recovery service's move, written to payout_events with the operator as
actor; the payout panel says the state and who must act; an inspector gets 403, a form
without its CSRF token is refused, and neither changes anything."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from solders.keypair import Keypair
from sqlalchemy import text

from refit.models.payout import HoldReason, PayoutStatus
from tests.dashboard.helpers import signed_in_operator
from tests.inspection.helpers import operator
from tests.payouts.conftest import as_quoted_order, order_row, pay, paying, payout_row  # noqa: F401
from tests.payouts.test_lost_payout_row import _as_if_restored_from_before_the_payout
from tests.payouts.test_recovery import _events

P = PayoutStatus


async def _stopped(client, resources, make_user, settings, status, hold=None):
    """An order ($442) whose payout, asked for by another admin through the API, stopped in
    `status` (held for `hold`): as the job leaves it, no ledger needed for the moves here."""
    settings.treasury_pubkey = str(Keypair().pubkey())
    requester = await operator(resources, "admin")
    setup = SimpleNamespace(inspector=await operator(resources, "inspector"))
    order_id, _, _ = await as_quoted_order(client, resources, make_user, setup)
    asked = await pay(client, order_id, requester)
    assert asked.status_code == 202, asked.text
    payout_id = asked.json()["id"]
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE payouts SET status = :s, hold_reason = :h, error = :e, lamports = 1, "
                "signed_tx = '\\x00'::bytea, signature = 'sig', last_valid_block_height = 1 "
                "WHERE id = :id"
            ),
            {
                "s": status.value,
                "h": hold.value if hold else None,
                "e": "landed with an error" if status is P.FAILED else None,
                "id": payout_id,
            },
        )
    return order_id, payout_id


MOVES = [
    # (stopped in, held for, button, words on the page, the status after)
    (P.FAILED, None, "retry", "Failed: the transfer landed with an error", P.PENDING),
    (P.FAILED, None, "cancel", "an admin must retry or cancel", P.CANCELLED),
    (
        P.HELD,
        HoldReason.SANCTIONS,
        "release",
        "held: recipient on the sanctions list — a second admin must release or cancel",
        P.PENDING,
    ),
    (P.HELD, HoldReason.SANCTIONS_LIST_STALE, "release", "sanctions list is stale", P.PENDING),
    (P.HELD, HoldReason.ALREADY_ON_CHAIN, "cancel", "already on chain", P.CANCELLED),
]


@pytest.mark.parametrize(("status", "hold", "move", "words", "after"), MOVES)
async def test_a_button_makes_the_move_with_the_operator_as_actor(
    client, resources, settings, make_user, status, hold, move, words, after
):
    # The dashboard's admin predates the request (a sanctions release needs a second admin).
    admin, csrf = await signed_in_operator(resources, client, "admin")
    order_id, payout_id = await _stopped(client, resources, make_user, settings, status, hold)
    url = f"/admin/payouts/{payout_id}/{move}"
    page = (await client.get(f"/admin/orders/{order_id}")).text
    assert words.lower() in page.lower()
    assert f'action="{url}"' in page
    listed = (await client.get("/admin/payouts")).text
    assert f'action="{url}"' in listed

    refused = await client.post(url, data={})
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    assert (await payout_row(resources, order_id)).status is status

    done = await client.post(url, data={"csrf": csrf})
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith(f"/admin/orders/{order_id}?done=payout_")
    assert (await payout_row(resources, order_id)).status is after
    shown = (await client.get(done.headers["location"])).text
    assert 'id="done"' in shown
    events = await _events(resources, uuid.UUID(payout_id))
    assert (status.value, after.value, f"operator:{admin.id}") in events
    # Twice is a conflict page, nothing changed.
    again = await client.post(url, data={"csrf": csrf})
    assert again.status_code == 409
    assert (await payout_row(resources, order_id)).status is after
    if after is P.CANCELLED:
        # A cancelled payout is paid again from the same page (the service re-opens it).
        pay = f"/admin/orders/{order_id}/pay"
        assert f'action="{pay}"' in (await client.get(f"/admin/orders/{order_id}")).text
        assert (await client.post(pay, data={"csrf": csrf})).status_code == 303
        assert (await payout_row(resources, order_id)).status is not P.CANCELLED


@pytest.mark.parametrize("move", ["retry", "cancel", "release", "resolve"])
async def test_an_inspector_is_refused_every_way_out(client, resources, settings, make_user, move):
    status = P.FAILED if move == "retry" else P.HELD
    hold = {"retry": None, "resolve": HoldReason.ALREADY_ON_CHAIN}.get(move, HoldReason.SANCTIONS)
    _, csrf = await signed_in_operator(resources, client, "inspector")
    order_id, payout_id = await _stopped(client, resources, make_user, settings, status, hold)
    page = (await client.get(f"/admin/orders/{order_id}")).text
    assert f"/admin/payouts/{payout_id}/" not in page
    refused = await client.post(
        f"/admin/payouts/{payout_id}/{move}", data={"csrf": csrf, "signature": "1" * 88}
    )
    assert refused.status_code == 403
    assert (await payout_row(resources, order_id)).status is status
    assert [e for e in await _events(resources, uuid.UUID(payout_id)) if e[0] == status] == []


async def test_the_admin_who_asked_is_not_offered_a_sanctions_release(
    client, resources, settings, make_user
):
    settings.treasury_pubkey = str(Keypair().pubkey())
    _, csrf = await signed_in_operator(resources, client, "admin")
    setup = SimpleNamespace(inspector=await operator(resources, "inspector"))
    order_id, _, _ = await as_quoted_order(client, resources, make_user, setup)
    assert (await client.post(f"/admin/orders/{order_id}/pay", data={"csrf": csrf})).is_redirect
    payout = await payout_row(resources, order_id)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE payouts SET status = 'held', hold_reason = 'sanctions' WHERE id = :id"),
            {"id": payout.id},
        )
    page = (await client.get(f"/admin/orders/{order_id}")).text
    assert f"/admin/payouts/{payout.id}/release" not in page
    assert f"/admin/payouts/{payout.id}/cancel" in page
    refused = await client.post(f"/admin/payouts/{payout.id}/release", data={"csrf": csrf})
    assert refused.status_code == 403
    assert (await payout_row(resources, order_id)).status is P.HELD


async def test_an_already_on_chain_hold_is_resolved_from_the_order_page(
    client,
    resources,
    make_user,
    run_jobs,
    paying,  # noqa: F811
):
    admin, csrf = await signed_in_operator(resources, client, "admin")
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()
    first = await payout_row(resources, order_id)
    await _as_if_restored_from_before_the_payout(resources, order_id)
    payout_id = (await pay(client, order_id, paying.admin)).json()["id"]
    await run_jobs()
    assert (await payout_row(resources, order_id)).hold_reason == "already_on_chain"
    url = f"/admin/payouts/{payout_id}/resolve"
    page = (await client.get(f"/admin/orders/{order_id}")).text
    assert "resolve it with that transfer" in page and f'action="{url}"' in page

    without_csrf = await client.post(url, data={"signature": first.signature})
    assert without_csrf.status_code == 403
    not_a_signature = await client.post(url, data={"csrf": csrf, "signature": "nope"})
    assert not_a_signature.status_code == 422
    assert (await payout_row(resources, order_id)).status is P.HELD

    done = await client.post(url, data={"csrf": csrf, "signature": first.signature})
    assert done.status_code == 303, done.text
    assert "Payout resolved" in (await client.get(done.headers["location"])).text
    resolved = await payout_row(resources, order_id)
    assert (resolved.status, resolved.signature) == (P.FINALIZED, first.signature)
    assert (await order_row(resources, order_id)).status == "completed"
    assert ("held", "finalized", f"operator:{admin.id}") in await _events(
        resources, uuid.UUID(payout_id)
    )
