"""Delivery for internal services: `/resolve` (with ETag, 304 and long-poll) and the SSE change stream."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.security.utils import get_authorization_scheme_param
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from svc.api.deps import IdPath, PrincipalDep, ServicesDep, services_of
from svc.api.etags import Preconditions, etag, not_modified, not_modified_response, parse_precondition
from svc.api.middleware import hold_open
from svc.api.problems import problem_responses
from svc.api.schemas import NAME_PATTERN
from svc.errors import BadRequest, ServiceError
from svc.services.delivery import ChangeEvent, Resolved
from svc.services.preconditions import Precondition

router = APIRouter(tags=["delivery"], responses=problem_responses(401, 403, 404, 422, 503))

Name = Annotated[str, Path(pattern=NAME_PATTERN, max_length=256)]
REVISION_HEADER = "X-Config-Revision"


def _resolved(found: Resolved) -> Response:
    return Response(
        content=found.body,
        media_type="application/json",
        headers={"ETag": etag(found.version), REVISION_HEADER: str(found.revision), "Cache-Control": "no-cache"},
    )


def _not_modified(found: Resolved) -> Response:
    return not_modified_response(found.version, {REVISION_HEADER: str(found.revision)})


def _answer(found: Resolved, expected: Precondition) -> Response:
    """200 with the JSON, 304 when `If-None-Match` names the current version (or is `*`),
    412 when `If-Match` does not."""
    unchanged = not_modified(expected, found.version, subject=f"configuration {found.configuration_id}")
    return _not_modified(found) if unchanged else _resolved(found)


@router.get(
    "/resolve/{application_name}/{configuration_name}",
    summary="The configuration's JSON itself, by names",
    response_class=Response,
    responses={
        200: {
            "description": "the configuration's JSON, with `ETag` and `X-Config-Revision`",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        304: {"description": "unchanged: the `If-None-Match` ETag is current (after `wait`, if given)"},
        **problem_responses(412),
    },
)
async def resolve_configuration(
    request: Request,
    application_name: Name,
    configuration_name: Name,
    principal: PrincipalDep,
    services: ServicesDep,
    expected: Preconditions,
    wait: Annotated[
        float | None,
        Query(ge=0, description="long-poll: with a current `If-None-Match`, hold up to this many seconds "
                                "(clamped to 1–`SVC_LONG_POLL_MAX_SECONDS`, default 300) for a change"),
    ] = None,
) -> Response:
    delivery = services.delivery
    known = expected.if_none_match
    # Nothing to wait for (or If-Match, to be checked now), or a HEAD, which must not hang: answer at once.
    if wait is None or known is None or known.any or expected.if_match is not None or request.method == "HEAD":
        return _answer(await delivery.resolve(principal, application_name, configuration_name), expected)
    hold_open(request)
    seconds = min(max(wait, 1.0), float(services.settings.long_poll_max_seconds))
    changed = await delivery.wait_for_change(
        principal, application_name, configuration_name, known.versions, seconds
    )
    if changed is None:
        return _not_modified(await delivery.resolve(principal, application_name, configuration_name))
    return _resolved(changed)


_NAME = re.compile(NAME_PATTERN)


class ResolveFromCache:
    """The front door for the hottest request of the service: a resolve without a query whose
    caller and configuration are both in the in-process caches is answered here, before
    FastAPI's routing and dependency resolution, which cost several times the work of the answer
    itself (CPU a request, measured in-process: ~28 µs here; `/health`, FastAPI's cheapest
    route here, ~77 µs).

    It runs the route's own steps from the caches: the token cache (`Authenticator.cached`),
    the one access rule and the resolve cache (`DeliveryService.cached`), the same response
    (`_answer`), labelled as the route. Whatever those cannot answer (a cache miss, a long-poll,
    a bad name, a token that is not cached, a caller who may not read it, an If-Match) goes on
    to the route.
    """

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.route = next(route for route in router.routes if getattr(route, "endpoint", None) is resolve_configuration)
        self.path = compile_path(prefix + self.route.path)[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            names = self.path.match(scope["path"])
            response = _answer_from_cache(scope, **names.groupdict()) if names else None
            if response is not None:
                scope["route"] = self.route
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _answer_from_cache(scope: Scope, application_name: str, configuration_name: str) -> Response | None:
    if not (_NAME.match(application_name) and _NAME.match(configuration_name)):
        return None  # the route refuses such names (422), even where a row holds one
    authorization = if_match = if_none_match = None
    for key, value in scope["headers"]:
        if key == b"authorization":
            authorization = value.decode("latin-1")
        elif key == b"if-match":
            if_match = value.decode("latin-1")
        elif key == b"if-none-match":
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
        found = services.delivery.cached(principal, application_name, configuration_name)
    except ServiceError:  # the route answers with the problem
        return None
    return None if found is None else _answer(found, expected)


# One event of the stream, as OpenAPI 3.1 documents Server-Sent Events (`schema` is each event).
CHANGE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "send it back as Last-Event-ID to resume"},
        "event": {"type": "string", "enum": ["created", "updated", "deleted"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "a JSON object: id, configuration_id, name, revision, kind",
        },
    },
    "required": ["id", "event", "data"],
}


async def _nothing() -> AsyncIterator[bytes]:
    """An empty body, for a HEAD."""
    for chunk in ():
        yield chunk


def _sse(event: ChangeEvent | None) -> bytes:
    if event is None:
        return b": keep-alive\n\n"
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.kind.encode(), event.data())


@router.get(
    "/applications/{application_id}/events",
    summary="Server-Sent Events: one per committed change to the application's configurations",
    response_class=StreamingResponse,
    responses={200: {"description": "an event stream", "content": {"text/event-stream": {"schema": CHANGE_EVENT}}},
               400: problem_responses(400)[400]},
)
async def events(
    request: Request,
    application_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    last_event_id: Annotated[
        str | None, Header(description="resume after this event id (replayed within the retention period)")
    ] = None,
) -> StreamingResponse:
    after = None
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise BadRequest("Last-Event-ID must be the numeric id of an event")
        after = int(last_event_id.strip())
    stream = await services.delivery.open_stream(
        principal, application_id, after, keepalive=services.settings.sse_keepalive_seconds
    )

    async def body():
        yield b"retry: 1000\n\n"
        async for event in stream:
            yield _sse(event)

    head = request.method == "HEAD"  # the same status and headers; the stream, never iterated, holds nothing
    if not head:
        hold_open(request)
    return StreamingResponse(
        _nothing() if head else body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
