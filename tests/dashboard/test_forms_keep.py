"""Issue 24's "forms that never lose work", beyond the inspection and flags forms: a refused
new operator, cancel reason or resolve signature comes back as the page with what was typed
in its field (never the password), the problem by that field (aria-invalid, aria-describedby,
autofocus on the first), a 4xx status, and nothing changed in the database; then the
corrected form goes through."""

from __future__ import annotations

import re
import secrets
import uuid

from solders.keypair import Keypair
from sqlalchemy import func, select

from refit.models import Operator, OperatorAudit
from refit.models.payout import PayoutStatus
from tests.admin.helpers import make_operator
from tests.dashboard.helpers import signed_in_operator
from tests.dashboard.test_roles_and_csrf import _state
from tests.inspection.helpers import shipped_order
from tests.payouts.conftest import as_quoted_order, order_row, pay, paying, payout_row  # noqa: F401
from tests.payouts.test_lost_payout_row import _as_if_restored_from_before_the_payout
from tests.payouts.test_recovery import _events


def field_tag(html: str, field_id: str) -> str:
    """The opening tag of the element with this id."""
    found = re.search(rf'<(?:input|select)[^>]*\bid="{re.escape(field_id)}"[^>]*>', html)
    assert found, f"no field #{field_id} on the page"
    return found.group(0)


def problem_by(html: str, field_id: str) -> str:
    """The message beside a field, checked to be tied to it (and the field to have focus when
    it is the first)."""
    tag = field_tag(html, field_id)
    assert 'aria-invalid="true"' in tag and f'aria-describedby="{field_id}-error"' in tag, tag
    found = re.search(rf'<p class="field-error" id="{re.escape(field_id)}-error">([^<]+)</p>', html)
    assert found, f"no message by #{field_id}"
    return found.group(1)


async def _operators(resources) -> tuple[int, int]:
    async with resources.sessionmaker() as session:
        return (
            int(await session.scalar(select(func.count()).select_from(Operator)) or 0),
            int(await session.scalar(select(func.count()).select_from(OperatorAudit)) or 0),
        )


