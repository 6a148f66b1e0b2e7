"""File storage: a local folder by default, any S3-compatible bucket (R2, MinIO, S3) by settings.

A core module: shipping writes its labels here and notifications reads them to attach to an
email, so neither domain imports the other. The files are private: only ever served through
our authenticated endpoints or mailed to their owner, never by a public URL of the store.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

from refit.settings import Settings

_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class LabelNotFound(Exception):
    pass


class LabelStorage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes: ...


def label_key(order_id: object, transaction_id: str, file_type: str) -> str:
    extension = (
        "png"
        if file_type.upper().startswith("PNG")
        else ("zpl" if file_type.upper().startswith("ZPL") else "pdf")
    )
    return f"labels/{order_id}/{transaction_id}.{extension}"


def content_type_for(key: str) -> str:
    return {"png": "image/png", "zpl": "application/octet-stream"}.get(
        key.rsplit(".", 1)[-1], "application/pdf"
    )


def _check_key(key: str) -> str:
    if not _SAFE_KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"unsafe storage key {key!r}")
    return key


class LocalLabelStorage:
    def __init__(self, root: Path) -> None:
        self._root = root

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, self._root / _check_key(key), data)

    async def get(self, key: str) -> bytes:
        path = self._root / _check_key(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise LabelNotFound(key) from exc

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        # Write then rename: a reader never sees half a label, a crash leaves no torn file.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class S3LabelStorage:
    """boto3 is synchronous: every call runs in a worker thread."""

    def __init__(self, settings: Settings) -> None:
        import boto3  # only deployments with a bucket pay for the import
        from botocore.config import Config

        assert settings.label_s3_bucket
        self._bucket = settings.label_s3_bucket
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.label_s3_endpoint_url,
            region_name=settings.label_s3_region or "auto",
            aws_access_key_id=settings.label_s3_access_key_id,
            aws_secret_access_key=settings.label_s3_secret_access_key,
            config=Config(
                # Path-style URLs and checksums only when required: what S3-compatible stores
                # (R2, MinIO) accept; boto3's newer default trailing checksums break some.
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=20,
            ),
        )

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self._bucket,
            Key=_check_key(key),
            Body=data,
            ContentType=content_type,
        )

    async def get(self, key: str) -> bytes:
        def read() -> bytes:
            try:
                response = self._client.get_object(Bucket=self._bucket, Key=_check_key(key))
            except self._client.exceptions.NoSuchKey as exc:
                raise LabelNotFound(key) from exc
            body: bytes = response["Body"].read()
            return body

        return await asyncio.to_thread(read)


_s3_cache: dict[tuple[Any, ...], S3LabelStorage] = {}


def label_storage(settings: Settings) -> LabelStorage:
    if not settings.label_s3_bucket:
        return LocalLabelStorage(settings.labels_dir)
    # boto3 clients are thread-safe and costly to build: one per configuration.
    config = (
        settings.label_s3_bucket,
        settings.label_s3_endpoint_url,
        settings.label_s3_region,
        settings.label_s3_access_key_id,
    )
    if config not in _s3_cache:
        _s3_cache[config] = S3LabelStorage(settings)
    return _s3_cache[config]
