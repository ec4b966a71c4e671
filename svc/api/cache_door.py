"""The front door for warm reads: a read whose caller and configuration are both in the
in-process caches is answered here, before FastAPI's routing and dependency resolution, which
cost several times the work of the answer itself.

One door for every cached read (`/resolve/{app}/{config}` by names, `/configurations/{id}` by
id): each route declares a `Doorway` (how its path becomes a cache key, and its own answer), and
the door runs the route's own steps from the caches: the token cache (`Authenticator.cached`),
the one access rule and the read cache (`DeliveryService.cached`), the route's response,
labelled as the route. Whatever those cannot answer (a cache miss, a query string, a path the
route refuses, a token that is not cached, a caller who may not read it, an If-Match) goes on
to the route, which answers it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
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


class CacheDoor:
    def __init__(self, app: ASGIApp, *, prefix: str, doorways: Sequence[Doorway]) -> None:
        self.app = app
        self.doorways = [(compile_path(prefix + d.route.path)[0], d) for d in doorways]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in READ_METHODS and not scope["query_string"]:
            for path, door in self.doorways:
                parameters = path.match(scope["path"])
                if parameters is None:
                    continue
                response = _answer_from_cache(scope, door, parameters.groupdict())
                if response is not None:
                    scope["route"] = door.route
                    await response(scope, receive, send)
                    return
                break
        await self.app(scope, receive, send)


def _answer_from_cache(scope: Scope, door: Doorway, parameters: dict[str, str]) -> Response | None:
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
    expected = parse_precondition(if_match, if_none_match)
    if expected.if_match is not None or expected.malformed_field():  # may be a 412: the route answers
        return None
    scheme, secret = get_authorization_scheme_param(authorization)  # as HTTPBearer reads it
    if scheme.lower() != "bearer" or not secret:
        return None
    services = services_of(scope["app"])
    principal = services.authenticator.cached(secret)
    if principal is None:
        return None
    try:
        found = services.delivery.cached(principal, key)
    except ServiceError:  # the route answers with the problem
        return None
    return None if found is None else door.answer(found, expected)
