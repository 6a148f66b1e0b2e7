"""Done-when 4 of issue 21: input nothing behind us can hold is a 4xx, never a 500.

Text PostgreSQL cannot store (a NUL, a lone UTF-16 surrogate) is `400 invalid_data` and JSON
nested deeper than refit.inputs.MAX_JSON_DEPTH is `400 json_too_deep`, on every surface. "Every"
comes from the app itself: the operations of its OpenAPI document (a body per string field,
built from the schema), every write route it serves, and the forms its dashboard renders for a
signed-in admin. The suite's 500 guard (tests/conftest.py) fails any 500 on the way.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from refit.inputs import MAX_JSON_DEPTH, json_problem, refuse_unstorable_input
from refit.models import Order, OrderStatus
from refit.settings import DEV_WEBHOOK_TOKEN
from tests.admin.helpers import operator_headers
from tests.dashboard.helpers import csrf_of, signed_in_operator
from tests.inspection.helpers import inspecting_order, jpeg_with_gps, operator, verdict
from tests.inspection.helpers import shipped_order as awaiting_order
from tests.routes import api_routes
from tests.security import hostile

PROBLEM = "application/problem+json"
NUL = "nul\u0000here"
SURROGATE = "lone\ud800surrogate"
# Far past the limit, and past Python's recursion limit: what made the 500s.
DEEP_OBJECT = '{"a":' * 20_000 + "1" + "}" * 20_000
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _dumps(body: Any) -> bytes:
    # ensure_ascii: a lone surrogate goes out as its \ud800 escape (it has no UTF-8 bytes).
    return json.dumps(body, ensure_ascii=True).encode()


def _refused(response: httpx.Response, code: str, where: object) -> None:
    assert response.status_code == 400, (where, response.status_code, response.text[:300])
    assert response.headers["content-type"] == PROBLEM, where
    assert response.json()["code"] == code, (where, response.text[:300])


@pytest.fixture
async def door(make_user, resources) -> Any:
    """The URL and headers that get a request past its route's door to where its body is read:
    an admin's token under /api/admin, the webhook's token, else a seller's. A new seller for
    each request, so the per-seller limits never answer first."""
    admin = await operator_headers(resources, "admin")

    async def open_(path: str) -> tuple[str, dict[str, str]]:
        if path.startswith("/api/admin"):
            headers = admin
        else:
            headers = (await make_user()).headers
        if path.startswith("/api/webhooks/"):
            path += f"?token={DEV_WEBHOOK_TOKEN}"
        return path, {**headers, "Content-Type": "application/json"}

    return open_


async def _document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


async def test_every_route_of_both_apps_checks_its_text_first(client):
    app = client._transport.app  # type: ignore[attr-defined]
    dashboard = hostile.mounted(app, "/admin")
    routes = [*api_routes(app), *api_routes(dashboard)]
    assert len(routes) > 60
    unguarded = [
        (method, path)
        for method, path, dependant in routes
        if path not in _DOCS
        and (
            not dependant.dependencies
            or dependant.dependencies[0].call is not refuse_unstorable_input
        )
    ]
    assert unguarded == []


# The API's documentation pages, set up before the refusals: they read nothing of the request
# but its path, and store nothing.
_DOCS = {"/docs", "/redoc", "/docs/oauth2-redirect"}


async def test_deep_json_to_every_write_route_is_refused_before_parsing(client, door):
    app = client._transport.app  # type: ignore[attr-defined]
    doc = await _document(client)
    json_bodies = {(m, p) for m, p, op in hostile.operations(doc) if hostile.json_schema(op)}
    # Read raw and parsed by the endpoint itself; Shippo's body is not described in the document.
    json_bodies.add(("POST", "/api/webhooks/shippo"))
    refused = 0
    for method, template, _ in api_routes(app):
        if method not in WRITES:
            continue
        path, headers = await door(hostile.concrete(template))
        response = await client.request(method, path, content=DEEP_OBJECT, headers=headers)
        if (method, template) in json_bodies:
            _refused(response, "json_too_deep", (method, template))
            refused += 1
        else:
            # No JSON body to read (none, or a form): whatever it answers, never a crash.
            assert response.status_code < 500, (method, template, response.text[:300])
    assert refused >= 20
    # Just within the limit is parsed as usual (here: refused by the address's own schema).
    within = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    path, headers = await door("/api/shipping/addresses")
    response = await client.post(path, content=within, headers=headers)
    assert response.status_code == 422 and response.json()["code"] == "validation_error"


async def test_nul_or_a_lone_surrogate_in_every_json_string_field_is_a_400(client, door):
    doc = await _document(client)
    fields = 0
    for method, template, operation in hostile.operations(doc):
        schema = hostile.json_schema(operation)
        if schema is None:
            continue
        body = hostile.example(doc, schema)
        for where in hostile.string_paths(doc, body, schema):
            for bad in (NUL, SURROGATE):
                path, headers = await door(hostile.concrete(template))
                content = _dumps(hostile.with_value(body, where, bad))
                response = await client.request(method, path, content=content, headers=headers)
                _refused(response, "invalid_data", (method, template, where, bad))
            # The same body with clean text is not refused for its text: the NUL was the cause.
            path, headers = await door(hostile.concrete(template))
            content = _dumps(hostile.with_value(body, where, "clean text"))
            response = await client.request(method, path, content=content, headers=headers)
            assert response.status_code < 500, (method, template, where)
            if response.status_code == 400:
                assert response.json()["code"] != "invalid_data", (method, template, where)
            fields += 1
    assert fields >= 40


async def test_nul_in_every_query_and_path_parameter_is_a_400(client, door):
    doc = await _document(client)
    checked = 0
    for method, template, operation in hostile.operations(doc):
        for parameter in operation.get("parameters", []):
            name = parameter["name"]
            if parameter["in"] == "query":
                url = f"{hostile.concrete(template)}?{name}=a%00b"
            elif parameter["in"] == "path":
                url = hostile.concrete(template.replace("{" + name + "}", "a%00b"))
            else:
                continue
            path, headers = await door(url)
            response = await client.request(method, path, headers=headers)
            _refused(response, "invalid_data", (method, template, name))
            checked += 1
    assert checked >= 20


async def test_a_nul_in_a_multipart_field_a_file_name_or_a_header_is_a_400(
    client, door, resources, make_user
):
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    url = f"/api/admin/orders/{order_id}/evidence"
    photo = ("photos", ("back.jpg", jpeg_with_gps(), "image/jpeg"))
    response = await client.post(url, data={"note": NUL}, files=[photo], headers=inspector.headers)
    _refused(response, "invalid_data", "multipart field")
    # httpx escapes a NUL in a file name (%00); a hand-made request need not.
    boundary = "hostile-boundary"
    raw = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="photos"; filename="back\u0000.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg_with_gps()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {**inspector.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await client.post(url, content=raw, headers=headers)
    _refused(response, "invalid_data", "file name")
    path, headers = await door("/api/orders/create")
    response = await client.post(
        path, json={}, headers={**headers, "Idempotency-Key": "key\u0000nul"}
    )
    _refused(response, "invalid_data", "Idempotency-Key")


async def test_raw_readers_refuse_deep_or_unstorable_json_and_forms(client, door, resources):
    """The webhook and the browser export parse their raw bodies themselves, whatever type
    the body claims: deep or unstorable JSON is refused as everywhere, and a body that says
    it is a form (which the guard does not read as JSON) is not taken at all."""
    for path in ("/api/webhooks/shippo", "/api/migrate/localstorage"):
        url, headers = await door(path)
        for claimed in ("application/json", "text/plain", None):
            headers = {k: v for k, v in headers.items() if k != "Content-Type"}
            if claimed:
                headers["Content-Type"] = claimed
            deep = "[" * 5_000 + "]" * 5_000
            response = await client.post(url, content=deep, headers=headers)
            _refused(response, "json_too_deep", (path, claimed))
            nul = b'{"event": "track_updated", "data": {"tracking_number": "94\\u0000"}}'
            response = await client.post(url, content=nul, headers=headers)
            _refused(response, "invalid_data", (path, claimed))
            raw_nul = b'{"event": "track\x00_updated"}'
            response = await client.post(url, content=raw_nul, headers=headers)
            _refused(response, "malformed_json", (path, claimed))
        form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        response = await client.post(url, content=deep, headers=form)
        assert response.status_code == 415, (path, response.text)
        assert response.json()["code"] == "unsupported_media_type"
    async with resources.sessionmaker() as session:
        kept = await session.scalar(text("SELECT count(*) FROM webhook_inbox"))
        imported = await session.scalar(text("SELECT count(*) FROM orders"))
    assert (kept, imported) == (0, 0)


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "Ada \\ud83d\\ude00"}',  # an emoji as an escaped surrogate pair (json.dumps)
        b'{"path": "C:\\\\u0000 is text"}',  # a backslash, then the letters u0000
        b'{"note": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
        b'{"note": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
        b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH,
        b'{"orders": [' + b'{"quote": {"price": "1"}, "tags": []},' * 5000 + b"{}]}",
    ],
)
def test_what_is_storable_and_within_depth_passes(body):
    assert json.loads(body) is not None
    assert json_problem(body) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"a": "\\\\\\u0000"}', "invalid_data"),  # an escaped backslash, then a NUL
        (b'{"a": "\\ud800\\ud800\\udc00"}', "invalid_data"),  # a high one left alone
        (b'{"a": "\\\\ud800\\udc00"}', "invalid_data"),  # text "\\ud800", a lone low half
        (b'{"\\u0000": 1}', "invalid_data"),  # in a key
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "json_too_deep"),
        (b"[" * 20_000, "malformed_json"),  # never closed: json.loads would recurse into it
        ('{"a": 1}'.encode("utf-16"), "malformed_json"),  # json.loads would guess UTF-16
    ],
)
def test_what_is_refused_before_parsing(body, code):
    refused = json_problem(body)
    assert refused is not None and refused.code == code


# --- the dashboard ---------------------------------------------------------------------


async def _orders_in_every_state(client, resources, make_user) -> dict[str, str]:
    """Orders whose pages render each of the dashboard's order forms: receive and cancel
    (awaiting shipment), start inspection (received), the verdict and photos (inspecting),
    pay (inspected as quoted)."""
    inspector = await operator(resources, "inspector")
    orders = {"awaiting": await awaiting_order(client, resources, await make_user())}
    received = await awaiting_order(client, resources, await make_user())
    done = await client.post(f"/api/admin/orders/{received}/receive", headers=inspector.headers)
    assert done.status_code == 200, done.text
    orders["received"] = received
    orders["inspecting"] = await inspecting_order(client, resources, await make_user(), inspector)
    quoted = await inspecting_order(client, resources, await make_user(), inspector)
    done = await client.post(
        f"/api/admin/orders/{quoted}/inspect",
        json=verdict(grade="flawless"),
        headers=inspector.headers,
    )
    assert done.status_code == 200 and done.json()["outcome"] == "as_quoted", done.text
    orders["as_quoted"] = quoted
    return orders


async def _crawl(http: httpx.AsyncClient, starts: list[str], limit: int = 80) -> list[hostile.Form]:
    """The forms of the dashboard's pages reachable by links from `starts` (the first `limit`
    pages found), one per action."""
    seen, queue = set(starts), list(starts)
    forms: dict[tuple[str, str], hostile.Form] = {}
    while queue and len(seen) <= limit:
        response = await http.get(queue.pop(0))
        if response.status_code != 200 or "text/html" not in response.headers["content-type"]:
            continue
        page = hostile.Page(response.text)
        for form in page.forms:
            forms.setdefault((form.method, form.action), form)
        for link in page.links:
            if link not in seen and not link.startswith("/admin/static"):
                seen.add(link)
                queue.append(link)
    return list(forms.values())


def _hostile_fill(form: hostile.Form, csrf: str) -> tuple[dict[str, str], list[Any]]:
    """Every field a NUL-bearing value but the CSRF token (so the request is otherwise one the
    dashboard accepts); a file field gets a real photo. A form with no text field of its own
    gets one more field: a hand-made request may carry anything."""
    data, files = {"csrf": csrf}, []
    for name, kind in form.fields:
        if name == "csrf":
            continue
        if kind == "file":
            files.append((name, ("photo.jpg", jpeg_with_gps(), "image/jpeg")))
        else:
            data[name] = NUL
    if len(data) == 1:
        data["note"] = NUL
    return data, files


async def _submit(http: httpx.AsyncClient, form: hostile.Form, csrf: str) -> httpx.Response:
    data, files = _hostile_fill(form, csrf)
    if form.method == "GET":
        return await http.get(form.action, params=data)
    return await http.post(form.action, data=data, files=files or None)


def _refused_page(response: httpx.Response, where: object) -> None:
    assert response.status_code == 400, (where, response.status_code, response.text[:300])
    assert "text/html" in response.headers["content-type"], where
    assert "invalid_data" in response.text, where


async def test_nul_in_every_dashboard_form_is_a_400_page(client, resources, make_user):
    orders = await _orders_in_every_state(client, resources, make_user)
    # Signed out first: the sign-in form.
    login = hostile.Page((await client.get("/admin/login")).text).forms
    [sign_in] = [f for f in login if f.action == "/admin/login"]
    _refused_page(
        await _submit(client, sign_in, csrf_of((await client.get("/admin/login")).text)), "login"
    )

    _, csrf = await signed_in_operator(resources, client, "admin")
    starts = ["/admin/", *(f"/admin/orders/{order_id}" for order_id in orders.values())]
    forms = await _crawl(client, starts)
    dashboard = hostile.mounted(client._transport.app, "/admin")  # type: ignore[attr-defined]
    writes = sorted(
        {"/admin" + path for method, path, _ in api_routes(dashboard) if method == "POST"}
    )
    reached: set[str] = set()
    for form in forms:
        if form.action.startswith("/admin/logout"):
            continue  # kept for last: it ends the session the others need
        _refused_page(await _submit(client, form, csrf), (form.method, form.action))
        template = hostile.route_of(writes, form.action)
        if form.method == "POST" and template:
            reached.add(template)
    # The reported 500s (the search, the cancel reason, the verdict) and the rest as rendered.
    assert {"/admin/orders/{order_id}/cancel", "/admin/orders/{order_id}/inspect"} <= reached
    assert len(reached) >= 8, reached
    assert any(f.method == "GET" and "q" in f.values for f in forms)
    # A write no page offered in these states (approving a payout over the cap, say) is
    # posted by hand the same way: every POST route of the dashboard is covered.
    for template in sorted(set(writes) - reached - {"/admin/logout", "/admin/login"}):
        url = hostile.concrete(template, orders["inspecting"])
        form = hostile.Form(action=url, method="POST", enctype="")
        _refused_page(await _submit(client, form, csrf), ("by hand", template))
    logout = hostile.Form(action="/admin/logout", method="POST", enctype="")
    _refused_page(await _submit(client, logout, csrf), "logout")

    # Nothing moved: the cancel and the verdict were refused before they ran.
    async with resources.sessionmaker() as session:
        statuses = dict((await session.execute(select(Order.id, Order.status))).all())
    assert statuses[uuid.UUID(orders["awaiting"])] is OrderStatus.AWAITING_SHIPMENT
    assert statuses[uuid.UUID(orders["inspecting"])] is OrderStatus.INSPECTING
