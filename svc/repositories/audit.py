"""SQL for `audit_events`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from svc.db import Transaction, jsonb

COLUMNS = "id, occurred_at, actor_token_id, actor_name, action, resource_type, resource_id, request_id, detail"

INSERT_COLUMNS = "id, actor_token_id, actor_name, action, resource_type, resource_id, request_id, detail"
# Typed, so that a statement that records the entry with INSERT ... SELECT can be prepared.
ENTRY = ("%(audit_id)s::ulid, %(actor_token_id)s::ulid, %(actor_name)s::text, %(action)s::text, "
         "%(resource_type)s::text, %(resource_id)s::text, %(request_id)s::text, %(detail)s::jsonb")

INSERT = f"INSERT INTO audit_events ({INSERT_COLUMNS}) VALUES ({ENTRY})"

# Newest first; the cursor is the id of the last event of the previous page.
LIST = f"""
SELECT {COLUMNS} FROM audit_events
WHERE (%(resource_type)s::text IS NULL OR resource_type = %(resource_type)s)
  AND (%(resource_id)s::text IS NULL OR resource_id = %(resource_id)s)
  AND (%(actor_token_id)s::text IS NULL OR actor_token_id = %(actor_token_id)s)
  AND (%(since)s::timestamptz IS NULL OR occurred_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR occurred_at < %(until)s)
  AND (%(after)s::text IS NULL OR id < %(after)s)
ORDER BY id DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class AuditEntry:
    """One audit event to record."""

    id: str
    actor_token_id: str | None
    actor_name: str
    action: str
    resource_type: str
    resource_id: str
    request_id: str | None
    detail: dict[str, Any]

    def params(self) -> dict[str, Any]:
        """The parameters of `ENTRY`, for this table's INSERT or a statement that records it with another change."""
        return {
            "audit_id": self.id,
            "actor_token_id": self.actor_token_id,
            "actor_name": self.actor_name,
            "action": self.action,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "request_id": self.request_id,
            "detail": jsonb(self.detail),
        }


@dataclass(frozen=True)
class AuditEvent(AuditEntry):
    """An audit event as recorded: the entry, and when it happened."""

    occurred_at: datetime


@dataclass(frozen=True)
class AuditFilter:
    """Which audit events to list; None leaves a criterion out. `until` is exclusive."""

    resource_type: str | None = None
    resource_id: str | None = None
    actor_token_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(self, entry: AuditEntry) -> None:
        self.tx.execute(INSERT, entry.params())

    def list(self, where: AuditFilter, *, limit: int, after: str | None) -> list[AuditEvent]:
        return self.tx.fetch_all(LIST, {**asdict(where), "limit": limit, "after": after}, row=AuditEvent)
