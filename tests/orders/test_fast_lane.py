"""The fast lane (refit/fastlane.py) answers the hot GETs exactly as FastAPI's routes do:
the same status, body bytes and headers, refusals included (its access line and metrics:
tests/observability/test_fast_lane_access.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from refit.app import create_app
from refit.fastlane import FastLane
from refit.resources import Resources
from tests.orders.helpers import place_order


def _without_lane(app: FastAPI) -> FastAPI:
    # Before the first request builds the middleware stack.
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastLane]
    return app


def _watched(app: FastAPI, answered: list[str]) -> FastAPI:
    """Each lane handler's path in `answered` when it answered, a refusal included (not when
    it left the request to FastAPI)."""
    (lane,) = [m for m in app.user_middleware if m.cls is FastLane]
    routes = lane.kwargs["routes"]

    def watch(path: str, handler: Any) -> Any:
        async def watched(scope: Any, param: str) -> Any:
            try:
                response = await handler(scope, param)
            except Exception:
                answered.append(path)
                raise
            if response is not None:
                answered.append(path)
            return response

        return watched

    lane.kwargs["routes"] = {path: watch(path, handler) for path, handler in routes.items()}
    return app


@asynccontextmanager
async def _clients(
    resources: Resources, open_client: Callable[..., object], answered: list[str]
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    lane = _watched(create_app(resources.settings, resources=resources), answered)
    plain = _without_lane(create_app(resources.settings, resources=resources))
    async with (
        lane.router.lifespan_context(lane),
        plain.router.lifespan_context(plain),
        open_client(lane) as fast,  # type: ignore[attr-defined]
        open_client(plain) as slow,  # type: ignore[attr-defined]
    ):
        yield fast, slow


_SAME_HEADERS = ("content-type", "content-length", "etag", "cache-control", "retry-after")


async def test_every_hot_get_answers_as_fastapi_does(client, resources, open_client, make_user):
    seller = await make_user()
    other = await make_user()
    order = await place_order(client, resources, seller)
    theirs = await place_order(client, resources, other)
    page = (await client.get("/api/orders?limit=1", headers=seller.headers)).json()
    assert page["next_cursor"] is None  # one order: make a second for a cursor
    await place_order(client, resources, seller)
    cursor = (await client.get("/api/orders?limit=1", headers=seller.headers)).json()["next_cursor"]
    catalog = await client.get("/api/catalog")
    bearer = seller.headers
    cases: list[tuple[str, dict[str, str]]] = [
        (f"/api/orders/{order['id']}", bearer),
        (f"/api/orders/{str(order['id']).upper()}", bearer),
        (f"/api/orders/{theirs['id']}", bearer),  # another seller's: 404
        (f"/api/orders/{uuid.uuid4()}", bearer),
        ("/api/orders/not-a-uuid", bearer),  # 422, from FastAPI
        (f"/api/orders/{order['id']}", {}),  # no token: 401
        (f"/api/orders/{order['id']}", {"Authorization": "Basic abc"}),
        (f"/api/orders/{order['id']}", {"Authorization": "Bearer nonsense"}),
        ("/api/orders", bearer),
        ("/api/orders?limit=1", bearer),
        (f"/api/orders?limit=1&cursor={cursor}", bearer),
        ("/api/orders?limit=0", bearer),
        ("/api/orders?limit=101", bearer),
        ("/api/orders?limit=050", bearer),
        ("/api/orders?limit=2&limit=3", bearer),
        ("/api/orders?cursor=", bearer),
        ("/api/orders?cursor=%%%", bearer),
        ("/api/orders?other=1", bearer),
        ("/api/orders?limit=1%00", bearer),
        ("/api/orders", {}),
        ("/api/catalog", {}),
        ("/api/catalog", {"If-None-Match": catalog.headers["etag"]}),
        ("/api/catalog", {"If-None-Match": '"stale"'}),
        ("/api/flags", bearer),
        ("/api/flags", {}),
    ]
    answered: list[str] = []
    async with _clients(resources, open_client, answered) as (fast, slow):
        for path, headers in cases:
            answered.clear()
            ours = await fast.get(path, headers=headers)
            # The lane took every request here but those it leaves to FastAPI.
            left = ("not-a-uuid", "limit=0", "limit=101", "limit=050", "limit=2&", "cursor=&")
            left += ("other=1", "%00")
            assert bool(answered) != any(p in path + "&" for p in left), path
            theirs_ = await slow.get(path, headers=headers)
            assert ours.status_code == theirs_.status_code, path
            assert ours.content == theirs_.content, path
            for name in _SAME_HEADERS:
                assert ours.headers.get(name) == theirs_.headers.get(name), (path, name)
            assert ours.headers["x-request-id"]
