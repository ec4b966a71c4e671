"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): request ids, access log, request metrics,
body limit."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from functools import lru_cache

from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from svc.api.problems import problem_response, redact_secrets
from svc.ids import new_id
from svc.metrics import HTTP_LATENCY, HTTP_REQUESTS
from svc.log import request_id_var

access_log = logging.getLogger("svc.access")

_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HELD_OPEN = "svc.held_open"
UNMATCHED = "unmatched"


def hold_open(request: Request) -> None:
    """Declare that this request lasts as long as the client wants (a long-poll, an event
    stream): it is counted, but its duration is no latency figure."""
    request.scope[_HELD_OPEN] = True


class RouteTemplates:
    """The path template a request addressed, as clients see it and OpenAPI documents it
    (`/api/v1/applications/{application_id}`), to label its metrics."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        contexts = [context for context in iter_route_contexts(routes) if context.path]
        self._by_route = {id(context.original_route): context.path for context in contexts}
        self._by_pattern = [(context.path_regex, context.path) for context in contexts]

    def of(self, scope: Scope) -> str:
        """The matched route's template; for a request no endpoint took (a 405, or a route
        Starlette serves itself such as `/openapi.json`), the first template its path matches."""
        template = self._by_route.get(id(scope.get("route")))
        if template is not None:
            return template
        path = scope["path"]
        return next((template for pattern, template in self._by_pattern if pattern.match(path)), UNMATCHED)


class RequestContextMiddleware:
    """Echo or create `X-Request-ID`, expose it to logs, and write one access-log line."""

    def __init__(self, app: ASGIApp, *, access_log_enabled: bool = True) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled
        self._templates: RouteTemplates | None = None  # built on the first request: routes are complete by then

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
            if self._templates is None:
                self._templates = RouteTemplates(scope["app"].routes)
            template = self._templates.of(scope)
            _request_counter(scope["method"], template, status).inc()
            if not scope.get(_HELD_OPEN):
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
