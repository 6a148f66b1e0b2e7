"""/api/admin/flags: admins create and change flags, each change audited (who, when, from
what to what); an inspector is refused before anything is written."""

from __future__ import annotations

from refit.models.flag import FlagMode
from tests.admin.helpers import bearer_for, make_operator, operator_headers
from tests.flags.helpers import audit_rows, flag_rows, put_flag, random_wallet


async def test_an_admin_creates_changes_and_reads_a_flag_with_its_audit(client, resources):
    admin = await make_operator(resources, "admin")
    headers = await operator_headers(resources, "admin")  # a second admin, for the last change
    first = bearer_for(resources, admin)
    wallet = random_wallet()

    created = await put_flag(client, first, "new-checkout", mode="percent", percent=20)
    assert (created["mode"], created["percent"], created["updated_by"]) == (
        "percent",
        20,
        f"operator:{admin.id}",
    )
    await put_flag(client, first, "new-checkout", mode="wallets", wallets=[wallet, wallet])
    # The same body again changes nothing and writes no audit row.
    await put_flag(client, first, "new-checkout", mode="wallets", wallets=[wallet])
    turned_off = await put_flag(client, headers, "new-checkout", mode="off")
    # Off keeps what it had: turned on again, it resumes where it was.
    assert (turned_off["mode"], turned_off["percent"], turned_off["wallets"]) == (
        "off",
        20,
        [wallet],
    )

    assert await flag_rows(resources) == [("new-checkout", FlagMode.OFF, 20, [wallet])]
    audit = await audit_rows(resources, "new-checkout")
    assert [(a.actor, a.before and a.before["mode"], a.after["mode"]) for a in audit] == [
        (f"operator:{admin.id}", None, "percent"),
        (f"operator:{admin.id}", "percent", "wallets"),
        (audit[2].actor, "wallets", "off"),
    ]
    assert audit[2].actor != audit[0].actor and audit[2].actor.startswith("operator:")
    assert audit[1].before == {
        "mode": "percent",
        "percent": 20,
        "wallets": [],
        "variants": [],
        "description": "",
    }
    assert audit[1].after["wallets"] == [wallet]
    assert audit[0].created_at <= audit[1].created_at <= audit[2].created_at

    listed = await client.get("/api/admin/flags", headers=first)
    assert listed.status_code == 200
    assert [f["name"] for f in listed.json()] == ["new-checkout"]
    one = await client.get("/api/admin/flags/new-checkout", headers=first)
    assert one.status_code == 200
    assert [
        (a["before"] and a["before"]["mode"], a["after"]["mode"]) for a in one.json()["audit"]
    ] == [
        (None, "percent"),
        ("percent", "wallets"),
        ("wallets", "off"),
    ]
    missing = await client.get("/api/admin/flags/no-such-flag", headers=first)
    assert missing.status_code == 404 and missing.json()["code"] == "flag_not_found"


async def test_an_inspector_gets_403_and_nothing_changes(client, resources):
    admin = await operator_headers(resources, "admin")
    inspector = await operator_headers(resources, "inspector")
    await put_flag(client, admin, "new-checkout", mode="on")
    before_audit = len(await audit_rows(resources, "new-checkout"))

    attempts = [
        client.put("/api/admin/flags/new-checkout", json={"mode": "off"}, headers=inspector),
        client.put("/api/admin/flags/another", json={"mode": "on"}, headers=inspector),
        client.get("/api/admin/flags", headers=inspector),
        client.get("/api/admin/flags/new-checkout", headers=inspector),
    ]
    for attempt in attempts:
        response = await attempt
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "operator_forbidden"

    assert await flag_rows(resources) == [("new-checkout", FlagMode.ON, 0, [])]
    assert len(await audit_rows(resources, "new-checkout")) == before_audit


async def test_bad_changes_are_422_and_write_nothing(client, resources):
    admin = await operator_headers(resources, "admin")
    bad = [
        ("new-checkout", {"mode": "percent", "percent": 101}),
        ("new-checkout", {"mode": "sometimes"}),
        ("new-checkout", {"mode": "on", "variants": [{"name": "a"}, {"name": "a"}]}),
        ("new-checkout", {"mode": "on", "variants": [{"name": "a", "weight": 0}]}),
        ("new-checkout", {"mode": "on", "surprise": 1}),
        ("Not A Name", {"mode": "on"}),
    ]
    for name, body in bad:
        response = await client.put(f"/api/admin/flags/{name}", json=body, headers=admin)
        assert response.status_code == 422, (name, body, response.text)
    assert await flag_rows(resources) == []
    # A seller's token is not an operator's.
    assert (await client.get("/api/admin/flags")).status_code == 401
