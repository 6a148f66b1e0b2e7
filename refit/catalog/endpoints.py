"""GET /api/catalog (public)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from refit import resources
from refit.catalog import service
from refit.catalog.schemas import CatalogRead
from refit.resources import SessionDep

router = APIRouter(prefix="/api/catalog", tags=["catalog"])


@router.get(
    "",
    response_model=CatalogRead,
    summary="Brands, models, storage options and condition grades (public)",
)
async def get_catalog(request: Request, session: SessionDep) -> Response:
    body = await service.cached_json(resources.current(), session)
    return Response(
        content=body,
        media_type="application/json",
        headers={"Cache-Control": f"public, max-age={service.CACHE_SECONDS}"},
    )
