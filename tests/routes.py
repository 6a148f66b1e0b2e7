"""The app's routes found by walking its dependency graphs, so a test about "every endpoint
that needs X" covers endpoints added later without anyone remembering to."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts


def depends_on(dependant: Any, call: Callable[..., Any]) -> bool:
    return any(d.call is call or depends_on(d, call) for d in dependant.dependencies)


def api_routes(app: FastAPI) -> Iterator[tuple[str, str, Any]]:
    """(method, path template, dependant) of every route, HEAD left out."""
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None or not route.path_format:
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                yield method, route.path_format, dependant


def routes_depending_on(app: FastAPI, call: Callable[..., Any]) -> list[tuple[str, str]]:
    return [
        (method, path) for method, path, dependant in api_routes(app) if depends_on(dependant, call)
    ]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def call_route(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> httpx.Response | None:
    """Call a route template with random ids (and `{}` as the body of a write); None when a
    live stream (SSE) was let in and never ends on its own."""
    kwargs: dict[str, Any] = {"headers": headers}
    if method in {"POST", "PUT", "PATCH"}:
        kwargs["json"] = {}
    try:
        return await asyncio.wait_for(client.request(method, _concrete(path), **kwargs), 10)
    except TimeoutError:
        return None
