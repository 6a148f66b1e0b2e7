"""The sandbox carrier: the embedded default when no Shippo key is set.

Rates are deterministic (service, zone from the ZIPs, parcel weight); labels are real 4x6
PDFs; tracking advances with time since purchase (or when an operator pushes it). Its
objects live in `sandbox_carrier_objects`, each written in its own transaction, as a remote
carrier's database would be: a rolled-back job does not un-buy a sandbox label either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from dataclasses import asdict
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from refit import queue
from refit.carriers.interface import (
    NO_EXTRAS,
    Address,
    AddressValidation,
    CarrierMessage,
    CarrierRejected,
    Extras,
    LabelTransaction,
    Parcel,
    Rate,
    Refund,
    Shipment,
    Tracking,
    TrackingStatus,
    TransactionStatus,
)
from refit.carriers.sandbox.tracking import TRACKING_STEPS, now_utc, tracking_of
from refit.carriers.shippo.wire import shipment_extra
from refit.models.shipping import SandboxObject
from refit.one_message import Step, job_messages
from refit.transactions import service_transaction

# (carrier, service, token, base, per zone, per lb, days base)
SERVICES = (
    ("USPS", "Priority Mail", "usps_priority", "7.50", "0.90", "1.10", 1),
    ("USPS", "Ground Advantage", "usps_ground_advantage", "5.20", "0.55", "0.85", 2),
    ("UPS", "Ground", "ups_ground", "9.80", "0.75", "1.25", 1),
)
US_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
SIGNATURE_FEE = Decimal("3.40")
# The job that posts a parcel's track to our webhook endpoint (webhooks.py), one queued per
# parcel: named here, below the picker, so an operator's push can queue it through the picker.
PUSH_TASK = "shipping.sandbox_push_tracking"


# A purchase: the rate (and its shipment) read, the transaction written with what the label
# needs of them; no row is written for a rate that does not exist. What a remote carrier does
# in its own database, in one statement.
_PURCHASE = """
WITH rate AS (
  SELECT r.data AS rate, s.data AS shipment
  FROM sandbox_carrier_objects r
  LEFT JOIN sandbox_carrier_objects s ON s.object_id = r.data ->> 'shipment'
  WHERE r.object_id = %(rate_id)s AND r.kind = 'rate'
), bought AS (
  INSERT INTO sandbox_carrier_objects (object_id, kind, data)
  SELECT %(id)s, 'transaction', %(data)s || jsonb_build_object(
           'carrier', lower(rate ->> 'carrier'),
           'address_to_zip', shipment -> 'address_to' ->> 'zip',
           'extra', coalesce(nullif(shipment -> 'extra', 'null'::jsonb), '{}'::jsonb))
  FROM rate
  RETURNING data
)
SELECT rate.rate, rate.shipment, bought.data AS bought FROM rate, bought
"""


def push_lock(tracking_number: str) -> str:
    return f"sandbox-push:{tracking_number}"


def zone(from_zip: str, to_zip: str) -> int:
    """1..10, like USPS zones: the further apart the ZIPs' first digits, the higher."""
    if not (from_zip[:1].isdigit() and to_zip[:1].isdigit()):
        return 10
    return 1 + abs(int(from_zip[0]) - int(to_zip[0]))


def tracking_number_for(transaction_id: str) -> str:
    digits = str(int(hashlib.sha256(transaction_id.encode()).hexdigest(), 16))[:18]
    return "9400" + digits.rjust(18, "0")


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


