"""The streams woken by one change share one read of the history, and each still gets exactly
what its own seller's read would have: the shared read is keyed by the seller the stream was
let in for, the order and the last event it sent, and only joined when it began after the
ring that woke the stream."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from refit.events import stream as stream_module
from refit.events.listener import SharedReads, Subscription
from refit.models import OrderStatus
from tests.events.helpers import history_rows
from tests.events.sse import open_stream
from tests.orders.helpers import operator_move, place_order

S = OrderStatus


async def test_a_read_begun_before_a_ring_is_not_joined_one_begun_after_is():
    shared = SharedReads()
    gate = asyncio.Event()
    reads = []

    async def read(answer: str) -> str:
        reads.append(answer)
        await gate.wait()
        return answer

    early = Subscription()
    early.wake()
    first = asyncio.create_task(shared.read("k", early.rung, lambda: read("first")))
    await asyncio.sleep(0)
    # Woken before the read began: joins it.
    joining = asyncio.create_task(shared.read("k", early.rung, lambda: read("never")))
    # Woken after it began (the change may have committed after its snapshot): a new read.
    late = Subscription()
    late.wake()
    second = asyncio.create_task(shared.read("k", late.rung, lambda: read("second")))
    # Another key (another seller, order or last event) never shares.
    other = asyncio.create_task(shared.read("other", early.rung, lambda: read("other")))
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(first, joining, second, other) == [
        "first",
        "first",
        "second",
        "other",
    ]
    assert reads == ["first", "second", "other"]
    assert len(shared) == 0  # nothing kept once answered


async def test_a_stream_that_goes_away_does_not_cancel_the_read_of_the_others():
    shared = SharedReads()
    gate = asyncio.Event()
    ring = Subscription()
    ring.wake()

    async def read() -> list[int]:
        await gate.wait()
        return [1]

    leaving = asyncio.create_task(shared.read("k", ring.rung, read))
    staying = asyncio.create_task(shared.read("k", ring.rung, read))
    await asyncio.sleep(0)
    leaving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await leaving
    gate.set()
    assert await staying == [1]


async def test_a_failed_read_fails_every_stream_that_shared_it():
    shared = SharedReads()
    ring = Subscription()
    ring.wake()

    async def read() -> None:
        await asyncio.sleep(0)
        raise LookupError("not yours")

    results = await asyncio.gather(
        *(shared.read("k", ring.rung, read) for _ in range(3)), return_exceptions=True
    )
    assert [type(r) for r in results] == [LookupError] * 3


async def test_one_change_to_many_streams_is_few_reads_and_each_seller_sees_only_theirs(
    live, resources, make_user, monkeypatch: pytest.MonkeyPatch
):
    seller, other = await make_user(), await make_user()
    order = (await place_order(live.http, resources, seller))["id"]
    theirs = (await place_order(live.http, resources, other))["id"]
    reads: list[tuple[str, str]] = []
    real_read = stream_module.read_events

    async def counted(res, user_id, order_id, *, after):
        reads.append((str(user_id), str(order_id)))
        return await real_read(res, user_id, order_id, after=after)

    monkeypatch.setattr(stream_module, "read_events", counted)
    count = 30
    async with contextlib.AsyncExitStack() as stack:
        mine = [
            await stack.enter_async_context(open_stream(live.http, order, headers=seller.headers))
            for _ in range(count)
        ]
        others = [
            await stack.enter_async_context(open_stream(live.http, theirs, headers=other.headers))
            for _ in range(3)
        ]
        for s in [*mine, *others]:
            assert (await s.next_event()).status == "pending"
        # Every stream's own first ring has been read (a heartbeat follows it).
        for s in [*mine, *others]:
            await s.next_comment()
        reads.clear()

        await operator_move(resources, order, S.PROCESSING_SHIPMENT, notes="label asked")
        heard = [await s.next_event() for s in mine]
        (_, moved) = await history_rows(resources, order)
        assert {e.id for e in heard} == {str(moved.id)}
        assert {e.status for e in heard} == {"processing_shipment"}
        # The other seller's streams, on the other order, heard nothing but heartbeats.
        for s in others:
            await s.next_comment()
        # One read (a stream scheduled after it answered may begin another), all of them the
        # woken seller's, of the woken order: never one per stream.
        assert reads and len(reads) < count // 3
        assert set(reads) == {(str(seller.id), order)}
