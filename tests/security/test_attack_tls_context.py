"""Red-team of refit/tls.py: one ssl.SSLContext per process, shared by every httpx client we
make (Shippo's api and downloads clients, the sandbox's webhook deliveries, the price feeds).

Attacks:
- each of the four clients still checks the server's certificate: a self-signed one, and one
  signed by a trusted CA for another name, are refused before any request is sent (and the
  same CA's certificate for the right name is accepted: the refusal is the check's);
- a redirect followed by the downloads client to an untrusted server is refused too;
- SSL_CERT_FILE set when the process starts is honoured by the shared context (as httpx did
  for each client); set after the first client was made it is not read (the cache);
- nothing weakens the context for all: after every call site used it (accepted and refused
  connections), it equals a fresh httpx context; every connection offered ALPN http/1.1 only;
  no code in refit/ mutates it or hands it to a client with cert= or http2=True;
- an HTTP/2 client on the same context, interleaved on one event loop, does not change what
  the HTTP/1.1 clients offer (httpcore sets ALPN and wraps the socket without yielding);
- the context is used from two event loops at once (the pytest loop, asyncio.run in a thread)
  and made from several threads at once: every use still checks certificates.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from refit import tls
from tests.security.tls_sites import (
    SITES,
    Certs,
    make_certs,
    outcome,
    price_feed,
    serve,
    shippo_downloads,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls_attack"))


@pytest.fixture
def trust_ca(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process started with SSL_CERT_FILE=<our CA> (the cached context made anew)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls.client_context.cache_clear()
    yield
    tls.client_context.cache_clear()


@pytest.fixture
def default_trust(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """certifi's CAs, as in production without SSL_CERT_FILE."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls.client_context.cache_clear()
    yield
    tls.client_context.cache_clear()


# --- certificate checks at every call site --------------------------------------------------


@pytest.mark.parametrize("site", SITES)
async def test_every_client_refuses_a_self_signed_certificate(
    site: str, certs: Certs, tmp_path: Path, default_trust: None
) -> None:
    async with serve(certs.self_signed) as (url, seen):
        result = await outcome(SITES[site], url, tmp_path)
    assert result.startswith("refused"), result
    assert "CERTIFICATE_VERIFY_FAILED" in result or "certificate verify failed" in result
    assert seen.requests == []


@pytest.mark.parametrize("site", SITES)
async def test_every_client_refuses_a_trusted_certificate_for_another_name(
    site: str, certs: Certs, tmp_path: Path, trust_ca: None
) -> None:
    async with serve(certs.wrong_name) as (url, seen):
        result = await outcome(SITES[site], url, tmp_path)
    assert result.startswith("refused"), result
    assert "mismatch" in result or "doesn't match" in result or "not valid for" in result, result
    assert seen.requests == []
    # the same CA's certificate for 127.0.0.1 is accepted: the refusal was the name's
    async with serve(certs.good) as (url, seen):
        assert await outcome(SITES[site], url, tmp_path) == "answered"
    assert len(seen.requests) >= 1
    assert seen.alpn and all(p == "http/1.1" for p in seen.alpn)


async def test_a_followed_redirect_to_an_untrusted_server_is_refused(
    certs: Certs, tmp_path: Path, default_trust: None
) -> None:
    async with serve(certs.self_signed) as (bad_url, bad_seen):
        async with serve(None, status=302, headers={"Location": f"{bad_url}/l.pdf"}) as (
            url,
            seen,
        ):
            result = await outcome(shippo_downloads, url, tmp_path)
    assert len(seen.requests) == 1  # the redirect was followed ...
    assert result.startswith("refused"), result  # ... and the untrusted server refused
    assert bad_seen.requests == []


# --- SSL_CERT_FILE and the cache ------------------------------------------------------------

CHILD = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.security.test_attack_tls_context import serve, outcome, SITES, Certs

async def main():
    good = (Path(sys.argv[2]), Path(sys.argv[3]))
    selfs = (Path(sys.argv[4]), Path(sys.argv[5]))
    tmp = Path(sys.argv[6])
    for name, site in SITES.items():
        async with serve(good) as (url, seen):
            print(name, "good", await outcome(site, url, tmp), len(seen.requests))
        async with serve(selfs) as (url, seen):
            print(name, "self", (await outcome(site, url, tmp))[:7], len(seen.requests))

