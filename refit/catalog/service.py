"""Load the device catalog from a file (an upsert) and serve it, cached in Redis."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from refit.catalog.schemas import (
    CatalogBrand,
    CatalogDevice,
    CatalogFile,
    CatalogRead,
    GradeRead,
    StorageOption,
    storage_sort_key,
)
from refit.log_setup import describe_error
from refit.models.catalog import CatalogModel, CatalogVariant, ConditionGrade, DeviceCategory
from refit.resources import Resources
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

SHIPPED_CATALOG = Path(__file__).parent / "data" / "catalog.json"
# The Redis copy. Short: a load deletes it anyway; the TTL only bounds what a direct SQL edit,
# or a refill racing a load, leaves stale.
CACHE_SECONDS = 60


class CatalogFileError(ValueError):
    """The file is not a valid catalog; nothing was loaded."""


@dataclass(frozen=True)
class LoadResult:
    models: int
    variants: int
    grades: int
    deactivated_models: int
    deactivated_variants: int
    deactivated_grades: int


def parse_file(path: Path) -> CatalogFile:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogFileError(f"cannot read {path}: {exc}") from exc
    try:
        # Decimal straight from the text: a price never passes through a float.
        return CatalogFile.model_validate_json(raw)
    except ValidationError as exc:
        raise CatalogFileError(f"{path} is not a valid catalog:\n{exc}") from exc


async def load(session: AsyncSession, catalog: CatalogFile) -> LoadResult:
    """Make the active catalog equal to `catalog`: insert or update every entry, deactivate
    what the file no longer lists (quotes keep referring to it). Run as the service role."""
    # Two loads at once would each deactivate the other's new rows: one at a time.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('refit.catalog.load'))"))

    for grade in catalog.grades:
        values = grade.model_dump()
        await session.execute(
            insert(ConditionGrade)
            .values(**values, is_active=True)
            .on_conflict_do_update(
                index_elements=[ConditionGrade.code],
                set_={**{k: v for k, v in values.items() if k != "code"}, "is_active": True},
            )
        )
    gone_grades = await session.execute(
        update(ConditionGrade)
        .where(
            ConditionGrade.code.not_in([g.code for g in catalog.grades]),
            ConditionGrade.is_active,
        )
        .values(is_active=False)
    )

    variant_ids = []
    model_ids = []
    for entry in catalog.models:
        model_id = await session.scalar(
            insert(CatalogModel)
            .values(
                brand=entry.brand,
                model=entry.model,
                category=entry.category.value,
                release_year=entry.release_year,
                is_active=True,
            )
            .on_conflict_do_update(
                index_elements=[func.lower(text("brand")), func.lower(text("model"))],
                set_={
                    "brand": entry.brand,
                    "model": entry.model,
                    "category": entry.category.value,
                    "release_year": entry.release_year,
                    "is_active": True,
                },
            )
            .returning(CatalogModel.id)
        )
        model_ids.append(model_id)
        for storage, price in entry.prices.items():
            variant_id = await session.scalar(
                insert(CatalogVariant)
                .values(model_id=model_id, storage=storage, base_price_usd=price, is_active=True)
                .on_conflict_do_update(
                    index_elements=[CatalogVariant.model_id, CatalogVariant.storage],
                    set_={"base_price_usd": price, "is_active": True},
                )
                .returning(CatalogVariant.id)
            )
            variant_ids.append(variant_id)

    gone_models = await session.execute(
        update(CatalogModel)
        .where(CatalogModel.id.not_in(model_ids), CatalogModel.is_active)
        .values(is_active=False)
    )
    gone_variants = await session.execute(
        update(CatalogVariant)
        .where(CatalogVariant.id.not_in(variant_ids), CatalogVariant.is_active)
        .values(is_active=False)
    )
    result = LoadResult(
        models=len(model_ids),
        variants=len(variant_ids),
        grades=len(catalog.grades),
        deactivated_models=_count(gone_models),
        deactivated_variants=_count(gone_variants),
        deactivated_grades=_count(gone_grades),
    )
    log.info("catalog.loaded", **result.__dict__)
    return result


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def is_empty(session: AsyncSession) -> bool:
    return (await session.scalar(select(func.count()).select_from(CatalogModel))) == 0


async def read(session: AsyncSession) -> CatalogRead:
    """The active catalog: brands (alphabetical) → models (newest first) → storage options."""
    rows = (
        await session.execute(
            select(CatalogModel, CatalogVariant)
            .join(CatalogVariant, CatalogVariant.model_id == CatalogModel.id)
            .where(CatalogModel.is_active, CatalogVariant.is_active)
            .order_by(
                CatalogModel.brand,
                CatalogModel.release_year.desc().nulls_last(),
                CatalogModel.model,
            )
        )
    ).all()
    brands: dict[str, dict[str, CatalogDevice]] = {}
    for model, variant in rows:
        devices = brands.setdefault(model.brand, {})
        device = devices.get(model.model)
        if device is None:
            device = devices[model.model] = CatalogDevice(
                model=model.model,
                category=DeviceCategory(model.category),
                release_year=model.release_year,
                storage_options=[],
            )
        device.storage_options.append(
            StorageOption(storage=variant.storage, base_price_usd=variant.base_price_usd)
        )
    for devices in brands.values():
        for device in devices.values():
            device.storage_options.sort(key=lambda o: storage_sort_key(o.storage))
    grades = (
        await session.scalars(
            select(ConditionGrade)
            .where(ConditionGrade.is_active)
            .order_by(ConditionGrade.sort_order, ConditionGrade.code)
        )
    ).all()
    return CatalogRead(
        brands=[
            CatalogBrand(name=name, models=list(devices.values()))
            for name, devices in brands.items()
        ],
        grades=[
            GradeRead(
                code=g.code, name=g.name, description=g.description, price_factor=g.price_factor
            )
            for g in grades
        ],
        categories=list(DeviceCategory),
    )


@dataclass(frozen=True)
class CatalogAnswer:
    body: str
    etag: str


def etag_of(body: str) -> str:
    """A strong ETag: the same bytes give the same tag in every process and after a refill,
    so a client's copy stays valid until the catalog itself changes."""
    return '"' + hashlib.blake2b(body.encode(), digest_size=16).hexdigest() + '"'


