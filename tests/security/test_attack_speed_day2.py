"""The red team on day two's speed changes: the sellers' read connections on a stack of our
own (refit/connection_stack.py, refit/hot_path.py), the per-seller limit's scripts batched
on one kept Redis connection (refit/script_batch.py), and the order list written by orjson
(refit/orders/reads.py). Attacked as a stranger (a Redis or PostgreSQL that misbehaves under
us), a seller (many requests at once, cancelled requests, odd values in their own orders) and
an insider (a statement cancelled or a prepared statement dropped under the pool). Each test
names the attack and the refusal it must meet. Five of them failed on the committed code
(dc6edaf) and pass with the working tree's fixes to connection_stack, script_batch and reads."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.exceptions
from redis.asyncio import Redis
from sqlalchemy import text

from refit import connection_stack, db, ratelimit
from refit.connection_stack import ConnectionStack
from refit.errors import RateLimited
from refit.hot_path import HotPath, HotPathDown
from refit.orders import reads
from refit.script_batch import ScriptBatch
from tests.orders.helpers import page_beside_pydantics, place_order

_WHO = (
    "SELECT current_user AS who, current_setting('role') AS role,"
    " coalesce(current_setting('request.jwt.claims', true), '') AS claims,"
    " coalesce(current_setting('request.jwt.claim.sub', true), '') AS sub"
)


# --- the connection stack -------------------------------------------------------------------


class _Counted:
    """Wraps a stack's opener: how many of its connections are open at once, at most."""

    def __init__(self, open_one: Any) -> None:
        self._open_one = open_one
        self.opened: list[asyncpg.Connection] = []
        self.peak = 0

    def live(self) -> int:
        return sum(not c.is_closed() for c in self.opened)

    async def __call__(self) -> asyncpg.Connection:
        connection = await self._open_one()
        self.opened.append(connection)
        self.peak = max(self.peak, self.live())
        return connection


def _pool(settings, size: int, **update: Any) -> tuple[HotPath, _Counted]:
    pool = HotPath(settings.model_copy(update={"db_seller_read_pool_size": size, **update}))
    counted = _Counted(pool._connections._open_one)
    pool._connections._open_one = counted
    return pool, counted


@pytest.mark.timeout(60)
async def test_ten_n_reads_with_cancels_and_timeouts_never_exceed_n_nor_leak_a_place(settings):
    """Attack: a seller's flood on a stack of 3: 30 reads at once (10N), a third of them
    cancelled at random moments (waiting for a place, being opened, mid-query), others with
    a wait bound that runs out while connections are being handed back. Refusal: never more
    than 3 connections open at any moment (counted at every open and every read), and after
    the storm no place is lost: 3 reads at once all get a connection at once and the stack's
    books balance (nothing out, at most 3 idle)."""
    pool, counted = _pool(settings, 3, db_seller_read_wait_seconds=0.15)
    stack = pool._connections
    rng = random.Random(7)
    peak_seen = 0

    async def read(i: int) -> str:
        nonlocal peak_seen
        try:
            await pool.row("SELECT pg_sleep($1::float8 / 1000)", rng.randint(5, 60))
        except HotPathDown:
            return "timed out"
        finally:
            peak_seen = max(peak_seen, counted.live())
        return "read"

    try:
        for _round in range(3):
            tasks = [asyncio.create_task(read(i)) for i in range(30)]
            cancelled = rng.sample(tasks, 10)
            for task in cancelled:
                await asyncio.sleep(rng.random() / 50)
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for outcome in outcomes:
                assert outcome in ("read", "timed out") or isinstance(
                    outcome, asyncio.CancelledError
                ), repr(outcome)
            assert "read" in outcomes
        assert counted.peak <= 3 and peak_seen <= 3
        assert stack._out == 0 and len(stack._idle) <= 3 and not stack._waiters

        # No place leaked: three reads at once each get one without waiting.
        started = asyncio.Event()
        inside = 0

        async def hold() -> None:
            nonlocal inside
            connection = await stack.take(1)
            try:
                inside += 1
                if inside == 3:
                    started.set()
                await asyncio.wait_for(started.wait(), 5)
            finally:
                stack.give_back(connection, reusable=True)

        await asyncio.gather(*(hold() for _ in range(3)))
        assert counted.live() <= 3
    finally:
        await pool.close()


