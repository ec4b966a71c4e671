"""Every JSON request body goes through one strict parser, `svc.json_documents.parse_json`.

FastAPI parses a JSON body with the standard `json.loads`, which takes NaN, Infinity and numbers
a double cannot hold (`1e400` becomes inf, then null when stored). Routers are built with
`route_class=JsonBodyRoute`, which hands FastAPI a request whose `json()` is the strict parser,
and parses before FastAPI does, so that a refused body is a 400 naming the place of the number.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response, params
from fastapi.routing import APIRoute

from svc.json_documents import parse_json


def media_type_of(content_type: str | None) -> str:
    """The media type of a Content-Type field, without its parameters, in lower case ("" for none)."""
    return (content_type or "").split(";")[0].strip().lower()


def is_json_media_type(content_type: str | None) -> bool:
    """application/json or application/<anything>+json, as FastAPI decides what to parse as JSON."""
    media_type = media_type_of(content_type)
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def takes_json_body(route: object) -> bool:
    """Whether `route` reads a JSON body: one with a body field that is not a form (a File is a Form)."""
    body_field = getattr(route, "body_field", None)
    return body_field is not None and not isinstance(body_field.field_info, params.Form)


class JsonBodyRequest(Request):
    """A request whose JSON body is parsed strictly (once)."""

    _strict_json: Any

    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            self._strict_json = parse_json(await self.body())
        return self._strict_json


class JsonBodyRoute(APIRoute):
    """A route whose JSON body, if it takes one, is parsed by `parse_json`."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        if not takes_json_body(self):
            return handler

        async def strict_handler(request: Request) -> Response:
            request = JsonBodyRequest(request.scope, request.receive)
            if is_json_media_type(request.headers.get("content-type")) and await request.body():
                await request.json()
            return await handler(request)

        return strict_handler