class SandboxCarrier:
    name = "sandbox"

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], job: bool = False) -> None:
        self._transaction = partial(service_transaction, sessionmaker=sessionmaker, job=job)
        # Purchases of this carrier not downloaded yet: transaction id -> (rate, shipment,
        # transaction) as stored.
        self._bought: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}

    async def validate_address(self, address: Address) -> AddressValidation:
        messages = []
        if not any(c.isdigit() for c in address.street1):
            messages.append(
                CarrierMessage(
                    text="The street address has no house number.",
                    code="premise_number_missing",
                    source="Sandbox",
                    type="address_error",
                )
            )
        if address.country == "US" and not US_ZIP.match(address.zip):
            messages.append(
                CarrierMessage(
                    text="The ZIP code is not a US ZIP.",
                    code="invalid_postal_code",
                    source="Sandbox",
                    type="address_error",
                )
            )
        return AddressValidation(is_valid=not messages, messages=messages)

    async def get_rates(
        self,
        address_from: Address,
        address_to: Address,
        parcel: Parcel,
        *,
        metadata: str,
        extras: Extras = NO_EXTRAS,
    ) -> Shipment:
        shipment_id = f"sbx_shp_{uuid.uuid4().hex}"
        z = zone(address_from.zip, address_to.zip)
        weight = parcel.weight if parcel.mass_unit == "lb" else parcel.weight / Decimal(16)
        surcharge = extras_cost(extras)
        rates = []
        for carrier, service, token, base, per_zone, per_lb, days in SERVICES:
            amount = _money(
                Decimal(base) + Decimal(per_zone) * z + Decimal(per_lb) * weight + surcharge
            )
            rates.append(
                Rate(
                    rate_id=f"sbx_rate_{uuid.uuid4().hex}",
                    carrier=carrier,
                    service=service,
                    service_token=token,
                    amount=amount,
                    currency="USD",
                    estimated_days=days + z // 3,
                )
            )
        async with self._transaction() as session:
            session.add(
                SandboxObject(
                    object_id=shipment_id,
                    kind="shipment",
                    data={
                        "address_from": address_from.as_dict(),
                        "address_to": address_to.as_dict(),
                        "parcel": {k: str(v) for k, v in asdict(parcel).items()},
                        "metadata": metadata,
                        "extra": shipment_extra(extras),
                    },
                )
            )
            for rate in rates:
                session.add(
                    SandboxObject(
                        object_id=rate.rate_id,
                        kind="rate",
                        data={
                            "shipment": shipment_id,
                            "carrier": rate.carrier,
                            "service": rate.service,
                            "amount": str(rate.amount),
                        },
                    )
                )
        return Shipment(shipment_id=shipment_id, rates=sorted(rates, key=lambda r: r.amount))

    async def purchase_label(
        self, rate_id: str, *, metadata: str, label_file_type: str
    ) -> LabelTransaction:
        transaction_id = f"sbx_txn_{uuid.uuid4().hex}"
        data = {
            "rate": rate_id,
            "status": TransactionStatus.SUCCESS.value,
            "metadata": metadata,
            "tracking_number": tracking_number_for(transaction_id),
            "label_url": f"sandbox://labels/{transaction_id}.pdf",
            "label_file_type": label_file_type,
            "purchased_at": now_utc().isoformat(),
        }
        # One statement, its own transaction, one round trip: the rate and its shipment
        # read, and the transaction written from them.
        async with job_messages(queue.job_connections()) as transaction:
            [rows] = await transaction.send(
                Step(_PURCHASE, {"rate_id": rate_id, "id": transaction_id, "data": Jsonb(data)}),
                commit=True,
            )
        if not rows or rows[0]["rate"] is None:
            raise CarrierRejected(
                "Sandbox refused the purchase",
                [CarrierMessage(text="Rate not found.", code="rate")],
            )
        row = rows[0]
        bought = _transaction(transaction_id, row["bought"])
        # What its label shows, kept for download_label: the label job downloads right after
        # buying, with this same carrier, and the objects it read never change.
        if row["shipment"] is not None:
            self._bought[transaction_id] = (row["rate"], row["shipment"], row["bought"])
        return bought

    async def get_transaction(self, transaction_id: str) -> LabelTransaction:
        async with self._transaction() as session:
            found = await session.get(SandboxObject, transaction_id)
        if found is None or found.kind != "transaction":
            raise CarrierRejected(f"no sandbox transaction {transaction_id}")
        return _transaction(found.object_id, found.data)

    async def find_transactions(
        self,
        rate_id: str,
        *,
        metadata: str,
        created_after: dt.datetime,
        created_before: dt.datetime,
    ) -> list[LabelTransaction]:
        async with self._transaction() as session:
            rows = await session.scalars(
                select(SandboxObject).where(
                    SandboxObject.kind == "transaction",
                    SandboxObject.data["rate"].astext == rate_id,
                    SandboxObject.data["metadata"].astext == metadata,
                    SandboxObject.created_at > created_after,
                    SandboxObject.created_at < created_before,
                )
            )
            return [_transaction(r.object_id, r.data) for r in rows]

    async def download_label(self, transaction: LabelTransaction) -> bytes:
        known = self._bought.pop(transaction.transaction_id, None)
        if known is None:
            async with self._transaction() as session:
                txn, rate, shipment = await _chain(
                    session, transaction.transaction_id, "rate", "shipment"
                )
            if txn is None or rate is None or shipment is None:
                raise CarrierRejected(f"no sandbox label for {transaction.transaction_id}")
            known = (rate.data, shipment.data, txn.data)
        rate_data, shipment_data, txn_data = known
        # reportlab (and its CJK fonts) cost ~0.4 s of CPU at import: only labels need it.
        from refit.carriers.sandbox.label_pdf import render_label

        return render_label(
            address_from=Address(**shipment_data["address_from"]),
            address_to=Address(**shipment_data["address_to"]),
            carrier=rate_data["carrier"],
            service=rate_data["service"],
            tracking_number=txn_data["tracking_number"],
            weight_lb=shipment_data["parcel"]["weight"],
            services=_label_services(shipment_data.get("extra") or {}),
        )

    async def refund_label(self, transaction_id: str) -> Refund:
        refund_id = f"sbx_rfd_{uuid.uuid4().hex}"
        async with self._transaction() as session:
            txn = await session.get(SandboxObject, transaction_id, with_for_update=True)
            if txn is None or txn.data["status"] != TransactionStatus.SUCCESS.value:
                raise CarrierRejected(f"sandbox transaction {transaction_id} is not refundable")
            txn.data = {**txn.data, "status": TransactionStatus.REFUNDED.value}
            # A refund object of its own, as Shippo keeps one: find_refund reads it back.
            session.add(
                SandboxObject(
                    object_id=refund_id,
                    kind="refund",
                    data={"transaction": transaction_id, "status": "SUCCESS"},
                )
            )
        return Refund(refund_id=refund_id, transaction_id=transaction_id, status="SUCCESS")

    async def find_refund(self, transaction_id: str) -> Refund | None:
        async with self._transaction() as session:
            row = await session.scalar(
                select(SandboxObject)
                .where(
                    SandboxObject.kind == "refund",
                    SandboxObject.data["transaction"].astext == transaction_id,
                )
                .order_by(SandboxObject.created_at.desc())
                .limit(1)
            )
        if row is None:
            return None
        return Refund(
            refund_id=row.object_id, transaction_id=transaction_id, status=row.data["status"]
        )

    async def get_tracking(self, carrier: str, tracking_number: str) -> Tracking:
        return tracking_of(await self._by_tracking_number(tracking_number), carrier)

    async def advance_tracking(self, tracking_number: str, status: TrackingStatus) -> None:
        """The operator's push: move a sandbox parcel on without waiting. Each step reached
        by a push keeps the moment it was pushed, so the track reads the same every time."""
        if status not in TRACKING_STEPS:
            raise CarrierRejected(f"sandbox tracking cannot be set to {status}")
        async with self._transaction() as session:
            row = await session.scalar(
                select(SandboxObject)
                .where(
                    SandboxObject.kind == "transaction",
                    SandboxObject.data["tracking_number"].astext == tracking_number,
                )
                .with_for_update()
            )
            if row is None:
                raise CarrierRejected(f"no sandbox parcel {tracking_number}")
            reached = {e.status for e in tracking_of(row.data, "").events}
            pushed = dict(row.data.get("tracking_pushed") or {})
            # Steps pushed together are a second apart, as real scans would be: a track
            # sorted by time then reads in the order the parcel moved.
            at = now_utc()
            for step in TRACKING_STEPS[: TRACKING_STEPS.index(status) + 1]:
                if step not in reached:
                    pushed[step.value] = at.isoformat()
                    at += dt.timedelta(seconds=1)
            row.data = {**row.data, "tracking_pushed": pushed}

    async def _by_tracking_number(self, tracking_number: str) -> dict[str, Any]:
        async with self._transaction() as session:
            row = await session.scalar(
                select(SandboxObject).where(
                    SandboxObject.kind == "transaction",
                    SandboxObject.data["tracking_number"].astext == tracking_number,
                )
            )
        if row is None:
            raise CarrierRejected(f"no sandbox parcel {tracking_number}")
        return row.data


