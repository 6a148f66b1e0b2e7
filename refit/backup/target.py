"""Where the database is, and how the dump tools reach it without showing the password."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from sqlalchemy.engine import make_url

from refit import db, embedded
from refit.log_setup import configure_logging
from refit.settings import get_settings


class BackupError(Exception):
    """A refusal or a failed tool, said in one sentence for the operator."""


@dataclass(frozen=True)
class Target:
    # The full URL, password included: for this process's own connections only (kept out of
    # repr, and so out of any traceback that prints it).
    url: str = field(repr=False)
    tool_url: str  # the same without its password, for the tools' command line
    env: dict[str, str] = field(repr=False)  # the tools': the password, if any, as PGPASSWORD
    shown: str  # what may be printed: host and database, never the password

    @classmethod
    def from_url(cls, url: str) -> Target:
        parsed = make_url(db.sqlalchemy_url(url))
        env = dict(os.environ)
        if parsed.password is not None:
            env["PGPASSWORD"] = str(parsed.password)
        # A URL on a command line is readable by anyone on the machine (ps): not the password.
        # (`URL.set(password=None)` means "unchanged"; the named tuple's _replace clears it.)
        bare = parsed._replace(password=None).render_as_string(hide_password=False)
        shown = f"database {parsed.database!r} on {parsed.host or parsed.query.get('host')}"
        return cls(url=db.libpq_url(url), tool_url=db.libpq_url(bare), env=env, shown=shown)

    def connect(self, **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(self.url, **kwargs)  # type: ignore[arg-type]


@contextmanager
def configured_target() -> Iterator[Target]:
    """REFIT_DATABASE_URL, or the embedded database under REFIT_DATA_DIR (started for the
    command and stopped after, as `refit db-shell` does). Redis is not needed here."""
    settings = get_settings()
    configure_logging(settings)
    if settings.database_url:
        yield Target.from_url(settings.database_url)
        return
    embedded.quiet_unless_debugging(settings.log_level, embedded_database=False)
    servers = embedded.ensure_servers(None, None, settings.data_dir, with_redis=False)
    try:
        assert servers.database_url
        yield Target.from_url(servers.database_url)
    finally:
        servers.stop()
