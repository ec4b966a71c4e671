"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): request ids, access log, body limit."""

from __future__ import annotations

import logging
import re
import time
from functools import lru_cache

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette.exceptions import HTTPException

from svc.api.problems import problem_response, redact_secrets
from svc.ids import new_id
from svc.metrics import HTTP_LATENCY, HTTP_REQUESTS
from svc.log import request_id_var

access_log = logging.getLogger("svc.access")

_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Echo or create `X-Request-ID`, expose it to logs, and write one access-log line."""

    def __init__(self, app: ASGIApp, *, access_log_enabled: bool = True) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or new_id()
        request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            _request_counter(scope["method"], template, status).inc()
            if not _is_held_open(scope, template):
                _latency_histogram(scope["method"], template).observe(elapsed)
            if self.access_log_enabled:
                path = redact_secrets(scope["path"])
                access_log.info("%s %s %d %.1fms", scope["method"], path, status, elapsed * 1000)


# Label lookups cost more than the increments; routes × methods × statuses is a small set.
@lru_cache(maxsize=4096)
def _request_counter(method: str, template: str, status: int):
    return HTTP_REQUESTS.labels(method, template, str(status))


@lru_cache(maxsize=1024)
def _latency_histogram(method: str, template: str):
    return HTTP_LATENCY.labels(method, template)


def _is_held_open(scope: Scope, template: str) -> bool:
    """Long-polls and event streams last as long as the client wants: not a latency figure."""
    return template.endswith("/events") or b"wait=" in scope.get("query_string", b"")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _ACCEPTABLE_REQUEST_ID.match(text) else None
    return None


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413, by Content-Length or by counting streamed bytes,
    so an oversized body is never read whole into memory."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = problem_response(413, self._detail(), instance=scope["path"])
                await response(scope, receive, send)
                return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPException from body reading as it is.
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counting_receive, send)

    def _detail(self) -> str:
        return f"request body is larger than the limit of {self.max_bytes} bytes"