def cache_key(resources: Resources) -> str:
    # v2: a hash of body and etag (v1 was the body alone, and expires by itself).
    return resources.redis_key("catalog", "v2")


async def cached_etag(resources: Resources) -> str | None:
    """The cached answer's ETag, without its body and without PostgreSQL: what a conditional
    request needs. None when nothing is cached or Redis is down."""
    try:
        etag = await resources.redis.hget(cache_key(resources), "etag")
    except (RedisError, OSError) as exc:
        log.warning("catalog.cache_unavailable", error=describe_error(exc))
        return None
    return str(etag) if etag is not None else None


async def answer(resources: Resources) -> CatalogAnswer:
    """GET /api/catalog's body and ETag: from Redis, else read from PostgreSQL and cached.
    Redis down: read from PostgreSQL every time (public data, still served)."""
    key = cache_key(resources)
    try:
        body, etag = await resources.redis.hmget(key, ["body", "etag"])
    except (RedisError, OSError) as exc:
        log.warning("catalog.cache_unavailable", error=describe_error(exc))
        return _answer_of(await _read_json(resources))
    if body is not None and etag is not None:
        return CatalogAnswer(body=str(body), etag=str(etag))
    fresh = _answer_of(await _read_json(resources))
    try:
        async with resources.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"body": fresh.body, "etag": fresh.etag})
            pipe.expire(key, CACHE_SECONDS)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("catalog.cache_unavailable", error=describe_error(exc))
    return fresh


def _answer_of(body: str) -> CatalogAnswer:
    return CatalogAnswer(body=body, etag=etag_of(body))


async def _read_json(resources: Resources) -> str:
    # Its own short transaction, opened only on a cache miss: the endpoint takes no request
    # session, so a cached answer (or a 304) never builds one.
    async with service_transaction(sessionmaker=resources.sessionmaker) as session:
        return (await read(session)).model_dump_json()


async def invalidate(resources: Resources) -> None:
    await resources.redis.delete(cache_key(resources))
