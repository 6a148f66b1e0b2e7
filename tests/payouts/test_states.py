"""The payout state machine (refit/payouts/states.py): every allowed move is written with its
event and actor; every other one is a 409 that changes nothing. No status write elsewhere."""

from __future__ import annotations

import itertools
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from refit.errors import Conflict
from refit.models.payout import HoldReason, PayoutEvent, PayoutStatus
from refit.payouts import service, states
from tests.payouts.conftest import as_quoted_order, pay, payout_row

P = PayoutStatus
ACTOR = "operator:00000000-0000-0000-0000-00000000a11e"
ROOT = Path(__file__).resolve().parents[2]


async def _put(resources, payout_id: uuid.UUID, status: PayoutStatus) -> None:
    """The row as it stands in `status`: signed (every status allows it), held for a reason."""
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE payouts SET status = :s, error = NULL, signed_tx = '\\x00'::bytea, "
                "signature = 'sig', last_valid_block_height = 1, lamports = 1, "
                "hold_reason = CASE WHEN :s = 'held' THEN 'sanctions' END WHERE id = :id"
            ),
            {"s": status.value, "id": payout_id},
        )


async def test_every_move_allowed_and_refused(client, resources, make_user, paying):
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    payout_id = (await payout_row(resources, order_id)).id

    for from_status, to_status in itertools.product(P, P):
        await _put(resources, payout_id, from_status)
        hold = HoldReason.ALREADY_ON_CHAIN if to_status is P.HELD else None
        error = f"{from_status} -> {to_status}"
        async with resources.sessionmaker() as session, session.begin():
            payout = await service.get_payout(session, payout_id)
            if states.allowed(from_status, to_status):
                await states.write(session, payout, to_status, actor=ACTOR, hold=hold, error=error)
            else:
                with pytest.raises(Conflict) as refused:
                    await states.write(
                        session, payout, to_status, actor=ACTOR, hold=hold, error=error
                    )
                assert refused.value.code == "invalid_payout_transition"
        row = await payout_row(resources, order_id)
        async with resources.sessionmaker() as session:
            last = await session.scalar(
                select(PayoutEvent)
                .where(PayoutEvent.payout_id == payout_id)
                .order_by(PayoutEvent.at.desc(), PayoutEvent.id.desc())
                .limit(1)
            )
            events_for_move = await session.scalar(
                text(
                    "SELECT count(*) FROM payout_events WHERE payout_id = :id "
                    "AND from_status = :f AND to_status = :t AND actor = :a AND reason = :r"
                ),
                {
                    "id": payout_id,
                    "f": from_status.value,
                    "t": to_status.value,
                    "a": ACTOR,
                    "r": hold.value if hold else error,
                },
            )
        if states.allowed(from_status, to_status):
            assert row.status is to_status, (from_status, to_status)
            assert row.error == error
            assert row.hold_reason == hold
            assert last is not None and last.actor == ACTOR
            assert events_for_move == 1, (from_status, to_status)
        else:
            assert row.status is from_status, (from_status, to_status)
            assert row.error is None
            assert events_for_move == 0, (from_status, to_status)


def test_the_table_is_the_issue_s():
    assert states.ALLOWED_MOVES[P.FAILED] == {P.PENDING, P.CANCELLED}
    assert states.ALLOWED_MOVES[P.HELD] == {P.PENDING, P.FINALIZED, P.CANCELLED}
    assert states.ALLOWED_MOVES[P.FINALIZED] == frozenset()
    assert set(states.ALLOWED_MOVES) == set(P)


def test_no_status_or_error_write_outside_the_writer():
    found = subprocess.run(
        ["grep", "-rn", r"\.status = \|\.error = ", "refit/payouts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    assert found and all(line.startswith("refit/payouts/states.py:") for line in found), found
