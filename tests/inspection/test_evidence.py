"""Photo evidence: what is accepted, what is stripped, who can open it; the seller's view of a
revised offer and its answer."""

from __future__ import annotations

import io
import time
import uuid
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from refit.signed_urls import EVIDENCE_PHOTO_PATH, sign_url
from tests.inspection.helpers import (
    FAIR_PRICE,
    inspecting_order,
    jpeg_with_gps,
    noise_png,
    operator,
    story,
    upload,
    verdict,
)


def _path_and_query(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


async def test_a_revised_offer_shows_the_owner_notes_and_clean_photos(
    client, resources, settings, make_user
):
    seller = await make_user()
    stranger = await make_user()
    op = await operator(resources)
    order_id = await inspecting_order(client, resources, seller, op)

    uploaded = await client.post(
        f"/api/admin/orders/{order_id}/evidence",
        files=upload(
            ("back.jpg", jpeg_with_gps(), "image/jpeg"),
            ("screen.jpg", jpeg_with_gps(color=(10, 10, 200)), "image/jpeg"),
        ),
        headers=op.headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    photos = uploaded.json()["photos"]
    assert len(photos) == 2
    # Upright: the EXIF orientation (a quarter turn) was applied before it was dropped.
    assert (photos[0]["width"], photos[0]["height"]) == (32, 64)

    notes = "Deep scratches on the back; a dent by the camera."
    response = await client.post(
        f"/api/admin/orders/{order_id}/inspect",
        json=verdict(grade="fair", notes=notes),
        headers=op.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "revised_offer"
    assert response.json()["status"] == "offer_pending"
    assert response.json()["final_price_usd"] == FAIR_PRICE

    seen = await client.get(f"/api/orders/{order_id}", headers=seller.headers)
    assert seen.status_code == 200
    order = seen.json()
    assert order["status"] == "offer_pending"
    assert order["final_price_usd"] == FAIR_PRICE
    inspection = order["inspection"]
    assert inspection["grade"] == "fair"
    assert inspection["notes"] == notes
    assert inspection["checklist"]["screen"] == "ok"
    assert len(inspection["photos"]) == 2

    for url in inspection["photos"]:
        _, query = _path_and_query(url)
        assert set(query) == {"expires", "sig"}
        photo = await client.get(url)  # no token: the signature is the permission
        assert photo.status_code == 200, photo.text
        assert photo.headers["content-type"] == "image/jpeg"
        assert photo.headers["cache-control"].startswith("private, max-age=")
        image = Image.open(io.BytesIO(photo.content))
        assert image.format == "JPEG"
        assert dict(image.getexif()) == {}
        assert b"Exif" not in photo.content and b"SpyCam" not in photo.content

    # Another seller: the order (and with it any photo URL) does not exist for them.
    assert (
        await client.get(f"/api/orders/{order_id}", headers=stranger.headers)
    ).status_code == 404

    first_path, first = _path_and_query(inspection["photos"][0])
    second_path, _ = _path_and_query(inspection["photos"][1])
    # One character changed, never to itself (a signature that began with "A" was "tampered"
    # into the same one 1 time in 64: a fresh-clone .ci/run failed on it).
    tampered = ("B" if first["sig"][0] == "A" else "A") + first["sig"][1:]
    refusals = {
        "tampered signature": f"{first_path}?expires={first['expires']}&sig={tampered}",
        "longer life": f"{first_path}?expires={int(first['expires']) + 60}&sig={first['sig']}",
        "another photo's path": f"{second_path}?expires={first['expires']}&sig={first['sig']}",
        "no signature": first_path,
        "expired": sign_url(settings, first_path, 60, now=time.time() - 120),
    }
    for why, url in refusals.items():
        refused = await client.get(url)
        assert refused.status_code == 403, (why, refused.text)
        assert refused.headers["content-type"] == "application/problem+json", why
    expired = await client.get(refusals["expired"])
    assert expired.json()["code"] == "url_expired"
    # A good signature for a photo that does not exist: nothing to show.
    ghost = EVIDENCE_PHOTO_PATH.format(photo_id=uuid.uuid4())
    assert (await client.get(sign_url(settings, ghost, 60))).status_code == 404

    # Accepting keeps the revised price as the one to pay.
    accepted = await client.post(f"/api/orders/{order_id}/offer/accept", headers=seller.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["offer_accepted_at"] is not None
    assert accepted.json()["final_price_usd"] == FAIR_PRICE
    assert accepted.json()["inspection"]["notes"] == notes
    again = await client.get(f"/api/orders/{order_id}", headers=seller.headers)
    assert again.json()["final_price_usd"] == FAIR_PRICE

    # Operators see the same photos, with the whole story.
    told = await story(client, order_id, op)
    assert [p["id"] for p in told["evidence"]] == [p["id"] for p in photos]
    assert told["inspection"]["outcome"] == "revised_offer"
    assert told["seller"]["wallet_address"] == seller.user.wallet_address
    assert told["address"]["zip"] == "78701"
    assert told["tracking"]["events"] == []
    offer = next(h for h in told["history"] if h["status"] == "offer_pending")
    assert offer["actor"] == op.actor and offer["notes"] == notes
    assert (await client.get(told["evidence"][0]["url"])).status_code == 200


async def test_only_images_are_accepted(client, resources, make_user):
    seller = await make_user()
    op = await operator(resources)
    order_id = await inspecting_order(client, resources, seller, op)
    not_images = [
        ("photo.jpg", b"%PDF-1.7 not a photo at all", "image/jpeg"),
        ("photo.gif", _gif(), "image/gif"),
        ("half.jpg", jpeg_with_gps()[:200], "image/jpeg"),
    ]
    for name, data, content_type in not_images:
        response = await client.post(
            f"/api/admin/orders/{order_id}/evidence",
            files=upload((name, data, content_type)),
            headers=op.headers,
        )
        assert response.status_code == 422, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unsupported_image", name
    told = await story(client, order_id, op)
    assert told["evidence"] == []

    # A PNG sent as "application/octet-stream" is a PNG all the same; WebP too.
    png, webp = io.BytesIO(), io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(png, "PNG")
    Image.new("RGB", (8, 8), (0, 90, 0)).save(webp, "WEBP")
    response = await client.post(
        f"/api/admin/orders/{order_id}/evidence",
        files=upload(
            ("a.bin", png.getvalue(), "application/octet-stream"),
            ("b", webp.getvalue(), "image/jpeg"),
        ),
        headers=op.headers,
    )
    assert response.status_code == 201, response.text
    assert [p["content_type"] for p in response.json()["photos"]] == ["image/png", "image/webp"]


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "GIF")
    return out.getvalue()


async def test_photo_size_limits(client, resources, settings, make_user):
    seller = await make_user()
    op = await operator(resources)
    order_id = await inspecting_order(client, resources, seller, op)
    path = f"/api/admin/orders/{order_id}/evidence"

    # Above the app's 1 MiB body limit, within the evidence route's own.
    big = noise_png(700)
    assert settings.max_body_bytes < len(big) < settings.evidence_max_bytes
    response = await client.post(
        path, files=upload(("big.png", big, "image/png")), headers=op.headers
    )
    assert response.status_code == 201, response.text
    # Every other route keeps the 1 MiB limit.
    elsewhere = await client.post(
        "/api/orders/create", content=b"x" * len(big), headers=seller.headers
    )
    assert elsewhere.status_code == 413

    # Over the evidence limit: refused before anything is read, whatever the photos are.
    too_big = b"\xff" * (settings.evidence_max_bytes + 1)
    response = await client.post(
        path, files=upload(("huge.jpg", too_big, "image/jpeg")), headers=op.headers
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "payload_too_large"
    assert len((await story(client, order_id, op))["evidence"]) == 1

    # Without a Content-Length (chunked), each route's own limit cuts the body off as it comes.
    async def chunks(total: int, head: bytes = b""):
        yield head
        for _ in range(total // 65536 + 1):
            yield b"\xff" * 65536

    multipart = {**op.headers, "Content-Type": "multipart/form-data; boundary=x"}
    streamed = await client.post(
        path,
        content=chunks(
            settings.evidence_max_bytes + 128 * 1024,
            b'--x\r\nContent-Disposition: form-data; name="photos"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n",
        ),
        headers=multipart,
    )
    assert streamed.status_code == 413
    assert streamed.json()["code"] == "payload_too_large"
    streamed = await client.post(
        "/api/orders/create", content=chunks(len(big)), headers=seller.headers
    )
    assert streamed.status_code == 413


async def test_the_same_photo_twice_is_kept_once(client, resources, make_user):
    seller = await make_user()
    op = await operator(resources)
    order_id = await inspecting_order(client, resources, seller, op)
    photo = jpeg_with_gps()
    ids = []
    for _ in range(2):
        response = await client.post(
            f"/api/admin/orders/{order_id}/evidence",
            files=upload(("p.jpg", photo, "image/jpeg")),
            headers=op.headers,
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["photos"][0]["id"])
    assert ids[0] == ids[1]
    assert len((await story(client, order_id, op))["evidence"]) == 1
