"""Delivery for internal services: `/resolve` (with ETag, 304 and long-poll) and the SSE change stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import Response, StreamingResponse

from svc.api.deps import IdPath, PrincipalDep, ServicesDep
from svc.api.etags import IfNoneMatch, etag, parse_etags
from svc.api.problems import problem_responses
from svc.api.schemas import NAME_PATTERN
from svc.errors import BadRequest
from svc.services.delivery import ChangeEvent, Resolved

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
    return Response(status_code=304, headers={"ETag": etag(found.version), REVISION_HEADER: str(found.revision)})


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
    },
)
async def resolve(
    application_name: Name,
    configuration_name: Name,
    principal: PrincipalDep,
    services: ServicesDep,
    if_none_match: IfNoneMatch = None,
    wait: Annotated[
        float | None,
        Query(ge=0, description="long-poll: with a current `If-None-Match`, hold up to this many seconds "
                                "(clamped to 1–`SVC_LONG_POLL_MAX_SECONDS`, default 300) for a change"),
    ] = None,
) -> Response:
    delivery = services.delivery
    known = parse_etags(if_none_match)
    if known is None:
        if if_none_match is not None:  # `If-None-Match: *`: any current version matches
            return _not_modified(await delivery.resolve(principal, application_name, configuration_name))
        return _resolved(await delivery.resolve(principal, application_name, configuration_name))
    if wait is None:
        found = await delivery.resolve(principal, application_name, configuration_name)
        return _not_modified(found) if found.version in known else _resolved(found)
    seconds = min(max(wait, 1.0), float(services.settings.long_poll_max_seconds))
    changed = await delivery.wait_for_change(principal, application_name, configuration_name, known, seconds)
    if changed is None:
        return _not_modified(await delivery.resolve(principal, application_name, configuration_name))
    return _resolved(changed)


def _sse(event: ChangeEvent | None) -> bytes:
    if event is None:
        return b": keep-alive\n\n"
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.kind.encode(), event.data())


@router.get(
    "/applications/{application_id}/events",
    summary="Server-Sent Events: one per committed change to the application's configurations",
    response_class=StreamingResponse,
    responses={200: {"description": "an event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
               400: problem_responses(400)[400]},
)
async def events(
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

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
