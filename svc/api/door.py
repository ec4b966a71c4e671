"""The front door for the hottest requests on one configuration: one whose caller is in the token
cache is answered here, before FastAPI's routing, dependency resolution and body handling, which
cost several times the work of the answer itself (µs of worker CPU in-process: a warm read ~45
here, ~600 through FastAPI; a PUT ~800 here, ~1,200 through FastAPI).

Each route the door serves declares a `Doorway`: the methods it takes, how its path's parameters
become the key its answer takes, how it reads its JSON body (if it takes one), and its answer: the
route's own steps, the one function the route's endpoint calls too. The door runs what the route
would: the token cache (`Authenticator.cached`), the body through the strict parser (`parse_json`)
and the route's reader (its model, say), the preconditions, then the answer, labelled as the route;
an error goes to the exception handler the route's would reach. What the door does not take (a
query string, a path the route refuses, no bearer token or one not cached, a body that is not JSON
or that the reader refuses) goes on to the route, with any body it read given back, and the route
answers it as always.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from svc.api.deps import services_of
from svc.api.etags import parse_precondition
from svc.api.json_body import is_json_media_type, media_type_of
from svc.errors import ServiceError
from svc.json_documents import parse_json
from svc.services.auth import Principal
from svc.services.container import Services
from svc.services.delivery import Resolved
from svc.services.preconditions import Precondition

READ_METHODS = ("GET", "HEAD")

# The route's steps once its inputs are read: (services, principal, key, body, preconditions).
Answer = Callable[[Services, Principal, Any, Any, Precondition], Awaitable[Response]]
# The route's body from the request's media type and its JSON document: None (or a ValidationError)
# where the route refuses it, and says why.
BodyReader = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Doorway:
    """What the door needs of one route."""

    route: APIRoute
    methods: tuple[str, ...]
    key: Callable[..., Any]  # the path's parameters → the answer's key; None where the route refuses the path
    answer: Answer
    body: BodyReader | None  # how the route reads its JSON body; None for a route without one


def doorway(routes: Sequence, endpoint: Callable, *, key: Callable[..., Any], answer: Answer,
            methods: tuple[str, ...] = READ_METHODS, body: BodyReader | None = None) -> Doorway:
    """The doorway of the route in `routes` whose endpoint is `endpoint`."""
    route = next(route for route in routes if getattr(route, "endpoint", None) is endpoint)
    return Doorway(route, methods, key, answer, body)


def model_body(model: type[BaseModel]) -> BodyReader:
    """The reader of a route whose body is `model`, whatever JSON media type it comes as."""
    return lambda media_type, document: model.model_validate(document)


def reading(answer: Callable[[Resolved, Precondition], Response]) -> Answer:
    """The steps of a read: the configuration at the key through the read cache, then the route's `answer`."""
    async def read(services: Services, principal: Principal, key: Any, body: None, expected: Precondition) -> Response:
        return answer(await services.delivery.read(principal, key), expected)
    return read


class Door:
    def __init__(self, app: ASGIApp, *, prefix: str, doorways: Sequence[Doorway]) -> None:
        self.app = app
        self.doorways = [(compile_path(prefix + d.route.path)[0], d) for d in doorways]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["query_string"]:
            for path, door in self.doorways:
                if scope["method"] not in door.methods:
                    continue
                parameters = path.match(scope["path"])
                if parameters is None:
                    continue
                if door.body is not None:
                    receive = Rereadable(receive)
                response = await _answer(scope, receive, door, parameters.groupdict())
                if response is not None:
                    await response(scope, receive, send)
                    return
                break
        await self.app(scope, receive, send)


class Rereadable:
    """The request's `receive`, whose body the door may read and the route then reads again."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._read: list[Message] = []

    async def body(self) -> bytes | None:
        """The whole body; None if the client left before sending it."""
        while True:
            message = await self._receive()
            self._read.append(message)
            if message["type"] != "http.request":
                return None
            if not message.get("more_body", False):
                return b"".join(message.get("body", b"") for message in self._read)

    async def __call__(self) -> Message:
        return self._read.pop(0) if self._read else await self._receive()


async def _answer(scope: Scope, receive: Receive, door: Doorway, parameters: dict[str, str]) -> Response | None:
    """The route's answer, or None for the route to give it (a refused path or body, no cached caller)."""
    key = door.key(**parameters)
    if key is None:
        return None
    headers = dict(reversed(scope["headers"]))  # the first field of each name, as Starlette reads them
    scheme, secret = get_authorization_scheme_param(_text(headers.get(b"authorization")))  # as HTTPBearer reads it
    if scheme.lower() != "bearer" or not secret:
        return None
    media_type = ""
    if door.body is not None:
        media_type = media_type_of(_text(headers.get(b"content-type")))
        if not is_json_media_type(media_type):
            return None
    services = services_of(scope["app"])
    principal = services.authenticator.cached(secret)
    if principal is None:
        return None
    scope["route"] = door.route  # labelled as the route, whatever the answer
    try:
        body = None
        if door.body is not None:
            body = await _json_body(receive, door.body, media_type)
            if body is None:
                return None
        expected = parse_precondition(_text(headers.get(b"if-match")), _text(headers.get(b"if-none-match")))
        return await door.answer(services, principal, key, body, expected)
    except (ServiceError, HTTPException) as exc:  # answered by the handler the route's error would reach
        return await _handler_of(scope["app"], exc)(Request(scope), exc)


async def _json_body(receive: Rereadable, read: BodyReader, media_type: str) -> Any | None:
    """The body as the route reads it; None if the route refuses it (and says why) or the client
    left. An oversized body raises the body limit's 413 (HTTPException) here."""
    text = await receive.body()
    if text is None:
        return None
    try:
        return read(media_type, parse_json(text))
    except (ServiceError, ValidationError):
        return None


def _text(field: bytes | None) -> str | None:
    return None if field is None else field.decode("latin-1")


def _handler_of(app: Starlette, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]]:
    return next(app.exception_handlers[cls] for cls in type(exc).__mro__ if cls in app.exception_handlers)
