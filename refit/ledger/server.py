"""The local ledger as a server: `refit ledger` alone, or inside `refit run` when
REFIT_SOLANA_RPC_URL is unset. Its state lives in data_dir/ledger; the development treasury is
funded at start."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
import uvicorn

from refit.ledger.chain import Chain
from refit.ledger.journal import Journal
from refit.ledger.rpc import create_rpc_app
from refit.ledger.treasury import load_treasury
from refit.log_setup import configure_logging
from refit.settings import Settings

log = structlog.get_logger(__name__)

LAMPORTS_PER_SOL = 1_000_000_000
# Below this the treasury is topped up by as much again, at every start.
TREASURY_FLOOR_LAMPORTS = 1_000 * LAMPORTS_PER_SOL


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    # Signals belong to whoever runs the ledger (`refit run` stops everything together).
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class LedgerServer:
    """`serve()` until `stop()`. With `optional`, a port already taken (another ledger, a
    solana-test-validator) is logged and left alone instead of failing."""

    def __init__(self, settings: Settings, *, optional: bool = False) -> None:
        self.settings = settings
        self.optional = optional
        self.chain: Chain | None = None
        self.url: str | None = None
        self._server: _Server | None = None
        self._stopping = False
        self._serving = asyncio.Event()

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True

    async def started(self) -> Chain:
        """The chain, once the server answers (for tests and tools; bound it with a timeout:
        a ledger that could not start never answers)."""
        await self._serving.wait()
        assert self._server is not None and self.chain is not None
        await self._server.ready.wait()
        return self.chain

    async def serve(self) -> None:
        settings = self.settings
        try:
            sock = _bind(settings.ledger_host, settings.ledger_port)
        except OSError as exc:
            if not self.optional:
                raise
            log.warning(
                "ledger.not_started",
                reason=str(exc),
                rpc_url=settings.solana_rpc_endpoint,
                hint="set REFIT_LEDGER_PORT, or REFIT_SOLANA_RPC_URL for another cluster",
            )
            return
        directory = settings.data_dir / "ledger"
        directory.mkdir(parents=True, exist_ok=True)
        with sock, _exclusive(directory):
            self.chain = chain = Chain(Journal(directory))
            treasury = load_treasury(settings).pubkey()
            if (chain.svm.get_balance(treasury) or 0) < TREASURY_FLOOR_LAMPORTS:
                await chain.airdrop(treasury, TREASURY_FLOOR_LAMPORTS)
            host, port = sock.getsockname()[:2]
            self.url = f"http://{host}:{port}"
            config = uvicorn.Config(
                create_rpc_app(chain), log_config=None, access_log=False, lifespan="off"
            )
            self._server = _Server(config)
            self._server.should_exit = self._stopping
            self._serving.set()
            log.info("ledger.listening", url=self.url, slot=chain.slot, treasury=str(treasury))
            clock = asyncio.create_task(chain.run_clock(settings.ledger_slot_ms))
            try:
                await self._server.serve(sockets=[sock])
            finally:
                clock.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await clock


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@contextmanager
def _exclusive(directory: object) -> Iterator[None]:
    # Two ledgers appending to one journal would corrupt it; the second one stops here.
    with open(f"{directory}/lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another ledger is using {directory}") from None
        yield


async def serve_ledger(settings: Settings) -> None:
    """The local ledger alone, until SIGINT or SIGTERM."""
    configure_logging(settings)
    server = LedgerServer(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.stop)
    await server.serve()
