"""The front door for reads of a configuration: a read whose caller is in the token cache is
answered here, before FastAPI's routing and dependency resolution, which cost several times the
work of the answer itself (µs of worker CPU a request: a warm read ~100 here, the same through
FastAPI ~600).

One door for every read of one configuration (`/resolve/{app}/{config}` by names,
`/configurations/{id}` by id, GET and HEAD): each route declares a `Doorway` (how its path
becomes a cache key, and its own answer), and the door runs the route's own steps: the token
cache (`Authenticator.cached`), the one access rule and the read cache (`DeliveryService.read`:
from the cache, else one statement on the event loop), the route's response, labelled as the
route; an error goes to the exception handler the route's would reach. What the door does not
take (a query string, a path the route refuses, no bearer token or one not cached) goes on to
the route, which answers it the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from svc.api.deps import services_of
from svc.api.etags import parse_precondition
from svc.errors import ServiceError
from svc.services.delivery import Key, Resolved
from svc.services.preconditions import Precondition

READ_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class Doorway:
    """What the door needs of one read route."""

    route: APIRoute
    key: Callable[..., Key | None]  # the path's parameters → the cache key; None where the route refuses the path
    answer: Callable[[Resolved, Precondition], Response]  # the route's own answer for a found configuration


def doorway(routes: Sequence, endpoint: Callable, *, key: Callable[..., Key | None],
            answer: Callable[[Resolved, Precondition], Response]) -> Doorway:
    """The doorway of the route in `routes` whose endpoint is `endpoint`."""
    route = next(route for route in routes if getattr(route, "endpoint", None) is endpoint)
    return Doorway(route, key, answer)


class ReadDoor:
    def __init__(self, app: ASGIApp, *, prefix: str, doorways: Sequence[Doorway]) -> None:
        self.app = app
        self.doorways = [(compile_path(prefix + d.route.path)[0], d) for d in doorways]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in READ_METHODS and not scope["query_string"]:
            for path, door in self.doorways:
                parameters = path.match(scope["path"])
                if parameters is None:
                    continue
                response = await _answer(scope, door, parameters.groupdict())
                if response is not None:
                    await response(scope, receive, send)
                    return
                break
        await self.app(scope, receive, send)


async def _answer(scope: Scope, door: Doorway, parameters: dict[str, str]) -> Response | None:
    """The route's answer, or None for the route to give it (a refused path, no cached caller)."""
    key = door.key(**parameters)
    if key is None:
        return None
    authorization = if_match = if_none_match = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"if-match":
            if_match = value.decode("latin-1")
        elif name == b"if-none-match":
            if_none_match = value.decode("latin-1")
    scheme, secret = get_authorization_scheme_param(authorization)  # as HTTPBearer reads it
    if scheme.lower() != "bearer" or not secret:
        return None
    services = services_of(scope["app"])
    principal = services.authenticator.cached(secret)
    if principal is None:
        return None
    scope["route"] = door.route  # labelled as the route, whatever the answer
    try:
        found = await services.delivery.read(principal, key)
        return door.answer(found, parse_precondition(if_match, if_none_match))
    except ServiceError as exc:  # answered by the handler the route's error would reach
        return await _handler_of(scope["app"], exc)(Request(scope), exc)


def _handler_of(app: Starlette, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]]:
    return next(app.exception_handlers[cls] for cls in type(exc).__mro__ if cls in app.exception_handlers)
