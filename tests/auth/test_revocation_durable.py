"""A signed-out token stays refused after Redis loses its data: PostgreSQL holds the record,
Redis only carries it. The test's own Redis keys are deleted by its prefix (db 0 is shared
with other test runs: never FLUSHDB)."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
import sqlalchemy.exc
from sqlalchemy import text

from refit import db, transactions
from refit.app import create_app
from refit.auth import revocations
from refit.auth.tokens import decode_access_token


async def _lose_redis_data(resources) -> int:
    """What a Redis restart without persistence does to this test's keys."""
    keys = [key async for key in resources.redis.scan_iter(match=resources.redis_key("*"))]
    if keys:
        await resources.redis.delete(*keys)
    assert not [key async for key in resources.redis.scan_iter(match=resources.redis_key("*"))]
    return len(keys)


async def _live_watch() -> revocations.RevocationWatch:
    deadline = time.monotonic() + 10
    while True:
        watch = revocations.current_watch()
        if watch is not None and watch.live:
            return watch
        assert time.monotonic() < deadline, "the revocation watch did not go live in 10 s"
        await asyncio.sleep(0.02)


async def test_a_signed_out_token_stays_refused_after_redis_loses_its_data(
    resources, settings, make_user, open_client
):
    seller = await make_user()
    jti = decode_access_token(settings, seller.token).jti

    before = create_app(settings, resources=resources)
    async with before.router.lifespan_context(before), open_client(before) as http:
        assert (await http.get("/api/auth/me", headers=seller.headers)).status_code == 200
        assert (await http.post("/api/auth/sign-out", headers=seller.headers)).status_code == 204
    async with resources.sessionmaker() as session:
        recorded = await session.scalar(
            text("SELECT user_id FROM revoked_tokens WHERE jti = :jti"), {"jti": jti}
        )
    assert recorded == seller.id

    assert await _lose_redis_data(resources) > 0  # the revoked-token key among them

    # No watch (a process starting, or one whose subscription is down): Redis no longer
    # knows the token, PostgreSQL does.
    assert revocations.current_watch() is None
    bare = create_app(settings, resources=resources)
    async with open_client(bare) as http:
        refused = await http.get("/api/auth/me", headers=seller.headers)
    assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"

    # A process started after the loss: its watch loads the record and answers in-process.
    after = create_app(settings, resources=resources)
    async with after.router.lifespan_context(after), open_client(after) as http:
        watch = await _live_watch()
        assert watch.revoked(jti) is True
        refused = await http.get("/api/auth/me", headers=seller.headers)
        assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"
        # Other tokens of the same seller are untouched: sign-out is per token.
        other = await make_user(wallet_address=seller.user.wallet_address + "x")
        assert (await http.get("/api/auth/me", headers=other.headers)).status_code == 200


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES ('x', :uid, now())",
        "DELETE FROM revoked_tokens",
        "SELECT count(*) FROM revoked_tokens",
    ],
)
async def test_a_seller_cannot_touch_the_revocations(resources, make_user, statement):
    seller = await make_user()
    async with resources.sessionmaker() as session:
        async with session.begin():
            await transactions.act_as_user(session, seller.id)
            with pytest.raises(sqlalchemy.exc.ProgrammingError, match="permission denied"):
                await session.execute(text(statement), {"uid": seller.id})


@pytest.mark.parametrize("recorded", [False, True])
async def test_a_connection_that_died_while_idle_costs_the_lookup_no_error(
    settings, make_user, recorded
):
    """While the watch is not live a request looks its token up in PostgreSQL, on an API
    process's engine (no ping before use). The server restarted since that engine's
    connection was last used (here: its backend terminated): the lookup is answered from a
    fresh connection, not a 503 (tests/orders/test_seller_reads.py saw one under load)."""
    assert settings.database_url
    engine = db.create_engine(settings.database_url, pool_size=1, ping_before_use=False)
    jti = f"idle-{uuid.uuid4().hex}"
    try:
        if recorded:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO revoked_tokens (jti, user_id, expires_at) "
                        "VALUES (:jti, :user, now() + interval '1 hour')"
                    ),
                    {"jti": jti, "user": (await make_user()).id},
                )
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        assert await revocations.is_recorded(engine, jti) is recorded
        async with await psycopg.AsyncConnection.connect(
            db.libpq_url(settings.database_url), autocommit=True
        ) as other:
            await other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert await revocations.is_recorded(engine, jti) is recorded
    finally:
        await engine.dispose()
