"""The sandbox carrier: deterministic rates, real labels, tracking that moves on by itself."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from http.server import BaseHTTPRequestHandler

from pypdf import PdfReader
from sqlalchemy import select

from refit.carriers.interface import Address, Parcel, TrackingStatus, TransactionStatus
from refit.carriers.sandbox.carrier import SandboxCarrier, tracking_number_for
from refit.carriers.sandbox.webhooks import tracking_clock
from refit.carriers.shippo.wire import parse_track, sign
from refit.models.shipping import SandboxObject
from refit.settings import DEV_WEBHOOK_TOKEN
from refit.shipping.parcels import PARCELS
from refit.shipping.webhooks import parse
from tests.local_http import LocalHTTPServer

SELLER = Address(name="Bo Seller", street1="1 Main St", city="Boston", state="MA", zip="02108")
WAREHOUSE = Address(
    name="ReFit Receiving", street1="215 Clayton St", city="San Francisco", state="CA", zip="94117"
)


async def test_rates_are_a_function_of_zone_and_weight(resources):
    carrier = SandboxCarrier(resources.sessionmaker)
    phone = await carrier.get_rates(SELLER, WAREHOUSE, PARCELS["phone"], metadata="order:1")
    again = await carrier.get_rates(SELLER, WAREHOUSE, PARCELS["phone"], metadata="order:2")
    assert [r.amount for r in phone.rates] == [r.amount for r in again.rates]
    assert {r.rate_id for r in phone.rates}.isdisjoint({r.rate_id for r in again.rates})
    # 02108 -> 94117: zone 1 + |0 - 9| = 10, the farthest; the phone box weighs 1 lb.
    by_service = {r.service: r for r in phone.rates}
    assert by_service["Priority Mail"].amount == Decimal("7.50") + Decimal("0.90") * 10 + Decimal(
        "1.10"
    )
    near = await carrier.get_rates(
        Address(name="N", street1="9 Hill Rd", city="Oakland", state="CA", zip="94607"),
        WAREHOUSE,
        Parcel(Decimal(9), Decimal(6), Decimal(3), Decimal(16), mass_unit="oz"),
        metadata="order:3",
    )
    assert {r.service: r.amount for r in near.rates}["Priority Mail"] == Decimal("9.50")


async def test_label_tracking_and_refund(resources):
    carrier = SandboxCarrier(resources.sessionmaker)
    rate = (
        await carrier.get_rates(SELLER, WAREHOUSE, PARCELS["tablet"], metadata="order:t")
    ).rates[0]
    txn = await carrier.purchase_label(rate.rate_id, metadata="order:t", label_file_type="PDF")
    assert txn.status is TransactionStatus.SUCCESS
    assert txn.tracking_number == tracking_number_for(txn.transaction_id)
    assert len(txn.tracking_number) == 22 and txn.tracking_number.isdigit()
    now = dt.datetime.now(dt.UTC)
    window = {"created_after": now - dt.timedelta(hours=1), "created_before": now}
    found = await carrier.find_transactions(rate.rate_id, metadata="order:t", **window)
    assert [t.transaction_id for t in found] == [txn.transaction_id]
    assert await carrier.find_transactions(rate.rate_id, metadata="order:u", **window) == []

    text = PdfReader(io.BytesIO(await carrier.download_label(txn))).pages[0].extract_text()
    assert txn.tracking_number in text and "1 MAIN ST" in text and "215 CLAYTON ST" in text

    async def age(hours: float) -> TrackingStatus:
        async with resources.sessionmaker() as session, session.begin():
            row = await session.scalar(
                select(SandboxObject).where(SandboxObject.object_id == txn.transaction_id)
            )
            bought = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
            row.data = {**row.data, "purchased_at": bought.isoformat()}
        return (await carrier.get_tracking("usps", txn.tracking_number)).status

    assert await age(0) is TrackingStatus.PRE_TRANSIT
    assert await age(3) is TrackingStatus.TRANSIT
    assert await age(72) is TrackingStatus.DELIVERED
    await age(0)
    await carrier.advance_tracking(txn.tracking_number, TrackingStatus.TRANSIT)
    track = await carrier.get_tracking("usps", txn.tracking_number)
    assert [e.status for e in track.events] == [TrackingStatus.PRE_TRANSIT, TrackingStatus.TRANSIT]

    refund = await carrier.refund_label(txn.transaction_id)
    assert refund.status == "SUCCESS"
    assert (await carrier.get_transaction(txn.transaction_id)).status is (
        TransactionStatus.REFUNDED
    )


class _Recorder(BaseHTTPRequestHandler):
    """Our webhook endpoint's stand-in: records each POST and answers 200."""

    received: list[tuple[str, dict[str, str], bytes]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


async def test_the_sandbox_clock_sends_a_shippo_shaped_webhook_when_a_parcel_moves(
    resources, run_jobs
):
    carrier = SandboxCarrier(resources.sessionmaker)
    rate = (await carrier.get_rates(SELLER, WAREHOUSE, PARCELS["phone"], metadata="order:c")).rates[
        0
    ]
    txn = await carrier.purchase_label(rate.rate_id, metadata="order:c", label_file_type="PDF")
    _Recorder.received = []
    server = LocalHTTPServer(_Recorder).start()
    resources.settings.public_url = server.url
    resources.settings.shippo_webhook_hmac_secret = "sandbox-signs-too"
    try:
        # Just bought: pre-transit, which no webhook has told yet.
        assert await tracking_clock() == 1
        await run_jobs()
        assert await tracking_clock() == 0  # told: nothing new
        async with resources.sessionmaker() as session, session.begin():
            row = await session.get(SandboxObject, txn.transaction_id)
            bought = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
            row.data = {**row.data, "purchased_at": bought.isoformat()}
        assert await tracking_clock() == 1  # an hour on: in transit
        await run_jobs()
        assert await tracking_clock() == 0
    finally:
        server.stop()

    assert len(_Recorder.received) == 2
    path, headers, raw = _Recorder.received[-1]
    assert path == f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}"
    stamp, signature = (p.split("=", 1)[1] for p in headers["Shippo-Auth-Signature"].split(","))
    assert signature == sign("sandbox-signs-too", int(stamp), raw)
    event, body, _, error = parse(raw)
    assert (event, error) == ("track_updated", None) and body is not None
    track = parse_track(body["data"])
    assert track.tracking_number == txn.tracking_number and track.metadata == "order:c"
    assert [e.status for e in track.events] == [TrackingStatus.PRE_TRANSIT, TrackingStatus.TRANSIT]
    assert track.destination_zip == "94117"
