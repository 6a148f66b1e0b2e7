"""Shippo over its REST API with httpx (async), behind the `Carrier` interface: the HTTP side
(requests, rate limits, time budgets, paging); the bodies and objects are wire.py's.

Why not the `shippo` SDK: 3.9.0 is synchronous and its strict deserialisation breaks on
payload details (REFERENCE 1.8); the REST API is small and documented.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import structlog

from refit import tls
from refit.carriers.interface import (
    NO_EXTRAS,
    Address,
    AddressValidation,
    CarrierMessage,
    CarrierRejected,
    CarrierUnavailable,
    Extras,
    LabelTransaction,
    Parcel,
    Refund,
    Shipment,
    Tracking,
)
from refit.carriers.shippo import wire
from refit.settings import Settings

if TYPE_CHECKING:
    import httpx

log = structlog.get_logger(__name__)

# A label is a few hundred kB; anything far larger is not a label.
MAX_LABEL_BYTES = 10 * 1024 * 1024
# Listing transactions: Shippo's largest page, and how many pages one search may read before
# it gives up as inconclusive (5,000 transactions in a window of minutes is not an account
# we can search this way; an operator looks instead).
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 50


class ShippoCarrier:
    name = "shippo"

    def __init__(
        self,
        api: httpx.AsyncClient,
        downloads: httpx.AsyncClient,
        *,
        max_rate_limit_wait: float = 30.0,
        rate_limit_retries: int = 3,
        max_list_pages: int = MAX_LIST_PAGES,
        budget_seconds: float | None = None,
    ) -> None:
        """`budget_seconds`: how long all of this object's API calls together may take
        (waits on a 429 included) before they fail as CarrierUnavailable; None: no bound but
        each call's own timeouts. A seller's request gets a budget, a background job not."""
        self._api = api
        # Label URLs are signed S3 URLs: fetched with a client that never carries our API key.
        self._downloads = downloads
        self._max_rate_limit_wait = max_rate_limit_wait
        self._rate_limit_retries = rate_limit_retries
        self._max_list_pages = max_list_pages
        self._budget = budget_seconds

    @classmethod
    def clients(cls, settings: Settings) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        assert settings.shippo_api_key
        # httpx costs ~0.1-0.4 s of CPU at import: only a process that talks to Shippo needs it
        # (the sandbox carrier and the webhook parsers in wire.py do not). Imported again where
        # its errors are caught: by then it is loaded, the clients being made here.
        import httpx

        timeout = httpx.Timeout(settings.shippo_timeout_seconds, connect=5.0)
        api = httpx.AsyncClient(
            base_url=settings.shippo_base_url.rstrip("/"),
            headers={
                "Authorization": f"ShippoToken {settings.shippo_api_key}",
                "SHIPPO-API-VERSION": settings.shippo_api_version,
                "Accept": "application/json",
            },
            timeout=timeout,
            verify=tls.client_context(),
        )
        downloads = httpx.AsyncClient(
            timeout=timeout, follow_redirects=True, verify=tls.client_context()
        )
        return api, downloads

    # --- the interface -------------------------------------------------------------------

    async def validate_address(self, address: Address) -> AddressValidation:
        body = await self._request("POST", "/addresses", json=wire.address_request(address))
        return wire.parse_address_validation(body, sent=address)

    async def get_rates(
        self,
        address_from: Address,
        address_to: Address,
        parcel: Parcel,
        *,
        metadata: str,
        extras: Extras = NO_EXTRAS,
    ) -> Shipment:
        request = wire.shipment_request(
            address_from, address_to, parcel, metadata=metadata, extras=extras
        )
        return wire.parse_shipment(await self._request("POST", "/shipments", json=request))

    async def purchase_label(
        self, rate_id: str, *, metadata: str, label_file_type: str
    ) -> LabelTransaction:
        request = wire.transaction_request(
            rate_id, metadata=metadata, label_file_type=label_file_type
        )
        return wire.parse_transaction(await self._request("POST", "/transactions", json=request))

    async def get_transaction(self, transaction_id: str) -> LabelTransaction:
        body = await self._request("GET", f"/transactions/{transaction_id}")
        return wire.parse_transaction(body)

    async def find_transactions(
        self,
        rate_id: str,
        *,
        metadata: str,
        created_after: dt.datetime,
        created_before: dt.datetime,
    ) -> list[LabelTransaction]:
        # GET /transactions documents no rate or metadata filter (only object_status,
        # tracking_status, object_created_* and paging): a `rate` parameter would be ignored
        # and a busy account's lost purchase missed. So list the time window page by page
        # and match rate and metadata here.
        params: dict[str, Any] = {
            "object_created_gt": wire.shippo_time(created_after),
            "object_created_lt": wire.shippo_time(created_before),
            "results": LIST_PAGE_SIZE,
            "page": 1,
        }
        found = []
        for _ in range(self._max_list_pages):
            body = await self._request("GET", "/transactions", params=params)
            for raw in body.get("results") or []:
                if isinstance(raw, dict) and raw.get("metadata") == metadata:
                    transaction = wire.parse_transaction(raw)
                    if transaction.rate_id == rate_id:
                        found.append(transaction)
            if not body.get("next"):
                return found
            params["page"] = _next_page(str(body["next"]), params["page"])
        # "Not found" must mean "not bought": an unfinished search is no answer.
        raise CarrierUnavailable(
            f"more than {self._max_list_pages} pages of transactions between "
            f"{params['object_created_gt']} and {params['object_created_lt']}"
        )

    async def download_label(self, transaction: LabelTransaction) -> bytes:
        if not transaction.label_url:
            raise CarrierRejected(f"transaction {transaction.transaction_id} has no label_url")
        import httpx

        try:
            response = await self._downloads.get(transaction.label_url)
        except httpx.TransportError as exc:
            raise CarrierUnavailable(f"label download failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise CarrierUnavailable(f"label download answered {response.status_code}")
        if not response.content or len(response.content) > MAX_LABEL_BYTES:
            raise CarrierRejected(f"label download returned {len(response.content)} bytes")
        return response.content

    async def refund_label(self, transaction_id: str) -> Refund:
        body = await self._request("POST", "/refunds", json=wire.refund_request(transaction_id))
        return wire.parse_refund(body, transaction_id)

    async def find_refund(self, transaction_id: str) -> Refund | None:
        # GET /refunds documents no filter, only paging: list and match the transaction
        # here. Asked only when the transaction says a refund exists, so it is rare.
        params: dict[str, Any] = {"results": LIST_PAGE_SIZE, "page": 1}
        found: list[dict[str, Any]] = []
        for _ in range(self._max_list_pages):
            body = await self._request("GET", "/refunds", params=params)
            found += [
                raw
                for raw in body.get("results") or []
                if isinstance(raw, dict) and raw.get("transaction") == transaction_id
            ]
            if found or not body.get("next"):
                break
            params["page"] = _next_page(str(body["next"]), params["page"])
        if not found:
            return None
        newest = max(found, key=lambda raw: str(raw.get("object_created") or ""))
        return wire.parse_refund(newest, transaction_id)

    async def get_tracking(self, carrier: str, tracking_number: str) -> Tracking:
        body = await self._request("GET", f"/tracks/{carrier}/{tracking_number}")
        return wire.parse_track(body, carrier=carrier, tracking_number=tracking_number)

    # --- HTTP ----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        budget = self._budget
        if budget is None:
            return await self._send(method, path, json=json, params=params)
        if budget <= 0:
            raise CarrierUnavailable(f"no time left for Shippo to answer {method} {path}")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(budget):
                return await self._send(method, path, json=json, params=params)
        except TimeoutError as exc:
            # For a POST the outcome is unknown, as with any timeout.
            raise CarrierUnavailable(
                f"Shippo did not answer {method} {path} within {budget:.1f} s"
            ) from exc
        finally:
            self._budget = budget - (loop.time() - started)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None,
        params: dict[str, Any] | None,
    ) -> dict[str, Any]:
        import httpx

        for attempt in range(self._rate_limit_retries + 1):
            try:
                response = await self._api.request(method, path, json=json, params=params)
            except httpx.TimeoutException as exc:
                # For a POST the outcome is unknown: the caller decides how to find out.
                raise CarrierUnavailable(f"Shippo timed out on {method} {path}") from exc
            except httpx.TransportError as exc:
                raise CarrierUnavailable(
                    f"Shippo unreachable on {method} {path}: {type(exc).__name__}"
                ) from exc
            if response.status_code == 429:
                # A 429 was refused before any work: waiting and sending again is safe.
                wait = _rate_limit_wait(response)
                log.warning("shippo.rate_limited", path=path, wait=wait, attempt=attempt)
                if attempt == self._rate_limit_retries or wait > self._max_rate_limit_wait:
                    raise CarrierUnavailable("Shippo rate limit reached", retry_after=wait)
                await asyncio.sleep(wait)
                continue
            if response.status_code >= 500:
                raise CarrierUnavailable(f"Shippo answered {response.status_code} on {path}")
            if response.status_code >= 400:
                raise CarrierRejected(
                    f"Shippo refused {method} {path} ({response.status_code})",
                    _error_messages(response),
                )
            try:
                body = response.json()
            except ValueError as exc:
                raise CarrierUnavailable(f"Shippo sent non-JSON on {path}") from exc
            if not isinstance(body, dict):
                raise CarrierUnavailable(f"Shippo sent an unexpected body on {path}")
            return body
        raise AssertionError("unreachable")


def _next_page(next_url: str, current: int) -> int:
    """The page `next` points at. Only its page number is taken: we never send our key to
    whatever host a response names."""
    try:
        page = int(parse_qs(urlparse(next_url).query)["page"][0])
    except (KeyError, IndexError, ValueError):
        return current + 1
    return page if page > current else current + 1


def _rate_limit_wait(response: httpx.Response) -> float:
    """Seconds until the window resets: X-RateLimit-Reset is a Unix timestamp (some proxies
    send a delta in seconds instead), Retry-After a delta."""
    for header in ("X-RateLimit-Reset", "Retry-After"):
        raw = response.headers.get(header)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if value > 1_000_000_000:  # an epoch timestamp
            value -= time.time()
        return max(0.0, value)
    return 1.0


def _error_messages(response: httpx.Response) -> list[CarrierMessage]:
    try:
        body = response.json()
    except ValueError:
        return [CarrierMessage(text=response.text[:500] or response.reason_phrase)]
    return wire.parse_error_messages(body)
