"""The local HTTP server: each request becomes an API Gateway REST proxy event for the resolver.

The resolver is the same powertools app the control-plane Lambda runs, so the local server and a
deployed stack serve the same routes with the same JSON. Each server thread has its own resolver
(a resolver keeps the current event on itself); all of them share one service.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from custom_metrics.api.app import build_resolver
from custom_metrics.service import MetricService

logger = logging.getLogger(__name__)

# API Gateway accepts at most 10 MB; locally larger exports are allowed up to this size. Parsing
# takes roughly 30 times the body size in memory, so larger exports belong in agreement jobs.
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
MAX_DISCARD_BYTES = 1024 * 1024 * 1024
STAGE = "local"


@dataclass
class LambdaContext:
    """The fields of Lambda's context object that powertools and the handler read."""

    aws_request_id: str
    function_name: str = "custom-metrics-local"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:custom-metrics-local"
    memory_limit_in_mb: int = 1024

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


class ControlPlaneServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        service: MetricService,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = self._host_names(address[0], allowed_hosts)
        self._resolvers = threading.local()

    def _host_names(self, bound: str, extra: tuple[str, ...]) -> frozenset[str]:
        # A web page can make the browser send requests to 127.0.0.1 (directly, or through a DNS name
        # it controls that resolves there). Those requests carry the page's Host or Origin, so only
        # the names this server is reached by on this machine, plus the ones the user allows, pass.
        port = self.server_address[1]
        names = {"127.0.0.1", "localhost", "[::1]", bound, *extra}
        return frozenset(f"{name.lower()}:{port}" for name in names if name) | frozenset(
            name.lower() for name in extra if ":" in name
        )

    def resolver(self) -> APIGatewayRestResolver:
        resolver: APIGatewayRestResolver | None = getattr(self._resolvers, "app", None)
        if resolver is None:
            resolver = build_resolver(lambda: self.service)
            self._resolvers.app = resolver
        return resolver


class _RequestHandler(BaseHTTPRequestHandler):
    server: ControlPlaneServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        rejection = self._cross_site_rejection()
        if rejection is not None:
            status, message = rejection
            logger.info("request rejected: %s", message, extra={"request_id": request_id})
            self._discard_body(self._declared_length())
            self._send_error(status, message)
            return
        body = self._read_body()
        if body is None:
            return
        event = proxy_event(
            self.command, self.path, dict(self.headers.items()), body, request_id, self.client_address[0]
        )
        context: Any = LambdaContext(aws_request_id=request_id)  # powertools reads only these attributes
        response = self.server.resolver().resolve(event, context)
        self._write_response(response)
        logger.info(
            "%s %s -> %s",
            self.command,
            urlsplit(self.path).path,
            response.get("statusCode"),
            extra={"request_id": request_id, "duration_ms": round((time.monotonic() - started) * 1000)},
        )

    def _cross_site_rejection(self) -> tuple[HTTPStatus, str] | None:
        """Reject requests that a web page in a browser could have sent: foreign Host or Origin, non-JSON bodies."""
        host = (self.headers.get("Host") or "").lower()
        if host not in self.server.allowed_hosts:
            return HTTPStatus.FORBIDDEN, (
                f"Host {host!r} is not one this server answers to; call it as 127.0.0.1 or localhost, "
                "or start it with --allowed-host NAME:PORT"
            )
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() not in self.server.allowed_hosts:
            return HTTPStatus.FORBIDDEN, f"cross-origin requests from {origin!r} are not accepted"
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if self._declared_length() > 0 and content_type != "application/json":
            return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, (
                f"Content-Type {content_type or 'missing'!r} is not accepted; send the body as application/json"
            )
        return None

    def _declared_length(self) -> int:
        try:
            return max(int(self.headers.get("Content-Length") or 0), 0)
        except ValueError:
            return 0

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self._send_error(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length header, not chunked")
                return None
            return b""
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self._send_error(HTTPStatus.BAD_REQUEST, f"Content-Length {length_header!r} is not a byte count")
            return None
        if length > self.server.max_body_bytes:
            self._discard_body(length)
            self._send_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body is {length} bytes, over the server's limit of {self.server.max_body_bytes} bytes; "
                "split the export into smaller files",
            )
            return None
        return self.rfile.read(length)

    def _discard_body(self, length: int) -> None:
        # Clients such as urllib send the whole body before reading the reply, so the body is read
        # and dropped to let them see the 413; past the bound the connection is simply closed.
        if length > MAX_DISCARD_BYTES:
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1024 * 1024))
            if not chunk:
                return
            remaining -= len(chunk)

    def _write_response(self, response: dict[str, Any]) -> None:
        body = response.get("body") or ""
        data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode("utf-8")
        self.send_response(int(response.get("statusCode", 200)))
        headers: dict[str, Any] = response.get("headers") or {}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            for value in values:
                self.send_header(name, value)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: HTTPStatus, message: str) -> None:
        data = json.dumps({"message": message}).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


def proxy_event(
    method: str, raw_path: str, headers: dict[str, str], body: bytes, request_id: str, source_ip: str
) -> dict[str, Any]:
    """Build the API Gateway REST proxy event that API Gateway would send for this request."""
    parts = urlsplit(raw_path)
    query = parse_qs(parts.query, keep_blank_values=True)
    try:
        text: str | None = body.decode("utf-8") if body else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    return {
        "resource": "/{proxy+}",
        "path": parts.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {name: values[-1] for name, values in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": parts.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "stage": STAGE,
            "httpMethod": method,
            "path": f"/{STAGE}{parts.path}",
            "resourcePath": "/{proxy+}",
            "identity": {"sourceIp": source_ip},
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def serve(service: MetricService, host: str, port: int, allowed_hosts: tuple[str, ...] = ()) -> ControlPlaneServer:
    """Bind the server; the caller runs `serve_forever()` and closes it."""
    return ControlPlaneServer((host, port), service, allowed_hosts=allowed_hosts)
