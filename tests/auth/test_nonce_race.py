"""One nonce, twenty concurrent connect-wallet calls: exactly one opens a session."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import text

from tests.auth.wallets import Wallet, signed_body, user_count


async def test_twenty_concurrent_sign_ins_with_one_nonce_exactly_one_wins(client, resources):
    body = await signed_body(client, Wallet())
    responses = await asyncio.gather(
        *(client.post("/api/auth/connect-wallet", json=body) for _ in range(20))
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 401: 19}, [r.text for r in responses if r.status_code != 401]
    codes = Counter(r.json().get("code") for r in responses if r.status_code == 401)
    assert codes == {"nonce_used": 19}
    assert await user_count(resources) == 1
    async with resources.sessionmaker() as session:
        used = await session.scalar(
            text("SELECT count(*) FROM siws_nonces WHERE used_at IS NOT NULL")
        )
    assert used == 1