async def test_a_refused_new_operator_keeps_the_username_and_role_never_the_password(
    client, resources
):
    _, csrf = await signed_in_operator(resources, client, "admin")
    taken = await make_operator(resources, "inspector")
    password = f"Pw-{secrets.token_urlsafe(12)}"
    before = await _operators(resources)

    # A taken name: the message by the username, which has the focus; the role as chosen.
    refused = await client.post(
        "/admin/operators",
        data={"csrf": csrf, "username": taken.username, "password": password, "role": "admin"},
    )
    assert refused.status_code == 422 and "text/html" in refused.headers["content-type"]
    page = refused.text
    assert "already exists" in problem_by(page, "new-username")
    assert f'value="{taken.username}"' in field_tag(page, "new-username")
    assert "autofocus" in field_tag(page, "new-username")
    assert '<option value="admin" selected>' in page
    assert password not in page
    assert 'value="' not in field_tag(page, "new-password")
    assert await _operators(resources) == before

    # A password too short: said by the password field, never echoed; the name kept.
    name = f"new-{uuid.uuid4().hex[:8]}"
    weak = "Wk-" + secrets.token_hex(3)
    refused = await client.post(
        "/admin/operators",
        data={"csrf": csrf, "username": name, "password": weak, "role": "admin"},
    )
    assert refused.status_code == 422
    page = refused.text
    assert "at least 12 characters" in problem_by(page, "new-password")
    assert "autofocus" in field_tag(page, "new-password")
    assert "aria-invalid" not in field_tag(page, "new-username")
    assert f'value="{name}"' in field_tag(page, "new-username")
    assert '<option value="admin" selected>' in page
    assert weak not in page
    assert await _operators(resources) == before

    # Corrected: made (an admin made by an admin waits for a second one).
    done = await client.post(
        "/admin/operators",
        data={"csrf": csrf, "username": name, "password": password, "role": "admin"},
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/admin/operators?done=created_admin"
    assert (await _operators(resources))[0] == before[0] + 1
    listed = (await client.get(done.headers["location"])).text
    assert f'data-username="{name}"' in listed


async def test_a_refused_cancel_keeps_the_reason_typed(client, resources, make_user):
    order_id = await shipped_order(client, resources, await make_user())
    _, csrf = await signed_in_operator(resources, client, "admin")
    url = f"/admin/orders/{order_id}/cancel"
    before = await _state(resources, order_id)

    # Too long: the order page again, the reason as typed by its field.
    long_reason = "seller phoned " + "x" * 600
    refused = await client.post(url, data={"csrf": csrf, "reason": long_reason})
    assert refused.status_code == 422 and "text/html" in refused.headers["content-type"]
    assert "At most 500 characters" in problem_by(refused.text, "cancel-reason")
    assert f'value="{long_reason}"' in field_tag(refused.text, "cancel-reason")
    assert "autofocus" in field_tag(refused.text, "cancel-reason")
    # A refused form's answer does not update itself (its URL is the POST's).
    assert "data-live-stamp" not in refused.text
    assert await _state(resources, order_id) == before

    done = await client.post(url, data={"csrf": csrf, "reason": "seller phoned"})
    assert done.status_code == 303, done.text
    after = await _state(resources, order_id)
    assert after[0] == "cancelled"

    # The order moved on (here: cancelled already): 409, the reason kept by the field, and
    # no button to press again.
    reason = f"duplicate order {uuid.uuid4().hex[:6]}"
    again = await client.post(url, data={"csrf": csrf, "reason": reason})
    assert again.status_code == 409
    said = problem_by(again.text, "cancel-reason")
    assert "Not cancelled: the order is cancelled now" in said and "Nothing was changed" in said
    assert f'value="{reason}"' in field_tag(again.text, "cancel-reason")
    assert ">Cancel order</button>" not in again.text
    assert await _state(resources, order_id) == after


async def test_a_refused_resolve_keeps_the_signature(
    client,
    resources,
    make_user,
    run_jobs,
    paying,  # noqa: F811
):
    P = PayoutStatus
    _, csrf = await signed_in_operator(resources, client, "admin")
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()
    first = await payout_row(resources, order_id)
    await _as_if_restored_from_before_the_payout(resources, order_id)
    payout_id = (await pay(client, order_id, paying.admin)).json()["id"]
    await run_jobs()
    assert (await payout_row(resources, order_id)).hold_reason == "already_on_chain"
    url = f"/admin/payouts/{payout_id}/resolve"
    field = f"resolve-{payout_id}"
    events = await _events(resources, uuid.UUID(payout_id))

    # Not a signature: the order page, the text kept and the rule by it.
    refused = await client.post(url, data={"csrf": csrf, "signature": "0OIl-not-one"})
    assert refused.status_code == 422 and "text/html" in refused.headers["content-type"]
    assert "base 58" in problem_by(refused.text, field)
    assert 'value="0OIl-not-one"' in field_tag(refused.text, field)
    assert "autofocus" in field_tag(refused.text, field)

    # A signature of no transfer on chain: the chain's answer by the field.
    nowhere = str(Keypair().sign_message(b"no such transfer"))
    refused = await client.post(url, data={"csrf": csrf, "signature": nowhere})
    assert refused.status_code == 422
    assert "no finalized, successful system transfer" in problem_by(refused.text, field)
    assert f'value="{nowhere}"' in field_tag(refused.text, field)
    assert (await payout_row(resources, order_id)).status is P.HELD
    assert await _events(resources, uuid.UUID(payout_id)) == events

    # Corrected: the transfer that paid it.
    done = await client.post(url, data={"csrf": csrf, "signature": first.signature})
    assert done.status_code == 303, done.text
    assert (await payout_row(resources, order_id)).status is P.FINALIZED
    assert (await order_row(resources, order_id)).status == "completed"

    # Again, now that it moved on: 409, said by the buttons, nothing changed.
    settled = await _events(resources, uuid.UUID(payout_id))
    again = await client.post(url, data={"csrf": csrf, "signature": first.signature})
    assert again.status_code == 409
    assert 'id="payout-refused"' in again.text and "no longer held" in again.text
    assert (await payout_row(resources, order_id)).status is P.FINALIZED
    assert await _events(resources, uuid.UUID(payout_id)) == settled
