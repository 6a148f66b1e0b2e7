"""Done-when 5 (the queue half): the queue pages through 1,000 orders by keyset, each seen
once and in order; each work filter holds exactly the orders it names; claiming an order is
one operator's at a time, refused politely to another unless taken over, and audited."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import uuid

from sqlalchemy import select, text

from refit.app import create_app
from refit.dashboard.queue_reads import PAGE_SIZE
from refit.dashboard.work import Work
from refit.models import OperatorAudit
from refit.resources import Resources
from tests.admin.helpers import make_operator
from tests.dashboard.helpers import signed_in_operator
from tests.inspection.helpers import shipped_order

CARD = re.compile(r'data-order="([0-9a-f-]{36})"')
NEXT = re.compile(r'href="(/admin/\?[^"]*after=[^"]+)" rel="next"')
RAW = ("awaiting_shipment", "offer_pending", "processing_shipment", "as_quoted")


async def _sql(resources: Resources, sql: str, **params: object) -> list:
    async with resources.sessionmaker() as session, session.begin():
        result = await session.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []


async def test_the_queue_pages_through_a_thousand_orders_each_once_in_order(
    client, resources, make_user
):
    seller = await make_user()
    # Three orders share each instant: the id breaks the tie, and no page boundary loses one.
    await _sql(
        resources,
        "INSERT INTO orders (user_id, status, device_brand, device_model, device_condition, "
        "quoted_price_usd, quoted_price_sol, status_changed_at) "
        "SELECT :user, 'shipped', 'Apple', 'iPhone ' || n, 'good', 100, 1, "
        "now() - interval '1 hour' + (n / 3) * interval '1 second' "
        "FROM generate_series(1, 1000) AS n",
        user=seller.user.id,
    )
    expected = [
        str(r[0])
        for r in await _sql(
            resources,
            "SELECT id FROM orders WHERE status = 'shipped' ORDER BY status_changed_at, id",
        )
    ]
    assert len(expected) == 1000
    await signed_in_operator(resources, client, "inspector")

    seen: list[str] = []
    url: str | None = "/admin/?work=to_receive"
    pages = 0
    while url is not None:
        response = await client.get(url.replace("&amp;", "&"))
        assert response.status_code == 200, response.text[:300]
        cards = CARD.findall(response.text)
        assert len(cards) <= PAGE_SIZE
        seen += cards
        pages += 1
        found = NEXT.search(response.text)
        url = found.group(1) if found else None
        assert pages <= 1000 // PAGE_SIZE + 1, "the pager goes round in circles"
    assert seen == expected  # every order once, longest waiting first
    assert pages == 1000 // PAGE_SIZE
    # The counts say the same; a damaged cursor is a page saying so, never a 500.
    first = (await client.get("/admin/")).text
    assert re.search(r'data-work="to_receive">To receive <span class="count">1000</span>', first)
    damaged = await client.get("/admin/", params={"after": "yesterday~nobody"})
    assert damaged.status_code == 422 and "damaged" in damaged.text


async def _seed(resources: Resources, make_user, admin_id: uuid.UUID) -> dict[str, str]:
    """One order per situation the floor meets; its device_model names it. `admin_id` has
    claimed two of them."""
    seller = await make_user()
    inspector = await make_operator(resources, "inspector")
    cap = resources.settings.payout_max_usd
    over = cap + 100
    ids: dict[str, str] = {}

    async def order(name: str, status: str, **cols: object) -> str:
        columns = {
            "user_id": seller.user.id,
            "status": status,
            "device_brand": "Apple",
            "device_model": name,
            "device_condition": "good",
            "quoted_price_usd": 442,
            "quoted_price_sol": 3,
            **cols,
        }
        if status == "imported":
            columns["imported_status"] = "completed"
        names = ", ".join(columns)
        values = ", ".join(f":{c}" for c in columns)
        row = await _sql(
            resources, f"INSERT INTO orders ({names}) VALUES ({values}) RETURNING id", **columns
        )
        ids[name] = str(row[0][0])
        return ids[name]

    async def verdict(order_id: str, price: object) -> None:
        await _sql(
            resources,
            "INSERT INTO inspections (order_id, operator_id, grade, imei, checklist, "
            "final_price_usd, outcome) VALUES (:o, :op, 'good', '490154203237518', '{}', "
            ":p, 'as_quoted')",
            o=order_id,
            op=inspector.id,
            p=price,
        )

    async def payout(order_id: str, status: str, amount: object, hold: str | None = None):
        await _sql(
            resources,
            "INSERT INTO payouts (order_id, status, amount_usd, recipient, treasury, "
            "reference, requested_by, hold_reason) VALUES (:o, :s, :a, 'r', 't', :ref, "
            "'operator:x', :h)",
            o=order_id,
            s=status,
            a=amount,
            ref=uuid.uuid4().hex,
            h=hold,
        )

    async def inspected(name: str, price: object = 442, **cols: object) -> str:
        found = await order(name, "inspecting", final_price_usd=price, **cols)
        await verdict(found, price)
        return found

    await order("pending", "pending")
    await order("awaiting", "awaiting_shipment")
    scanned = await order("awaiting_scanned", "awaiting_shipment")
    await _sql(
        resources,
        "INSERT INTO shipping_events (order_id, leg, event_type, status, occurred_at) "
        "VALUES (:o, 'inbound', 'track_updated', 'TRANSIT', now())",
        o=scanned,
    )
    await order("shipped", "shipped")
    await order("received", "received")
    await order("inspecting", "inspecting")
    await inspected("inspected")
    await payout(await inspected("paying"), "pending", 442)
    await payout(await inspected("payout_cancelled"), "cancelled", 442)
    await payout(await inspected("over_cap", over), "awaiting_approval", over)
    await payout(await inspected("failed_small"), "failed", 442)
    await payout(await inspected("failed_big", over), "failed", over)
    await payout(await inspected("held_sanctions"), "held", 442, "sanctions")
    await payout(await inspected("held_on_chain"), "held", 442, "already_on_chain")
    await order("offer", "offer_pending", final_price_usd=300)
    await order("offer_accepted", "offer_pending", final_price_usd=300, offer_accepted_at=_now())
    await order("returning", "returning")
    gone = await order("returning_handed_over", "returning")
    await _sql(
        resources,
        "INSERT INTO shipping_returns (order_id, status, handed_over_at, handed_over_by) "
        "VALUES (:o, 'purchased', now(), 'operator:x')",
        o=gone,
    )
    await order("completed", "completed")
    await order("cancelled_flagged", "cancelled", attention_reason="scanned", attention_at=_now())
    await order("shipped_flagged", "shipped", attention_reason="elsewhere", attention_at=_now())
    claim = {"claimed_by": admin_id, "claimed_at": _now()}
    await order("mine", "received", **claim)
    await order("mine_done", "completed", **claim)
    await order("imported", "imported")
    return ids


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


EXPECTED = {
    Work.TO_RECEIVE: {"awaiting_scanned", "shipped", "shipped_flagged"},
    Work.TO_INSPECT: {"received", "inspecting", "mine"},
    Work.WAITING_SELLER: {"offer"},
    Work.TO_PAY: {"inspected", "payout_cancelled", "offer_accepted"},
    Work.SECOND_ADMIN: {"over_cap", "failed_big", "held_sanctions"},
    Work.PAYOUT_STOPPED: {"failed_small", "failed_big", "held_sanctions", "held_on_chain"},
    Work.RETURNS: {"returning"},
    Work.ATTENTION: {"cancelled_flagged", "shipped_flagged"},
    Work.MINE: {"mine"},
}
# Nobody at the warehouse can act on these: never in the open work.
NOBODYS = {
    "pending",
    "awaiting",
    "paying",
    "offer",
    "returning_handed_over",  # the carrier has it: its delivery ends the order
    "completed",
    "mine_done",
    "imported",
}


async def test_each_filter_holds_exactly_what_it_says(client, resources, make_user):
    admin, _ = await signed_in_operator(resources, client, "admin")
    ids = await _seed(resources, make_user, admin.id)
    names = {order_id: name for name, order_id in ids.items()}
    http = client
    for work, wanted in EXPECTED.items():
        page = (await http.get("/admin/", params={"work": work.value})).text
        shown = {names[i] for i in CARD.findall(page)}
        assert shown == wanted, work
        assert f'data-work="{work.value}">' in page
        assert re.search(rf'data-work="{work.value}">[^<]*<span class="count">{len(wanted)}<', page)
    union = set().union(
        *(v for k, v in EXPECTED.items() if k not in (Work.WAITING_SELLER, Work.MINE))
    )
    open_work = {names[i] for i in CARD.findall((await http.get("/admin/")).text)}
    assert open_work == union
    assert not open_work & NOBODYS
    assert set(ids) == union | NOBODYS | {"offer"}
    # Human words for each state, never a raw code.
    page = (await http.get("/admin/", params={"work": "second_admin"})).text
    assert "Waiting for a second admin" in page
    everything = (await http.get("/admin/", params={"q": "ORD-"})).text
    assert "Inspected: ready to pay" in everything and "Offer sent: seller to answer" in everything
    for raw in RAW:
        assert f">{raw}<" not in everything and f"> {raw}" not in everything


async def test_an_order_is_claimed_by_one_operator_and_taken_over_only_on_purpose(
    client, open_client, resources, make_user
):
    order_id = await shipped_order(client, resources, await make_user())
    app = create_app(resources.settings, resources=resources)
    async with app.router.lifespan_context(app), contextlib.AsyncExitStack() as stack:
        signed = []
        for _ in range(5):
            http = await stack.enter_async_context(open_client(app))
            operator, csrf = await signed_in_operator(resources, http, "inspector")
            signed.append((http, operator, csrf))
        # Five inspectors tap "Claim" at once: one has it, the others are told who does.
        answers = await asyncio.gather(
            *(
                http.post(f"/admin/orders/{order_id}/claim", data={"csrf": csrf})
                for http, _, csrf in signed
            )
        )
        places = sorted(a.headers["location"].rsplit("=", 1)[1] for a in answers)
        assert places == ["claim_refused"] * 4 + ["claimed"]
        winner = next(
            i for i, a in enumerate(answers) if a.headers["location"].endswith("=claimed")
        )
        holder_http, holder, _ = signed[winner]
        other_http, other, other_csrf = signed[(winner + 1) % 5]
        page = (await other_http.get(f"/admin/orders/{order_id}?done=claim_refused")).text
        assert "Someone else is working on this order" in page
        assert f"by {holder.username} since" in page and "Take over from" in page
        mine = (await holder_http.get("/admin/", params={"work": "mine"})).text
        assert CARD.findall(mine) == [order_id]
        assert CARD.findall((await other_http.get("/admin/?work=mine")).text) == []
        # Letting go is the holder's; another takes it over, on purpose.
        refused = await other_http.post(
            f"/admin/orders/{order_id}/unclaim", data={"csrf": other_csrf}
        )
        assert refused.status_code == 409 and holder.username in refused.text
        taken = await other_http.post(
            f"/admin/orders/{order_id}/claim", data={"csrf": other_csrf, "take_over": "true"}
        )
        assert taken.headers["location"].endswith("done=taken_over")
        assert CARD.findall((await other_http.get("/admin/?work=mine")).text) == [order_id]
        gone = await other_http.post(f"/admin/orders/{order_id}/unclaim", data={"csrf": other_csrf})
        assert gone.headers["location"].endswith("done=unclaimed")
    async with resources.sessionmaker() as session:
        trail = (
            await session.execute(
                select(OperatorAudit.actor, OperatorAudit.action, OperatorAudit.detail)
                .where(OperatorAudit.subject == f"order:{order_id}")
                .order_by(OperatorAudit.at, OperatorAudit.id)
            )
        ).all()
    assert [(a, act) for a, act, _ in trail] == [
        (holder_actor := f"operator:{holder.id}", "order.claim"),
        (f"operator:{other.id}", "order.take_over"),
        (f"operator:{other.id}", "order.unclaim"),
    ]
    assert trail[1][2] == {"from": holder_actor}
    row = (
        await _sql(resources, "SELECT claimed_by, claimed_at FROM orders WHERE id = :i", i=order_id)
    )[0]
    assert tuple(row) == (None, None)
