"""The listener's connection dies (terminated by PostgreSQL) and comes back by itself; a flag
turned off right after is still off in this process within two seconds, by the fallback read
or the reload on reconnect. And a process that stops writes the exposures it counted."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select, text

from refit.app import create_app
from refit.flags.follower import current_follower
from refit.models.flag import Flag, FlagExposure
from tests.admin.helpers import operator_headers
from tests.flags.helpers import put_flag, random_wallet
from tests.listen_helpers import one_listener


async def test_a_killed_follower_connection_is_replaced_and_a_flag_still_turns_off(
    client, resources, make_user
):
    admin = await operator_headers(resources, "admin")
    seller = await make_user(random_wallet())
    before = await one_listener(resources)
    await put_flag(client, admin, "kill-switch", mode="on")

    async def enabled() -> bool:
        response = await client.get("/api/flags", headers=seller.headers)
        assert response.status_code == 200, response.text
        return bool(response.json()["flags"].get("kill-switch"))

    deadline = time.monotonic() + 5
    while not await enabled():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)

    async with resources.sessionmaker() as session:
        assert await session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
    # At once, without waiting for the new connection: its NOTIFY may reach nobody.
    started = time.monotonic()
    await put_flag(client, admin, "kill-switch", mode="off")
    while await enabled():
        assert time.monotonic() - started < 2, "still on 2 s after it was turned off"
        await asyncio.sleep(0.02)

    await one_listener(resources, other_than=before)
    follower = current_follower()
    deadline = time.monotonic() + 15
    while not (follower and follower.live):
        assert time.monotonic() < deadline, "the follower did not come back"
        await asyncio.sleep(0.05)
    await put_flag(client, admin, "kill-switch", mode="on")
    deadline = time.monotonic() + 2
    while not await enabled():
        assert time.monotonic() < deadline, "a change after the reconnect did not arrive"
        await asyncio.sleep(0.02)


async def test_a_stopping_process_writes_the_exposures_it_counted(
    resources, open_client, make_user
):
    app = create_app(resources.settings, resources=resources)
    seller = await make_user(random_wallet())
    async with app.router.lifespan_context(app), open_client(app) as http:
        admin = await operator_headers(resources, "admin")
        await put_flag(http, admin, "ab", mode="on", variants=[{"name": "only"}])
        deadline = time.monotonic() + 5
        while "ab" not in (await http.get("/api/flags", headers=seller.headers)).json()["flags"]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        for _ in range(4):
            response = await http.get("/api/flags", headers=seller.headers)
            assert response.json()["variants"] == {"ab": "only"}
        # The lifespan ends here: what the periodic write (every 2 s) has not taken yet is
        # written on the way out, so none of the five is lost.
    async with resources.sessionmaker() as session:
        counted = await session.scalar(
            select(FlagExposure.exposures)
            .join(Flag, Flag.id == FlagExposure.flag_id)
            .where(Flag.name == "ab", FlagExposure.variant == "only")
        )
    assert counted == 5
