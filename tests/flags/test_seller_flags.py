"""GET /api/flags: a signed-in seller's flags, evaluated on the server for their wallet; their
variant, the same on every request, each serving counted as an exposure of it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from refit.flags import evaluate, service
from refit.flags.follower import current_follower
from refit.flags.schemas import FlagChange
from refit.models.flag import FlagMode
from tests.admin.helpers import operator_headers
from tests.flags.helpers import put_flag, random_wallet


async def _flags(client, seller) -> dict:
    response = await client.get("/api/flags", headers=seller.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _live(deadline_seconds: float = 30) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not ((follower := current_follower()) and follower.live):
        assert time.monotonic() < deadline, "the flag follower did not go live"
        await asyncio.sleep(0.02)


async def _until_rules(predicate) -> None:
    """Until this process's follower has seen a change (bounded; the notification does it)."""
    deadline = time.monotonic() + 5
    while True:
        follower = current_follower()
        if follower and follower.live and predicate(follower.rules):
            return
        assert time.monotonic() < deadline, "the change did not reach the follower in 5 s"
        await asyncio.sleep(0.01)


async def test_a_seller_gets_their_flags(client, resources, make_user):
    admin = await operator_headers(resources, "admin")
    listed, other = await make_user(random_wallet()), await make_user(random_wallet())
    await _live()
    assert await _flags(client, listed) == {"flags": {}, "variants": {}}

    await put_flag(client, admin, "everyone", mode="on")
    await put_flag(client, admin, "nobody", mode="off", percent=100)
    await put_flag(
        client, admin, "listed-only", mode="wallets", wallets=[listed.user.wallet_address]
    )
    await _until_rules(lambda rules: "listed-only" in rules)

    assert await _flags(client, listed) == {
        "flags": {"everyone": True, "nobody": False, "listed-only": True},
        "variants": {},
    }
    assert (await _flags(client, other))["flags"] == {
        "everyone": True,
        "nobody": False,
        "listed-only": False,
    }
    assert (await client.get("/api/flags")).status_code == 401


async def test_variants_are_stable_and_their_exposures_counted(client, resources, make_user):
    admin = await operator_headers(resources, "admin")
    sellers = [await make_user(random_wallet()) for _ in range(12)]
    await _live()
    await put_flag(
        client,
        admin,
        "checkout-test",
        mode="on",
        variants=[{"name": "control", "weight": 1}, {"name": "treatment", "weight": 1}],
    )
    await _until_rules(lambda rules: "checkout-test" in rules)

    served: Counter[str] = Counter()
    for seller in sellers:
        answers = {(await _flags(client, seller))["variants"]["checkout-test"] for _ in range(3)}
        assert len(answers) == 1, answers  # the same variant every time
        (variant,) = answers
        served[variant] += 3
    # Server code asking for a variant counts an exposure too.
    async with resources.sessionmaker() as session:
        chosen = await evaluate.variant(session, "checkout-test", sellers[0].user.wallet_address)
    served[chosen] += 1

    # Each process adds its counts every couple of seconds: wait for them (bounded).
    deadline = time.monotonic() + 15
    while True:
        listed = (await client.get("/api/admin/flags", headers=admin)).json()
        if listed[0]["exposures"] == dict(served):
            break
        assert time.monotonic() < deadline, (listed[0]["exposures"], served)
        await asyncio.sleep(0.2)


async def test_a_process_without_a_follower_reads_the_table_at_most_once_a_second(resources):
    """A worker (no follower) reads the flags itself: a flag turned off is off there within
    about a second."""
    assert current_follower() is None
    wallet = random_wallet()

    async def set_mode(mode: FlagMode) -> None:
        async with resources.sessionmaker() as session, session.begin():
            await service.set_flag(
                session, "direct", FlagChange(mode=mode, wallets=[wallet]), "test"
            )

    async def enabled(who: str) -> bool:
        async with resources.sessionmaker() as session:
            return await evaluate.is_enabled(session, "direct", who)

    await set_mode(FlagMode.WALLETS)
    evaluate._fallback = None  # another test's process state
    assert await enabled(wallet)
    assert not await enabled(random_wallet())
    await set_mode(FlagMode.OFF)
    turned_off = time.monotonic()
    while await enabled(wallet):
        assert time.monotonic() - turned_off < 2, "still on 2 s after it was turned off"
        await asyncio.sleep(0.05)
