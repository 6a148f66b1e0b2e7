"""GET /api/catalog (public), cacheable by browsers and CDNs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from starlette.types import Scope

from refit import fastlane, resources
from refit.catalog import service
from refit.catalog.schemas import CatalogRead

router = APIRouter(prefix="/api/catalog", tags=["catalog"])

# A browser or CDN reuses its copy for a minute without asking, so a catalog load shows
# everywhere within about a minute. For ten more minutes it may show that copy at once while
# it asks again in the background, a conditional request answered 304 from Redis alone: the
# catalog stays instant and costs us almost nothing. A stale copy can only mislead the page:
# a quote is priced from PostgreSQL at the moment it is made (quotes.service), never from this.
MAX_AGE_SECONDS = 60
STALE_WHILE_REVALIDATE_SECONDS = 600
CACHE_CONTROL = (
    f"public, max-age={MAX_AGE_SECONDS}, stale-while-revalidate={STALE_WHILE_REVALIDATE_SECONDS}"
)


def _matches(if_none_match: str, etag: str) -> bool:
    # RFC 9110 13.1.2: If-None-Match compares weakly (a W/ prefix does not matter); "*"
    # matches any current representation.
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _not_modified(etag: str) -> Response:
    # A 304 carries the headers the 200 would have (RFC 9110 15.4.5), and no body.
    return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})


@router.get(
    "",
    response_model=CatalogRead,
    summary="Brands, models, storage options and condition grades (public)",
    responses={304: {"description": "Not Modified: the If-None-Match ETag is current"}},
)
async def get_catalog(
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return await _catalog(if_none_match)


async def lane_catalog(scope: Scope, _: str) -> Response:
    """The same GET for the fast lane (refit.fastlane)."""
    return await _catalog(fastlane.header(scope, b"if-none-match"))


async def _catalog(if_none_match: str | None) -> Response:
    res = resources.current()
    if if_none_match:
        etag = await service.cached_etag(res)
        if etag is not None and _matches(if_none_match, etag):
            return _not_modified(etag)
    answer = await service.answer(res)
    if if_none_match and _matches(if_none_match, answer.etag):
        return _not_modified(answer.etag)
    return Response(
        content=answer.body,
        media_type="application/json",
        headers={"ETag": answer.etag, "Cache-Control": CACHE_CONTROL},
    )
