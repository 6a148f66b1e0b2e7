"""The servers and databases of one test run.

`SuiteRun`: PostgreSQL and Redis (REFIT_TEST_DATABASE_URL / REFIT_TEST_REDIS_URL, else the
embedded ones under ./.refit/test) and a template database migrated and seeded once. The
process that starts them (pytest itself, or the xdist controller before it starts its
workers) exports their URLs and the template's name into the environment, so every worker
uses the same ones and starts nothing; that process drops the template and stops what it
started at the end.

`DatabasePool`: each test's own database, a copy of the template. PostgreSQL makes a copy in
a fraction of a second but forces a checkpoint on every DROP DATABASE (one to four seconds on
a busy machine, measured); drops asked for at the same time share one checkpoint. So the copy
is made ahead, and spent databases are dropped behind, several at once, on threads of their
own: a test waits for neither.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from refit import db, embedded, migrate
from refit.catalog.cli import seed_if_empty as seed_catalog_if_empty

DATABASE_URL = "REFIT_TEST_DATABASE_URL"
REDIS_URL = "REFIT_TEST_REDIS_URL"
# Set by the process that made the template; its workers find it there.
TEMPLATE = "REFIT_TEST_TEMPLATE_DATABASE"
# Spent databases dropped together (one connection each, so the batch is bounded: the
# tests' own connections share PostgreSQL's max_connections with it).
DROP_BATCH = 4


def with_database(url: str, name: str) -> str:
    return make_url(db.sqlalchemy_url(url)).set(database=name).render_as_string(hide_password=False)


def admin_execute(admin_url: str, sql: str) -> None:
    with psycopg.connect(db.libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Servers:
    database_url: str
    redis_url: str


class SuiteRun:
    """The run's servers and template, made on first use by the first process that needs
    them and does not find them in the environment: pytest alone, or the xdist controller."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._servers: Servers | None = None
        self._template: str | None = None
        self._embedded: embedded.EmbeddedServers | None = None
        self._exported: list[str] = []

    def servers(self) -> Servers:
        if self._servers is None:
            found = embedded.ensure_servers(
                os.environ.get(DATABASE_URL), os.environ.get(REDIS_URL), self.data_dir
            )
            self._embedded = found  # stop() stops only what it started
            assert found.database_url and found.redis_url
            self._servers = Servers(found.database_url, found.redis_url)
            self._export(DATABASE_URL, found.database_url)
            self._export(REDIS_URL, found.redis_url)
        return self._servers

    def admin_url(self) -> str:
        return db.sqlalchemy_url(self.servers().database_url)

    def template(self) -> str:
        """The migrated, seeded template's name (made now unless a parent process did)."""
        if self._template is None:
            name = os.environ.get(TEMPLATE)
            if name is None:
                name = self._make_template()
                self._export(TEMPLATE, name)
            self._template = name
        return self._template

    def _make_template(self) -> str:
        admin_url = self.admin_url()
        name = f"refit_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin_execute(admin_url, f'CREATE DATABASE "{name}"')
        migrate.upgrade(with_database(admin_url, name))
        # Every test database starts with the shipped device catalog, as `refit run` does.
        asyncio.run(seed_catalog_if_empty(with_database(admin_url, name)))
        return name

    def _export(self, key: str, value: str) -> None:
        if os.environ.get(key) != value:
            os.environ[key] = value
            self._exported.append(key)

    def close(self) -> None:
        """Drop the template and stop the servers, if this process made them."""
        try:
            if self._template is not None and TEMPLATE in self._exported:
                admin_execute(
                    self.admin_url(), f'DROP DATABASE IF EXISTS "{self._template}" WITH (FORCE)'
                )
        finally:
            if self._embedded is not None:
                self._embedded.stop()
            for key in self._exported:
                os.environ.pop(key, None)
            self._exported.clear()


class DatabasePool:
    """Copies of the template for one process's tests: one always made ahead, the spent
    ones dropped behind in batches. `take()` waits only if the copy made ahead is not ready."""

    def __init__(self, admin_url: str, template: str) -> None:
        self.admin_url = admin_url
        self.template = template
        self._maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-db-create")
        self._ahead: Future[str] = self._maker.submit(self._create)
        self._spent: list[str] = []
        # One batch at a time; a batch's drops run at once on threads of their own.
        self._dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-db-drop")
        self._batches: list[Future[list[str]]] = []

    def _create(self) -> str:
        name = f"refit_t_{uuid.uuid4().hex[:12]}"
        admin_execute(self.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def take(self) -> str:
        """A fresh copy's URL, the next one started meanwhile."""
        name = self._ahead.result()
        self._ahead = self._maker.submit(self._create)
        return with_database(self.admin_url, name)

    def give_back(self, url: str) -> None:
        """Dropped later, whatever is still connected to it then (WITH FORCE)."""
        name = make_url(url).database
        assert name is not None
        self._spent.append(name)
        if len(self._spent) >= DROP_BATCH:
            self._drop_spent()

    def _drop_spent(self) -> None:
        batch, self._spent = self._spent, []
        if not batch:
            return
        # Finished batches without errors are forgotten; the others are reported by close().
        self._batches = [f for f in self._batches if not f.done() or f.result()]
        self._batches.append(self._dropper.submit(self._drop_together, batch))

    def _drop_together(self, names: list[str]) -> list[str]:
        """The errors, one line per database not dropped."""
        with ThreadPoolExecutor(max_workers=len(names)) as drops:
            return [error for error in drops.map(self._drop, names) if error]

    def _drop(self, name: str) -> str | None:
        try:
            admin_execute(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:  # reported by close(); the other drops go on
            return f"{name}: {exc}"
        return None

    def close(self) -> None:
        """Drop what is left (the copy made ahead too) and wait; a drop that failed is an
        error here, not a database silently left behind."""
        self._maker.shutdown(wait=True)
        try:
            self._spent.append(self._ahead.result())
        finally:
            self._drop_spent()
            self._dropper.shutdown(wait=True)
        errors = [error for batch in self._batches for error in batch.result()]
        if errors:
            raise RuntimeError("test databases not dropped: " + "; ".join(errors))
