"""`refit operator ...` run for real against the test's database, the embedded default's first
admin, and production's refusal to serve without an admin."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import uuid

import pytest
from solders.keypair import Keypair
from sqlalchemy import func, select, update

from refit.admin import cli as operator_cli
from refit.admin import operators
from refit.models import Operator, OperatorAudit, OperatorRole
from tests.admin.helpers import bearer_for, make_operator

PASSWORD = "correct horse battery staple"


async def _refit(settings, *args: str, stdin: str = "", **env: str) -> tuple[int, str]:
    """The real `refit` command line on this test's database and Redis; `stdin` is a pipe,
    as in `printf ... | refit operator create`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "refit",
        *args,
        env={
            **os.environ,
            "REFIT_DATABASE_URL": settings.database_url,
            "REFIT_REDIS_URL": settings.redis_url,
            "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
            "REFIT_DATA_DIR": str(settings.data_dir),
            **env,
        },
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode()


async def _login(client, username: str, password: str) -> int:
    response = await client.post(
        "/api/admin/login", json={"username": username, "password": password}
    )
    return response.status_code


async def _operators(resources) -> list[tuple[str, OperatorRole, bool]]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(Operator.username, Operator.role, Operator.disabled_at).order_by(
                Operator.username
            )
        )
        return [(name, role, disabled is not None) for name, role, disabled in rows]


async def _made_by(resources, username: str) -> tuple[str | None, str | None]:
    async with resources.sessionmaker() as session:
        row = (
            await session.execute(
                select(Operator.created_by, Operator.approved_by).where(
                    Operator.username == username
                )
            )
        ).one()
        return row.created_by, row.approved_by


async def _audited(resources, subject: str) -> list[tuple[str, str]]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(OperatorAudit.actor, OperatorAudit.action)
            .where(OperatorAudit.subject == subject, OperatorAudit.outcome == "done")
            .order_by(OperatorAudit.at, OperatorAudit.id)
        )
        return [(actor, action) for actor, action in rows]


async def test_create_set_password_and_disable(client, resources, settings):
    code, out = await _refit(
        settings, "operator", "create", "Ada", "--role", "admin", stdin=PASSWORD + "\n"
    )
    assert code == 0, out
    assert "operator ada created (admin" in out
    assert PASSWORD not in out
    assert await _operators(resources) == [("ada", OperatorRole.ADMIN, False)]
    # Someone with database access: works at once, recorded as who ran the command.
    assert await _login(client, "ada", PASSWORD) == 200
    cli_actor = f"cli:{getpass.getuser()}"
    assert await _made_by(resources, "ada") == (cli_actor, cli_actor)
    assert await _audited(resources, "operator:ada") == [(cli_actor, "operator.create")]

    # The same name again, a short password: refused, nothing written.
    code, out = await _refit(
        settings, "operator", "create", "ADA", "--role", "inspector", stdin=PASSWORD + "\n"
    )
    assert code == 1 and "already exists" in out, out
    code, out = await _refit(
        settings, "operator", "create", "grace", "--role", "inspector", stdin="short-pass\n"
    )
    assert code == 1 and "at least 12 characters" in out, out
    assert await _operators(resources) == [("ada", OperatorRole.ADMIN, False)]

    new_password = "another passphrase, longer"
    code, out = await _refit(settings, "operator", "set-password", "ada", stdin=new_password)
    assert code == 0, out
    assert await _login(client, "ada", PASSWORD) == 401
    assert await _login(client, "ada", new_password) == 200

    async with resources.sessionmaker() as session:
        ada = await session.scalar(select(Operator).where(Operator.username == "ada"))
    token = bearer_for(resources, ada)
    path = f"/api/admin/orders/{uuid.uuid4()}/label-status"
    assert (await client.get(path, headers=token)).status_code == 404
    code, out = await _refit(settings, "operator", "disable", "ada")
    assert code == 0 and "operator ada disabled" in out, out
    assert await _operators(resources) == [("ada", OperatorRole.ADMIN, True)]
    assert (await _audited(resources, "operator:ada"))[-1] == (cli_actor, "operator.disable")
    assert await _login(client, "ada", new_password) == 401
    refused = await client.get(path, headers=token)
    assert refused.status_code == 401 and refused.json()["code"] == "operator_unauthorized"