async def test_a_waiter_cancelled_in_the_same_turn_a_place_is_given_back_stays_cancelled(
    settings,
):
    """Attack: a seller's request hangs up (its read cancelled) while it waits for a
    connection, in the same turn of the loop as another read gives one back, before the
    waiter ran again. Refusal: the cancelled read ends with CancelledError (a client gone, as
    any other), not another exception, and the place given back is not lost."""
    pool, _ = _pool(settings, 1)
    stack = pool._connections
    try:
        held = await stack.take(5)
        waiting = asyncio.create_task(pool.row("SELECT 1"))
        for _ in range(20):  # until it waits on the stack
            await asyncio.sleep(0)
            if stack._waiters:
                break
        assert stack._waiters
        waiting.cancel()
        stack.give_back(held, reusable=True)  # same turn: the waiter has not run yet
        outcome = (await asyncio.gather(waiting, return_exceptions=True))[0]
        assert stack._out == 0  # the place came back either way
        assert isinstance(outcome, asyncio.CancelledError), repr(outcome)
    finally:
        await pool.close()


async def test_a_wait_that_runs_out_as_a_place_is_given_back_is_a_503_not_a_crash(
    settings, monkeypatch
):
    """Attack: under load a read waits for a connection and its wait runs out in the same
    turn of the loop as another read gives one back (the timer and the give-back are both
    due). Refusal: the read is told PostgreSQL is busy (HotPathDown, a 503), never an
    unexpected exception (a 500), and the place is not lost."""
    pool, _ = _pool(settings, 1, db_seller_read_wait_seconds=0.2)
    stack = pool._connections
    deadlines: list[Any] = []
    real_timeout = asyncio.timeout

    def recorded(delay: float | None) -> Any:
        found = real_timeout(delay)
        deadlines.append(found)
        return found

    monkeypatch.setattr(connection_stack.asyncio, "timeout", recorded)
    try:
        held = await stack.take(5)
        waiting = asyncio.create_task(pool.row("SELECT 1"))
        for _ in range(20):
            await asyncio.sleep(0)
            if stack._waiters and deadlines and deadlines[-1].when() is not None:
                break
        loop = asyncio.get_running_loop()
        # Due at the same moment as the wait's own deadline, scheduled after it.
        loop.call_at(deadlines[-1].when(), lambda: stack.give_back(held, reusable=True))
        outcome = (await asyncio.gather(waiting, return_exceptions=True))[0]
        assert stack._out == 0
        assert outcome is not None and isinstance(outcome, HotPathDown | asyncpg.Record), repr(
            outcome
        )
    finally:
        await pool.close()


async def test_after_close_a_waiting_read_is_refused_and_nothing_is_opened(settings):
    """Attack: the process shuts down (close) while a read holds the only connection and
    another waits for it; then the holder finishes. Refusal: the waiter is refused (the
    stack is closed), and no connection is opened after close."""
    opened_after_close: list[asyncpg.Connection] = []
    closed = False

    async def open_one() -> asyncpg.Connection:
        connection = await asyncpg.connect(db.libpq_url(settings.database_url))
        if closed:
            opened_after_close.append(connection)
        return connection

    stack = ConnectionStack(open_one, 1, idle_seconds=300)
    held = await stack.take(5)
    waiting = asyncio.create_task(stack.take(5))
    for _ in range(20):
        await asyncio.sleep(0)
        if stack._waiters:
            break
    await stack.close()
    closed = True
    stack.give_back(held, reusable=True)
    outcome = (await asyncio.gather(waiting, return_exceptions=True))[0]
    for connection in opened_after_close:
        connection.terminate()
    if isinstance(outcome, asyncpg.Connection):
        outcome.terminate()
    assert held.is_closed()
    assert not opened_after_close, "a connection was opened after close"
    assert isinstance(outcome, asyncpg.InterfaceError), repr(outcome)


