"""A load-balanced RPC in front of the local ledger: signature statuses and reference lookups
reach a node `behind` slots back (it has not seen the newest blocks, and its finalized root
is as old), every other call the up-to-date node. The worst mix for a payout: a fresh block
height beside a stale "never seen". Speaks Solana JSON-RPC over HTTP like the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from refit.ledger.chain import FINALIZED_AFTER_SLOTS, Chain
from refit.ledger.rpc import call

BEHIND_METHODS = {"getSignatureStatuses", "getSignaturesForAddress"}


class LaggingRpc:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.behind = 0
        # A send that skips preflight (a node whose simulation ran on an older state), and
        # what happens on chain just before it lands.
        self.skip_preflight = False
        self.before_send: Callable[[], Awaitable[None]] | None = None

    def _view(self, commitment: str | None) -> int:
        """The lagging node's slot at `commitment` (default finalized, like a node)."""
        slot = self.chain.slot - self.behind
        if commitment == "processed":
            return slot
        if commitment == "confirmed":
            return slot - 1
        return slot - FINALIZED_AFTER_SLOTS

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        method = request.get("method")
        params = list(request.get("params") or [])
        if method == "sendTransaction":
            if self.before_send is not None:
                before, self.before_send = self.before_send, None
                await before()
            if self.skip_preflight:
                config = params[1] if len(params) > 1 else {}
                params = [params[0], {**config, "skipPreflight": True}]
        if method not in BEHIND_METHODS or not self.behind:
            return await call(self.chain, {**request, "params": params})
        if method == "getSignatureStatuses":
            response = await call(self.chain, request)
            statuses = response["result"]["value"]
            seen_to = self._view("processed")
            response["result"]["value"] = [
                s if s is not None and s["slot"] <= seen_to else None for s in statuses
            ]
            return response
        config = dict(params[1]) if len(params) > 1 and params[1] else {}
        visible_to = self._view(config.get("commitment"))
        wanted = config.pop("minContextSlot", None)
        if wanted is not None and visible_to < wanted:
            return {
                "jsonrpc": "2.0",
                "id": request.get("id"),
                "error": {
                    "code": -32016,
                    "message": "Minimum context slot has not been reached",
                    "data": {"contextSlot": visible_to},
                },
            }
        response = await call(self.chain, {**request, "params": [params[0], config]})
        response["result"] = [s for s in response["result"] if s["slot"] <= visible_to]
        return response


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    # Signals belong to pytest.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextlib.asynccontextmanager
async def serving(node: LaggingRpc) -> AsyncIterator[str]:
    """The node on a free local port, for as long as the block runs: its URL."""

    async def rpc(request: Request) -> Response:
        payload = json.loads(await request.body())
        if isinstance(payload, list):
            return JSONResponse([await node.answer(item) for item in payload])
        return JSONResponse(await node.answer(payload))

    app = Starlette(routes=[Route("/", rpc, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            await server.ready.wait()
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
