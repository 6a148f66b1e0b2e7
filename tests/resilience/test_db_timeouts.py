"""The database timeouts (refit/db.py): every transaction of the process's engine but a job's
has the statement timeout, riding in a statement a seller's transaction sends anyway; jobs and
commands have none. A statement past it, or a connection that cannot be opened in time, is a
503 problem+json with Retry-After, and the database is used again once it answers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from refit import db, one_message, transactions
from refit.app import create_app
from refit.errors import DEPENDENCY_RETRY_AFTER_SECONDS
from refit.resources import close_resources, open_resources
from refit.settings import Settings
from tests.orders.helpers import add_address
from tests.resilience.pg_proxy import CuttableProxy

# Our wait on top of what is measured: the request's own work and a loaded machine.
SLACK_SECONDS = 2.0


async def _statement_timeout(session: AsyncSession) -> str:
    return str(await session.scalar(text("SHOW statement_timeout")))


async def test_the_statement_timeout_is_where_it_belongs(resources, settings, make_user):
    seller = await make_user()
    async with resources.sessionmaker() as session, session.begin():
        service = await _statement_timeout(session)

    # A seller's transaction sends what it sent before: the role statement, then the query.
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append(statement)

    event.listen(resources.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with resources.sessionmaker() as session, session.begin():
            await transactions.act_as_user(session, seller.id)
            as_seller = await _statement_timeout(session)
    finally:
        event.remove(resources.engine.sync_engine, "before_cursor_execute", record)
    assert len(sent) == 2 and "set_config('role'" in sent[0], sent
    hot_read = await one_message.fetch_as_user(
        resources.engine, seller.id, "SELECT current_setting('statement_timeout') AS t", {}
    )

    async with transactions.service_transaction(job=True) as session:
        job = await _statement_timeout(session)
    assert settings.database_url
    command = await transactions.command_transaction(settings.database_url, _statement_timeout)
    async with await psycopg.AsyncConnection.connect(db.libpq_url(settings.database_url)) as raw:
        server = (await (await raw.execute("SHOW statement_timeout")).fetchone() or [""])[0]

    assert settings.db_statement_timeout_ms == 5000
    assert service == as_seller == hot_read[0]["t"] == "5s"
    assert job == command == server  # the server's own


@asynccontextmanager
async def _app_with(settings: Settings, open_client, **update) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an app of its own resources (they become the process's current ones)."""
    own = await open_resources(settings.model_copy(update=update))
    try:
        app = create_app(own.settings, resources=own)
        async with app.router.lifespan_context(app), open_client(app) as http:
            yield http
    finally:
        await close_resources(own)


@asynccontextmanager
async def _app_behind_proxy(
    settings: Settings, open_client, **update
) -> AsyncIterator[tuple[httpx.AsyncClient, CuttableProxy]]:
    """A client on an app of its own whose PostgreSQL is reached through a proxy the test can
    cut, black-hole and restore."""
    assert settings.database_url
    proxy = await CuttableProxy.for_database(settings.database_url).start()
    try:
        url = proxy.database_url(settings.database_url)
        async with _app_with(settings, open_client, database_url=url, **update) as http:
            yield http, proxy
    finally:
        await proxy.stop()


def _assert_dependency_down(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == str(DEPENDENCY_RETRY_AFTER_SECONDS)
    assert response.json()["code"] == "dependency_unavailable"


@pytest.mark.timeout(120)
async def test_a_statement_past_its_timeout_is_a_503(settings, resources, make_user, open_client):
    seller = await make_user()
    address = await add_address(resources, seller.id)
    async with _app_with(settings, open_client, db_statement_timeout_ms=1000) as http:
        # Warm: the first request of an app pays its one-off costs (the pool's first connect).
        listed = await http.get("/api/shipping/addresses", headers=seller.headers)
        assert listed.status_code == 200, listed.text
        # Deleting an address locks it first; the test holds that lock meanwhile.
        async with resources.sessionmaker() as holder, holder.begin():
            await holder.execute(
                text("SELECT 1 FROM shipping_addresses WHERE id = :id FOR UPDATE"),
                {"id": address},
            )
            started = time.monotonic()
            response = await http.delete(
                f"/api/shipping/addresses/{address}", headers=seller.headers
            )
            waited = time.monotonic() - started
        _assert_dependency_down(response)
        # Cancelled by the server at its timeout, well before our own wait would give up.
        assert 1.0 <= waited < 1.0 + db.ANSWER_GRACE_SECONDS, waited
        # Nothing of it was kept; the next one, with the lock gone, goes through.
        gone = await http.delete(f"/api/shipping/addresses/{address}", headers=seller.headers)
        assert gone.status_code == 204, gone.text


@pytest.mark.timeout(120)
async def test_a_connection_not_opened_in_time_is_a_503(
    settings, resources, make_user, open_client
):
    seller = await make_user()
    assert settings.database_url
    proxy = await CuttableProxy.for_database(settings.database_url).start()
    proxy.black_hole()  # accepts the connection, never answers it
    try:
        async with _app_with(
            settings,
            open_client,
            database_url=proxy.database_url(settings.database_url),
            db_connect_timeout_seconds=2,
        ) as http:
            started = time.monotonic()
            response = await http.get("/api/shipping/addresses", headers=seller.headers)
            waited = time.monotonic() - started
            _assert_dependency_down(response)
            assert 2.0 <= waited < 2.0 + SLACK_SECONDS, waited
            assert proxy.accepted  # it did try, through the proxy
            proxy.restore()
            back = await http.get("/api/shipping/addresses", headers=seller.headers)
            assert back.status_code == 200, back.text
    finally:
        await proxy.stop()
