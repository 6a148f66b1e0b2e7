"""Order numbers are allocated by the database: unique under concurrency, ORD-<year>-<6>."""

import asyncio
import datetime as dt
import re
import uuid

from sqlalchemy import text


async def test_200_concurrent_orders_get_distinct_numbers(resources):
    user_id = uuid.uuid4()
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("INSERT INTO users (id, wallet_address) VALUES (:id, 'w')"), {"id": user_id}
        )

    async def create_order() -> str:
        async with resources.sessionmaker() as session, session.begin():
            return await session.scalar(
                text(
                    "INSERT INTO orders (user_id, device_brand, device_model, device_condition,"
                    " quoted_price_usd, quoted_price_sol) VALUES (:u, 'Apple', 'iPhone 13',"
                    " 'good', 300, 2) RETURNING order_number"
                ),
                {"u": user_id},
            )

    numbers = await asyncio.gather(*(create_order() for _ in range(200)))
    assert len(set(numbers)) == 200
    year = dt.datetime.now(dt.UTC).year
    assert all(re.fullmatch(rf"ORD-{year}-\d{{6}}", n) for n in numbers)


async def test_numbers_grow_past_six_digits_without_wrapping(resources):
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(text("SELECT setval('order_number_seq', 999999)"))
        number = await session.scalar(text("SELECT next_order_number()"))
    assert number.endswith("-1000000")
