"""SQL for `audit_events`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from svc.db import Transaction, jsonb

COLUMNS = "id, occurred_at, actor_token_id, actor_name, action, resource_type, resource_id, request_id, detail"

INSERT = """
INSERT INTO audit_events (id, actor_token_id, actor_name, action, resource_type, resource_id, request_id, detail)
VALUES (%(id)s, %(actor_token_id)s, %(actor_name)s, %(action)s, %(resource_type)s, %(resource_id)s,
        %(request_id)s, %(detail)s)
"""

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


class AuditRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(self, **fields: Any) -> None:
        fields["detail"] = jsonb(fields.get("detail") or {})
        self.tx.execute(INSERT, fields)

    def list(
        self,
        *,
        limit: int,
        after: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        actor_token_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict[str, Any]]:
        params = {
            "limit": limit,
            "after": after,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "actor_token_id": actor_token_id,
            "since": since,
            "until": until,
        }
        return self.tx.fetch_all(LIST, params)
