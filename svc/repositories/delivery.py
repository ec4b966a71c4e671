"""SQL behind configuration delivery: resolve by names, and the change stream."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from svc.db import Prepared, Transaction
from svc.repositories.configurations import configuration_version

# config::text is PostgreSQL's own JSON rendering: valid JSON, served as is, never parsed in Python.
RESOLVE = Prepared("svc_resolve", """
SELECT c.id AS configuration_id, c.application_id, c.revision, c.config::text AS body, c.secret_paths
FROM configurations c
JOIN applications a ON a.id = c.application_id
WHERE a.name = %(application_name)s AND c.name = %(configuration_name)s
""")

APPLICATION_EXISTS = "SELECT EXISTS (SELECT 1 FROM applications WHERE id = %(application_id)s)"

# Where a stream starts: its application's latest event, and the oldest transaction still
# running (every event not visible to this statement has an xid at least that).
STREAM_START = """
SELECT coalesce(max(id), 0) AS latest, pg_snapshot_xmin(pg_current_snapshot())::text AS floor
FROM configuration_events
WHERE application_id = %(application_id)s
"""

EVENT_COLUMNS = "id, application_id, configuration_id, name, revision, kind"

# A page (by id, from `from_id`) of the events after a resume position: those with a higher id,
# and those with a lower one whose transaction was still running when the position was handed
# out (xid at least `floor`). Two index scans: by (application_id, id) and by xid.
EVENTS_AFTER = f"""
(SELECT {EVENT_COLUMNS} FROM configuration_events
 WHERE application_id = %(application_id)s AND id > greatest(%(after)s, %(from_id)s)
 ORDER BY id LIMIT %(limit)s)
UNION ALL
(SELECT {EVENT_COLUMNS} FROM configuration_events
 WHERE xid >= %(floor)s::xid8 AND application_id = %(application_id)s
   AND id > %(from_id)s AND id <= %(after)s)
ORDER BY id
LIMIT %(limit)s
"""

PRUNE_EVENTS = "DELETE FROM configuration_events WHERE occurred_at < now() - make_interval(hours => %(hours)s)"


@dataclass(frozen=True)
class Resolved:
    """A configuration as delivered: its JSON already rendered, and its version.

    As read, `body` is the stored JSON (secrets sealed); the delivery service caches and serves
    the masked or the revealed rendering, marked by `revealed`.
    """

    configuration_id: str
    application_id: str
    revision: int
    body: bytes
    secret_paths: list[str] = field(default_factory=list)
    revealed: bool = False

    @property
    def version(self) -> str:
        """The ETag value; the same one the configurations API uses for the same representation."""
        return configuration_version(self.configuration_id, self.revision, revealed=self.revealed)


@dataclass(frozen=True)
class ChangeEvent:
    id: int
    application_id: str
    configuration_id: str
    name: str
    revision: int
    kind: str

    def data(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "configuration_id": self.configuration_id,
                "name": self.name,
                "revision": self.revision,
                "kind": self.kind,
            }
        )


@dataclass(frozen=True)
class StreamStart:
    """The application's latest event id, and the xmin of the snapshot that read it."""

    latest: int
    floor: int


def _stream_start(*, latest: int, floor: str) -> StreamStart:
    return StreamStart(latest, int(floor))


def _resolved(
    *, configuration_id: str, application_id: str, revision: int, body: str, secret_paths: list[str]
) -> Resolved:
    return Resolved(configuration_id, application_id, revision, body.encode(), secret_paths)


class DeliveryRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def resolve(self, application_name: str, configuration_name: str) -> Resolved | None:
        params = {"application_name": application_name, "configuration_name": configuration_name}
        return self.tx.fetch_one(RESOLVE, params, row=_resolved)

    def application_exists(self, application_id: str) -> bool:
        return self.tx.fetch_value(APPLICATION_EXISTS, {"application_id": application_id})

    def stream_start(self, application_id: str) -> StreamStart:
        return self.tx.fetch_one(STREAM_START, {"application_id": application_id}, row=_stream_start)

    def events_after(
        self, application_id: str, after: int, floor: int | None, *, from_id: int, limit: int
    ) -> list[ChangeEvent]:
        """Events with an id above `after`, or at most `after` with an xid at least `floor` (None:
        no such), each above `from_id`, in id order."""
        params = {
            "application_id": application_id,
            "after": after,
            "floor": None if floor is None else str(floor),
            "from_id": from_id,
            "limit": limit,
        }
        return self.tx.fetch_all(EVENTS_AFTER, params, row=ChangeEvent)

    def prune_events(self, hours: int) -> int:
        return self.tx.execute(PRUNE_EVENTS, {"hours": hours})
