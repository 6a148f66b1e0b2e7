"""`refit payouts retry|cancel|resolve|release PAYOUT_ID --operator USERNAME`: the ways out of a
stopped payout from a terminal, run as the real command in its own process (it opens its own
resources and queue). The same service functions as the API: the events name the operator,
four-eyes refuses the requester above the cap, and a disallowed move changes nothing; the
audit trail says it came from the CLI on the operator's behalf."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from refit.payouts.service import job_lock
from refit.settings import Settings
from tests.inspection.helpers import operator
from tests.payouts.conftest import as_quoted_order, order_row, pay, payout_row
from tests.payouts.test_recovery import LAMPORTS, _events, _landed_with_an_error


@pytest.fixture
def refit_payouts(settings: Settings, paying: Any, tmp_path: Path) -> Any:
    """Run `refit payouts ARGS...` in a process of its own, its settings from the
    environment as in production (`max_usd`: its REFIT_PAYOUT_MAX_USD)."""
    assert settings.database_url and settings.redis_url
    env = {
        **os.environ,
        "REFIT_ENV": "test",
        "REFIT_DATABASE_URL": settings.database_url,
        "REFIT_REDIS_URL": settings.redis_url,
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_SOLANA_RPC_URL": paying.ledger.server.url,
        "REFIT_DATA_DIR": str(tmp_path / "cli"),
    }

    async def run(*args: str, max_usd: str = "2000") -> subprocess.CompletedProcess[str]:
        # Off this event loop: it serves the ledger.
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "refit", "payouts", *args],
            env={**env, "REFIT_PAYOUT_MAX_USD": max_usd},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


async def _username(resources: Any, operator_id: uuid.UUID) -> str:
    async with resources.sessionmaker() as session:
        name: str = await session.scalar(
            text("SELECT username FROM operators WHERE id = :id"), {"id": operator_id}
        )
        return name


async def _audit(resources: Any, payout_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT actor, action, outcome, detail FROM operator_audit "
                "WHERE subject = :subject ORDER BY at"
            ),
            {"subject": f"payout:{payout_id}"},
        )
        return [tuple(r) for r in rows.all()]


async def _failed_payout(client, resources, make_user, run_jobs, paying) -> tuple[str, str]:
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    payout_id = (await pay(client, order_id, paying.admin)).json()["id"]
    await _landed_with_an_error(resources, paying, order_id, wallet)
    await run_jobs()
    assert (await payout_row(resources, order_id)).status == "failed"
    return order_id, payout_id


async def test_a_failed_payout_retried_from_the_cli_defers_its_job_and_names_the_operator(
    client, resources, make_user, run_jobs, paying, refit_payouts
):
    order_id, payout_id = await _failed_payout(client, resources, make_user, run_jobs, paying)
    admin = await _username(resources, paying.admin.id)

    retried = await refit_payouts("retry", payout_id, "--operator", admin)
    assert retried.returncode == 0, retried.stderr
    assert f"payout {payout_id} retried by {admin}: pending" in retried.stdout
    assert (await payout_row(resources, order_id)).status == "pending"
    async with resources.sessionmaker() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs "
                "WHERE queueing_lock = :lock AND status = 'todo'"
            ),
            {"lock": job_lock(uuid.UUID(order_id))},
        )
    assert waiting == 1
    assert ("failed", "pending", paying.admin.actor) in await _events(
        resources, uuid.UUID(payout_id)
    )
    assert await _audit(resources, payout_id) == [
        (
            f"cli:{getpass.getuser()}",
            "payout.retry",
            "done",
            {"on_behalf_of": paying.admin.actor, "operator": admin},
        )
    ]

    await run_jobs()
    paid = await payout_row(resources, order_id)
    assert paid.status == "finalized" and paid.lamports == LAMPORTS
    assert (await order_row(resources, order_id)).status == "completed"


async def test_a_move_the_cli_may_not_make_is_one_line_and_changes_nothing(
    client, resources, make_user, paying, refit_payouts
):
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    payout_id = (await pay(client, order_id, paying.admin)).json()["id"]  # pending: no job run
    admin = await _username(resources, paying.admin.id)
    inspector = await _username(resources, paying.inspector.id)
    events = await _events(resources, uuid.UUID(payout_id))

    for args, says in (
        (("retry", payout_id, "--operator", admin), "invalid_payout_transition"),
        (("release", payout_id, "--operator", admin), "invalid_payout_transition"),
        (("cancel", str(uuid.uuid4()), "--operator", admin), "not_found"),
        (("cancel", payout_id, "--operator", inspector), "is not an admin"),
        (("cancel", payout_id, "--operator", "nobody-here"), "no enabled operator"),
    ):
        refused = await refit_payouts(*args)
        assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (args, refused.stderr)
        assert refused.stdout == ""
    assert (await payout_row(resources, order_id)).status == "pending"
    assert await _events(resources, uuid.UUID(payout_id)) == events
    assert await _audit(resources, payout_id) == []


async def test_four_eyes_refuses_the_requester_from_the_cli_and_records_it(
    client, resources, make_user, run_jobs, paying, refit_payouts
):
    second = await operator(resources, "admin")  # made before the payout was asked for
    order_id, payout_id = await _failed_payout(client, resources, make_user, run_jobs, paying)
    requester = await _username(resources, paying.admin.id)

    # $442 over a $100 cap: the one who asked for it cannot cancel it alone.
    refused = await refit_payouts("cancel", payout_id, "--operator", requester, max_usd="100")
    assert refused.returncode == 1, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "four_eyes_refused" in lines[0], refused.stderr
    assert (await payout_row(resources, order_id)).status == "failed"
    audit = await _audit(resources, payout_id)
    assert [(a, action, outcome) for a, action, outcome, _ in audit] == [
        (paying.admin.actor, "payout.cancel", "refused")
    ]

    by_second = await _username(resources, second.id)
    cancelled = await refit_payouts("cancel", payout_id, "--operator", by_second, max_usd="100")
    assert cancelled.returncode == 0, cancelled.stderr
    assert (await payout_row(resources, order_id)).status == "cancelled"
    assert ("failed", "cancelled", second.actor) in await _events(resources, uuid.UUID(payout_id))
