"""The front door for the hottest requests on one configuration: one whose caller is in the token
cache is answered here, before FastAPI's routing, dependency resolution and body handling, which
cost several times the work of the answer itself (measured: docs/performance-notes.md).

Each route the door serves declares a `Doorway`: how its path's parameters become the key its
answer takes, how it reads its JSON body (if it takes one), which of its query parameters the door
leaves at their defaults, and its answer: the route's own steps, the one function the route's
endpoint calls too. The door runs what the route would: the route's own path pattern and path
parameters (their validation included), the token cache (`Authenticator.cached`), the body through
the strict parser (`parse_json`) and the route's reader, the preconditions, then the answer,
labelled as the route; an error goes to the exception handler the route's would reach. What the
door does not take (a query string, a path the route refuses, no bearer token or one not cached, a
body that is not JSON or that the reader refuses) goes on to the route, with any body it read
given back, and the route answers it as always.

The door's contract with each route is checked when the door is built (`check_contract`): the
route, as the app mounts it (router dependencies included), must take exactly the inputs the door
reads, so a route that gains a parameter, a header or a dependency stops the app from starting
until the door reads it too or stops serving that route. A query parameter (`?reveal=true`, say)
is never read here: a request with a query string always goes on to the route.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.responses import Response
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from svc.api.deps import bearer_scheme, get_principal, get_services, services_of
from svc.api.etags import parse_precondition, read_precondition
from svc.api.json_body import is_json_media_type, media_type_of
from svc.errors import ServiceError
from svc.json_documents import parse_json
from svc.services.auth import Principal
from svc.services.container import Services
from svc.services.delivery import Resolved
from svc.services.preconditions import Precondition

PATHS_REMEMBERED = 4096  # per route: its validated path parameters, by path

# The route's steps once its inputs are read: (services, principal, key, body, preconditions).
Answer = Callable[[Services, Principal, Any, Any, Precondition], Awaitable[Response]]
# The route's body from the request's media type and its JSON document: None (or a ValidationError)
# where the route refuses it, and says why.
BodyReader = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Input:
    """One thing a route reads of a request: a parameter (`path`, `query`, `header`, `cookie`,
    `body`) by its name on the wire, or a dependency (`depends`) or the raw request (`request`,
    `response`, ...) by the function that takes it."""

    kind: str
    name: Any

    def __repr__(self) -> str:
        return f"{self.kind} {getattr(self.name, '__qualname__', None) or self.name!r}"


_PARAMETERS = ("path_params", "query_params", "header_params", "cookie_params", "body_params")
_RAW = ("request", "websocket", "http_connection", "response", "background_tasks", "security_scopes")


def route_inputs(dependant: Dependant) -> frozenset[Input]:
    """Every input of the route whose dependant this is, its dependencies' inputs included."""
    found: set[Input] = set()
    for kind in _PARAMETERS:
        found.update(Input(kind.removesuffix("_params"), param.alias) for param in getattr(dependant, kind))
    for raw in _RAW:
        if getattr(dependant, f"{raw}_param_name") is not None:
            found.add(Input(raw, dependant.call))
    for dependency in dependant.dependencies:
        found.add(Input("depends", dependency.call))
        found |= route_inputs(dependency)
    return frozenset(found)


# What the door reads of every request it answers, as the routes' inputs: the bearer token (as
# `get_principal` reads it through `bearer_scheme`, but from the token cache), the process's
# services, and the preconditions (`read_precondition`'s two fields, through the same parser).
DOOR_READS = frozenset({
    Input("depends", get_principal), Input("request", get_principal),
    Input("depends", bearer_scheme), Input("http_connection", bearer_scheme),
    Input("depends", get_services), Input("request", get_services),
    Input("depends", read_precondition), Input("header", "if-match"), Input("header", "if-none-match"),
})


@dataclass(frozen=True)
class Doorway:
    """What the door needs of one route: `key` takes the route's path parameters (as the route
    validated them) and gives the answer's key; `body` is None for a route without a body,
    `ROUTE_BODY` for one whose body parameter the door reads as the route does, else a reader of
    what `body_from` (a dependency of the route) reads; `defaults` are the route's query
    parameters, which the door leaves at their defaults (it answers no query string), and
    `request_for_defaults` says that the endpoint takes the raw request but reads it only for
    a query the door never answers."""

    route: APIRoute
    key: Callable[..., Any]
    answer: Answer
    body: BodyReader | str | None = None
    body_from: Callable | None = None
    defaults: tuple[str, ...] = ()
    request_for_defaults: bool = False
    inputs: frozenset[Input] = field(init=False)

    def __post_init__(self) -> None:
        inputs = set(DOOR_READS)
        inputs.update(Input("query", name) for name in self.defaults)
        inputs.update(Input("path", name) for name in inspect.signature(self.key).parameters)
        if self.request_for_defaults:
            inputs.add(Input("request", self.route.endpoint))
        if self.body == ROUTE_BODY:
            inputs.update(Input("body", param.alias) for param in self.route.dependant.body_params)
        elif self.body_from is not None:
            inputs |= {Input("depends", self.body_from), Input("request", self.body_from)}
        object.__setattr__(self, "inputs", frozenset(inputs))


ROUTE_BODY = "the route's body parameter"


