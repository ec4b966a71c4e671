"""SQL behind configuration delivery: resolve by names, and the change stream."""

from __future__ import annotations

from typing import Any

from svc.db import Transaction

# config::text is PostgreSQL's own JSON rendering: valid JSON, served as is, never parsed in Python.
RESOLVE = """
SELECT c.id AS configuration_id, c.application_id, c.revision, c.config::text AS body
FROM configurations c
JOIN applications a ON a.id = c.application_id
WHERE a.name = %(application_name)s AND c.name = %(configuration_name)s
"""

APPLICATION_EXISTS = "SELECT EXISTS (SELECT 1 FROM applications WHERE id = %(application_id)s)"

LATEST_EVENT_ID = "SELECT coalesce(max(id), 0) FROM configuration_events WHERE application_id = %(application_id)s"

EVENTS_AFTER = """
SELECT id, application_id, configuration_id, name, revision, kind, occurred_at
FROM configuration_events
WHERE application_id = %(application_id)s AND id > %(after)s
ORDER BY id
LIMIT %(limit)s
"""

PRUNE_EVENTS = "DELETE FROM configuration_events WHERE occurred_at < now() - make_interval(hours => %(hours)s)"


class DeliveryRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def resolve(self, application_name: str, configuration_name: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(
            RESOLVE, {"application_name": application_name, "configuration_name": configuration_name}
        )

    def application_exists(self, application_id: str) -> bool:
        return self.tx.fetch_value(APPLICATION_EXISTS, {"application_id": application_id})

    def latest_event_id(self, application_id: str) -> int:
        return self.tx.fetch_value(LATEST_EVENT_ID, {"application_id": application_id})

    def events_after(self, application_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        return self.tx.fetch_all(EVENTS_AFTER, {"application_id": application_id, "after": after, "limit": limit})

    def prune_events(self, hours: int) -> int:
        return self.tx.execute(PRUNE_EVENTS, {"hours": hours})
