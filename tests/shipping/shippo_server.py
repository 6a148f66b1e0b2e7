"""A local HTTP server that answers like Shippo's REST API, scriptable per test.

Payload shapes follow Shippo's documented objects (Address with validation_results,
Shipment with rates, Transaction, paginated lists, Refund, Track) as Shippo's API reference
and its Python SDK's models describe them. It runs in a thread on port 0, so the
test process and a worker subprocess can both reach it.

Scripting: `fail_next_transactions(n)` (ERROR transactions with messages),
`queue_next_transactions(n, polls)` (QUEUED, SUCCESS after `polls` GETs),
`hold_next_transaction()` (the transaction is created, the reply waits for `release()`),
`hold_next_transaction(create_first=False)` (the request waits for `release()` before the
transaction exists: a carrier that creates it late), `add_transactions(n, ...)` (other
orders' labels on the account), `rate_limit_next(n, reset_in)` (429 with X-RateLimit-Reset),
`throttle(retry_after)` (every call a 429 with Retry-After, until `throttle(None)`),
`hold_rating()` (POST /addresses and /shipments wait for `release_rating()`; `held_count()`
says how many are waiting, `wait_for_held(n, timeout)` waits until n are).
`labels_bought()` counts transactions that reached SUCCESS; `requests` logs every call and
`list_queries` the query of every GET /transactions; `state.refunds` holds every refund
asked for (one per POST /refunds that succeeded), listed by GET /refunds (paging only, newest
first) and read by GET /refunds/{id}.

GET /transactions implements only what Shippo documents for that list: object_status,
tracking_status, object_created_gt/_gte/_lt/_lte, page and results (newest first, a `next`
URL while more pages follow). Anything else (a `rate` parameter) is ignored, as the real
API would.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from reportlab.lib.pagesizes import inch
from reportlab.pdfgen import canvas

from tests.local_http import LocalHTTPServer

TOKEN = "shippo_test_refit0123456789"
OWNER = "shippotle@shippo.com"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Txn:
    body: dict[str, Any]
    polls_left: int = 0
    final: str = "SUCCESS"


@dataclass
class State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, Txn] = field(default_factory=dict)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    fail_transactions: int = 0
    queue_transactions: int = 0
    queue_polls: int = 0
    hold_transactions: int = 0
    # Label downloads (the signed S3 URL): the next ones answer 503, or wait for release().
    fail_label_downloads: int = 0
    hold_label_downloads: int = 0
    hold_before_create: bool = False
    list_queries: list[dict[str, str]] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)
    rate_limits: int = 0
    # Tracks the carrier knows, set by tests: tracking number -> [(status, status_date)].
    tracks: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # When a default track's steps happened, fixed at the first read: a carrier's history
    # reads the same each time.
    track_times: dict[str, str] = field(default_factory=dict)
    refused_streets: set[str] = field(default_factory=set)
    rate_limit_reset_in: float = 1.0
    throttle_retry_after: int | None = None
    # Rating gate: open (set) unless a test holds validation and rating requests.
    rating_open: threading.Event = field(default_factory=threading.Event)
    rating_held: int = 0
    rating_changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.rating_open.set()

    def new_id(self, kind: str) -> str:
        return f"{kind}_{next(self.ids):08d}"


class ShippoServer(LocalHTTPServer):
    def __init__(self) -> None:
        self.state = State()
        super().__init__(_handler(self.state))

    def stop(self) -> None:
        self.state.held.set()  # release a purchase reply a test is holding
        self.state.rating_open.set()
        super().stop()

    # --- scripting -----------------------------------------------------------------------

    def fail_next_transactions(self, n: int) -> None:
        with self.state.lock:
            self.state.fail_transactions = n

    def queue_next_transactions(self, n: int, polls: int) -> None:
        with self.state.lock:
            self.state.queue_transactions, self.state.queue_polls = n, polls

    def hold_next_transaction(self, *, create_first: bool = True) -> None:
        """The next POST /transactions creates its transaction, then waits for release()
        (create_first=False: waits first, and creates it only once released)."""
        with self.state.lock:
            self.state.hold_transactions = 1
            self.state.hold_before_create = not create_first
            self.state.held.clear()
            self.state.holding.clear()

    def fail_next_label_downloads(self, n: int) -> None:
        with self.state.lock:
            self.state.fail_label_downloads = n

    def hold_next_label_download(self) -> None:
        """The next label download waits for release() before it answers."""
        with self.state.lock:
            self.state.hold_label_downloads = 1
            self.state.held.clear()
            self.state.holding.clear()

    def add_transactions(
        self, n: int, *, age_seconds: float = 0.0, metadata: str = "order:someone-else"
    ) -> None:
        """n SUCCESS labels of other orders on the account, created `age_seconds` ago."""
        created = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_seconds)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        with self.state.lock:
            for _ in range(n):
                txn_id = self.state.new_id("txn")
                self.state.transactions[txn_id] = Txn(
                    body={
                        "object_id": txn_id,
                        "object_state": "VALID",
                        "status": "SUCCESS",
                        "object_created": created,
                        "object_updated": created,
                        "object_owner": OWNER,
                        "test": True,
                        "rate": f"rate_other_{txn_id}",
                        "metadata": metadata,
                        "tracking_number": f"9400{txn_id[-8:]}11",
                        "label_url": "",
                        "messages": [],
                    },
                    final="OTHER",  # not one of ours: labels_bought() leaves it out
                )

    def add_label(self, rate: str, metadata: str) -> str:
        """A label the account bought (SUCCESS, downloadable) as if by our purchase: its id."""
        with self.state.lock:
            txn_id = self.state.new_id("txn")
            self.state.transactions[txn_id] = Txn(
                body={
                    "object_id": txn_id,
                    "object_state": "VALID",
                    "status": "SUCCESS",
                    "object_created": _now(),
                    "object_updated": _now(),
                    "object_owner": OWNER,
                    "test": True,
                    "rate": rate,
                    "metadata": metadata,
                    "tracking_number": f"9400{txn_id[-8:]}11",
                    "label_url": f"{self.url}/labels/{txn_id}.pdf",
                    "messages": [],
                }
            )
        return txn_id

    def settle_queued(self) -> None:
        """QUEUED transactions turn SUCCESS on their next GET."""
        with self.state.lock:
            for txn in self.state.transactions.values():
                txn.polls_left = 0

    def wait_until_holding(self, timeout: float) -> bool:
        return self.state.holding.wait(timeout)

    def release(self) -> None:
        self.state.held.set()

    def refuse_address(self, street1: str) -> None:
        """From now on, validation says this street is not deliverable."""
        with self.state.lock:
            self.state.refused_streets.add(street1.upper())

    def rate_limit_next(self, n: int, reset_in: float = 1.0) -> None:
        with self.state.lock:
            self.state.rate_limits, self.state.rate_limit_reset_in = n, reset_in

    def throttle(self, retry_after: int | None) -> None:
        """Every API call answered 429 with `Retry-After: retry_after` (None: no more)."""
        with self.state.lock:
            self.state.throttle_retry_after = retry_after

    def hold_rating(self) -> None:
        """From now on POST /addresses and POST /shipments wait until release_rating()."""
        self.state.rating_open.clear()

    def release_rating(self) -> None:
        self.state.rating_open.set()

    def held_count(self) -> int:
        """How many validation and rating requests are waiting for release_rating()."""
        with self.state.rating_changed:
            return self.state.rating_held

    def wait_for_held(self, n: int, timeout: float) -> bool:
        """Block (a thread) until at least n requests are held; False after `timeout` s."""
        with self.state.rating_changed:
            return self.state.rating_changed.wait_for(lambda: self.state.rating_held >= n, timeout)

    # --- inspection ----------------------------------------------------------------------

    def transactions_created(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [t.body for t in self.state.transactions.values()]

    def labels_bought(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [
                t.body
                for t in self.state.transactions.values()
                if t.final == "SUCCESS" and t.body["status"] != "ERROR"
            ]

    def calls(self, method: str, path_prefix: str) -> list[tuple[str, str, dict[str, str], Any]]:
        with self.state.lock:
            return [
                r for r in self.state.requests if r[0] == method and r[1].startswith(path_prefix)
            ]


def _parse_time(raw: str) -> dt.datetime:
    """Shippo's dates: ISO 8601 in UTC, with or without the Z; compared without a zone."""
    value = dt.datetime.fromisoformat(raw.removesuffix("Z"))
    if value.tzinfo is not None:
        raise ValueError("timezone offsets are not supported")
    return value


