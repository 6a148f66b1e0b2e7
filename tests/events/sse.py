"""Reading a Server-Sent Events response as a browser's EventSource would: events (id, event,
data) and comment lines, in the order they arrive."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    id: str | None
    event: str | None
    data: str
    received_at: float = field(default_factory=time.time)  # wall clock, as created_at is

    def json(self) -> dict[str, Any]:
        return json.loads(self.data)

    @property
    def status(self) -> str:
        return self.json()["status"]

    @property
    def created_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.json()["created_at"])


@dataclass
class Comment:
    text: str


class Stream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10) -> Event | Comment | None:
        """The next event or comment; None when the server ended the stream."""
        fields: dict[str, str] = {}
        data: list[str] = []
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line.startswith(":"):
                    return Comment(line[1:].strip())
                if line == "":
                    if fields or data:
                        return Event(fields.get("id"), fields.get("event"), "\n".join(data))
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value
        return None

    async def next_event(self, timeout: float = 10) -> Event:
        """The next event, past any heartbeat comments."""
        deadline = time.monotonic() + timeout
        while True:
            item = await self.next(max(deadline - time.monotonic(), 0))
            assert item is not None, "the stream ended where an event was expected"
            if isinstance(item, Event):
                return item

    async def next_comment(self, timeout: float = 10) -> Comment:
        """The next comment; an event in between fails: nothing more was expected."""
        item = await self.next(timeout)
        assert isinstance(item, Comment), f"expected a heartbeat, got {item!r}"
        return item


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    order_id: Any,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> AsyncIterator[Stream]:
    """An open event stream; fails unless it is one (200, text/event-stream)."""
    async with http.stream(
        "GET", f"/api/orders/{order_id}/events", headers=headers, params=params
    ) as response:
        if response.status_code != 200:
            await response.aread()
            raise AssertionError(f"stream refused: {response.status_code} {response.text}")
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)
