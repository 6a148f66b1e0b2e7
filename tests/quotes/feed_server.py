"""A local HTTP server answering like CoinGecko's simple-price and Pyth Hermes' latest-price
endpoints, scriptable per test. Runs in a thread on port 0."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.local_http import LocalHTTPServer

PYTH_FEED = "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d"


@dataclass
class FeedState:
    # CoinGecko: the JSON number is written as-is (a decimal literal, as CoinGecko sends it).
    coingecko_usd: str = "187.43"
    coingecko_age_seconds: int = 5
    coingecko_status: int = 200
    # Pyth: integer mantissa and exponent, as strings the way Hermes sends them.
    pyth_price: str = "18743210000"
    pyth_conf: str = "9371605"
    pyth_expo: int = -8
    pyth_age_seconds: int = 2
    pyth_status: int = 200
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hits(self, path_part: str) -> int:
        with self.lock:
            return sum(1 for path, _, _ in self.requests if path_part in path)


class _Handler(BaseHTTPRequestHandler):
    state: FeedState

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        with self.state.lock:
            self.state.requests.append((url.path, query, dict(self.headers)))
        now = int(time.time())
        s = self.state
        if url.path == "/api/v3/simple/price":
            if s.coingecko_status != 200:
                return self._send(s.coingecko_status, '{"error": "rate limited"}')
            if query.get("ids") != ["solana"] or query.get("vs_currencies") != ["usd"]:
                return self._send(200, "{}")
            updated = now - s.coingecko_age_seconds
            body = f'{{"solana": {{"usd": {s.coingecko_usd}, "last_updated_at": {updated}}}}}'
            return self._send(200, body)
        if url.path == "/v2/updates/price/latest":
            if s.pyth_status != 200:
                return self._send(s.pyth_status, '{"message": "unauthorized"}')
            ids = [i.lower().removeprefix("0x") for i in query.get("ids[]", [])]
            parsed = []
            if PYTH_FEED in ids:
                publish = now - s.pyth_age_seconds
                price = {
                    "price": s.pyth_price,
                    "conf": s.pyth_conf,
                    "expo": s.pyth_expo,
                    "publish_time": publish,
                }
                parsed.append(
                    {
                        "id": PYTH_FEED,
                        "price": price,
                        "ema_price": price,
                        "metadata": {"slot": 1, "proof_available_time": publish},
                    }
                )
            body = {"binary": {"encoding": "hex", "data": ["504e4155"]}, "parsed": parsed}
            return self._send(200, json.dumps(body))
        self._send(404, '{"error": "not found"}')

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FeedServer(LocalHTTPServer):
    def __init__(self) -> None:
        self.state = FeedState()
        super().__init__(type("Handler", (_Handler,), {"state": self.state}))