@pytest.mark.timeout(60)
async def test_sellers_reads_cancelled_at_random_points_never_show_another_sellers_rows(
    client, resources, settings, make_user
):
    """Attack: two sellers' list and detail reads on a stack of 2 connections, at once, a
    third of them cancelled at random moments (waiting, opening, mid-function after its
    set_config), some cut by a 50 ms statement timeout while a lock holds the function, then
    an insider's DEALLOCATE ALL on every pooled connection. Refusal: every answer a seller
    gets holds only their own order, and every connection is left as the service (no role,
    no claims) for the next read."""
    alice, bob = await make_user(), await make_user()
    hers = uuid.UUID((await place_order(client, resources, alice))["id"])
    his = uuid.UUID((await place_order(client, resources, bob))["id"])
    own = {alice.id: hers, bob.id: his}
    pool, counted = _pool(settings, 2, db_statement_timeout_ms=50)
    rng = random.Random(11)
    try:
        login = (await pool.row("SELECT current_user"))[0]  # type: ignore[index]

        async def read(seller: uuid.UUID, i: int) -> None:
            other = his if seller == alice.id else hers
            if i % 3 == 0:
                rows = await pool.fetch(
                    "SELECT id FROM seller_orders_page($1, 10, NULL, NULL)", seller
                )
                assert [row["id"] for row in rows] == [own[seller]]
            elif i % 3 == 1:
                found = await pool.row(
                    "SELECT detail FROM seller_order_json($1, $2)", seller, other
                )
                assert found is None or found["detail"] is None
            else:
                found = await pool.row(
                    "SELECT detail FROM seller_order_json($1, $2)", seller, own[seller]
                )
                assert found is not None
                assert json.loads(found["detail"])["user_id"] == str(seller)

        for round_ in range(4):
            locked = round_ == 2
            async with resources.sessionmaker() as holder, holder.begin():
                if locked:
                    await holder.execute(
                        text("LOCK TABLE order_status_history IN ACCESS EXCLUSIVE MODE")
                    )
                tasks = [
                    asyncio.create_task(read(alice.id if i % 2 else bob.id, i)) for i in range(24)
                ]
                for task in rng.sample(tasks, 8):
                    await asyncio.sleep(rng.random() / 100)
                    task.cancel()
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for outcome in outcomes:
                # An AssertionError here is another seller's row.
                assert outcome is None or isinstance(
                    outcome, asyncio.CancelledError | HotPathDown
                ), repr(outcome)
            if round_ == 3:
                for connection, _ in list(pool._connections._idle):
                    await connection.execute("DEALLOCATE ALL")
            for _ in range(2):
                found = await pool.row(_WHO)
                assert found is not None
                assert (found["who"], found["role"]) == (login, "none"), dict(found)
                for seller in own:
                    assert str(seller) not in found["claims"] + found["sub"], dict(found)
        await asyncio.gather(*(read(s, i) for s in own for i in range(3)))
        assert counted.peak <= 2
    finally:
        await pool.close()


# --- the batched rate-limit scripts ----------------------------------------------------------


async def _hits(resources, limit: str, name: str, key: str, n: int) -> list[bool]:
    async def one() -> bool:
        try:
            await ratelimit.hit(resources, limit, name, key, fail_closed=False)
        except RateLimited:
            return False
        return True

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _counted(resources, limit: str, name: str, key: str) -> int:
    item = ratelimit.parse_limit(limit)
    stats = await ratelimit._limiter(resources).get_window_stats(item, name, key)
    return item.amount - stats.remaining


async def test_n_plus_one_hits_at_once_for_several_sellers_hold_each_limit_exactly(resources):
    """Attack: three sellers each send N+1 requests at once (N=5), interleaved, so their hits
    share batches, with two more callers cancelled while their batch is on its way. Refusal:
    each seller gets exactly N through and the (N+1)th refused; one seller's hits never
    count against another's; a cancelled caller breaks nobody else's answer."""
    limit = "5/minute"
    sellers = [uuid.uuid4().hex for _ in range(3)]

    async def one(key: str) -> bool:
        try:
            await ratelimit.hit(resources, limit, "seller", key, fail_closed=False)
        except RateLimited:
            return False
        return True

    # A cancelled bystander, on its own key, in the same batch.
    bystander = uuid.uuid4().hex
    tasks = [asyncio.create_task(one(key)) for _ in range(6) for key in sellers]
    doomed = [asyncio.create_task(one(bystander)) for _ in range(2)]
    await asyncio.sleep(0)
    for task in doomed:
        task.cancel()
    answers = await asyncio.gather(*tasks)
    for i, key in enumerate(sellers):
        mine = answers[i::3]
        assert mine.count(True) == 5 and mine.count(False) == 1, (key, mine)
        assert await _counted(resources, limit, "seller", key) == 5
    for task in doomed:
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await _hits(resources, limit, "seller", uuid.uuid4().hex, 1) == [True]