asyncio.run(main())
"""


def test_ssl_cert_file_at_process_start_is_honoured_by_every_client(
    certs: Certs, tmp_path: Path
) -> None:
    """A fresh process started with SSL_CERT_FILE trusts that CA (and only it) everywhere."""
    env = {**os.environ, "SSL_CERT_FILE": str(certs.ca), "PYTHONPATH": str(ROOT)}
    env.pop("SSL_CERT_DIR", None)
    args = [str(ROOT), *map(str, (*certs.good, *certs.self_signed)), str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = sorted(line for line in done.stdout.splitlines() if line.strip())
    expected = sorted(
        [f"{name} good answered 1" for name in SITES] + [f"{name} self refused 0" for name in SITES]
    )
    assert lines == expected, done.stdout + done.stderr[-2000:]


async def test_ssl_cert_file_set_after_the_first_client_is_not_read(
    certs: Certs, tmp_path: Path, default_trust: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache's one change: the environment is read once, at the first client. Before it,
    every client read SSL_CERT_FILE when made. (Nothing in refit/ sets it at run time.)"""
    first = tls.client_context()
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    assert tls.client_context() is first
    async with serve(certs.good) as (url, seen):
        result = await outcome(price_feed, url, tmp_path)
    assert result.startswith("refused"), result  # still certifi's CAs only
    assert seen.requests == []
    # Nothing in refit/ writes SSL_CERT_FILE / SSL_CERT_DIR (tls.py only names them in its
    # docstring): a running process never changes them, so for refit the cache changes nothing.
    writes = re.compile(r"(environ|putenv|setenv)[^\n]*SSL_CERT_(FILE|DIR)")
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "refit").rglob("*.py")
        if writes.search(p.read_text())
    ]
    assert offenders == []


# --- nothing weakens the shared context -----------------------------------------------------


def _settings_of(ctx: ssl.SSLContext) -> dict[str, Any]:
    return {
        "protocol": ctx.protocol,
        "verify_mode": ctx.verify_mode,
        "check_hostname": ctx.check_hostname,
        "verify_flags": ctx.verify_flags,
        "options": ctx.options,
        "minimum_version": ctx.minimum_version,
        "maximum_version": ctx.maximum_version,
        "hostname_checks_common_name": ctx.hostname_checks_common_name,
        "post_handshake_auth": ctx.post_handshake_auth,
        "keylog_filename": ctx.keylog_filename,
        "sni_callback": ctx.sni_callback,
        "cert_store_stats": ctx.cert_store_stats(),
        "ca_certs": sorted(str(c.get("serialNumber")) for c in ctx.get_ca_certs()),
        "ciphers": sorted(c["name"] for c in ctx.get_ciphers()),
    }


async def test_every_client_leaves_the_shared_context_as_httpx_made_it(
    certs: Certs, tmp_path: Path, trust_ca: None
) -> None:
    shared = tls.client_context()
    before = _settings_of(shared)
    assert before["verify_mode"] is ssl.CERT_REQUIRED and before["check_hostname"] is True
    for _ in range(2):
        for name, site in SITES.items():
            async with serve(certs.good) as (url, seen):
                assert await outcome(site, url, tmp_path) == "answered", name
            assert seen.alpn == ["http/1.1"], (name, seen.alpn)
            async with serve(certs.self_signed) as (url, seen):
                assert (await outcome(site, url, tmp_path)).startswith("refused"), name
            async with serve(certs.wrong_name) as (url, seen):
                assert (await outcome(site, url, tmp_path)).startswith("refused"), name
    assert tls.client_context() is shared
    assert _settings_of(shared) == before
    assert _settings_of(shared) == _settings_of(httpx.create_ssl_context())


MUTATORS = {
    "load_cert_chain",
    "load_verify_locations",
    "load_default_certs",
    "set_default_verify_paths",
    "set_alpn_protocols",
    "set_ciphers",
    "set_ecdh_curve",
    "set_servername_callback",
    "check_hostname",
    "verify_mode",
    "verify_flags",
    "options",
    "minimum_version",
    "maximum_version",
    "keylog_filename",
    "sni_callback",
    "post_handshake_auth",
    "hostname_checks_common_name",
}


def _is_shared(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Call):
        f = node.func
        return (isinstance(f, ast.Attribute) and f.attr == "client_context") or (
            isinstance(f, ast.Name) and f.id == "client_context"
        )
    return isinstance(node, ast.Name) and node.id in names


