"""The operator's import, in process: the example export twice (the same rows), a broken file
refused whole with every problem by its place, orders kept as history (status `imported`,
the browser's status shown), what an export alone asserts dropped."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal

from bench.localstorage_exports import make_export, wallet
from refit.localstorage.cli import run_import
from refit.localstorage.validation import check_export
from tests.localstorage.helpers import EXAMPLE, count, example, snapshot

WALLET = example()["wallet_address"]


def _checked(*docs: dict, names: tuple[str, ...] = ()) -> list:
    return [
        check_export(json.dumps(doc), source=names[i] if names else f"export-{i}.json")
        for i, doc in enumerate(docs)
    ]


async def test_example_imported_twice_gives_the_same_rows_and_counts(settings, resources):
    first = await run_import(settings, [check_export(EXAMPLE.read_bytes(), EXAMPLE.name)])
    assert first.failed is None
    s = first.summary
    assert (s.users_created, s.addresses_created, s.orders_created) == (1, 2, 4)
    assert (s.addresses_skipped, s.orders_skipped, s.refused) == (0, 0, 0)
    rows = await snapshot(resources)

    again = await run_import(settings, [check_export(EXAMPLE.read_bytes(), EXAMPLE.name)])
    s = again.summary
    assert (s.users_created, s.addresses_created, s.orders_created) == (0, 0, 0)
    assert (s.addresses_skipped, s.orders_skipped) == (2, 4)
    assert await snapshot(resources) == rows

    assert len(rows["users"]) == 1 and rows["users"][0]["wallet_address"] == WALLET
    assert len(rows["addresses"]) == 2 and len(rows["orders"]) == 4
    assert len(rows["history"]) == 4 and len(rows["claims"]) == 6


async def test_orders_keep_their_data_history_and_get_numbers_from_the_database(
    settings, resources
):
    await run_import(settings, [check_export(EXAMPLE.read_bytes(), EXAMPLE.name)])
    rows = await snapshot(resources)
    by_number = {}
    for claim in rows["claims"]:
        if claim["kind"] == "order":
            order = next(o for o in rows["orders"] if o["id"] == claim["record_id"])
            by_number[claim["browser_id"][-2:]] = order
    pending, shipped, paid, cancelled = (by_number[k] for k in ("01", "02", "03", "04"))

    assert {o["status"] for o in rows["orders"]} == {"imported"}
    assert [o["imported_status"] for o in (pending, shipped, paid, cancelled)] == [
        "pending",
        "shipped",
        "completed",
        "cancelled",
    ]
    assert all(o["order_number"].startswith("ORD-") for o in rows["orders"])
    assert len({o["order_number"] for o in rows["orders"]}) == 4
    assert pending["quoted_price_usd"] == Decimal("612.00")
    assert pending["quoted_price_lamports"] == 4_080_000_000
    assert pending["created_at"] == dt.datetime(2026, 11, 18, 10, 2, 30, tzinfo=dt.UTC)
    assert pending["device_details"] == {"color": "Natural Titanium", "battery_health": 91}
    assert pending["shipping_address_id"] is not None
    # Never taken from an export: the tracking number, the label's URL, the signature.
    assert shipped["tracking_number"] is None and shipped["label_url"] is None
    assert shipped["shipping_carrier"] == "USPS"
    assert shipped["shipped_at"] == dt.datetime(2026, 11, 2, 16, 45, tzinfo=dt.UTC)
    assert cancelled["cancelled_at"] == dt.datetime(2026, 4, 11, 8, tzinfo=dt.UTC)
    assert paid["payment_tx_signature"] is None

    entry = next(h for h in rows["history"] if h["order_id"] == shipped["id"])
    assert entry["from_status"] is None and entry["status"] == "imported"
    assert entry["notes"] == "imported" and entry["actor"] == "system:import-localstorage"
    # The newest of the browser's own history: when it entered its status.
    assert entry["created_at"] == dt.datetime(2026, 11, 2, 16, 45, tzinfo=dt.UTC)
    meta = entry["metadata"]
    assert meta["kind"] == "imported" and meta["browser_status"] == "in_transit"
    assert meta["browser_order_number"] == "RF-0977"
    assert [h["status"] for h in meta["browser_record"]["history"]] == [
        "pending",
        "label_created",
        "in_transit",
    ]
    # Of the label, what the seller saw of it; nothing that names a parcel or a transaction.
    assert set(meta["browser_record"]["label"]) <= {
        "carrier",
        "service",
        "cost_usd",
        "purchased_at",
    }
    assert "9400111899223344556677" not in json.dumps(meta)
    defaults = [a for a in rows["addresses"] if a["is_default"]]
    assert len(defaults) == 1 and defaults[0]["street1"] == "500 Congress Ave"


async def test_a_broken_file_is_refused_whole_with_every_problem_by_its_place(settings, resources):
    broken = example(wallet_address=wallet("broken"))
    broken["addresses"][1]["state"] = "ZZ"
    broken["orders"][0]["quote"]["price_usd"] = "612.005"
    broken["orders"][1]["status"] = "lost_in_space"
    broken["orders"][2]["status"] = "processing"
    broken["orders"][3]["address_id"] = "no-such-address"
    broken["orders"][3]["created_at"] = "2026-04-10T19:20:00"
    good = example()
    checked = _checked(good, broken, names=("good.json", "broken.json"))

    problems = [(p.place, p.message) for p in checked[1].problems]
    assert [place for place, _ in problems] == [
        "addresses[1]",
        "orders[0].quote.price_usd",
        "orders[1].status",
        "orders[2].status",
        "orders[3].address_id",
        "orders[3].created_at",
    ]
    assert "state must be a 2-letter US state code" in problems[0][1]
    assert "unknown status 'lost_in_space'" in problems[2][1]
    assert "unknown status 'processing'" in problems[3][1]
    assert checked[1].document is None and checked[0].problems == []

    outcome = await run_import(settings, checked)
    assert (outcome.summary.orders_created, outcome.summary.users_created) == (4, 1)
    assert (
        await count(
            resources, "SELECT count(*) FROM users WHERE wallet_address = :w", w=wallet("broken")
        )
        == 0
    )
    assert await count(resources, "SELECT count(*) FROM orders") == 4


def test_ids_of_the_wrong_type_are_problems_of_their_own_field():
    """Found by schemathesis: a reference or id that is an object or a list, not a string,
    is reported where it stands (it crashed the cross-checks before)."""
    odd = example()
    odd["addresses"][0]["id"] = []
    odd["orders"][0]["address_id"] = {}
    odd["orders"][1]["id"] = {"a": 1}
    checked = check_export(json.dumps(odd).encode(), source="odd.json")
    assert checked.document is None
    assert [p.place for p in checked.problems] == [
        "addresses[0].id",
        "orders[0].address_id",
        "orders[1].id",
    ]


async def test_a_document_larger_than_a_batch_is_split_and_finds_its_addresses(settings, resources):
    doc = make_export("split", 25, addresses=3)
    outcome = await run_import(settings, _checked(doc), batch_size=10)
    # 28 records in batches of 10.
    assert outcome.summary.batches == 3
    assert outcome.summary.orders_created == 25 and outcome.summary.addresses_created == 3
    assert (
        await count(resources, "SELECT count(*) FROM orders WHERE shipping_address_id IS NULL") == 0
    )
    assert await count(resources, "SELECT count(*) FROM order_status_history") == 25


async def test_two_imports_of_the_same_files_at_once_write_each_record_once(settings, resources):
    docs = [make_export(f"race{i}", 200) for i in range(3)]
    outcomes = await asyncio.gather(
        run_import(settings, _checked(*docs), batch_size=150),
        run_import(settings, _checked(*docs), batch_size=150),
    )
    assert all(o.failed is None for o in outcomes)
    assert sum(o.summary.orders_created for o in outcomes) == 600
    assert sum(o.summary.orders_skipped for o in outcomes) == 600
    assert await count(resources, "SELECT count(*) FROM orders") == 600
    assert await count(resources, "SELECT count(*) FROM order_status_history") == 600
    assert await count(resources, "SELECT count(*) FROM shipping_addresses WHERE is_default") == 3