async def test_a_batch_whose_kept_connection_dies_after_redis_ran_it_counts_each_hit_once(
    resources,
):
    """Attack: the kept connection dies mid-batch, after Redis ran the batch's scripts (its
    first answer was read, the rest are lost with the connection: a proxy or a network cut,
    an operator's CLIENT KILL between answers). The batch is sent again on a fresh connection
    (the kept connection's one retry). Refusal: each hit is counted once: a seller who made
    3 requests has 3 counted, not 6 (else sellers are refused at half their limit)."""
    limit, name, key = "10/minute", "seller", uuid.uuid4().hex
    assert await _hits(resources, limit, name, key, 1) == [True]  # the batch keeps one
    batch = ratelimit._batches[resources.redis]
    kept = batch.connection
    assert kept is not None
    real = kept.read_response
    reads = 0

    async def dies_after_the_first_answer(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        if reads == 2:  # Redis ran every script of the batch; its answers die here
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        return await real(*args, **kwargs)

    kept.read_response = dies_after_the_first_answer  # type: ignore[method-assign]
    try:
        assert await _hits(resources, limit, name, key, 3) == [True, True, True]
    finally:
        del kept.read_response
    assert reads >= 2  # the cut happened
    assert await _counted(resources, limit, name, key) == 1 + 3


# A Redis of our own on a Unix socket (no port): it answers SCRIPT LOAD and anything else
# with +OK, and EVALSHA as its mode says: ":1", never, or one answer and then the socket
# closed.
class _FakeRedis:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.mode = "answer"
        self.evalshas = 0
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> _FakeRedis:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        return self

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()

    async def _command(self, reader: asyncio.StreamReader) -> list[bytes] | None:
        header = await reader.readline()
        if not header:
            return None
        assert header.startswith(b"*"), header
        parts = []
        for _ in range(int(header[1:])):
            size = int((await reader.readline())[1:])
            parts.append((await reader.readexactly(size + 2))[:-2])
        return parts

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        answered_here = 0
        try:
            while (command := await self._command(reader)) is not None:
                name = command[0].upper()
                if name == b"SCRIPT":
                    writer.write(b"$40\r\n" + b"a" * 40 + b"\r\n")
                elif name == b"EVALSHA":
                    self.evalshas += 1
                    if self.mode == "hang":
                        continue
                    if self.mode == "die" and answered_here:
                        writer.close()
                        return
                    answered_here += 1
                    writer.write(b":1\r\n")
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass


@pytest.fixture
async def fake_redis(tmp_path):
    fake = await _FakeRedis(tmp_path / "redis.sock").start()
    client = Redis(
        unix_socket_path=str(fake.path),
        socket_timeout=0.3,
        socket_connect_timeout=0.5,
        decode_responses=True,
    )
    yield fake, client
    await client.aclose()
    await fake.stop()


@pytest.mark.timeout(30)
async def test_a_redis_that_never_answers_fails_every_caller_and_frees_the_next_batch(
    fake_redis,
):
    """Attack: Redis stops answering (a partition: the socket stays open) while a batch is
    on its way, and more requests ask meanwhile (one batch in flight: they go with the next).
    Refusal: every caller, of the hung batch and of the next, gets an error within the
    command timeout (never waits forever), and once Redis answers again the next batch
    does (nothing is left stuck in flight)."""
    fake, client = fake_redis
    batch = ScriptBatch(client, "return 1")
    assert await batch.run("k", [1]) == 1  # a kept connection
    fake.mode = "hang"
    first = [asyncio.create_task(batch.run("k", [1])) for _ in range(3)]
    await asyncio.sleep(0.05)  # on its way (hung)
    assert batch.sending is not None
    meanwhile = [asyncio.create_task(batch.run("k", [1])) for _ in range(3)]
    outcomes = await asyncio.wait_for(asyncio.gather(*first, *meanwhile, return_exceptions=True), 5)
    for outcome in outcomes:
        assert isinstance(outcome, redis.exceptions.RedisError), repr(outcome)
    fake.mode = "answer"
    assert await asyncio.wait_for(batch.run("k", [1]), 5) == 1


@pytest.mark.timeout(30)
async def test_a_redis_that_dies_mid_batch_answers_or_fails_every_caller(fake_redis):
    """Attack: Redis dies in the middle of a batch on a fresh connection (one answer sent,
    then the socket closed). Refusal: every caller gets an error (none waits forever, none
    is handed another's answer), the dead connection is not kept, and the next batch goes
    out on a new one."""
    fake, client = fake_redis
    batch = ScriptBatch(client, "return 1")
    fake.mode = "die"
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(batch.run("k", [i]) for i in range(4)), return_exceptions=True), 5
    )
    assert all(isinstance(o, redis.exceptions.ConnectionError) for o in outcomes), outcomes
    assert batch.connection is None and batch.sending is None
    fake.mode = "answer"
    before = fake.connections
    assert await asyncio.wait_for(batch.run("k", [1]), 5) == 1
    assert fake.connections == before + 1


