"""Label storage: the local folder, and an S3-compatible bucket through boto3."""

from __future__ import annotations

import pytest

from refit.models import OrderStatus
from refit.settings import Settings
from refit.storage import (
    LabelNotFound,
    LocalLabelStorage,
    S3LabelStorage,
    label_key,
    label_storage,
)
from tests.shipping.helpers import buy, order_row, quote
from tests.shipping.s3_server import ACCESS_KEY, SECRET_KEY, S3Server


@pytest.fixture
def s3_server():
    server = S3Server().start()
    yield server
    server.stop()


def _s3_settings(tmp_path, server: S3Server) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        label_s3_bucket="refit-labels",
        label_s3_endpoint_url=server.url,
        label_s3_region="auto",
        label_s3_access_key_id=ACCESS_KEY,
        label_s3_secret_access_key=SECRET_KEY,
    )


async def test_local_storage_round_trip(tmp_path):
    storage = label_storage(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert isinstance(storage, LocalLabelStorage)
    key = label_key("order-1", "txn_1", "PDF_4x6")
    assert key == "labels/order-1/txn_1.pdf"
    await storage.put(key, b"%PDF-1.4 label", "application/pdf")
    assert await storage.get(key) == b"%PDF-1.4 label"
    await storage.put(key, b"%PDF-1.4 again", "application/pdf")  # a retry overwrites
    assert await storage.get(key) == b"%PDF-1.4 again"
    assert [p.name for p in (tmp_path / "labels" / "labels" / "order-1").iterdir()] == [
        "txn_1.pdf"
    ]  # no temporary file left behind
    with pytest.raises(LabelNotFound):
        await storage.get("labels/order-1/other.pdf")
    for unsafe in ("../etc/passwd", "labels/../../x.pdf", "/abs.pdf"):
        with pytest.raises(ValueError):
            await storage.put(unsafe, b"x", "application/pdf")


async def test_s3_storage_round_trip(tmp_path, s3_server):
    storage = label_storage(_s3_settings(tmp_path, s3_server))
    assert isinstance(storage, S3LabelStorage)
    key = label_key("order-2", "txn_2", "PDF_4x6")
    await storage.put(key, b"%PDF-1.4 in a bucket", "application/pdf")
    assert s3_server.objects[f"/refit-labels/{key}"] == (b"%PDF-1.4 in a bucket", "application/pdf")
    assert await storage.get(key) == b"%PDF-1.4 in a bucket"
    with pytest.raises(LabelNotFound):
        await storage.get("labels/order-2/missing.pdf")


async def test_labels_bought_on_a_bucket_deployment_are_served_from_it(
    client, make_user, make_order, resources, run_jobs, settings, s3_server, tmp_path
):
    bucket = _s3_settings(tmp_path, s3_server)
    for field in (
        "label_s3_bucket",
        "label_s3_endpoint_url",
        "label_s3_region",
        "label_s3_access_key_id",
        "label_s3_secret_access_key",
    ):
        setattr(settings, field, getattr(bucket, field))
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    await run_jobs()
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.AWAITING_SHIPMENT
    assert list(s3_server.objects) == [f"/refit-labels/{stored.label_file_key}"]
    assert not settings.labels_dir.exists()
    label = await client.get(f"/api/shipping/labels/{order.id}", headers=seller.headers)
    assert label.status_code == 200 and label.content.startswith(b"%PDF")
    assert label.content == s3_server.objects[f"/refit-labels/{stored.label_file_key}"][0]
