"""A steady, bounded load of sellers against a real API: the public catalog, the seller's
order list, and the way to a label (quote, order, rates, label purchase). Every answer is
recorded with the time it came, so a test can ask what was answered while a dependency was
down; a transport error (a dropped or refused connection, a timeout) is recorded as such."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.orders.helpers import DEVICE

# Each seller pauses this long between requests: a few requests a second per seller.
PAUSE_SECONDS = 0.3
TRANSPORT_ERROR = -1  # the status recorded when no HTTP answer came


@dataclass
class Answer:
    at: float  # time.monotonic() when the answer (or the error) came
    what: str
    status: int
    detail: str = ""


@dataclass
class Load:
    base_url: str
    sellers: list[tuple[dict[str, str], uuid.UUID]]  # (auth headers, a saved address id)
    answers: list[Answer] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)  # accepted (201)
    labels: list[str] = field(default_factory=list)  # orders whose label purchase got 202
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            await asyncio.gather(*(self._seller(http, *s) for s in self.sellers))

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.at <= end]

    def summary(self, start: float = 0, end: float = float("inf")) -> dict[str, int]:
        """How many of each request got each status: {"catalog 200": 12, …}."""
        counted = Counter(f"{a.what} {a.status}" for a in self.between(start, end))
        return dict(sorted(counted.items()))

    async def _call(
        self, http: httpx.AsyncClient, what: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        try:
            response = await http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.answers.append(Answer(time.monotonic(), what, TRANSPORT_ERROR, repr(exc)))
            return None
        self.answers.append(
            Answer(time.monotonic(), what, response.status_code, response.text[:300])
        )
        await asyncio.sleep(PAUSE_SECONDS)
        return response

    async def _seller(
        self, http: httpx.AsyncClient, headers: dict[str, str], address_id: uuid.UUID
    ) -> None:
        while not self.stopping.is_set():
            await self._call(http, "catalog", "GET", "/api/catalog")
            await self._call(http, "orders", "GET", "/api/orders", headers=headers)
            quote = await self._call(
                http, "quote", "POST", "/api/quotes", json=DEVICE, headers=headers
            )
            if quote is None or quote.status_code != 201:
                continue
            created = await self._call(
                http,
                "order",
                "POST",
                "/api/orders/create",
                json={"quote_id": quote.json()["quote_id"], "shipping_address_id": str(address_id)},
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            if created is None or created.status_code != 201:
                continue
            order_id = created.json()["id"]
            self.orders.append(order_id)
            rates = await self._call(
                http,
                "rates",
                "POST",
                "/api/shipping/rates",
                json={"order_id": order_id},
                headers=headers,
            )
            if rates is None or rates.status_code != 200:
                continue
            bought = await self._call(
                http,
                "label",
                "POST",
                "/api/shipping/purchase-label",
                json={"order_id": order_id, "rate_id": rates.json()["rates"][0]["rate_id"]},
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            if bought is not None and bought.status_code == 202:
                self.labels.append(order_id)
