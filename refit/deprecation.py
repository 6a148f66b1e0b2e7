"""Endpoints and fields on their way out: marked `deprecated: true` in OpenAPI, and answered
with the headers that tell a client so (RFC 9745 `Deprecation`, RFC 8594 `Sunset`, and a
`Link` with rel="deprecation" to what to use instead).

    OLD_LIST = Deprecation(since=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
                           sunset=dt.datetime(2027, 6, 1, tzinfo=dt.UTC),
                           link="https://docs.refit.example/api#orders")

    @router.get("/old-list", **OLD_LIST.route())
    async def old_list() -> Page: ...

    class OrderRead(BaseModel):
        legacy_price: str = deprecated_field(description="Use price_usd")

The headers are set through the dependency's `Response`, which FastAPI merges into the
response an endpoint returns as a model; an endpoint that builds its own `Response` adds
`headers()` itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

from fastapi import Depends, Response
from pydantic import Field


@dataclass(frozen=True)
class Deprecation:
    since: dt.datetime  # when it became deprecated (may be in the future: announced)
    sunset: dt.datetime | None = None  # when it stops answering
    link: str | None = None  # a page saying what replaces it

    def __post_init__(self) -> None:
        for moment in (self.since, self.sunset):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("deprecation dates need a time zone")

    def headers(self) -> dict[str, str]:
        # RFC 9745: a Structured Field Date, `@` and Unix seconds.
        headers = {"Deprecation": f"@{int(self.since.timestamp())}"}
        if self.sunset is not None:
            # RFC 8594: an HTTP-date (IMF-fixdate, always GMT).
            headers["Sunset"] = format_datetime(self.sunset.astimezone(dt.UTC), usegmt=True)
        if self.link is not None:
            headers["Link"] = f'<{self.link}>; rel="deprecation"; type="text/html"'
        return headers

    async def __call__(self, response: Response) -> None:
        """The dependency: adds the headers to the endpoint's response."""
        response.headers.update(self.headers())

    def route(self) -> dict[str, Any]:
        """Keyword arguments for the route decorator: OpenAPI's `deprecated: true` and the
        dependency that sets the headers."""
        return {"deprecated": True, "dependencies": [Depends(self)]}


def deprecated_field(default: Any = None, **kwargs: Any) -> Any:
    """A model field marked `deprecated: true` in the OpenAPI schema. Only the schema: pydantic's
    own `deprecated=` would also warn at every attribute read, our own serialising included."""
    extra = kwargs.pop("json_schema_extra", None) or {}
    return Field(default, json_schema_extra={**extra, "deprecated": True}, **kwargs)
