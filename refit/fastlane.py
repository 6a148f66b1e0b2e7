"""The fast lane: the hottest GETs (a seller's order and order list, their flags, the
catalog) answered by plain ASGI handlers, in front of FastAPI's routing, dependency solving
and exception layers, which cost more CPU than the read itself (docs/capacity.md).

One door still: the lane sits inside the app's own middleware (request id, metrics, the
access line, the body limit, CORS), a seller's request goes through `auth.deps.admit_seller`
(token, revocation, per-seller limit) as FastAPI's routes do, and each handler calls the same
read its FastAPI endpoint calls, which stays as the documented route (OpenAPI, the client)
and answers whatever the lane leaves to it. A handler returns None, before any side effect,
for a request it does not take as it is (a malformed id, an unusual query string, a NUL
anywhere): FastAPI then answers it exactly as before, refusals included. Errors are answered
as the app's exception handlers answer them (`errors.error_response`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from refit.errors import error_response
from refit.inputs import is_form

# (scope, the path's last segment for a template ending in one parameter, else "")
Handler = Callable[[Scope, str], Awaitable[Response | None]]


@dataclass(frozen=True)
class LaneRoute:
    """A GET route the lane answers: `path` is FastAPI's template for it, the label its
    metrics and access line carry (as `scope["route"].path`)."""

    path: str
    handler: Handler


class FastLane:
    def __init__(self, app: ASGIApp, routes: Mapping[str, Handler]) -> None:
        self.app = app
        self.exact: dict[str, LaneRoute] = {}
        # "/api/orders/" -> the route of "/api/orders/{order_id}"
        self.prefixed: dict[str, LaneRoute] = {}
        for path, handler in routes.items():
            head, _, last = path.rpartition("/")
            if last.startswith("{") and last.endswith("}"):
                self.prefixed[head + "/"] = LaneRoute(path, handler)
            else:
                self.exact[path] = LaneRoute(path, handler)

    def _route(self, scope: Scope) -> tuple[LaneRoute | None, str]:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None, ""
        path: str = scope["path"]
        route = self.exact.get(path)
        if route is not None:
            return route, ""
        head, _, last = path.rpartition("/")
        route = self.prefixed.get(head + "/") if last else None
        return route, last

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, param = self._route(scope)
        if route is None or _has_nul(scope):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        try:
            response = await route.handler(scope, param)
        except Exception as exc:
            scope["route"] = route
            response = await error_response(scope, exc)
        if response is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        await response(scope, receive, send)


def _has_nul(scope: Scope) -> bool:
    # refit.inputs.refuse_unstorable_input's refusals (400) are FastAPI's to answer, and a
    # form's fields are its to read.
    if is_form(scope):
        return True
    query: bytes = scope["query_string"]
    if b"\x00" in query or b"%00" in query or "\x00" in scope["path"]:
        return True
    return any(b"\x00" in value for _, value in scope["headers"])


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a header (`name` lower-case, as servers give them), like
    Starlette's `request.headers.get`."""
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def json_response(body: bytes | str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(body, media_type="application/json", headers=headers)


def state(scope: Scope) -> dict[str, Any]:
    found: dict[str, Any] = scope["state"]
    return found
