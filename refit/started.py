"""What each API lifespan started in this process and stops on its way out (the revocation
watch, the flag follower): one per process in production; a test may run two apps at once.
The newest is the current one; each lifespan stops the one it started, so none outlives its
app, and once it stops the one before it is current again."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Started(Generic[T]):
    def __init__(self) -> None:
        self._items: list[T] = []

    def current(self) -> T | None:
        return self._items[-1] if self._items else None

    def add(self, item: T) -> T:
        self._items.append(item)
        return item

    def remove(self, item: T) -> None:
        self._items.remove(item)
