"""The red team on jobs' transactions sent as prepared statements, continued
(tests/security/test_attack_prepared_jobs.py has the rest): a copy prepared as the service
and executed in a seller's role under RLS, and N+1 jobs at once on a pool of N connections."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from refit.one_message import Step, job_messages
from tests.job_pools import queue_like_pool
from tests.security.test_attack_prepared_jobs import _admin, _prepared_texts

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def table(settings) -> AsyncIterator[str]:
    name = f"atk2_{uuid.uuid4().hex[:10]}"
    async with await _admin(settings) as pg:
        await pg.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
        try:
            yield name
        finally:
            await pg.execute(f"DROP TABLE IF EXISTS {name}")


async def test_a_copy_prepared_as_the_service_is_under_rls_in_a_sellers_role(settings):
    name = f"atk_rls_{uuid.uuid4().hex[:8]}"
    seller, other = uuid.uuid4(), uuid.uuid4()
    async with await _admin(settings) as pg:
        await pg.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, owner uuid)")
        await pg.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
        await pg.execute(
            f"CREATE POLICY mine ON {name} USING "
            "(owner = (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')::uuid)"
        )
        await pg.execute(f"GRANT SELECT ON {name} TO authenticated")
        await pg.execute(f"INSERT INTO {name} VALUES (1, '{seller}'), (2, '{other}')")
    read = f"SELECT id FROM {name} WHERE id < %(below)s ORDER BY id"
    as_seller = "SET LOCAL ROLE authenticated"
    claims = "SELECT set_config('request.jwt.claims', %(claims)s, true)"
    pool = await queue_like_pool(settings)
    try:
        for _ in range(7):  # past PostgreSQL's five custom plans, on to its generic one
            async with job_messages(pool) as transaction:
                (service,) = await transaction.send(Step(read, {"below": 10}))
                *_, mine = await transaction.send(
                    Step(as_seller),
                    Step(claims, {"claims": json.dumps({"sub": str(seller)})}),
                    Step(read, {"below": 10}),
                    commit=True,
                )
            assert service == [{"id": 1}, {"id": 2}]
            assert mine == [{"id": 1}], "a seller read another's row through a service plan"
        async with pool.connection() as pg:
            assert len([s for s in await _prepared_texts(pg) if name in s]) == 1
    finally:
        await pool.close()
        async with await _admin(settings) as pg:
            await pg.execute(f"DROP TABLE {name}")


async def test_n_plus_one_jobs_at_once_on_n_connections(settings, table):
    insert = f"INSERT INTO {table} (id, v) VALUES (%(id)s, 'n')"
    bump = f"UPDATE {table} SET v = v || '+' WHERE id = %(id)s RETURNING v"
    size = 3
    pool = await queue_like_pool(settings, size=size)
    start = asyncio.Event()

    async def job(id_: int) -> list[Any]:
        await start.wait()
        async with job_messages(pool) as transaction:
            await transaction.send(Step(insert, {"id": id_}))
            await asyncio.sleep(0.05)  # every connection taken at once
            return await transaction.send(Step(bump, {"id": id_}), commit=True)

    try:
        for round_ in range(3):
            ids = range(round_ * 10, round_ * 10 + size + 1)
            jobs = [asyncio.ensure_future(job(i)) for i in ids]
            start.set()
            assert await asyncio.wait_for(asyncio.gather(*jobs), 30) == [[[{"v": "n+"}]]] * (
                size + 1
            )
            start.clear()
        async with asyncio.timeout(10):
            held = [await pool.getconn() for _ in range(size)]
        try:
            for pg in held:
                ours = [s for s in await _prepared_texts(pg) if table in s]
                assert len(ours) == len(set(ours)) and len(ours) <= 2, ours
                assert pg.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        finally:
            for pg in held:
                await pool.putconn(pg)
        async with pool.connection() as pg:
            cursor = await pg.execute(f"SELECT count(*) FROM {table} WHERE v = 'n+'")
            assert (await cursor.fetchone()) == (3 * (size + 1),)
    finally:
        await pool.close()
