"""A local server speaking the S3 object API's PutObject/GetObject (path-style), enough for
boto3 to store and read labels as it would on R2, MinIO or S3. Requests must be SigV4-signed
with the expected access key (the signature itself is not re-computed)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.local_http import LocalHTTPServer

ACCESS_KEY = "refit-test-access-key"
SECRET_KEY = "refit-test-secret-key"

NO_SUCH_KEY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>"
)


class S3Server(LocalHTTPServer):
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.lock = threading.Lock()
        super().__init__(_handler(self))


def _handler(store: S3Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _authorised(self) -> bool:
            auth = self.headers.get("Authorization", "")
            return auth.startswith("AWS4-HMAC-SHA256") and f"Credential={ACCESS_KEY}/" in auth

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if not self._authorised():
                return self._reply(403, b"<Error><Code>AccessDenied</Code></Error>")
            with store.lock:
                store.objects[self.path] = (body, self.headers.get("Content-Type", ""))
            self._reply(200, b"", {"ETag": '"1"'})

        def do_GET(self) -> None:
            if not self._authorised():
                return self._reply(403, b"<Error><Code>AccessDenied</Code></Error>")
            with store.lock:
                found = store.objects.get(self.path)
            if found is None:
                return self._reply(404, NO_SUCH_KEY, {"Content-Type": "application/xml"})
            self._reply(200, found[0], {"Content-Type": found[1]})

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