async def test_the_first_admin_is_made_only_while_there_is_no_operator(resources, settings):
    made = await operator_cli.create_first_admin(settings.database_url, "dev-password")
    assert made is not None and (made.username, made.role) == ("admin", OperatorRole.ADMIN)
    assert await operator_cli.create_first_admin(settings.database_url, "another") is None
    assert await _operators(resources) == [("admin", OperatorRole.ADMIN, False)]
    cli_actor = f"cli:{getpass.getuser()}"
    assert await _made_by(resources, "admin") == (cli_actor, cli_actor)
    assert await _audited(resources, "operator:admin") == [(cli_actor, "operator.create")]


async def test_production_refuses_to_serve_without_an_enabled_admin(resources, settings):
    production = {
        "REFIT_ENV": "production",
        # Random-looking, and every service production requires (issue 15's refusals).
        "REFIT_JWT_SECRET": "9f2c4e7a1b8d3f6e0a5c9b2d7e4f1a8c3b6d9e2f5a0c7b4e1d8f3a6c9b2e5d7",
        "REFIT_SHIPPO_WEBHOOK_TOKEN": "c3e8a1f6b9d2e7c4a0f5b8d3e6a9c2f7b4d1e8a5",
        "REFIT_SHIPPO_API_KEY": "shippo_live_0123456789abcdef",
        "REFIT_SHIPPO_WEBHOOK_HMAC_SECRET": "5b0e9d4c7a2f8e1b6d3c0a9f4e7b2d5c8a1f6e3b",
        "REFIT_SMTP_URL": "smtps://refit:password@smtp.example:465",
        "REFIT_SENTRY_DSN": "https://public@o1.ingest.sentry.example/1",
        "REFIT_SOLANA_RPC_URL": "http://127.0.0.1:9",
        "REFIT_TREASURY_KEYPAIR": "/nonexistent/treasury.json",
        "REFIT_TREASURY_PUBKEY": str(Keypair().pubkey()),
        "REFIT_PORT": "9",  # never bound: the check comes first
    }
    code, out = await _refit(settings, "api", **production)
    assert code == 3, out
    assert "no enabled admin operator" in out and "refit operator create" in out

    # An inspector, or a disabled admin, is not an admin.
    await make_operator(resources, "inspector")
    admin = await make_operator(resources, "admin")
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Operator).where(Operator.id == admin.id).values(disabled_at=func.now())
        )
    assert not await operator_cli.has_enabled_admin(settings.database_url)

    await make_operator(resources, "admin")
    assert await operator_cli.has_enabled_admin(settings.database_url)


async def test_the_service_refuses_what_the_command_would(resources):
    async with resources.sessionmaker() as session, session.begin():
        for username, password, code in [
            ("no spaces", PASSWORD, "invalid_username"),
            ("x", PASSWORD, "invalid_username"),
            ("ada", "eleven char", "password_too_short"),
            ("ada", "x" * (operators.MAX_PASSWORD_LENGTH + 1), "password_too_long"),
        ]:
            with pytest.raises(operators.OperatorError) as refused:
                await operators.create_operator(
                    session, username, password, OperatorRole.ADMIN, created_by="cli:tests"
                )
            assert refused.value.code == code
        with pytest.raises(operators.OperatorError, match="No operator named 'nobody'"):
            await operators.set_password(session, "nobody", PASSWORD)
        with pytest.raises(operators.OperatorError, match="No operator named 'nobody'"):
            await operators.disable_operator(session, "nobody", actor="cli:tests")
    assert await _operators(resources) == []
