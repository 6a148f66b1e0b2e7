"""ShippoCarrier against a local server answering with Shippo's documented payloads."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from refit.carriers.interface import (
    Address,
    CarrierRejected,
    CarrierUnavailable,
    Parcel,
    TrackingStatus,
    TransactionStatus,
    wait_for_transaction,
)
from refit.carriers.picker import open_carrier
from refit.carriers.shippo.client import ShippoCarrier
from refit.settings import Settings
from tests.local_http import LocalHTTPServer
from tests.shipping.shippo_server import TOKEN

SELLER = Address(
    name="Ada Seller",
    street1="1600 Amphitheatre Pkwy",
    city="Mountain View",
    state="CA",
    zip="94043",
    phone="+1 650 555 0100",
)
WAREHOUSE = Address(
    name="ReFit Receiving",
    company="ReFit",
    street1="215 Clayton St",
    city="San Francisco",
    state="CA",
    zip="94117",
)
PHONE_BOX = Parcel(
    length=Decimal("8"), width=Decimal("5"), height=Decimal("3"), weight=Decimal("1.0")
)


async def _rate_id(shippo: ShippoCarrier) -> str:
    shipment = await shippo.get_rates(SELLER, WAREHOUSE, PHONE_BOX, metadata="order:x")
    return shipment.rates[0].rate_id


async def test_requests_carry_token_and_api_version(shippo, shippo_server):
    await shippo.validate_address(SELLER)
    (_, _, headers, body) = shippo_server.calls("POST", "/addresses")[0]
    assert headers["Authorization"] == f"ShippoToken {TOKEN}"
    assert headers["SHIPPO-API-VERSION"] == "2018-02-08"
    assert body["validate"] is True and body["street1"] == SELLER.street1


async def test_wrong_token_is_a_rejection(shippo_server, tmp_path):
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        shippo_api_key="shippo_test_wrong",
        shippo_base_url=shippo_server.url,
    )
    async with open_carrier(settings) as carrier:
        with pytest.raises(CarrierRejected) as caught:
            await carrier.validate_address(SELLER)
    assert "Invalid token." in str(caught.value)


async def test_address_validation_valid_with_recommendation(shippo):
    result = await shippo.validate_address(SELLER)
    assert result.is_valid is True
    assert result.messages == []
    assert result.carrier_object_id.startswith("adr_")
    # Shippo answers with its normalised form (upper case, ZIP+4): offered as recommended.
    assert result.recommended is not None
    assert result.recommended.zip == "94043-1234"
    assert result.recommended.street1 == "1600 AMPHITHEATRE PKWY"


async def test_address_validation_invalid_with_messages(shippo):
    result = await shippo.validate_address(
        Address(name="Bob", street1="Nowhere Lane", city="Springfield", state="IL", zip="62701")
    )
    assert result.is_valid is False
    assert result.recommended is None
    assert [m.code for m in result.messages] == ["Address Not Found"]
    assert "could not be found" in result.messages[0].text
    assert result.messages[0].source == "USPS"


async def test_shipment_with_rates(shippo, shippo_server):
    shipment = await shippo.get_rates(SELLER, WAREHOUSE, PHONE_BOX, metadata="order:abc")
    assert shipment.shipment_id.startswith("shp_")
    assert [r.amount for r in shipment.rates] == sorted(r.amount for r in shipment.rates)
    by_token = {r.service_token: r for r in shipment.rates}
    priority = by_token["usps_priority"]
    assert (priority.carrier, priority.service, priority.currency) == (
        "USPS",
        "Priority Mail",
        "USD",
    )
    assert priority.amount == Decimal("8.70") and priority.estimated_days == 2
    (_, _, _, body) = shippo_server.calls("POST", "/shipments")[0]
    assert body["async"] is False and body["metadata"] == "order:abc"
    assert body["parcels"] == [
        {
            "length": "8",
            "width": "5",
            "height": "3",
            "distance_unit": "in",
            "weight": "1.0",
            "mass_unit": "lb",
        }
    ]
    assert body["address_to"]["company"] == "ReFit"


async def test_transaction_success_and_label_download(shippo, shippo_server):
    rate_id = await _rate_id(shippo)
    txn = await shippo.purchase_label(rate_id, metadata="order:42", label_file_type="PDF_4x6")
    assert txn.status is TransactionStatus.SUCCESS
    assert txn.rate_id == rate_id and txn.metadata == "order:42"
    assert txn.tracking_number and txn.label_url
    (_, _, _, body) = shippo_server.calls("POST", "/transactions")[0]
    assert body == {
        "rate": rate_id,
        "label_file_type": "PDF_4x6",
        "metadata": "order:42",
        "async": False,
    }
    pdf = await shippo.download_label(txn)
    assert pdf.startswith(b"%PDF")
    # The signed label URL is fetched without our API key.
    (_, _, headers, _) = shippo_server.calls("GET", "/labels/")[0]
    assert "Authorization" not in headers


async def test_transaction_queued_then_success(shippo, shippo_server):
    rate_id = await _rate_id(shippo)
    shippo_server.queue_next_transactions(1, polls=2)
    txn = await shippo.purchase_label(rate_id, metadata="order:q", label_file_type="PDF_4x6")
    assert txn.status is TransactionStatus.QUEUED and txn.label_url is None
    done = await wait_for_transaction(shippo, txn, within=10, first_delay=0.05)
    assert done.status is TransactionStatus.SUCCESS
    assert done.transaction_id == txn.transaction_id and done.label_url
    assert len(shippo_server.calls("GET", f"/transactions/{txn.transaction_id}")) == 3


async def test_transaction_still_queued_at_the_deadline_is_retryable(shippo, shippo_server):
    rate_id = await _rate_id(shippo)
    shippo_server.queue_next_transactions(1, polls=1000)
    txn = await shippo.purchase_label(rate_id, metadata="order:q", label_file_type="PDF_4x6")
    with pytest.raises(CarrierUnavailable):
        await wait_for_transaction(shippo, txn, within=0.3, first_delay=0.05)


async def test_transaction_error_surfaces_messages(shippo, shippo_server):
    rate_id = await _rate_id(shippo)
    shippo_server.fail_next_transactions(1)
    txn = await shippo.purchase_label(rate_id, metadata="order:e", label_file_type="PDF_4x6")
    assert txn.status is TransactionStatus.ERROR
    assert [(m.source, m.code) for m in txn.messages] == [("UPS", "carrier_timeout")]
    assert "did not respond" in txn.messages[0].text


async def test_unknown_rate_is_a_rejection_with_field_messages(shippo):
    with pytest.raises(CarrierRejected) as caught:
        await shippo.purchase_label("rate_nope", metadata="order:1", label_file_type="PDF_4x6")
    assert caught.value.messages[0].code == "rate"
    assert "expired" in caught.value.messages[0].text


class RateLimitWindow(LocalHTTPServer):
    """In front of the Shippo server, a rate-limit window as Shippo keeps it: every request
    before `reset` (Unix time) is refused with 429 and X-RateLimit-Reset, later ones are passed
    on. A client that sends again before the reset is refused again, so the refusals counted
    here show whether it waited."""

    def __init__(self, upstream: str, reset: int) -> None:
        self.refused: list[str] = []
        self.passed: list[str] = []
        window = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if time.time() < reset:
                    window.refused.append(self.path)
                    self._reply(429, b'{"detail": "Request was throttled."}', str(reset))
                    return
                window.passed.append(self.path)
                sent = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                answer = httpx.post(upstream + self.path, content=body, headers=sent)
                self._reply(answer.status_code, answer.content)

            def _reply(self, status: int, data: bytes, reset_at: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if reset_at is not None:
                    self.send_header("X-RateLimit-Reset", reset_at)
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


HOP_BY_HOP = {"host", "content-length", "connection", "accept-encoding"}


async def test_429_waits_for_x_ratelimit_reset_then_retries(shippo_server, tmp_path):
    window = RateLimitWindow(shippo_server.url, reset=int(time.time()) + 2).start()
    try:
        settings = Settings(
            _env_file=None, data_dir=tmp_path, shippo_api_key=TOKEN, shippo_base_url=window.url
        )
        async with open_carrier(settings) as carrier:
            shipment = await carrier.get_rates(SELLER, WAREHOUSE, PHONE_BOX, metadata="order:r")
    finally:
        window.stop()
    assert shipment.rates
    # Refused once, then sent again only once the window had reset: a retry inside the window
    # would have been refused a second time.
    assert window.refused == ["/shipments"]
    assert window.passed == ["/shipments"]
    assert len(shippo_server.calls("POST", "/shipments")) == 1


async def test_429_beyond_the_bound_is_retryable_with_retry_after(shippo_server, tmp_path):
    settings = Settings(
        _env_file=None, data_dir=tmp_path, shippo_api_key=TOKEN, shippo_base_url=shippo_server.url
    )
    api, downloads = ShippoCarrier.clients(settings)
    async with api, downloads:
        impatient = ShippoCarrier(api, downloads, max_rate_limit_wait=2)
        shippo_server.rate_limit_next(1, reset_in=60)
        with pytest.raises(CarrierUnavailable) as caught:
            await impatient.validate_address(SELLER)
    assert caught.value.retryable and 55 <= caught.value.retry_after <= 61
    assert len(shippo_server.calls("POST", "/addresses")) == 1


async def test_timeout_is_retryable(shippo_server, tmp_path):
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        shippo_api_key=TOKEN,
        shippo_base_url=shippo_server.url,
        shippo_timeout_seconds=0.5,
    )
    async with open_carrier(settings) as carrier:
        rate_id = await _rate_id(carrier)
        shippo_server.hold_next_transaction()
        with pytest.raises(CarrierUnavailable) as caught:
            await carrier.purchase_label(rate_id, metadata="order:t", label_file_type="PDF_4x6")
        shippo_server.release()
        assert caught.value.retryable
        # The purchase happened all the same: it is found by its rate and metadata.
        found = await carrier.find_transactions(rate_id, metadata="order:t", **_window())
    assert [t.metadata for t in found] == ["order:t"]


def _window(minutes: float = 5) -> dict[str, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    span = dt.timedelta(minutes=minutes)
    return {"created_after": now - span, "created_before": now + span}


async def test_find_transactions_matches_rate_and_metadata(shippo, shippo_server):
    first, second = await _rate_id(shippo), await _rate_id(shippo)
    await shippo.purchase_label(first, metadata="order:1", label_file_type="PDF_4x6")
    await shippo.purchase_label(first, metadata="order:2", label_file_type="PDF_4x6")
    assert await shippo.find_transactions(second, metadata="order:1", **_window()) == []
    [found] = await shippo.find_transactions(first, metadata="order:1", **_window())
    assert found.rate_id == first and found.status is TransactionStatus.SUCCESS
    assert found.metadata == "order:1"
    # Only documented parameters are sent: the time window and paging, never `rate`.
    query = shippo_server.state.list_queries[-1]
    assert set(query) == {"object_created_gt", "object_created_lt", "results", "page"}
    assert query["results"] == "100" and query["object_created_gt"].endswith("Z")


async def test_find_transactions_follows_pages_within_the_window(shippo, shippo_server):
    """Our transaction is the oldest of 250 in the window, so on the third page of 100; older
    ones outside the window are never listed."""
    rate_id = await _rate_id(shippo)
    shippo_server.add_transactions(400, age_seconds=3600)  # an hour ago: outside the window
    ours = await shippo.purchase_label(rate_id, metadata="order:x", label_file_type="PDF_4x6")
    shippo_server.add_transactions(249)
    [found] = await shippo.find_transactions(rate_id, metadata="order:x", **_window())
    assert found.transaction_id == ours.transaction_id
    assert [q["page"] for q in shippo_server.state.list_queries] == ["1", "2", "3"]


async def test_find_transactions_gives_up_loudly_past_its_page_bound(shippo_server, tmp_path):
    """An unfinished search is an error, never "nothing was bought"."""
    settings = Settings(
        _env_file=None, data_dir=tmp_path, shippo_api_key=TOKEN, shippo_base_url=shippo_server.url
    )
    api, downloads = ShippoCarrier.clients(settings)
    async with api, downloads:
        bounded = ShippoCarrier(api, downloads, max_list_pages=2)
        rate_id = await _rate_id(bounded)
        await bounded.purchase_label(rate_id, metadata="order:y", label_file_type="PDF_4x6")
        shippo_server.add_transactions(250)
        with pytest.raises(CarrierUnavailable) as caught:
            await bounded.find_transactions(rate_id, metadata="order:y", **_window())
    assert caught.value.retryable and "more than 2 pages" in str(caught.value)
    assert len(shippo_server.state.list_queries) == 2


async def test_refund(shippo, shippo_server):
    txn = await shippo.purchase_label(
        await _rate_id(shippo), metadata="order:rf", label_file_type="PDF_4x6"
    )
    refund = await shippo.refund_label(txn.transaction_id)
    assert refund.transaction_id == txn.transaction_id
    assert refund.status == "QUEUED" and refund.refund_id.startswith("rfd_")
    assert (await shippo.get_transaction(txn.transaction_id)).status is (
        TransactionStatus.REFUNDPENDING
    )
    with pytest.raises(CarrierRejected):  # a label is refunded once
        await shippo.refund_label(txn.transaction_id)


async def test_tracking_with_shippo_test_numbers(shippo):
    track = await shippo.get_tracking("shippo", "SHIPPO_DELIVERED")
    assert track.status is TrackingStatus.DELIVERED
    assert [e.status for e in track.events] == [
        TrackingStatus.PRE_TRANSIT,
        TrackingStatus.TRANSIT,
        TrackingStatus.DELIVERED,
    ]
    assert track.events[0].location == "San Francisco, CA, US"
