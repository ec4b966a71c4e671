"""`/api/v1/audit`: the audit trail, for admins."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Query, Response
from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from svc.api.deps import After, Limit, PrincipalDep, ServicesDep
from svc.api.operations import api_router
from svc.api.problems import problem_responses
from svc.api.responses import json_response, off_loop
from svc.api.schemas import NO_NUL_PATTERN
from svc.ids import ULID_PATTERN
from svc.services.audit import AuditEvent, AuditFilter
from svc.services.pagination import Page


def _rfc3339(value: Any) -> Any:
    # pydantic would also read a number as Unix time, and a time without an offset in the
    # database session's zone; neither is what the documented date-time format promises.
    if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z")
    return value


def _in_utc(value: datetime | None) -> datetime | None:
    # PostgreSQL refuses offsets beyond ±15:59 that RFC 3339 allows (a 500 before this).
    try:
        return None if value is None else value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("is out of range") from None


Timestamp = Annotated[
    AwareDatetime | None,
    BeforeValidator(_rfc3339),
    AfterValidator(_in_utc),
    Query(description="an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z"),
]

router = api_router(prefix="/audit", tags=["audit"], responses=problem_responses(401, 403, 422, 503))


@router.get("", response_model=Page[AuditEvent], summary="Audit events, newest first")
async def list_audit_events(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Limit = 50,
    after: After = None,
    resource_type: Annotated[str | None, Query(max_length=64, pattern=NO_NUL_PATTERN)] = None,
    resource_id: Annotated[str | None, Query(max_length=256, pattern=NO_NUL_PATTERN)] = None,
    actor: Annotated[str | None, Query(pattern=ULID_PATTERN, description="the acting token's id")] = None,
    since: Timestamp = None,
    until: Timestamp = None,
) -> Response:
    where = AuditFilter(
        resource_type=resource_type, resource_id=resource_id, actor_token_id=actor, since=since, until=until
    )
    return json_response(await off_loop(lambda: services.audit.list(principal, where, limit=limit, after=after)))
