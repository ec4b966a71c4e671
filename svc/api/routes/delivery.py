"""Delivery for internal services: `/resolve` (with ETag, 304 and long-poll) and the SSE change stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from svc.api.deps import IdPath, PrincipalDep, ServicesDep
from svc.api.door import doorway, reading
from svc.api.etags import Preconditions, etag, not_modified, not_modified_response
from svc.api.middleware import hold_open
from svc.api.operations import api_router
from svc.api.problems import problem_responses
from svc.api.schemas import NAME_PATTERN, Reveal
from svc.services.delivery import ByName, Position, Resolved, StreamedChange
from svc.services.preconditions import Precondition

router = api_router(tags=["delivery"], responses=problem_responses(401, 403, 404, 422, 503))

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
    reveal: Reveal = False,
) -> Response:
    delivery = services.delivery
    known = expected.if_none_match
    # Nothing to wait for (or If-Match, to be checked now), or a HEAD, which must not hang: answer at once.
    if wait is None or known is None or known.any or expected.if_match is not None or request.method == "HEAD":
        found = await delivery.resolve(principal, application_name, configuration_name, reveal=reveal)
        return _answer(found, expected)
    hold_open(request)
    seconds = min(max(wait, 1.0), float(services.settings.long_poll_max_seconds))
    changed = await delivery.wait_for_change(
        principal, application_name, configuration_name, known.versions, seconds, reveal=reveal
    )
    if changed is None:
        return _not_modified(await delivery.resolve(principal, application_name, configuration_name, reveal=reveal))
    return _resolved(changed)


DOORWAY = doorway(
    router.routes, resolve_configuration,
    key=lambda application_name, configuration_name: ByName(application_name, configuration_name),
    answer=reading(_answer),
    defaults=("wait", "reveal"),
    request_for_defaults=True,  # read for a long-poll (`wait`) alone
)


# One event of the stream, as OpenAPI 3.1 documents Server-Sent Events (`schema` is each event).
CHANGE_EVENT = {
    "type": "object",
    "properties": {
        "id": {
            "type": "string",
            "pattern": "^[0-9]+-[0-9]+$",
            "description": "the position after this event: send it back as Last-Event-ID to resume (some "
                           "events may then come again; none is skipped)",
        },
        "event": {"type": "string", "enum": ["created", "updated", "deleted"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "a JSON object: id (the event's number: the same on a repeat), configuration_id, "
                           "name, revision, kind",
        },
    },
    "required": ["id", "event", "data"],
}


async def _nothing() -> AsyncIterator[bytes]:
    """An empty body, for a HEAD."""
    for chunk in ():
        yield chunk


def _sse(change: StreamedChange | Position | None) -> bytes:
    if change is None:
        return b": keep-alive\n\n"
    if isinstance(change, Position):
        # An id alone dispatches no event; it moves the client's Last-Event-ID on (WHATWG HTML, 9.2.6).
        return b"id: %s\n\n" % str(change).encode()
    event = change.event
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (str(change.position).encode(), event.kind.encode(), event.data())


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
        str | None,
        Header(description="resume after the event with this id: every change since is sent (within the "
                           "retention period), some perhaps again"),
    ] = None,
) -> StreamingResponse:
    resume = None if last_event_id is None else Position.parse(last_event_id)
    stream = await services.delivery.open_stream(
        principal, application_id, resume, keepalive=services.settings.sse_keepalive_seconds
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
