"""refit/deprecation.py on an app of its own (no ReFit endpoint is on its way out yet): a
deprecated route is marked in OpenAPI and answers with RFC 9745 `Deprecation`, RFC 8594
`Sunset` and a `Link` to the docs; a deprecated field is marked in the schema; the routes
around them are untouched."""

from __future__ import annotations

import datetime as dt
from email.utils import parsedate_to_datetime

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from refit.deprecation import Deprecation, deprecated_field

SINCE = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
SUNSET = dt.datetime(2027, 6, 1, 12, 30, tzinfo=dt.UTC)
DOCS = "https://docs.refit.example/api#orders"
OLD_LIST = Deprecation(since=SINCE, sunset=SUNSET, link=DOCS)


class Item(BaseModel):
    price_usd: str
    price: str | None = deprecated_field(description="Use price_usd")


def _app() -> FastAPI:
    router = APIRouter(prefix="/api")

    @router.get("/items", response_model=list[Item])
    async def items() -> list[Item]:
        return [Item(price_usd="1.00", price="1.00")]

    @router.get("/items-old", response_model=list[Item], **OLD_LIST.route())
    async def items_old() -> list[Item]:
        return [Item(price_usd="1.00", price="1.00")]

    app = FastAPI()
    app.include_router(router)
    return app


async def test_a_deprecated_route_says_so_in_headers_and_openapi():
    app = _app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        old = await http.get("/api/items-old")
        current = await http.get("/api/items")
        openapi = (await http.get("/openapi.json")).json()

    assert old.status_code == 200 and old.json() == current.json()
    assert old.headers["Deprecation"] == f"@{int(SINCE.timestamp())}" == "@1796083200"
    assert old.headers["Sunset"] == "Tue, 01 Jun 2027 12:30:00 GMT"
    assert parsedate_to_datetime(old.headers["Sunset"]) == SUNSET
    assert old.headers["Link"] == f'<{DOCS}>; rel="deprecation"; type="text/html"'
    assert not {"Deprecation", "Sunset", "Link"} & set(current.headers)

    assert openapi["paths"]["/api/items-old"]["get"]["deprecated"] is True
    assert "deprecated" not in openapi["paths"]["/api/items"]["get"]
    fields = openapi["components"]["schemas"]["Item"]["properties"]
    assert fields["price"]["deprecated"] is True
    assert "deprecated" not in fields["price_usd"]


def test_only_the_deprecation_date_is_required_and_dates_carry_a_zone():
    assert Deprecation(since=SINCE).headers() == {"Deprecation": "@1796083200"}
    # A Sunset given in another zone is still an HTTP-date in GMT.
    eastern = SUNSET.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert Deprecation(since=SINCE, sunset=eastern).headers()["Sunset"].endswith(" GMT")
    with pytest.raises(ValueError):
        Deprecation(since=dt.datetime(2026, 12, 1))
