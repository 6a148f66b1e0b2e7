"""GET /api/catalog as browsers and CDNs cache it: Cache-Control with stale-while-revalidate,
a strong ETag of the body, and a conditional request answered 304 from Redis without a
statement to PostgreSQL; with Redis down it is still served, from PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from refit.auth import revocations
from refit.catalog import service
from refit.catalog.schemas import CatalogFile

CACHE_CONTROL = "public, max-age=60, stale-while-revalidate=600"
SHIPPED = json.loads(service.SHIPPED_CATALOG.read_text())


@dataclass
class Seen:
    statements: list[str] = field(default_factory=list)
    checkouts: int = 0


@contextmanager
def database_use(engine: AsyncEngine) -> Iterator[Seen]:
    """Every SQL statement the engine sends, and every connection it takes from its pool."""
    seen = Seen()

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.statements.append(sql)

    def checkout(*_args: Any) -> None:
        seen.checkouts += 1

    sync_engine = engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", statement)
    event.listen(sync_engine, "checkout", checkout)
    try:
        yield seen
    finally:
        event.remove(sync_engine, "before_cursor_execute", statement)
        event.remove(sync_engine, "checkout", checkout)


async def test_the_catalog_carries_cache_control_and_a_strong_etag_of_its_body(client):
    first = await client.get("/api/catalog")
    assert first.status_code == 200
    assert first.headers["cache-control"] == CACHE_CONTROL
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)  # strong: no W/ prefix
    assert etag == service.etag_of(first.text)
    again = await client.get("/api/catalog")  # from Redis this time
    assert (again.headers["etag"], again.content) == (etag, first.content)


async def test_if_none_match_is_answered_304_without_touching_the_database(client, resources):
    # The process's revocation watch loads its record from PostgreSQL once it subscribes, in
    # the background of the app's start: done before anything here is counted.
    await _until_the_revocation_watch_is_live()
    with database_use(resources.engine) as cold:
        first = await client.get("/api/catalog")
    # The listeners see the cache miss's read, so the zeros below are worth something.
    assert cold.statements and cold.checkouts == 1
    etag = first.headers["etag"]

    with database_use(resources.engine) as seen:
        exact = await client.get("/api/catalog", headers={"If-None-Match": etag})
        # If-None-Match compares weakly and may list several tags, or "*".
        listed = await client.get("/api/catalog", headers={"If-None-Match": f'"x", W/{etag}'})
        star = await client.get("/api/catalog", headers={"If-None-Match": "*"})
        # An unconditional request is served from Redis as well.
        plain = await client.get("/api/catalog")
    assert seen.statements == [] and seen.checkouts == 0

    for not_modified in (exact, listed, star):
        assert not_modified.status_code == 304
        assert not_modified.content == b""
        assert not_modified.headers["etag"] == etag
        assert not_modified.headers["cache-control"] == CACHE_CONTROL
    assert (plain.status_code, plain.content) == (200, first.content)

    # A tag that is not the current one gets the whole answer.
    outdated = await client.get("/api/catalog", headers={"If-None-Match": '"0123"'})
    assert outdated.status_code == 200
    assert (outdated.headers["etag"], outdated.content) == (etag, first.content)


async def _until_the_revocation_watch_is_live() -> None:
    for _ in range(500):  # 10 s
        watch = revocations.current_watch()
        if watch is not None and watch.live:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the revocation watch never went live")


async def _load(resources, catalog: dict[str, Any]) -> None:
    """What `refit catalog load` does (tests/catalog/test_catalog.py runs the real command)."""
    async with resources.sessionmaker() as session, session.begin():
        await service.load(session, CatalogFile.model_validate(catalog))
    await service.invalidate(resources)


async def test_a_catalog_load_changes_the_etag_and_the_same_catalog_keeps_it(client, resources):
    before = await client.get("/api/catalog")
    old_etag = before.headers["etag"]

    changed = json.loads(json.dumps(SHIPPED))
    pixel9 = next(m for m in changed["models"] if m["model"] == "Pixel 9")
    pixel9["prices"]["128GB"] = "299.00"
    await _load(resources, changed)
    after = await client.get("/api/catalog", headers={"If-None-Match": old_etag})
    assert after.status_code == 200
    assert after.headers["etag"] != old_etag
    assert after.headers["etag"] == service.etag_of(after.text)
    assert '"299.00"' in after.text

    # The shipped file again: the same bytes, so the first tag is current again and a client
    # holding it is told 304, even though the cache was refilled in between.
    await _load(resources, SHIPPED)
    back = await client.get("/api/catalog", headers={"If-None-Match": old_etag})
    assert back.status_code == 304


async def test_with_redis_down_the_catalog_is_read_from_postgresql(open_client_without):
    async with open_client_without("redis") as http:
        response = await http.get("/api/catalog")
        assert response.status_code == 200
        body = response.json()
        assert [b["name"] for b in body["brands"]] == ["Apple", "Google", "Samsung"]
        assert sum(len(b["models"]) for b in body["brands"]) == len(SHIPPED["models"])
        assert response.headers["cache-control"] == CACHE_CONTROL
        etag = response.headers["etag"]
        assert etag == service.etag_of(response.text)
        # Conditional requests still work, checked against the answer read from PostgreSQL.
        conditional = await http.get("/api/catalog", headers={"If-None-Match": etag})
        assert conditional.status_code == 304
