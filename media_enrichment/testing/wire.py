"""The test server's HTTP side: routes, and answers written the way Bedrock writes them.

``RequestHandler`` serves ``POST /model/{modelId}/invoke`` (InvokeModel; the SigV4 credential
scope is read from ``Authorization`` and recorded), ``GET /foundation-models/{id}``
(GetFoundationModel), ``GET /health`` and the test-only ``GET /_test/counters`` (``?log=1`` adds
the request log) and ``POST /_test/reset``; the work is the ``BedrockServer``'s. Answers are
JSON with an ``x-amzn-RequestId``; errors add ``x-amzn-ErrorType`` so botocore reads their code.
Kept-alive connections are dropped without an answer once the server stops.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from media_enrichment.testing.errors import ERROR_TYPE_SUFFIX, ServiceError, unknown_operation, validation

if TYPE_CHECKING:
    from media_enrichment.testing.bedrock_server import BedrockServer

logger = logging.getLogger(__name__)

__all__ = ["COUNTERS_PATH", "RESET_PATH", "HTTPServer", "RequestHandler"]

#: Test-only control routes (not Bedrock's): counters as JSON, and a reset of counters and quota.
COUNTERS_PATH = "/_test/counters"
RESET_PATH = "/_test/reset"

_MODEL_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>[A-Za-z-]+)$")
_FOUNDATION_MODEL_PATH = re.compile(r"^/foundation-models/(?P<model>[^/]+)$")
_CREDENTIAL = re.compile(r"Credential=(?P<key>[^/,\s]+)/\d{8}/(?P<region>[^/,\s]+)/")


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BedrockTestServer/1.0"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm holds the
    # body until the client's delayed ACK (~40 ms), which would add to every request's latency.
    disable_nagle_algorithm = True
    timeout = 30  # idle keep-alive connections are closed after this

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.address_string(), *args)

    @property
    def app(self) -> BedrockServer:
        return self.server.app  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path == "/health":
            self._send(200, {"status": "ok"})
            return
        if url.path == COUNTERS_PATH:  # for a benchmark driving a server in another process
            self._send(200, self.app.counters_payload(with_log="log=1" in url.query))
            return
        match = _FOUNDATION_MODEL_PATH.match(url.path)
        if match:  # the control plane's GetFoundationModel
            try:
                self._send(200, self.app.get_foundation_model(unquote(match.group("model"))))
            except ServiceError as error:
                self._send_error(error)
            return
        self._send_error(unknown_operation())

    def do_POST(self) -> None:  # noqa: N802
        if self.app.stopping:  # stopped: drop kept-alive connections without answering
            self.close_connection = True
            return
        if urlsplit(self.path).path == RESET_PATH:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 1 << 20))
            self.app.reset()
            self._send(200, {"reset": True})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.app.max_body_bytes:
            self.close_connection = True
            self._send_error(validation(f"Request body of {length} bytes exceeds the server's limit"))
            return
        body = self.rfile.read(length) if length else b""
        match = _MODEL_PATH.match(urlsplit(self.path).path)
        if not match:
            self._send_error(unknown_operation())
            return
        model_id = unquote(match.group("model"))
        operation = match.group("op")
        scope = _CREDENTIAL.search(self.headers.get("Authorization") or "")
        credential = f"{scope.group('key')}/{scope.group('region')}" if scope else ""
        status, payload, headers = self.app.handle_invoke(model_id, operation, body, credential=credential)
        if status >= 400:
            self._send_error(payload)
        else:
            self._send(status, payload, headers)

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_error(self, error: ServiceError) -> None:
        data = json.dumps({"message": error.message}).encode("utf-8")
        try:
            self.send_response(error.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.send_header("x-amzn-ErrorType", error.code + ERROR_TYPE_SUFFIX)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class HTTPServer(ThreadingHTTPServer):
    """Threads per connection, loopback only (the ``BedrockServer`` checks the host)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("request from %s failed", client_address, exc_info=True)
