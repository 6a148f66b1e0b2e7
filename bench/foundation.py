"""Foundation throughput: order numbers under concurrency, and jobs through the queue."""

import asyncio
import time

from sqlalchemy import text

from refit import queue
from refit.resources import Resources

ORDERS = 2000
JOBS = 1000
CONCURRENCY = 50


@queue.queue.task(name="bench.noop")
async def noop(n: int) -> None:
    return None


async def _orders_per_second(resources: Resources) -> float:
    async with resources.sessionmaker() as session, session.begin():
        user_id = await session.scalar(
            text("INSERT INTO users (wallet_address) VALUES ('bench') RETURNING id")
        )
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def create() -> None:
        async with semaphore, resources.sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO orders (user_id, device_brand, device_model, device_condition,"
                    " quoted_price_usd, quoted_price_sol) VALUES (:u, 'Apple', 'iPhone 13',"
                    " 'good', 300, 2)"
                ),
                {"u": user_id},
            )

    started = time.perf_counter()
    await asyncio.gather(*(create() for _ in range(ORDERS)))
    rate = ORDERS / (time.perf_counter() - started)
    # The HTTP benchmarks that follow count the orders in the table: leave none behind.
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(text("DELETE FROM orders WHERE user_id = :u"), {"u": user_id})
        await session.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})
    return rate


async def _jobs(resources: Resources) -> tuple[float, float]:
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def defer(n: int) -> None:
        async with semaphore, resources.sessionmaker() as session, session.begin():
            await queue.defer(session, noop, n=n)

    started = time.perf_counter()
    await asyncio.gather(*(defer(n) for n in range(JOBS)))
    deferred = JOBS / (time.perf_counter() - started)
    started = time.perf_counter()
    await queue.run_until_empty()
    processed = JOBS / (time.perf_counter() - started)
    return deferred, processed


async def run(resources: Resources) -> list[str]:
    orders = await _orders_per_second(resources)
    deferred, processed = await _jobs(resources)
    return [
        f"orders created, {CONCURRENCY} concurrent transactions: {orders:8.0f} /s",
        f"jobs deferred in their own transactions:     {deferred:8.0f} /s",
        f"jobs run by one worker (concurrency 10):     {processed:8.0f} /s",
    ]
