"""Test harness: real PostgreSQL and Redis, every test in its own migrated database.

PostgreSQL and Redis come from REFIT_TEST_DATABASE_URL / REFIT_TEST_REDIS_URL (CI: the
machine's servers), else the embedded ones under ./.refit/test. Alembic migrates a template
database once per run; each test gets a fresh copy (CREATE DATABASE ... TEMPLATE), so tests
never share rows and nothing is cleaned by DELETE. Under pytest-xdist (`-n`), the controller
starts the servers and makes the template before its workers start: one set per run
(tests/databases.py).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from refit import db, queue
from refit.app import create_app
from refit.auth.tokens import issue_access_token
from refit.models import User
from refit.resources import Resources, close_resources, open_resources
from refit.settings import Settings
from tests.databases import DatabasePool, Servers, SuiteRun
from tests.databases import with_database as with_database  # imported from here by tests

ROOT = Path(__file__).resolve().parent.parent
RUN = SuiteRun(ROOT / ".refit" / "test")

OpenClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]
_CALL_FAILED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_500: the test provokes a 500 on purpose (without it, any 500 fails the test)",
    )


# The longest tests (tens of seconds each: real processes, hundreds of requests), longest
# first, as measured with --durations. Under xdist they are handed out first, so none of them
# starts near the end of a run while the other workers sit idle; the rest follow in the usual
# order. A node id prefix: a module or one test. A new long test belongs here.
LONGEST_FIRST = (
    "tests/orders/test_state_machine_property.py",
    "tests/resilience/test_outages_under_load.py",
    "tests/contract/test_schemathesis.py",
    "tests/admin/test_operator_cli.py",
    "tests/foundation/test_embedded_run.py",
    "tests/flags/test_cli.py",
    "tests/catalog/test_catalog.py",
    "tests/shipping/test_webhooks.py::test_a_thousand_concurrent_posts_for_a_hundred_orders",
    "tests/backup/test_round_trip.py",
    "tests/shipping/test_sandbox_journey.py",
    "tests/backup/test_restore_rules.py",
    "tests/resilience/test_supervision.py",
    "tests/foundation/test_dev_server.py",
    "tests/resilience/test_black_hole.py",
    "tests/payouts/test_worker_killed.py",
    "tests/localstorage/test_cli.py",
    "tests/sanctions/test_cli.py",
    "tests/foundation/test_api_processes.py",
    "tests/foundation/test_cli_errors.py",
    "tests/dashboard/test_browser.py",
    "tests/dashboard/test_accessibility.py",
    "tests/dashboard/test_browser_inspect.py",
    "tests/dashboard/test_returns_browser.py",
    "tests/dashboard/test_live.py",
    "tests/payouts/test_two_api_processes.py",
    "tests/foundation/test_import_cost.py",
    "tests/foundation/test_typescript_client.py",
    "tests/resilience/test_limits.py",
    "tests/resilience/test_dependency_errors.py",
    "tests/resilience/test_worker_outage.py",
    "tests/shipping/test_worker_killed.py",
    "tests/resilience/test_label_retry.py",
    "tests/auth/test_revocation_across_processes.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):
        return  # pytest alone: the usual order

    def rank(item: pytest.Item) -> int:
        for position, prefix in enumerate(LONGEST_FIRST):
            if item.nodeid.startswith(prefix):
                return position
        return len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the others keep their order


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # Before xdist starts its workers (its own hook runs last): they inherit the servers'
    # URLs and the template's name from this process's environment. Alone, pytest starts
    # them on first use instead, so a run that needs no database starts nothing.
    if session.config.pluginmanager.has_plugin("dsession"):
        RUN.template()


def pytest_unconfigure(config: pytest.Config) -> None:
    RUN.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(scope="session")
def servers() -> Servers:
    return RUN.servers()


@pytest.fixture(scope="session")
def admin_url(servers: Servers) -> str:
    return db.sqlalchemy_url(servers.database_url)


async def _admin_execute(admin_url: str, sql: str) -> None:
    async with await psycopg.AsyncConnection.connect(
        db.libpq_url(admin_url), autocommit=True
    ) as conn:
        await conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def template_db(servers: Servers) -> str:
    return RUN.template()


@pytest.fixture(scope="session")
def _databases(admin_url: str, template_db: str) -> Iterator[DatabasePool]:
    pool = DatabasePool(admin_url, template_db)
    yield pool
    pool.close()


@pytest.fixture
def database_url(_databases: DatabasePool) -> Iterator[str]:
    url = _databases.take()
    yield url
    _databases.give_back(url)


@pytest.fixture
def settings(database_url: str, servers: Servers, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        env="test",
        database_url=database_url,
        redis_url=servers.redis_url,
        redis_key_prefix=f"test:{uuid.uuid4().hex[:8]}:",
        data_dir=tmp_path / "data",
        public_url="http://testserver",
        worker_concurrency=2,
        worker_heartbeat_seconds=0.5,
        worker_stalled_after_seconds=3,
    )


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    opened = await open_resources(settings)
    assert settings.database_url
    pool = await queue.open_queue(settings.database_url, max_size=4)
    yield opened
    await queue.close_queue(pool)
    await close_resources(opened)


@pytest.fixture
def open_client(request: pytest.FixtureRequest) -> Iterator[OpenClient]:
    """Opens an httpx client on an app in this process. Any 500 fails the test: a crash must
    never pass for a refusal. A test that provokes one on purpose says so with
    `@pytest.mark.allow_500`. A 503 is a real answer (a dependency is down) and passes."""
    allowed = request.node.get_closest_marker("allow_500") is not None
    crashes: list[str] = []

    async def refuse_500(response: httpx.Response) -> None:
        if response.status_code != 500 or allowed:
            return
        await response.aread()
        crash = f"{response.request.method} {response.request.url.path} answered 500: "
        crashes.append(crash + response.text)
        pytest.fail(crashes[-1] + " (the traceback is in the captured log)", pytrace=False)

    @asynccontextmanager
    async def open_(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://testserver",
            event_hooks={"response": [refuse_500]},
        ) as http:
            yield http

    yield open_
    if crashes and not request.node.stash.get(_CALL_FAILED, False):
        # The failure raised in the hook was swallowed on the way (a gather with
        # return_exceptions=True, a broad except): the test passed, the crash still counts.
        pytest.fail("\n".join(crashes), pytrace=False)


@pytest.fixture
async def client(resources: Resources, open_client: OpenClient) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(resources.settings, resources=resources)
    async with app.router.lifespan_context(app), open_client(app) as http:
        yield http


@pytest.fixture
def open_client_without(
    settings: Settings, open_client: OpenClient
) -> Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]:
    """Opens a client on an app whose PostgreSQL and/or Redis ("database", "redis") is down:
    its URL points at a loopback port bound but never listening, so every connection is
    refused and no other process can take the port meanwhile.

    It opens its own resources, which become the process's current ones: use it after the
    test is done with `client` and `resources`, never before."""

    @asynccontextmanager
    async def open_(*down: str) -> AsyncIterator[httpx.AsyncClient]:
        assert down and set(down) <= {"database", "redis"}, down
        assert settings.database_url
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
            unreachable = {
                "database": make_url(settings.database_url)
                .set(host="127.0.0.1", port=port, query={})
                .render_as_string(hide_password=False),
                "redis": f"redis://127.0.0.1:{port}/0",
            }
            update = {f"{name}_url": unreachable[name] for name in down}
            broken = await open_resources(settings.model_copy(update=update))
            try:
                app = create_app(broken.settings, resources=broken)
                async with app.router.lifespan_context(app), open_client(app) as http:
                    yield http
            finally:
                await close_resources(broken)

    return open_


@pytest.fixture
async def run_jobs(resources: Resources) -> Any:
    """Run every due job in this process with a real worker, until the queue is empty."""

    async def run() -> None:
        await queue.run_until_empty()

    return run


class SignedIn:
    """A seller created in the database with a real access token."""

    def __init__(self, user: User, token: str) -> None:
        self.user = user
        self.id = user.id
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def make_user(resources: Resources) -> Any:
    """Create a user row (service role) and mint its token, as connect-wallet would."""

    async def make(wallet_address: str | None = None, email: str | None = None) -> SignedIn:
        async with resources.sessionmaker() as session, session.begin():
            user = User(
                wallet_address=wallet_address or f"test{uuid.uuid4().hex}",
                email=email,
            )
            session.add(user)
            await session.flush()
            await session.refresh(user)
        token = issue_access_token(resources.settings, user.id)
        return SignedIn(user, token.token)

    return make