# --- the order list written by orjson ---------------------------------------------------------


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


# Set in SQL, as an import of the browser's history or an operator's tool could: each one
# order's odd values. device_details as jsonb text (what PostgreSQL keeps, not Python's).
_ODD_SQL: list[dict[str, str]] = [
    {"device_details": '{"f": 1e16, "tiny": 5e-324, "neg0": -0.0, "third": 0.1, "r": 1.0}'},
    {"device_details": '{"u64": 18446744073709551615, "i64": -9223372036854775808}'},
    {"device_details": '{"past_u64": 18446744073709551616}'},
    {"device_details": '{"huge": 1e400, "e": 1.5E+300, "small": 1e-400}'},
    {"device_details": '{"s": "\\u2028\\u2029 \\u001f \\" \\\\ / \\ud83d\\ude00 \\u00e9"}'},
    {"device_details": '{"list": [1, "two", null, true, {"x": []}], "": {}}'},
    {"device_details": _nested(253)},  # as deep as orjson writes
    {"device_details": _nested(254)},  # one past: pydantic's writer
    {"device_details": "null", "shipping_cost": "'1E+3'"},
    {"created_at": "'0099-01-02 03:04:05.000001+00'", "shipping_cost": "'-0.00'"},
    {"updated_at": "'9999-12-31 23:59:59.999999+00'", "device_model": "E'\\x01\\u00ad\\ufeff'"},
    {"created_at": "'1969-12-31 23:59:59.5+00'", "final_price_sol": "'0.0001'"},
]


@pytest.mark.timeout(60)
async def test_a_page_of_odd_values_is_pydantics_json_byte_for_byte(client, resources, make_user):
    """Attack: a seller's orders holding what PostgreSQL can keep and JSON can barely say
    (set in SQL, by an import of browser history or an operator):
    floats at the edges (1e16, 5e-324, -0.0), integers at and past 64 bits, numbers past a
    float (1e400), escapes and non-characters in strings, JSON nested to orjson's limit and
    one past it, 1E+3 and -0.00 amounts, years 99 and 9999 and before 1970; read in pages of
    1, 3 and all, following the cursors (the odd times are on them). Refusal: every page is
    byte for byte what pydantic writes (OrderPage from the ORM rows), and every order is seen
    exactly once."""
    resources.settings.rate_limit_orders_per_seller = ""  # a dozen orders to set up
    resources.settings.rate_limit_quotes_per_seller = ""
    seller = await make_user()
    ids = [uuid.UUID((await place_order(client, resources, seller))["id"]) for _ in _ODD_SQL]
    async with resources.engine.begin() as conn:
        for order_id, values in zip(ids, _ODD_SQL, strict=True):
            for name, value in values.items():
                sql = (
                    f"UPDATE orders SET {name} = CAST(:v AS jsonb) WHERE id = :id"
                    if name == "device_details"
                    else f"UPDATE orders SET {name} = {value} WHERE id = :id"
                )
                params = (
                    {"id": order_id, "v": value} if name == "device_details" else {"id": order_id}
                )
                await conn.execute(text(sql), params)

    async def pages(size: int) -> list[uuid.UUID]:
        seen: list[uuid.UUID] = []
        cursor = None
        while True:
            body, expected, page = await page_beside_pydantics(resources, seller.id, size, cursor)
            assert body == expected, (size, cursor)
            seen += [uuid.UUID(i["id"]) for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen

    for size in (1, 3, 50):
        seen = await pages(size)
        assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen)), size


@pytest.mark.timeout(30)
async def test_the_cursor_after_an_order_of_the_last_microsecond_of_9999_moves_on(
    client, resources, make_user
):
    """Attack: an order whose created_at is the last microsecond of year 9999 (a browser
    export's clock, an operator's fix; the import takes the export's created_at as it is),
    paged one order at a time by following next_cursor. Refusal: each page moves on: the
    seller's two orders come once each and the pages end (a client following the cursors
    must not loop forever, nor lose the orders after it)."""
    seller = await make_user()
    ids = [uuid.UUID((await place_order(client, resources, seller))["id"]) for _ in range(2)]
    async with resources.engine.begin() as conn:
        await conn.execute(
            text("UPDATE orders SET created_at = '9999-12-31 23:59:59.999999+00' WHERE id = :id"),
            {"id": ids[0]},
        )
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = json.loads(await reads.list_orders_json(seller.id, limit=1, cursor=cursor))
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(ids[0]), str(ids[1])], seen