def doorway(routes: Sequence[BaseRoute], endpoint: Callable, **declared: Any) -> Doorway:
    """The doorway of the route in `routes` whose endpoint is `endpoint` (see `Doorway`)."""
    route = next(route for route in routes if getattr(route, "endpoint", None) is endpoint)
    return Doorway(route, **declared)


def reading(answer: Callable[[Resolved, Precondition], Response]) -> Answer:
    """The steps of a read: the configuration at the key through the read cache, then the route's `answer`."""
    async def read(services: Services, principal: Principal, key: Any, body: None, expected: Precondition) -> Response:
        return answer(await services.delivery.read(principal, key), expected)
    return read


class DoorContractError(RuntimeError):
    """A route the door serves takes an input the door does not read, or the door reads one it does not take."""


def check_contract(mounted: Any, doorway: Doorway) -> None:
    """Raise DoorContractError unless the route, as mounted (`mounted`: its route context, router
    dependencies included), takes exactly the inputs the doorway reads."""
    takes = route_inputs(mounted.dependant)
    problems = []
    if unread := takes - doorway.inputs:
        problems.append(f"takes what the door does not read: {sorted(map(repr, unread))}")
    if untaken := doorway.inputs - takes:
        problems.append(f"does not take what the door reads: {sorted(map(repr, untaken))}")
    if doorway.body == ROUTE_BODY and len(mounted.dependant.body_params) != 1:
        problems.append("the door reads one body parameter")
    if problems:
        raise DoorContractError(f"the door's route {sorted(mounted.methods)} {mounted.path} " + "; ".join(problems))


class _Entrance:
    """A doorway where the app mounts its route."""

    def __init__(self, doorway: Doorway, mounted: Any) -> None:
        self.doorway = doorway
        self.methods = frozenset(mounted.methods)
        self.mounted = mounted  # the route context: its path pattern and convertors, its dependant
        # Clients repeat the same paths, and validating one costs more than the rest of a warm read.
        self._path_parameters = lru_cache(maxsize=PATHS_REMEMBERED)(self._validated)

    def parameters(self, scope: Scope) -> dict[str, Any] | None:
        """The path's parameters if this route takes the request, validated as the route does;
        None when it does not take it, or refuses them (the route answers that)."""
        return self._path_parameters(scope["path"]) if scope["method"] in self.methods else None

    def _validated(self, path: str) -> dict[str, Any] | None:
        matched = self.mounted.path_regex.match(path)
        if matched is None:
            return None
        convertors = self.mounted.param_convertors
        values, errors = request_params_to_args(
            self.mounted.dependant.path_params,
            {name: convertors[name].convert(value) for name, value in matched.groupdict().items()},
        )
        return None if errors else values


def entrances(routes: Iterable[BaseRoute], doorways: Sequence[Doorway]) -> list[_Entrance]:
    """Each doorway where `routes` (the app's) mount its route, its contract checked."""
    targets = {id(doorway.route) for doorway in doorways}
    mounted = {
        id(context.original_route): context
        for context in iter_route_contexts([route for route in routes if id(route) in targets])
    }
    found = []
    for doorway in doorways:
        context = mounted.get(id(doorway.route))
        if context is None:
            raise DoorContractError(f"the door's route {doorway.route.path} is not mounted")
        check_contract(context, doorway)
        found.append(_Entrance(doorway, context))
    return found


class Door:
    def __init__(self, app: ASGIApp, *, router: Router, doorways: Sequence[Doorway]) -> None:
        self.app = app
        # Built with the middleware stack, at the app's first event: every route is mounted by then.
        self.entrances = entrances(router.routes, doorways)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["query_string"]:
            for entrance in self.entrances:
                parameters = entrance.parameters(scope)
                if parameters is None:
                    continue
                if entrance.doorway.body is not None:
                    receive = Rereadable(receive)
                response = await _answer(scope, receive, entrance.doorway, parameters)
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


async def _answer(scope: Scope, receive: Receive, door: Doorway, parameters: dict[str, Any]) -> Response | None:
    """The route's answer, or None for the route to give it (a refused body, no cached caller)."""
    key = door.key(**parameters)
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
            body = await _json_body(receive, door, media_type)
            if body is None:
                return None
        expected = parse_precondition(_text(headers.get(b"if-match")), _text(headers.get(b"if-none-match")))
        return await door.answer(services, principal, key, body, expected)
    except (ServiceError, HTTPException) as exc:  # answered by the handler the route's error would reach
        return await _handler_of(scope["app"], exc)(Request(scope), exc)


async def _json_body(receive: Rereadable, door: Doorway, media_type: str) -> Any | None:
    """The body as the route reads it; None if the route refuses it (and says why) or the client
    left. An oversized body raises the body limit's 413 (HTTPException) here."""
    text = await receive.body()
    if text is None:
        return None
    try:
        document = parse_json(text)
        if door.body == ROUTE_BODY:
            values, errors = await request_body_to_args(door.route.dependant.body_params, document,
                                                        door.route._embed_body_fields)
            return None if errors else next(iter(values.values()))
        return door.body(media_type, document)
    except (ServiceError, ValidationError):
        return None


def _text(field: bytes | None) -> str | None:
    return None if field is None else field.decode("latin-1")


def _handler_of(app: Starlette, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]]:
    return next(app.exception_handlers[cls] for cls in type(exc).__mro__ if cls in app.exception_handlers)
