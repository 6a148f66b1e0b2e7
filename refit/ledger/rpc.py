"""Solana JSON-RPC 2.0 over HTTP POST (single and batch requests), backed by one `Chain`."""

from __future__ import annotations

import json
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from refit.ledger.chain import Chain, RpcError
from refit.ledger.methods import READS, WRITES

log = structlog.get_logger(__name__)


def _error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": request_id}


async def call(chain: Chain, request: Any) -> dict[str, Any]:
    """One JSON-RPC request object in, one response object out."""
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        return _error(None, -32600, "Invalid request")
    request_id = request.get("id")
    method = request["method"]
    params = request.get("params") or []
    if not isinstance(params, list):
        return _error(request_id, -32602, "Invalid params: expected an array")
    try:
        if method in WRITES:
            result = await WRITES[method](chain, params)
        elif method in READS:
            async with chain.lock:
                result = READS[method](chain, params)
        else:
            return _error(request_id, -32601, "Method not found")
    except RpcError as exc:
        return _error(request_id, exc.code, exc.message, exc.data)
    except Exception:
        log.exception("ledger.rpc_failed", method=method)
        return _error(request_id, -32603, "Internal error")
    return {"jsonrpc": "2.0", "result": result, "id": request_id}


def create_rpc_app(chain: Chain) -> Starlette:
    async def rpc(request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return JSONResponse(_error(None, -32700, "Parse error"))
        if isinstance(payload, list):
            if not payload:
                return JSONResponse(_error(None, -32600, "Invalid request"))
            return JSONResponse([await call(chain, item) for item in payload])
        return JSONResponse(await call(chain, payload))

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/", rpc, methods=["POST"]), Route("/health", health, methods=["GET"])]
    )
