"""The inspection form never loses work: a refused verdict changes nothing and comes back (422,
HTML) with every value as typed, each problem by its field, and the photos held by id; the
checklist is explicit (nothing pre-chosen) and per device category; the order page reads it
as labelled rows."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import func, select, update

from refit.models import Order, OrderStatusHistory
from refit.models.inspection import EvidencePhoto, Inspection
from tests.dashboard.helpers import signed_in_operator
from tests.inspection.helpers import BAD_IMEI, IMEI, inspecting_order, jpeg_with_gps, operator
from tests.payouts.conftest import order_row


async def _counts(resources, order_id: str) -> tuple[int, int, int]:
    """History rows, inspections and evidence photos of the order."""
    oid = uuid.UUID(order_id)
    async with resources.sessionmaker() as session:
        return (
            await session.scalar(select(func.count()).where(OrderStatusHistory.order_id == oid)),
            await session.scalar(select(func.count()).where(Inspection.order_id == oid)),
            await session.scalar(select(func.count()).where(EvidencePhoto.order_id == oid)),
        )  # type: ignore[return-value]


def _checked(html: str, input_id: str) -> bool:
    tag = re.search(rf'<input[^>]*\bid="{re.escape(input_id)}"[^>]*>', html)
    assert tag, f"no input {input_id}"
    return re.search(r"\schecked\b", tag.group(0)) is not None


def _input(html: str, input_id: str) -> str:
    tag = re.search(rf'<(?:input|select|textarea)[^>]*\bid="{re.escape(input_id)}"[^>]*>', html)
    assert tag, f"no field {input_id}"
    return tag.group(0)


def _error(html: str, name: str) -> str:
    found = re.search(rf'<p class="field-error" id="{name}-error"( hidden)?>([^<]*)</p>', html)
    assert found, f"no problem slot for {name}"
    return "" if found.group(1) else found.group(2)


def _form(csrf: str, **changes: str) -> dict[str, str]:
    return {
        "csrf": csrf,
        "grade": "good",
        "storage": "256GB",
        "imei": IMEI,
        "powers_on": "yes",
        "activation_lock_off": "yes",
        "screen": "scratched",
        "battery_health_pct": "88",
        "item.cameras_work": "no",
        "item.touch_works": "yes",
        "notes": "Scuff on the corner & a <b>dent</b>",
        **changes,
    }


async def test_the_form_starts_with_nothing_chosen_and_a_phones_checks(
    client, resources, make_user
):
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    await signed_in_operator(resources, client, "inspector")
    html = (await client.get(f"/admin/orders/{order_id}/inspect")).text
    for group in ("powers_on", "activation_lock_off", "item-cameras_work", "item-touch_works"):
        assert _checked(html, f"{group}-not_checked"), group
        assert not _checked(html, f"{group}-yes") and not _checked(html, f"{group}-no")
    assert not any(_checked(html, f"grade-{g}") for g in ("flawless", "good", "fair"))
    assert re.search(r'<option value="" selected>', html), "the screen is not pre-chosen"
    # The catalog's definitions beside the grades, each tied to its radio.
    assert 'aria-describedby="grade-flawless-definition grade-error"' in html
    assert "Looks new. No scratches" in html
    # A phone's checks, not a laptop's.
    assert "Takes a SIM and finds a network" in html
    assert "keyboard" not in html.lower()

    # The same order as a laptop gets a laptop's checks.
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order).where(Order.id == uuid.UUID(order_id)).values(device_category="laptop")
        )
    html = (await client.get(f"/admin/orders/{order_id}/inspect")).text
    assert "Every key of the keyboard works" in html and "SIM" not in html


async def test_a_refused_verdict_changes_nothing_and_comes_back_as_typed(
    client, resources, make_user
):
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    _, csrf = await signed_in_operator(resources, client, "inspector")
    before = await _counts(resources, order_id)

    refused = await client.post(
        f"/admin/orders/{order_id}/inspect",
        data=_form(csrf, imei=BAD_IMEI),
        files=[("photos", ("front.jpg", jpeg_with_gps(), "image/jpeg"))],
    )
    assert refused.status_code == 422, refused.text
    assert "text/html" in refused.headers["content-type"]
    html = refused.text
    # Nothing changed: no move, no inspection, no photo row.
    assert await _counts(resources, order_id) == before
    assert (await order_row(resources, order_id)).status == "inspecting"
    # The problem by its field, the field marked and focused.
    assert "check digit" in _error(html, "imei")
    imei = _input(html, "imei")
    assert f'value="{BAD_IMEI}"' in imei
    assert 'aria-invalid="true"' in imei and "autofocus" in imei
    assert 'aria-describedby="imei-error"' in imei
    assert _error(html, "grade") == "" and _error(html, "notes") == ""
    # Every other value as typed.
    assert _checked(html, "grade-good")
    assert _checked(html, "powers_on-yes") and _checked(html, "activation_lock_off-yes")
    assert _checked(html, "item-cameras_work-no") and _checked(html, "item-touch_works-yes")
    assert _checked(html, "item-buttons_work-not_checked")
    assert '<option value="scratched" selected>' in html
    assert 'value="88"' in _input(html, "battery_health_pct")
    assert ">Scuff on the corner &amp; a &lt;b&gt;dent&lt;/b&gt;</textarea>" in html
    # The photo is held: shown, and named by a hidden input, never picked again.
    held = re.findall(r'name="held_photos" value="([^"]+)"', html)
    assert len(held) == 1
    thumb = await client.get(f"/admin/orders/{order_id}/held-photos/{held[0]}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert b"SpyCam" not in thumb.content, "held photos are the cleaned ones"

    # Fixed: the verdict is given with the held photo, recorded now.
    given = await client.post(
        f"/admin/orders/{order_id}/inspect", data={**_form(csrf), "held_photos": held[0]}
    )
    assert given.status_code == 303, given.text
    async with resources.sessionmaker() as session:
        inspection = await session.scalar(
            select(Inspection).where(Inspection.order_id == uuid.UUID(order_id))
        )
        photos = (
            await session.scalars(
                select(EvidencePhoto).where(EvidencePhoto.order_id == uuid.UUID(order_id))
            )
        ).all()
    assert inspection is not None and inspection.outcome.value == "as_quoted"
    assert inspection.imei == IMEI and inspection.notes.startswith("Scuff")
    assert inspection.checklist["screen"] == "scratched"
    assert inspection.checklist["battery_health_pct"] == 88
    assert inspection.checklist["items"]["cameras_work"] == "no"
    assert inspection.checklist["items"]["buttons_work"] == "not_checked"
    assert [f"{p.id}.jpg" for p in photos] == held

    # The order page reads the checklist as labelled rows, not Python.
    page = (await client.get(given.headers["location"])).text
    rows = re.search(r'<dl class="checklist" id="checklist-rows">(.*?)</dl>', page, re.S)
    assert rows
    assert "<dt>Powers on</dt><dd>Yes</dd>" in rows.group(1)
    assert "<dt>Cameras work (front and back)</dt><dd>No</dd>" in rows.group(1)
    assert "<dt>Buttons and switches work</dt><dd>Not checked</dd>" in rows.group(1)
    assert "<dt>Battery health</dt><dd>88%</dd>" in rows.group(1)
    assert "True" not in rows.group(1) and "powers_on" not in rows.group(1)


async def test_every_problem_of_an_empty_submit_is_shown_by_its_field(client, resources, make_user):
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    _, csrf = await signed_in_operator(resources, client, "inspector")
    before = await _counts(resources, order_id)
    refused = await client.post(f"/admin/orders/{order_id}/inspect", data={"csrf": csrf})
    assert refused.status_code == 422, refused.text
    html = refused.text
    assert "Choose the grade" in _error(html, "grade")
    assert "powers on" in _error(html, "powers_on")
    assert "activation lock" in _error(html, "activation_lock_off")
    assert "screen" in _error(html, "screen")
    assert "IMEI or its serial" in _error(html, "imei")
    # The first of them (the grade) has the focus; the summary links to each.
    assert "autofocus" in _input(html, "grade-flawless")
    assert 'href="#grade-group"' in html and 'href="#imei"' in html
    assert await _counts(resources, order_id) == before


async def test_what_the_verdict_refuses_comes_back_by_its_field(client, resources, make_user):
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    _, csrf = await signed_in_operator(resources, client, "admin")
    before = await _counts(resources, order_id)
    # The verdict (not the form) refuses an override without its reason.
    refused = await client.post(
        f"/admin/orders/{order_id}/inspect",
        data=_form(csrf, override_price_usd="300"),
        files=[("photos", ("a.jpg", jpeg_with_gps(), "image/jpeg"))],
    )
    assert refused.status_code == 422, refused.text
    assert "override_reason" in _error(refused.text, "override_reason")
    assert 'value="300"' in _input(refused.text, "override_price_usd")
    assert _checked(refused.text, "grade-good")
    assert len(re.findall(r'name="held_photos"', refused.text)) == 1
    assert await _counts(resources, order_id) == before

    # A held photo's name the server did not give brings nothing back.
    forged = await client.post(
        f"/admin/orders/{order_id}/inspect",
        data={**_form(csrf), "held_photos": f"{uuid.uuid4()}.jpg"},
    )
    assert forged.status_code == 422
    assert "no longer there" in _error(forged.text, "photos")
    assert await _counts(resources, order_id) == before
    missing = await client.get(f"/admin/orders/{order_id}/held-photos/{uuid.uuid4()}.jpg")
    assert missing.status_code == 404
    assert (await client.get(f"/admin/orders/{order_id}/held-photos/x.svg")).status_code == 404


async def test_the_api_takes_the_categorys_items_only(client, resources, make_user):
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    base = {
        "grade": "good",
        "imei": IMEI,
        "notes": "",
        "checklist": {"powers_on": True, "activation_lock_off": True, "screen": "ok"},
    }
    url = f"/api/admin/orders/{order_id}/inspect"
    unknown = {**base, "checklist": {**base["checklist"], "items": {"flux_capacitor": "yes"}}}
    response = await client.post(url, json=unknown, headers=inspector.headers)
    assert response.status_code == 422
    laptop = {**base, "checklist": {**base["checklist"], "items": {"keyboard_works": "yes"}}}
    response = await client.post(url, json=laptop, headers=inspector.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "checklist_item_not_for_device"
    phone = {**base, "checklist": {**base["checklist"], "items": {"cameras_work": "no"}}}
    response = await client.post(url, json=phone, headers=inspector.headers)
    assert response.status_code == 200, response.text
    assert response.json()["inspection"]["checklist"]["items"] == {"cameras_work": "no"}
