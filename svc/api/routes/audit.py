"""`/api/v1/audit`: the audit trail, for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from svc.api.deps import After, Limit, PrincipalDep, ServicesDep
from svc.api.problems import problem_responses
from svc.api.schemas import Page
from svc.ids import ULID_PATTERN

router = APIRouter(prefix="/audit", tags=["audit"], responses=problem_responses(401, 403, 422, 503))


class AuditEvent(BaseModel):
    id: str
    occurred_at: datetime
    actor_token_id: str | None
    actor_name: str
    action: str
    resource_type: str
    resource_id: str
    request_id: str | None
    detail: dict[str, Any]


@router.get("", response_model=Page[AuditEvent], summary="Audit events, newest first")
def list_audit_events(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Limit = 50,
    after: After = None,
    resource_type: Annotated[str | None, Query(max_length=64)] = None,
    resource_id: Annotated[str | None, Query(max_length=256)] = None,
    actor: Annotated[str | None, Query(pattern=ULID_PATTERN, description="the acting token's id")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
):
    return services.audit.list(
        principal,
        limit=limit,
        after=after,
        resource_type=resource_type,
        resource_id=resource_id,
        actor_token_id=actor,
        since=since,
        until=until,
    )
