"""The audit trail: written in the transaction of the change it records."""

from __future__ import annotations

from typing import Any

from svc.db import Database, Transaction
from svc.ids import new_id
from svc.log import request_id_var
from svc.repositories.audit import AuditEntry, AuditEvent, AuditFilter, AuditRepository
from svc.services import policy
from svc.services.auth import Principal
from svc.services.pagination import Page, keyset_page
from svc.services.policy import Action


def record(
    tx: Transaction,
    actor: Principal,
    action: str,
    resource_type: str,
    resource_id: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit event inside the caller's transaction (never commits)."""
    AuditRepository(tx).insert(entry(actor, action, resource_type, resource_id, detail))


def entry(
    actor: Principal, action: str, resource_type: str, resource_id: str, detail: dict[str, Any] | None = None
) -> AuditEntry:
    """The audit event of `actor` doing `action` in this request, for a statement to record."""
    request_id = request_id_var.get()
    return AuditEntry(
        id=new_id(),
        actor_token_id=actor.token_id,
        actor_name=actor.name,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        request_id=None if request_id == "-" else request_id,
        detail=detail or {},
    )


class AuditService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, actor: Principal, where: AuditFilter, *, limit: int, after: str | None = None) -> Page[AuditEvent]:
        """Audit events matching `where`, newest first; the cursor is an event id."""
        policy.require(actor, Action.READ_AUDIT)
        with self.db.transaction() as tx:
            events = AuditRepository(tx)
            return keyset_page(lambda n: events.list(where, limit=n, after=after), limit)
