"""The device catalog: the shipped file, `refit catalog load` (an idempotent upsert), and the
public GET /api/catalog cached in Redis and invalidated on load."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from sqlalchemy import func, select

from refit.catalog import service
from refit.catalog.schemas import CatalogFile
from refit.models import CatalogModel, CatalogVariant, ConditionGrade

SHIPPED = json.loads(service.SHIPPED_CATALOG.read_text())


async def _counts(resources) -> tuple[int, int, int, int]:
    async with resources.sessionmaker() as session:
        models = await session.scalar(select(func.count()).select_from(CatalogModel))
        active = await session.scalar(
            select(func.count()).select_from(CatalogModel).where(CatalogModel.is_active)
        )
        variants = await session.scalar(select(func.count()).select_from(CatalogVariant))
        grades = await session.scalar(select(func.count()).select_from(ConditionGrade))
    return models, active, variants, grades


async def _refit(settings, *args: str) -> tuple[int, str]:
    """Run the real `refit` command line against this test's database and Redis."""
    env = {
        **os.environ,
        "REFIT_DATABASE_URL": settings.database_url,
        "REFIT_REDIS_URL": settings.redis_url,
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_DATA_DIR": str(settings.data_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "refit",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def test_shipped_file_is_a_valid_realistic_catalog():
    catalog = CatalogFile.model_validate(SHIPPED)
    brands = {m.brand for m in catalog.models}
    assert {"Apple", "Samsung", "Google"} <= brands
    categories = {m.category.value for m in catalog.models}
    assert categories == {"phone", "tablet", "laptop", "watch"}
    for brand in ("Apple", "Samsung", "Google"):
        assert {m.category.value for m in catalog.models if m.brand == brand} >= {"phone", "tablet"}
    assert [g.code for g in catalog.grades] == ["flawless", "good", "fair", "cracked", "broken"]
    # Grades pay less as the condition worsens, and every one explains itself.
    factors = [g.price_factor for g in catalog.grades]
    assert factors == sorted(factors, reverse=True) and factors[0] == 1
    assert all(len(g.description) > 40 for g in catalog.grades)
    # More storage never pays less.
    for m in catalog.models:
        prices = [
            p for _, p in sorted(m.prices.items(), key=lambda i: service.storage_sort_key(i[0]))
        ]
        assert prices == sorted(prices), m.model


async def test_get_catalog_is_public_and_complete(client):
    response = await client.get("/api/catalog")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    body = response.json()
    names = [b["name"] for b in body["brands"]]
    assert names == ["Apple", "Google", "Samsung"]
    apple = next(b for b in body["brands"] if b["name"] == "Apple")
    pro = next(m for m in apple["models"] if m["model"] == "iPhone 16 Pro")
    assert pro["category"] == "phone"
    assert pro["storage_options"] == [
        {"storage": "128GB", "base_price_usd": "610.00"},
        {"storage": "256GB", "base_price_usd": "655.00"},
        {"storage": "512GB", "base_price_usd": "710.00"},
        {"storage": "1TB", "base_price_usd": "765.00"},
    ]
    assert body["grades"][0] == {
        "code": "flawless",
        "name": "Flawless",
        "description": SHIPPED["grades"][0]["description"],
        "price_factor": "1.0000",
    }
    assert body["categories"] == ["phone", "tablet", "laptop", "watch"]
    total = sum(len(b["models"]) for b in body["brands"])
    assert total == len(SHIPPED["models"])


async def test_catalog_is_cached_in_redis_until_a_load(client, resources):
    first = (await client.get("/api/catalog")).json()
    assert await resources.redis.ttl(service.cache_key(resources)) > 0
    # A change behind the cache's back is not seen until the cache goes...
    async with resources.sessionmaker() as session, session.begin():
        variant = await session.scalar(
            select(CatalogVariant)
            .join(CatalogModel)
            .where(CatalogModel.model == "Pixel 9", CatalogVariant.storage == "128GB")
        )
        variant.base_price_usd = 1
    assert (await client.get("/api/catalog")).json() == first
    # ...and a load (here of the shipped file, restoring the price) drops it.
    async with resources.sessionmaker() as session, session.begin():
        await service.load(session, service.parse_file(service.SHIPPED_CATALOG))
    await service.invalidate(resources)
    assert await resources.redis.exists(service.cache_key(resources)) == 0
    assert (await client.get("/api/catalog")).json() == first


async def test_refit_catalog_load_is_an_idempotent_upsert(settings, resources, client, tmp_path):
    before = await _counts(resources)
    assert before == (53, 53, 144, 5)
    await client.get("/api/catalog")  # cached

    code, out = await _refit(settings, "catalog", "load", str(service.SHIPPED_CATALOG))
    assert code == 0, out
    assert "catalog loaded: 53 models, 144 storage options, 5 grades" in out
    assert await _counts(resources) == before
    assert await resources.redis.exists(service.cache_key(resources)) == 0

    # A new price, a new model, a dropped model and a dropped storage option.
    changed = json.loads(json.dumps(SHIPPED))
    changed["models"] = [m for m in changed["models"] if m["model"] != "Pixel 7"]
    pixel9 = next(m for m in changed["models"] if m["model"] == "Pixel 9")
    pixel9["prices"] = {"128GB": "311.50"}
    changed["models"].append(
        {
            "brand": "Google",
            "model": "Pixel 10",
            "category": "phone",
            "release_year": 2025,
            "prices": {"128GB": "420.00"},
        }
    )
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(changed))
    code, out = await _refit(settings, "catalog", "load", str(path))
    assert code == 0, out
    assert "deactivated 1 models, 3 storage options, 0 grades" in out  # Pixel 7 x2 + 256GB
    # Nothing is deleted (quotes refer to catalog rows): 54 rows, 53 active.
    assert await _counts(resources) == (54, 53, 145, 5)
    google = next(
        b for b in (await client.get("/api/catalog")).json()["brands"] if b["name"] == "Google"
    )
    models = {m["model"]: m for m in google["models"]}
    assert "Pixel 7" not in models and "Pixel 10" in models
    assert models["Pixel 9"]["storage_options"] == [
        {"storage": "128GB", "base_price_usd": "311.50"}
    ]

    # The shipped file again: everything back, still no duplicates.
    code, out = await _refit(settings, "catalog", "load", str(service.SHIPPED_CATALOG))
    assert code == 0, out
    assert await _counts(resources) == (54, 53, 145, 5)
    models = {
        m["model"] for b in (await client.get("/api/catalog")).json()["brands"] for m in b["models"]
    }
    assert "Pixel 7" in models and "Pixel 10" not in models


async def test_an_invalid_file_changes_nothing(settings, resources, tmp_path):
    before = await _counts(resources)
    bad = json.loads(json.dumps(SHIPPED))
    bad["models"][0]["prices"]["256GB"] = "12.345"  # not whole cents
    bad["models"].append(dict(bad["models"][1], brand="APPLE"))  # duplicate, other case
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    code, out = await _refit(settings, "catalog", "load", str(path))
    assert code == 1
    assert "is not a valid catalog" in out
    assert "decimal places" in out or "Decimal" in out
    assert await _counts(resources) == before
    missing = await _refit(settings, "catalog", "load", str(Path(tmp_path) / "nope.json"))
    assert missing[0] == 1 and "cannot read" in missing[1]