def label_pdf(tracking_number: str) -> bytes:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=(4 * inch, 6 * inch))
    page.drawString(20, 400, "USPS PRIORITY MAIL (Shippo test label)")
    page.drawString(20, 380, f"TRACKING # {tracking_number}")
    page.showPage()
    page.save()
    return buffer.getvalue()


def _handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with state.lock:
                state.requests.append((method, url.path, dict(self.headers.items()), body))
            if url.path.startswith("/labels/"):  # the signed S3 URL of a label: no auth
                return self._label(url.path)
            if self.headers.get("Authorization") != f"ShippoToken {TOKEN}":
                return self._send(401, {"detail": "Invalid token."})
            with state.lock:
                limited = state.rate_limits > 0
                if limited:
                    state.rate_limits -= 1
                throttled = state.throttle_retry_after
            if throttled is not None:
                return self._send(
                    429,
                    {"detail": "Request was throttled."},
                    headers={"Retry-After": str(throttled)},
                )
            if limited:
                reset = int(time.time() + state.rate_limit_reset_in + 0.999)
                return self._send(
                    429,
                    {"detail": "Request was throttled."},
                    headers={"X-RateLimit-Reset": str(reset)},
                )
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            parts = [p for p in url.path.split("/") if p]
            route = (method, parts[0] if parts else "", len(parts))
            handlers = {
                ("POST", "addresses", 1): lambda: self._address(body),
                ("POST", "shipments", 1): lambda: self._shipment(body),
                ("POST", "transactions", 1): lambda: self._create_transaction(body),
                ("GET", "transactions", 2): lambda: self._get_transaction(parts[1]),
                ("GET", "transactions", 1): lambda: self._list_transactions(query),
                ("POST", "refunds", 1): lambda: self._refund(body),
                ("GET", "refunds", 1): lambda: self._list_refunds(query),
                ("GET", "refunds", 2): lambda: self._get_refund(parts[1]),
                ("GET", "tracks", 3): lambda: self._track(parts[1], parts[2]),
            }
            action = handlers.get(route)
            if action is None:
                return self._send(404, {"detail": "Not found."})
            if route in (("POST", "addresses", 1), ("POST", "shipments", 1)):
                self._wait_for_rating_gate()
            action()

        def _wait_for_rating_gate(self) -> None:
            if state.rating_open.is_set():
                return
            with state.rating_changed:
                state.rating_held += 1
                state.rating_changed.notify_all()
            try:
                state.rating_open.wait(120)
            finally:
                with state.rating_changed:
                    state.rating_held -= 1
                    state.rating_changed.notify_all()

        # --- objects ---------------------------------------------------------------------

        def _address(self, body: dict[str, Any]) -> None:
            street = str(body.get("street1") or "")
            with state.lock:
                refused = street.upper() in state.refused_streets
            valid = any(c.isdigit() for c in street) and "NOWHERE" not in street.upper()
            valid = valid and not refused
            messages = (
                []
                if valid
                else [
                    {
                        "source": "USPS",
                        "code": "Address Not Found",
                        "type": "address_error",
                        "text": "The address as submitted could not be found. Please check for "
                        "excess characters and ensure the address is correct.",
                    }
                ]
            )
            out = {
                k: (str(v).upper() if k in ("street1", "street2", "city") and v else v)
                for k, v in body.items()
                if k != "validate"
            }
            out.update(
                {
                    "object_id": state.new_id("adr"),
                    "object_created": _now(),
                    "object_updated": _now(),
                    "object_owner": OWNER,
                    "is_complete": valid,
                    "is_residential": True,
                    "test": True,
                    "validation_results": {"is_valid": valid, "messages": messages},
                }
            )
            if valid and body.get("country", "US") == "US" and len(str(body.get("zip"))) == 5:
                out["zip"] = f"{body['zip']}-1234"
            self._send(201, out)

        def _shipment(self, body: dict[str, Any]) -> None:
            shipment_id = state.new_id("shp")
            weight = float(body["parcels"][0]["weight"])
            rates = []
            for provider, name, token, base, days in (
                ("USPS", "Priority Mail", "usps_priority", 7.9, 2),
                ("USPS", "Ground Advantage", "usps_ground_advantage", 5.4, 4),
                ("UPS", "Ground", "ups_ground", 11.2, 3),
            ):
                amount = f"{base + weight * 0.8:.2f}"
                rate = {
                    "object_id": state.new_id("rate"),
                    "object_created": _now(),
                    "object_owner": OWNER,
                    "shipment": shipment_id,
                    "attributes": [],
                    "amount": amount,
                    "currency": "USD",
                    "amount_local": amount,
                    "currency_local": "USD",
                    "provider": provider,
                    "provider_image_75": None,
                    "provider_image_200": None,
                    "servicelevel": {"name": name, "token": token, "terms": ""},
                    "estimated_days": days,
                    "arrives_by": None,
                    "duration_terms": "",
                    "messages": [],
                    "carrier_account": f"ca_{provider.lower()}",
                    "test": True,
                    "zone": "1",
                }
                rates.append(rate)
            with state.lock:
                state.rates.update({r["object_id"]: r for r in rates})
            self._send(
                201,
                {
                    "object_id": shipment_id,
                    "object_created": _now(),
                    "object_updated": _now(),
                    "object_owner": OWNER,
                    "status": "SUCCESS",
                    "metadata": body.get("metadata", ""),
                    "address_from": body["address_from"],
                    "address_to": body["address_to"],
                    "address_return": body["address_from"],
                    "parcels": body["parcels"],
                    "carrier_accounts": [],
                    "messages": [],
                    "rates": rates,
                    "test": True,
                    "shipment_date": _now(),
                    "extra": {},
                    "customs_declaration": None,
                },
            )

        def _create_transaction(self, body: dict[str, Any]) -> None:
            with state.lock:
                rate = state.rates.get(body.get("rate", ""))
            if rate is None:
                return self._send(400, {"rate": ["Rate not found or expired."]})
            with state.lock:
                hold_first = state.hold_transactions > 0 and state.hold_before_create
                if hold_first:
                    state.hold_transactions -= 1
            if hold_first:
                # The carrier is slow to create it: our caller times out before it exists.
                state.holding.set()
                state.held.wait(120)
            with state.lock:
                txn_id = state.new_id("txn")
                txn = Txn(
                    body={
                        "object_id": txn_id,
                        "object_state": "VALID",
                        "status": "SUCCESS",
                        "object_created": _now(),
                        "object_updated": _now(),
                        "object_owner": OWNER,
                        "test": True,
                        "rate": rate["object_id"],
                        "metadata": body.get("metadata", ""),
                        "parcel": "prc_1",
                        "tracking_number": f"9400{txn_id[-8:]}11",
                        "tracking_status": "UNKNOWN",
                        "tracking_url_provider": "https://tools.usps.com/go/TrackConfirmAction",
                        "eta": None,
                        "label_url": "",
                        "commercial_invoice_url": None,
                        "qr_code_url": None,
                        "messages": [],
                        "created_by": None,
                        "label_file_type": body.get("label_file_type", "PDF_4x6"),
                    }
                )
                if state.fail_transactions > 0:
                    state.fail_transactions -= 1
                    txn.final = "ERROR"
                    txn.body.update(
                        {
                            "status": "ERROR",
                            "object_state": "INVALID",
                            "tracking_number": "",
                            "messages": [
                                {
                                    "source": "UPS",
                                    "code": "carrier_timeout",
                                    "text": "UPS API did not respond. Please try again "
                                    "in a few minutes.",
                                }
                            ],
                        }
                    )
                elif state.queue_transactions > 0:
                    state.queue_transactions -= 1
                    txn.polls_left = state.queue_polls
                    txn.body.update({"status": "QUEUED", "tracking_number": ""})
                else:
                    txn.body["label_url"] = f"{self._base()}/labels/{txn_id}.pdf"
                state.transactions[txn_id] = txn
                hold = state.hold_transactions > 0
                if hold:
                    state.hold_transactions -= 1
            if hold:
                # Created on "our side", the reply held: the caller's crash window.
                state.holding.set()
                state.held.wait(120)
            self._send(201, dict(txn.body))

        def _get_transaction(self, txn_id: str) -> None:
            with state.lock:
                txn = state.transactions.get(txn_id)
                if txn is None:
                    return self._send(404, {"detail": "Not found."})
                if txn.body["status"] == "QUEUED":
                    if txn.polls_left <= 0:
                        txn.body.update(
                            {
                                "status": "SUCCESS",
                                "object_updated": _now(),
                                "tracking_number": f"9400{txn_id[-8:]}11",
                                "label_url": f"{self._base()}/labels/{txn_id}.pdf",
                            }
                        )
                    txn.polls_left -= 1
                body = dict(txn.body)
            self._send(200, body)

        def _list_transactions(self, query: dict[str, str]) -> None:
            try:
                bounds = {
                    key: _parse_time(query[key])
                    for key in (
                        "object_created_gt",
                        "object_created_gte",
                        "object_created_lt",
                        "object_created_lte",
                    )
                    if key in query
                }
                page = int(query.get("page", "1"))
                size = int(query.get("results", "25"))
            except ValueError:
                return self._send(400, {"detail": "Invalid query parameter."})
            if page < 1 or not 1 <= size <= 100:
                return self._send(400, {"detail": "Invalid page or results."})

            def keep(body: dict[str, Any]) -> bool:
                created = _parse_time(body["object_created"])
                return (
                    query.get("object_status", body["status"]) == body["status"]
                    and query.get("tracking_status", body.get("tracking_status"))
                    == body.get("tracking_status")
                    and created > bounds.get("object_created_gt", dt.datetime.min)
                    and created >= bounds.get("object_created_gte", dt.datetime.min)
                    and created < bounds.get("object_created_lt", dt.datetime.max)
                    and created <= bounds.get("object_created_lte", dt.datetime.max)
                )

            with state.lock:
                state.list_queries.append(dict(query))
                found = [dict(t.body) for t in state.transactions.values() if keep(t.body)]
            found.sort(key=lambda b: (b["object_created"], b["object_id"]), reverse=True)
            shown = found[(page - 1) * size : page * size]

            def link(to: int) -> str:
                return f"{self._base()}/transactions/?{urlencode({**query, 'page': to})}"

            self._send(
                200,
                {
                    "next": link(page + 1) if page * size < len(found) else None,
                    "previous": link(page - 1) if page > 1 else None,
                    "results": shown,
                },
            )

        def _refund(self, body: dict[str, Any]) -> None:
            with state.lock:
                txn = state.transactions.get(body.get("transaction", ""))
                if txn is None or txn.body["status"] != "SUCCESS":
                    return self._send(400, {"transaction": ["Transaction cannot be refunded."]})
                txn.body["status"] = "REFUNDPENDING"
                refund = {
                    "object_id": state.new_id("rfd"),
                    "object_created": _now(),
                    "object_updated": _now(),
                    "object_owner": OWNER,
                    "status": "QUEUED",
                    "transaction": txn.body["object_id"],
                    "test": True,
                }
                state.refunds.append(refund)
            self._send(201, refund)

        def _list_refunds(self, query: dict[str, str]) -> None:
            # Shippo documents only paging for this list (page, results): no filter.
            try:
                page = int(query.get("page", "1"))
                size = int(query.get("results", "25"))
            except ValueError:
                return self._send(400, {"detail": "Invalid query parameter."})
            if page < 1 or not 1 <= size <= 100:
                return self._send(400, {"detail": "Invalid page or results."})
            with state.lock:
                found = [dict(r) for r in reversed(state.refunds)]  # newest first
            shown = found[(page - 1) * size : page * size]

            def link(to: int) -> str:
                return f"{self._base()}/refunds/?{urlencode({**query, 'page': to})}"

            self._send(
                200,
                {
                    "next": link(page + 1) if page * size < len(found) else None,
                    "previous": link(page - 1) if page > 1 else None,
                    "results": shown,
                },
            )

        def _get_refund(self, refund_id: str) -> None:
            with state.lock:
                found = [dict(r) for r in state.refunds if r["object_id"] == refund_id]
            if not found:
                return self._send(404, {"detail": "Not found."})
            self._send(200, found[0])

        def _track(self, carrier: str, number: str) -> None:
            with state.lock:
                steps = state.tracks.get(number)
                if steps is None:
                    status = (
                        number.removeprefix("SHIPPO_")
                        if number.startswith("SHIPPO_")
                        else "TRANSIT"
                    )
                    order = ["PRE_TRANSIT", "TRANSIT", "DELIVERED"]
                    shown = order[: order.index(status) + 1] if status in order else [status]
                    at = state.track_times.setdefault(number, _now())
                    steps = [(s, at) for s in shown]
            history = [
                {
                    "object_id": f"ts_{i}",
                    "object_created": at,
                    "object_updated": at,
                    "status": s,
                    "status_details": f"Status {s}",
                    "status_date": at,
                    "substatus": None,
                    "location": {
                        "city": "San Francisco",
                        "state": "CA",
                        "zip": "94103",
                        "country": "US",
                    },
                }
                for i, (s, at) in enumerate(steps)
            ]
            self._send(
                200,
                {
                    "carrier": carrier,
                    "tracking_number": number,
                    "eta": None,
                    "original_eta": None,
                    "servicelevel": {"token": "usps_priority", "name": None},
                    "metadata": None,
                    "address_from": None,
                    "address_to": None,
                    "transaction": None,
                    "messages": [],
                    "tracking_status": history[-1],
                    "tracking_history": history,
                },
            )

        def _label(self, path: str) -> None:
            txn_id = path.rsplit("/", 1)[-1].removesuffix(".pdf")
            with state.lock:
                txn = state.transactions.get(txn_id)
                fail = state.fail_label_downloads > 0
                hold = not fail and state.hold_label_downloads > 0
                state.fail_label_downloads -= fail
                state.hold_label_downloads -= hold
            if fail:
                return self._send(503, {"detail": "Service Unavailable"})
            if hold:
                state.holding.set()
                state.held.wait(120)
            if txn is None:
                return self._send(404, {"detail": "Not found."})
            data = label_pdf(txn.body["tracking_number"])
            self._write(200, data, "application/pdf", {})

        # --- plumbing --------------------------------------------------------------------

        def _base(self) -> str:
            host, port = self.server.server_address[:2]
            return f"http://{host}:{port}"

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            self._write(status, json.dumps(body).encode(), "application/json", headers or {})

        def _write(self, status: int, data: bytes, kind: str, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a killed worker): the object exists all the same

    return Handler