def extras_cost(extras: Extras) -> Decimal:
    """What the sandbox charges on top of postage: insurance at 1% of the declared value
    (at least $1.00), a signature on delivery a flat fee."""
    cost = Decimal(0)
    if extras.insurance_usd is not None and extras.insurance_usd > 0:
        cost += max(Decimal("1.00"), _money(extras.insurance_usd / 100))
    if extras.signature:
        cost += SIGNATURE_FEE
    return cost


async def _chain(session: AsyncSession, object_id: str, *keys: str) -> list[Any]:
    """The object and those it names by `keys`, in one statement (None: not found)."""
    chain = [aliased(SandboxObject) for _ in range(len(keys) + 1)]
    query = select(*chain).where(chain[0].object_id == object_id)
    for child, parent, key in zip(chain, chain[1:], keys, strict=False):
        query = query.outerjoin(parent, parent.object_id == child.data[key].astext)
    return list((await session.execute(query)).one_or_none() or [None] * len(chain))


def _label_services(extra: dict[str, Any]) -> list[str]:
    services = []
    if extra.get("insurance"):
        services.append(f"INSURED ${extra['insurance']['amount']}")
    if extra.get("signature_confirmation"):
        services.append("SIGNATURE REQUIRED")
    return services


def _transaction(transaction_id: str, data: dict[str, Any]) -> LabelTransaction:
    return LabelTransaction(
        transaction_id=transaction_id,
        status=TransactionStatus(data["status"]),
        rate_id=data["rate"],
        metadata=data.get("metadata"),
        tracking_number=data.get("tracking_number"),
        label_url=data.get("label_url"),
    )
