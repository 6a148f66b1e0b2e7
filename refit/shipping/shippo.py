"""Shippo over its REST API with httpx (async), behind the `Carrier` interface.

Why not the `shippo` SDK: 3.9.0 is synchronous and its strict deserialisation breaks on
payload details (REFERENCE 1.8); the REST API is small and documented.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import structlog

from refit.settings import Settings
from refit.shipping.carrier import (
    NO_EXTRAS,
    Address,
    AddressValidation,
    CarrierError,
    CarrierMessage,
    CarrierRejected,
    CarrierUnavailable,
    Extras,
    LabelTransaction,
    Parcel,
    Rate,
    Refund,
    Shipment,
    Tracking,
    TrackingEvent,
    TrackingStatus,
    TransactionStatus,
)

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
        # (the sandbox carrier and the webhook parsers here do not). Imported again where
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
        )
        downloads = httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        return api, downloads

    # --- the interface -------------------------------------------------------------------

    async def validate_address(self, address: Address) -> AddressValidation:
        body = await self._request(
            "POST", "/addresses", json={**address.as_dict(), "validate": True}
        )
        results = body.get("validation_results") or {}
        messages = [_message(m) for m in results.get("messages") or []]
        # Shippo does not validate some addresses (non-US in test mode): no verdict is not a no.
        is_valid = results.get("is_valid") is not False
        returned = _address(body, fallback=address)
        recommended = returned if is_valid and _differs(returned, address) else None
        return AddressValidation(
            is_valid=is_valid,
            messages=messages,
            recommended=recommended,
            carrier_object_id=body.get("object_id"),
        )

    async def get_rates(
        self,
        address_from: Address,
        address_to: Address,
        parcel: Parcel,
        *,
        metadata: str,
        extras: Extras = NO_EXTRAS,
    ) -> Shipment:
        request: dict[str, Any] = {
            "address_from": address_from.as_dict(),
            "address_to": address_to.as_dict(),
            "parcels": [
                {
                    "length": str(parcel.length),
                    "width": str(parcel.width),
                    "height": str(parcel.height),
                    "distance_unit": parcel.distance_unit,
                    "weight": str(parcel.weight),
                    "mass_unit": parcel.mass_unit,
                }
            ],
            "metadata": metadata,
            "async": False,
        }
        extra = shipment_extra(extras)
        if extra:
            request["extra"] = extra
        body = await self._request("POST", "/shipments", json=request)
        messages = [_message(m) for m in body.get("messages") or []]
        if body.get("status") == "ERROR":
            raise CarrierRejected("Shippo could not rate this shipment", messages)
        rates = [_rate(r) for r in body.get("rates") or []]
        return Shipment(
            shipment_id=body["object_id"],
            rates=sorted(rates, key=lambda r: r.amount),
            messages=messages,
        )

    async def purchase_label(
        self, rate_id: str, *, metadata: str, label_file_type: str
    ) -> LabelTransaction:
        body = await self._request(
            "POST",
            "/transactions",
            json={
                "rate": rate_id,
                "label_file_type": label_file_type,
                "metadata": metadata,
                "async": False,
            },
        )
        return parse_transaction(body)

    async def get_transaction(self, transaction_id: str) -> LabelTransaction:
        return parse_transaction(await self._request("GET", f"/transactions/{transaction_id}"))

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
            "object_created_gt": _shippo_time(created_after),
            "object_created_lt": _shippo_time(created_before),
            "results": LIST_PAGE_SIZE,
            "page": 1,
        }
        found = []
        for _ in range(self._max_list_pages):
            body = await self._request("GET", "/transactions", params=params)
            for raw in body.get("results") or []:
                if isinstance(raw, dict) and raw.get("metadata") == metadata:
                    transaction = parse_transaction(raw)
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
        body = await self._request(
            "POST", "/refunds", json={"transaction": transaction_id, "async": False}
        )
        return _refund(body, transaction_id)

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
        return _refund(newest, transaction_id)

    async def get_tracking(self, carrier: str, tracking_number: str) -> Tracking:
        body = await self._request("GET", f"/tracks/{carrier}/{tracking_number}")
        return parse_track(body, carrier=carrier, tracking_number=tracking_number)

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


def shipment_extra(extras: Extras) -> dict[str, Any]:
    """Shippo's ShipmentExtras for `extras`: `insurance` {amount, currency, content} (Shippo's
    own insurance when no provider is named, available for every carrier) and
    `signature_confirmation`. Our return label home is an ordinary shipment from the warehouse
    to the seller: Shippo's `is_return` is for the other way round (a customer sending back
    an outbound parcel, REFERENCE 1.4), so it is never set here."""
    extra: dict[str, Any] = {}
    if extras.insurance_usd is not None and extras.insurance_usd > 0:
        extra["insurance"] = {
            "amount": f"{extras.insurance_usd:.2f}",
            "currency": "USD",
            "content": extras.content,
        }
    if extras.signature:
        extra["signature_confirmation"] = "STANDARD"
    return extra


def _refund(body: dict[str, Any], transaction_id: str) -> Refund:
    return Refund(
        refund_id=body["object_id"],
        transaction_id=body.get("transaction") or transaction_id,
        status=str(body.get("status") or "QUEUED"),
    )


def _shippo_time(value: dt.datetime) -> str:
    # Shippo takes ISO 8601 in UTC and no offsets ("2017-01-01T03:30:30Z").
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    if isinstance(body, dict):
        if isinstance(body.get("messages"), list):
            return [_message(m) for m in body["messages"]]
        # Shippo's 400s are keyed by field: {"rate": ["Rate has expired"]} or {"detail": "..."}.
        found = []
        for key, value in body.items():
            for text in value if isinstance(value, list) else [value]:
                found.append(CarrierMessage(text=str(text), code=key))
        return found
    return [CarrierMessage(text=str(body)[:500])]


def _message(raw: Any) -> CarrierMessage:
    if not isinstance(raw, dict):
        return CarrierMessage(text=str(raw))
    return CarrierMessage(
        text=str(raw.get("text") or raw.get("code") or ""),
        code=raw.get("code"),
        source=raw.get("source"),
        type=raw.get("type"),
    )


def _address(body: dict[str, Any], *, fallback: Address) -> Address:
    def pick(key: str) -> Any:
        value = body.get(key)
        return value if value not in (None, "") else getattr(fallback, key)

    return Address(**{f.name: pick(f.name) for f in fields(Address)})


def _differs(returned: Address, sent: Address) -> bool:
    def norm(value: str | None) -> str:
        return " ".join((value or "").upper().split())

    return any(
        norm(getattr(returned, f)) != norm(getattr(sent, f))
        for f in ("street1", "street2", "city", "state", "zip", "country")
    )


def _rate(raw: dict[str, Any]) -> Rate:
    level = raw.get("servicelevel") or {}
    try:
        amount = Decimal(str(raw["amount"]))
    except (KeyError, InvalidOperation) as exc:
        raise CarrierError(f"rate {raw.get('object_id')} has no usable amount") from exc
    days = raw.get("estimated_days")
    return Rate(
        rate_id=raw["object_id"],
        carrier=str(raw.get("provider") or ""),
        service=str(level.get("name") or level.get("token") or ""),
        service_token=level.get("token"),
        amount=amount,
        currency=str(raw.get("currency") or "USD"),
        estimated_days=int(days) if days is not None else None,
    )


def parse_transaction(raw: dict[str, Any]) -> LabelTransaction:
    """A Shippo Transaction object (an API answer or a transaction_updated webhook's data)."""
    rate = raw.get("rate")
    rate_id = rate.get("object_id") if isinstance(rate, dict) else rate
    try:
        status = TransactionStatus(str(raw.get("status")))
    except ValueError as exc:
        raise CarrierUnavailable(f"unknown transaction status {raw.get('status')!r}") from exc
    return LabelTransaction(
        transaction_id=raw["object_id"],
        status=status,
        rate_id=rate_id,
        metadata=raw.get("metadata"),
        tracking_number=raw.get("tracking_number") or None,
        label_url=raw.get("label_url") or None,
        messages=[_message(m) for m in raw.get("messages") or []],
        eta=raw.get("eta"),
    )


def parse_track(
    body: dict[str, Any], *, carrier: str | None = None, tracking_number: str | None = None
) -> Tracking:
    """A Shippo Track object (GET /tracks/..., or a track_updated webhook's data). The
    current status is also an event: a webhook's history may not list it yet."""
    history = [_event(e) for e in body.get("tracking_history") or [] if isinstance(e, dict)]
    current = body.get("tracking_status")
    latest = _event(current) if isinstance(current, dict) else None
    if latest is not None and all(
        (e.status, e.occurred_at) != (latest.status, latest.occurred_at) for e in history
    ):
        history.append(latest)
    address_to = body.get("address_to")
    return Tracking(
        carrier=str(body.get("carrier") or carrier or ""),
        tracking_number=str(body.get("tracking_number") or tracking_number or ""),
        status=latest.status if latest else TrackingStatus.UNKNOWN,
        eta=_datetime(body.get("eta")),
        events=history,
        metadata=body.get("metadata") or None,
        destination_zip=(address_to.get("zip") or None) if isinstance(address_to, dict) else None,
    )


def track_body(tracking: Tracking) -> dict[str, Any]:
    """`tracking` as Shippo's Track object: what the sandbox carrier sends in its webhooks."""
    history = [
        {
            "object_id": f"ts_{index}",
            "status": event.status.value,
            "status_details": event.details,
            "status_date": event.occurred_at.isoformat() if event.occurred_at else None,
            "substatus": {"code": event.substatus} if event.substatus else None,
            "location": {"city": event.location} if event.location else None,
        }
        for index, event in enumerate(tracking.events)
    ]
    return {
        "carrier": tracking.carrier,
        "tracking_number": tracking.tracking_number,
        "eta": tracking.eta.isoformat() if tracking.eta else None,
        "metadata": tracking.metadata,
        "address_to": {"zip": tracking.destination_zip} if tracking.destination_zip else None,
        "tracking_status": history[-1] if history else None,
        "tracking_history": history,
    }


def _event(raw: dict[str, Any]) -> TrackingEvent:
    try:
        status = TrackingStatus(str(raw.get("status")))
    except ValueError:
        status = TrackingStatus.UNKNOWN
    location = raw.get("location") or {}
    place = ", ".join(str(location[k]) for k in ("city", "state", "country") if location.get(k))
    substatus = raw.get("substatus") or {}
    return TrackingEvent(
        status=status,
        details=raw.get("status_details"),
        occurred_at=_datetime(raw.get("status_date")),
        location=place or None,
        # Shippo's substatus codes are opaque strings (its list is not published with the API).
        substatus=substatus.get("code") if isinstance(substatus, dict) else None,
    )


def _datetime(raw: Any) -> dt.datetime | None:
    if not raw:
        return None
    try:
        return dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
