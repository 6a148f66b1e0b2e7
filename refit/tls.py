"""One TLS context per process for the HTTP clients we make (Shippo's two, the price feeds, the
sandbox's webhook deliveries).

httpx builds a new context for every client it makes unless it is given one, and loading the
CA bundle into it costs ~25 ms of CPU (`python -c` on this repo's machine: 24.6 ms a client,
0.07 ms with this context): the label job and the seller's rates request each made two, so a
worker could not buy more than about 20 Shippo labels a second for that alone. A context is
made to be shared (it holds the trusted CAs and settings, no connection state).

One thing httpcore does write on it: the ALPN protocols, on every connection it opens
(["http/1.1"], or with "h2" for an HTTP/2 client). Every client given this context speaks
HTTP/1.1 (httpx's default), so they all write the same; an HTTP/2 client needs its own.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def client_context() -> ssl.SSLContext:
    """httpx's own default context (certifi's CAs, SSL_CERT_FILE / SSL_CERT_DIR when set),
    made once."""
    # httpx costs ~0.1-0.4 s of CPU at import: only a process that makes a client needs it.
    import httpx

    return httpx.create_ssl_context()
