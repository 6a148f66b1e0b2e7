"""What the red team's TLS attacks (tests/security/test_attack_tls_context.py) use: local
certificates, a small HTTPS server that records what each connection offered and asked, and
the four call sites that make an httpx client with refit/tls.py's shared context."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from refit.carriers.interface import (
    CarrierUnavailable,
    LabelTransaction,
    TransactionStatus,
)
from refit.carriers.picker import open_carrier
from refit.carriers.sandbox.webhooks import deliver
from refit.pricing.sources import PriceUnavailable, _get_json
from refit.settings import Settings
from tests.shipping.test_shippo_contract import SELLER

# --- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    good: tuple[Path, Path]  # signed by ca, for IP 127.0.0.1
    wrong_name: tuple[Path, Path]  # signed by ca, for DNS wrong.invalid (CN 127.0.0.1)
    self_signed: tuple[Path, Path]  # for IP 127.0.0.1, signed by itself


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def leaf(d: Path, name: str, cn: str, san: str, ca: Path, ca_key: Path) -> tuple[Path, Path]:
    key, csr, cert, ext = (d / f"{name}.{x}" for x in ("key", "csr", "pem", "ext"))
    ext.write_text(
        f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    openssl("req", "-new", *EC, "-subj", f"/CN={cn}", "-keyout", key, "-out", csr)
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-days", "1", "-extfile", ext, "-out", cert,
    )  # fmt: skip
    return cert, key


def make_certs(d: Path) -> Certs:
    """Our own CA, a certificate it signed for 127.0.0.1, one it signed for another name, and
    a self-signed one (openssl, Debian's; EC keys)."""
    ca, ca_key = d / "ca.pem", d / "ca.key"
    openssl(
        "req", "-x509", *EC, "-days", "1", "-subj", "/CN=refit attack CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", ca_key, "-out", ca,
    )  # fmt: skip
    return Certs(
        ca=ca,
        good=leaf(d, "good", "127.0.0.1", "IP:127.0.0.1", ca, ca_key),
        wrong_name=leaf(d, "wrong", "127.0.0.1", "DNS:wrong.invalid", ca, ca_key),
        self_signed=self_signed(d),
    )


def self_signed(d: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed, and its key."""
    cert, key = d / "self.pem", d / "self.key"
    openssl(
        "req", "-x509", *EC, "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert,
    )  # fmt: skip
    return cert, key


# --- a small HTTPS server -------------------------------------------------------------------


@dataclass
class Seen:
    requests: list[bytes] = field(default_factory=list)
    alpn: list[str | None] = field(default_factory=list)


@asynccontextmanager
async def serve(
    cert: tuple[Path, Path] | None,
    *,
    status: int = 200,
    body: bytes = b'{"ok": true}',
    headers: dict[str, str] | None = None,
) -> AsyncIterator[tuple[str, Seen]]:
    """HTTPS (or HTTP without cert) on 127.0.0.1; offers h2 and http/1.1 by ALPN and records
    the protocol each connection picked (a client offering h2 gets it, then is hung up on)."""
    seen = Seen()
    context = None
    if cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*cert)
        context.set_alpn_protocols(["h2", "http/1.1"])

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        protocol = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        seen.alpn.append(protocol)
        try:
            if protocol == "h2":
                return
            seen.requests.append(await reader.readuntil(b"\r\n\r\n"))
            extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    scheme = "http" if cert is None else "https"
    async with server:
        yield f"{scheme}://127.0.0.1:{port}", seen


# --- the four clients -----------------------------------------------------------------------

Site = Callable[[str, Path], Awaitable[None]]


async def shippo_api(url: str, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        shippo_api_key="shippo_test_x",
        shippo_base_url=url,
    )
    async with open_carrier(settings, seller_waiting=True) as carrier:
        await carrier.validate_address(SELLER)


async def shippo_downloads(url: str, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        shippo_api_key="shippo_test_x",
    )
    label = LabelTransaction("t1", TransactionStatus.SUCCESS, "r1", label_url=f"{url}/l.pdf")
    async with open_carrier(settings) as carrier:
        await carrier.download_label(label)


async def sandbox_webhook(url: str, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        public_url=url,
        shippo_webhook_token="tok",
    )
    await deliver(settings, {"event": "track_updated", "test": True, "data": {}})


async def price_feed(url: str, tmp_path: Path) -> None:
    await _get_json(f"{url}/price", params={}, headers={}, source="feed")


SITES: dict[str, Site] = {
    "shippo_api": shippo_api,
    "shippo_downloads": shippo_downloads,
    "sandbox_webhook": sandbox_webhook,
    "price_feed": price_feed,
}


async def outcome(site: Site, url: str, tmp_path: Path) -> str:
    """'answered' (a response came back, whatever it was) or 'refused: <why>' for a failed
    connection; any other error propagates."""
    try:
        await site(url, tmp_path)
    except httpx.ConnectError as exc:
        return f"refused: {exc}"
    except CarrierUnavailable as exc:
        if "ConnectError" not in str(exc):
            return "answered"  # e.g. 'label download answered 400'
        return f"refused: {exc} / {exc.__cause__}"
    except PriceUnavailable as exc:
        if "ConnectError" not in str(exc):
            return "answered"
        return f"refused: {exc} / {exc.__cause__}"
    except httpx.HTTPStatusError:
        return "answered"
    except Exception:  # a Shippo client error on the 200 {"ok": true}: it was answered
        return "answered"
    return "answered"
