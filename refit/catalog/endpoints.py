"""GET /api/catalog (public)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from refit.catalog import service
from refit.catalog.schemas import CatalogRead
from refit.db import SessionDep

router = APIRouter(prefix="/api/catalog", tags=["catalog"])


@router.get(
    "",
    response_model=CatalogRead,
    summary="Brands, models, storage options and condition grades (public)",
)
async def get_catalog(request: Request, session: SessionDep) -> Response:
    body = await service.cached_json(request.app.state.resources, session)
    return Response(
        content=body,
        media_type="application/json",
        headers={"Cache-Control": f"public, max-age={service.CACHE_SECONDS}"},
    )