def test_no_code_mutates_the_shared_context_or_lends_it_to_an_http2_or_cert_client() -> None:
    """Source scan of refit/: the shared context (tls.client_context(), or a name bound to it)
    is never written to, and a client given it never also gets cert= (httpx would load that
    certificate into the shared context: every server would be offered it) or http2=True
    (ALPN written on it from another thread; see tls.py)."""
    problems: list[str] = []
    uses = 0
    for path in sorted((ROOT / "refit").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _is_shared(node.value, set()):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute) and node.attr in MUTATORS:
                if _is_shared(node.value, names):
                    problems.append(f"{where}: .{node.attr} on the shared context")
            if isinstance(node, ast.Call):
                kwargs = {k.arg: k.value for k in node.keywords if k.arg}
                if "verify" in kwargs and _is_shared(kwargs["verify"], names):
                    uses += 1
                    if "cert" in kwargs:
                        problems.append(f"{where}: cert= with the shared context")
                    http2 = kwargs.get("http2")
                    if http2 is not None and not (
                        isinstance(http2, ast.Constant) and http2.value is False
                    ):
                        problems.append(f"{where}: http2= with the shared context")
                # the context handed anywhere but verify= (ssl=, a helper, ...)
                for arg in [*node.args, *(k.value for k in node.keywords if k.arg != "verify")]:
                    if _is_shared(arg, names):
                        problems.append(f"{where}: the shared context passed on")
    assert problems == []
    assert uses == 4  # shippo api + downloads, sandbox deliver, price feeds


async def test_an_http2_client_on_the_same_loop_does_not_change_what_the_others_offer(
    certs: Certs, tmp_path: Path, trust_ca: None
) -> None:
    """tls.py keeps HTTP/2 clients off the shared context because httpcore writes ALPN on it
    per connection. On one event loop that write and the socket's wrap happen without a
    yield between them, so even interleaved each connection offers its own client's list."""
    shared = tls.client_context()
    async with serve(certs.good) as (url, seen):
        async with httpx.AsyncClient(verify=shared, http2=True) as h2_client:

            async def h2_call() -> str:
                try:
                    await h2_client.get(f"{url}/h2")
                except httpx.HTTPError:
                    return "h2 hung up"
                return "h2 answered"

            calls: list[Awaitable[str]] = []
            for _ in range(5):
                calls += [h2_call(), *(outcome(s, url, tmp_path) for s in SITES.values())]
            results = await asyncio.gather(*calls)
    assert results.count("answered") == 5 * len(SITES), results
    assert seen.alpn.count("h2") >= 1  # the HTTP/2 client did offer h2 (one connection)
    assert "h2 hung up" in results
    assert seen.alpn.count("http/1.1") == 5 * len(SITES)
    assert len(seen.requests) == 5 * len(SITES)


async def test_two_event_loops_at_once_share_the_context_safely(
    certs: Certs, tmp_path: Path, trust_ca: None
) -> None:
    """The pytest loop and asyncio.run in a thread (the CLI's way) use it together."""
    shared = tls.client_context()
    async with serve(certs.good) as (good, good_seen), serve(certs.self_signed) as (bad, _):

        def other_loop() -> list[str]:
            async def run() -> list[str]:
                calls = [outcome(price_feed, good, tmp_path) for _ in range(6)]
                calls += [outcome(price_feed, bad, tmp_path) for _ in range(6)]
                return [r[:8] for r in await asyncio.gather(*calls)]

            return asyncio.run(run())

        here = [outcome(s, good, tmp_path) for s in SITES.values()]
        here += [outcome(s, bad, tmp_path) for s in SITES.values()]
        there, mine = await asyncio.gather(asyncio.to_thread(other_loop), asyncio.gather(*here))
    assert there == ["answered"] * 6 + ["refused:"] * 6
    assert [r[:8] for r in mine] == ["answered"] * len(SITES) + ["refused:"] * len(SITES)
    assert set(good_seen.alpn) == {"http/1.1"}
    assert tls.client_context() is shared
    assert shared.verify_mode is ssl.CERT_REQUIRED and shared.check_hostname


def test_made_from_many_threads_at_once_every_context_checks_certificates(
    default_trust: None,
) -> None:
    """functools.cache does not lock: threads racing on the first call may each build one
    (only CPU lost); every one they get verifies, and afterwards one is kept."""
    start = threading.Barrier(6)
    got: list[ssl.SSLContext] = []

    def make() -> None:
        start.wait()
        got.append(tls.client_context())

    threads = [threading.Thread(target=make) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6
    assert all(c.verify_mode is ssl.CERT_REQUIRED and c.check_hostname for c in got)
    kept = tls.client_context()
    assert tls.client_context() is kept
    assert kept in got
