"""SQL for `configuration_events`: record a change, announce changes, catch up with them."""

from __future__ import annotations

from dataclasses import dataclass

from svc.db import Transaction

# The NOTIFY payload of one event (its shape is documented in svc/changes.py), from
# `event` joined to its application: the name is looked up when the payload is built, so a
# deleted application must be deleted after its events are recorded.
PAYLOAD = """json_build_object(
    'id', event.id,
    'application_id', event.application_id,
    'application_name', applications.name,
    'configuration_id', event.configuration_id,
    'configuration_name', event.name,
    'revision', event.revision,
    'kind', event.kind
)::text"""

EVENT_COLUMNS = "application_id, configuration_id, name, revision, kind"

# One round trip: record the event (its xid defaults to the writing transaction's) and build
# the payload to announce once the transaction has committed.
RECORD = f"""
WITH event AS (
    INSERT INTO configuration_events ({EVENT_COLUMNS})
    VALUES (%(application_id)s, %(configuration_id)s, %(name)s, %(revision)s, %(kind)s)
    RETURNING id, {EVENT_COLUMNS}
)
SELECT event.id, {PAYLOAD} AS payload
FROM event LEFT JOIN applications ON applications.id = event.application_id
"""

# Many notifications in one transaction: one pass through the notify lock. Sent alone (the two
# statements of one query string are one transaction), not waiting for its WAL flush: a
# notification is a hint, the event row is the record.
ANNOUNCE = (
    "SET LOCAL synchronous_commit TO off; "
    "SELECT count(pg_notify(%(channel)s, payload)) FROM unnest(%(payloads)s::text[]) AS payload"
)

# One statement, so the events and the snapshot's xmin come from the same snapshot. Every
# transaction below xmin has finished, so an event not visible now has xid >= xmin: the next
# read, from this xmin, finds it. The first read (since NULL) starts at the current xmin.
# Always one row at least: with no events, the xmin alone (id and payload NULL).
CATCH_UP = f"""
SELECT snapshot.xmin::text AS floor, event.id, {PAYLOAD} AS payload
FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) AS snapshot
LEFT JOIN (configuration_events AS event LEFT JOIN applications ON applications.id = event.application_id)
    ON event.xid >= coalesce(%(since)s::xid8, snapshot.xmin)
ORDER BY event.id
"""


@dataclass(frozen=True)
class RecordedChange:
    id: int
    payload: str


@dataclass(frozen=True)
class CaughtUp:
    """The events that may be news since the previous read, and where the next read starts."""

    floor: int
    events: tuple[RecordedChange, ...]


class ChangeRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def record(
        self, *, application_id: str, configuration_id: str, name: str, revision: int, kind: str
    ) -> RecordedChange:
        """Insert one event; return it with the payload that announces it."""
        params = {
            "application_id": application_id,
            "configuration_id": configuration_id,
            "name": name,
            "revision": revision,
            "kind": kind,
        }
        return self.tx.fetch_one(RECORD, params, row=RecordedChange)

    def announce(self, channel: str, payloads: list[str]) -> int:
        """NOTIFY `channel` of every payload, in a transaction of its own (autocommit); how many."""
        return self.tx.fetch_value(ANNOUNCE, {"channel": channel, "payloads": payloads})

    def catch_up(self, since: int | None) -> CaughtUp:
        """Every event of a transaction that had not finished at the read that returned `since`."""
        rows = self.tx.fetch_all(CATCH_UP, {"since": None if since is None else str(since)})
        return CaughtUp(
            floor=int(rows[0]["floor"]),
            events=tuple(RecordedChange(id=row["id"], payload=row["payload"]) for row in rows if row["id"] is not None),
        )
