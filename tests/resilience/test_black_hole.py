"""Done-when 5: a PostgreSQL that stops answering without closing anything. The real
`refit api` reaches its database through a proxy the test turns into a black hole: first with
the open connections kept open and silent (a hung server or pooler: nothing is refused, every
byte is acknowledged, so neither keepalives nor the TCP user timeout can tell), then with them
dropped and every new one accepted and never answered. Meanwhile every request that needs the
database is answered 503 problem+json with Retry-After, each within its bound (the statement
timeout plus our grace for a connection that went silent, the connect timeout for a new one),
/readyz is 503 within its own, nothing is left hanging, and once the proxy forwards again the
process serves 200s by itself. On TCP or the embedded default's unix socket alike."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import httpx
import pytest
from solders.keypair import Keypair

from refit import db
from refit.auth.tokens import issue_access_token
from refit.errors import DEPENDENCY_RETRY_AFTER_SECONDS
from refit.health.endpoints import CHECK_TIMEOUT_SECONDS
from tests.orders.helpers import add_address
from tests.processes import free_port, read_log, start_refit, stop_refit, until
from tests.resilience.pg_proxy import CuttableProxy

CONNECT_TIMEOUT_SECONDS = 2  # libpq's least
STATEMENT_TIMEOUT_MS = 1000
# The longest a request needing the database may take while it does not answer: a silent
# connection is given up after the statement timeout and our grace, a new one after the
# connect timeout, with room for the request's own work on a loaded machine.
SLACK_SECONDS = 3.0
REQUEST_BOUND = (
    max(STATEMENT_TIMEOUT_MS / 1000 + db.ANSWER_GRACE_SECONDS, CONNECT_TIMEOUT_SECONDS)
    + SLACK_SECONDS
)
# /readyz looks at PostgreSQL and Redis together, then at the workers' heartbeats, each for
# at most CHECK_TIMEOUT_SECONDS.
READYZ_BOUND = 2 * CHECK_TIMEOUT_SECONDS + SLACK_SECONDS
WAVES = 2  # the first meets the pooled connections, the second new ones
BURST = 40  # more at once than the pool holds: none of its connections was lost


@dataclass
class Timed:
    what: str
    status: int  # -1: no HTTP answer (a transport error or the client's own timeout)
    seconds: float
    response: httpx.Response | None


@pytest.mark.timeout(400)
async def test_requests_answer_503_in_time_and_recover(resources, settings, make_user, tmp_path):
    assert settings.database_url and settings.redis_url
    proxy = await CuttableProxy.for_database(settings.database_url).start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))},
        "REFIT_ENV": "test",
        "REFIT_DATABASE_URL": proxy.database_url(settings.database_url),
        "REFIT_REDIS_URL": settings.redis_url,
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_DATA_DIR": str(tmp_path / "data"),
        "REFIT_PORT": str(port),
        "REFIT_PUBLIC_URL": base,
        "REFIT_LOG_FORMAT": "json",
        "REFIT_DB_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT_SECONDS),
        "REFIT_DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS),
        # What is measured is the database's absence, not the limits.
        "REFIT_RATE_LIMIT_SELLER_REQUESTS": "100000/minute",
        "REFIT_RATE_LIMIT_NONCE_PER_IP": "100000/minute",
        "REFIT_RATE_LIMIT_NONCE_PER_WALLET": "100000/minute",
    }
    seller = await make_user()
    address = await add_address(resources, seller.id)
    # Tokens are issued for the API they are sent to (the issuer is its public URL).
    token = issue_access_token(settings.model_copy(update={"public_url": base}), seller.id)
    headers = {"Authorization": f"Bearer {token.token}"}
    wallet = str(Keypair().pubkey())

    log_path = tmp_path / "api.log"
    api = start_refit(["api"], env, log_path)
    # Far above every bound: a request left hanging shows as a time over its bound.
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:

        async def timed(what: str, method: str, url: str, **kwargs: object) -> Timed:
            started = time.monotonic()
            try:
                response: httpx.Response | None = await http.request(method, url, **kwargs)  # type: ignore[arg-type]
            except httpx.HTTPError:
                response = None
            status = response.status_code if response is not None else -1
            return Timed(what, status, time.monotonic() - started, response)

        async def wave() -> list[Timed]:
            """Each kind of request needing the database, all at once: a seller's session
            (its role statement carries the statement timeout), a seller's hot read (one
            message), a public sign-in step (the service role), and /readyz."""
            return list(
                await asyncio.gather(
                    timed("addresses", "GET", "/api/shipping/addresses", headers=headers),
                    timed("address", "GET", f"/api/shipping/addresses/{address}", headers=headers),
                    timed("orders", "GET", "/api/orders", headers=headers),
                    timed("nonce", "POST", "/api/auth/nonce", json={"wallet_address": wallet}),
                    timed("readyz", "GET", "/readyz"),
                )
            )

        async def all_fine() -> bool:
            return all(t.status == 200 for t in await wave())

        seen: dict[str, list[Timed]] = {}
        try:
            await until("starting", all_fine, api, log_path, timeout=240)
            for mode, drop_open in (("silent connections", False), ("dropped connections", True)):
                proxy.black_hole(drop_open=drop_open)
                answers = [t for _ in range(WAVES) for t in await wave()]
                accepted_before = proxy.accepted
                proxy.restore()
                seen[mode] = answers
                # It tried, through the black hole: new connections were opened and held.
                assert accepted_before, mode
                # Back by itself: every request answers 200 again, nobody restarted anything.
                await until(f"recovering from {mode}", all_fine, api, log_path, timeout=60)

            # Nothing was left hanging: more requests at once than the pool has connections.
            burst = await asyncio.gather(
                *(
                    timed("burst", "GET", "/api/shipping/addresses", headers=headers)
                    for _ in range(BURST)
                )
            )
            assert [t.status for t in burst] == [200] * BURST
            assert api.poll() is None, "the API process never exited"
        finally:
            await stop_refit(api)
            await proxy.stop()
            print((await read_log(log_path))[-6000:])  # shown on failure

    for mode, answers in seen.items():
        print(mode, [(t.what, t.status, round(t.seconds, 2)) for t in answers])  # -rP shows it
        for t in answers:
            assert t.status == 503, (mode, t.what, t.status, t.response and t.response.text)
            assert t.response is not None
            assert t.response.headers["content-type"] == "application/problem+json"
            if t.what == "readyz":
                assert t.seconds <= READYZ_BOUND, (mode, t)
                assert "database" in t.response.json()["detail"]
            else:
                assert t.seconds <= REQUEST_BOUND, (mode, t)
                assert t.response.headers["retry-after"] == str(DEPENDENCY_RETRY_AFTER_SECONDS)
                assert t.response.json()["code"] == "dependency_unavailable"
    log_text = log_path.read_text()
    # Every error was answered in the app, none reached uvicorn (which would log it again and
    # close the connection); no request crashed.
    assert "Exception in ASGI application" not in log_text
    assert '"status": 500' not in log_text and '"status":500' not in log_text
