"""SQL for `configuration_events` and their NOTIFY."""

from __future__ import annotations

from svc.db import Transaction

# One round trip: record the event and queue its notification. NOTIFY is transactional, so
# listeners hear of it only if the transaction commits. The application's name is looked up
# here so that callers need not carry it; a deleted application must be deleted after this.
PUBLISH = """
WITH event AS (
    INSERT INTO configuration_events (application_id, configuration_id, name, revision, kind)
    VALUES (%(application_id)s, %(configuration_id)s, %(name)s, %(revision)s, %(kind)s)
    RETURNING id, application_id, configuration_id, name, revision, kind
)
SELECT event.id, pg_notify(%(channel)s, json_build_object(
    'id', event.id,
    'application_id', event.application_id,
    'application_name', applications.name,
    'configuration_id', event.configuration_id,
    'configuration_name', event.name,
    'revision', event.revision,
    'kind', event.kind
)::text)
FROM event LEFT JOIN applications ON applications.id = event.application_id
"""


class ChangeRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def publish(
        self, *, channel: str, application_id: str, configuration_id: str, name: str, revision: int, kind: str
    ) -> int:
        """Insert one event and notify `channel` of it; return the event's id."""
        params = {
            "channel": channel,
            "application_id": application_id,
            "configuration_id": configuration_id,
            "name": name,
            "revision": revision,
            "kind": kind,
        }
        return self.tx.fetch_value(PUBLISH, params)
