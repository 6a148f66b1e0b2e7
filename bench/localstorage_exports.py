"""Browser-storage exports to import: one JSON file per browser (docs/localstorage-export.md).

    .venv/bin/python -m bench.localstorage_exports DIR [--files 1000] [--orders 100]

writes DIR/export-00000.json ... with `--orders` orders each (100,000 in all by default),
for timing `refit import-localstorage DIR/*.json` by hand. The tests build theirs with
`make_export`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from solders.pubkey import Pubkey

STATUSES = ("pending", "label_created", "in_transit", "delivered", "paid", "cancelled")


def wallet(seed: str) -> str:
    """A valid base58 public key, the same for the same seed."""
    return str(Pubkey(hashlib.sha256(seed.encode()).digest()))


def _tracking_number(key: str) -> str:
    return "9400" + str(int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)).zfill(18)


def make_export(seed: str, orders: int, *, addresses: int = 2) -> dict[str, Any]:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    doc: dict[str, Any] = {
        "format": "refit-localstorage-export",
        "version": 1,
        "exported_at": "2026-11-20T12:00:00Z",
        "wallet_address": wallet(seed),
        "addresses": [
            {
                "id": f"addr-{seed}-{a}",
                "name": f"Seller {seed}",
                "street1": f"{100 + a} Congress Ave",
                "city": "Austin",
                "state": "TX",
                "zip": "78701",
                "is_default": a == 0,
            }
            for a in range(addresses)
        ],
        "orders": [],
    }
    for n in range(orders):
        created = start + dt.timedelta(minutes=n)
        status = STATUSES[n % len(STATUSES)]
        order: dict[str, Any] = {
            "id": f"ord-{seed}-{n}",
            "order_number": f"RF-{n:06d}",
            "status": status,
            "device": {
                "brand": "Apple",
                "model": "iPhone 13",
                "storage": "128GB",
                "category": "phone",
                "condition": "good",
            },
            "quote": {"price_usd": "312.50", "price_sol": "2.0833", "sol_usd_rate": "150.00"},
            "created_at": created.isoformat(),
            "updated_at": (created + dt.timedelta(days=2)).isoformat(),
            "history": [{"status": "pending", "at": created.isoformat()}],
        }
        if addresses:
            order["address_id"] = f"addr-{seed}-{n % addresses}"
        if status not in ("pending", "cancelled"):
            order["label"] = {
                "carrier": "USPS",
                "service": "Priority Mail",
                "tracking_number": _tracking_number(f"{seed}:{n}"),
                "label_url": f"https://labels.example/{seed}/{n}.pdf",
                "cost_usd": "8.45",
                "purchased_at": (created + dt.timedelta(hours=1)).isoformat(),
            }
        doc["orders"].append(order)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=100, help="orders per file")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    for i in range(args.files):
        path = args.dir / f"export-{i:05d}.json"
        path.write_text(json.dumps(make_export(f"bench{i}", args.orders)))
    print(f"wrote {args.files} files, {args.files * args.orders} orders, to {args.dir}")


if __name__ == "__main__":
    main()
