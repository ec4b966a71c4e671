"""SQL behind configuration delivery: resolve by names, and the change stream."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import overload

import orjson

from svc.db import AsyncStatements, Prepared, Repository, Runner, Transaction
from svc.repositories.configurations import configuration_version

# config::text is PostgreSQL's own JSON rendering: valid JSON, served as is, never parsed in Python.
RESOLVE = Prepared("svc_resolve", """
SELECT c.id AS configuration_id, c.application_id, c.revision, c.config::text AS body, c.secret_paths
FROM configurations c
JOIN applications a ON a.id = c.application_id
WHERE a.name = %(application_name)s AND c.name = %(configuration_name)s
""")

APPLICATION_EXISTS = "SELECT EXISTS (SELECT 1 FROM applications WHERE id = %(application_id)s)"

LATEST_EVENT_ID = "SELECT coalesce(max(id), 0) FROM configuration_events WHERE application_id = %(application_id)s"

EVENTS_AFTER = """
SELECT id, application_id, configuration_id, name, revision, kind
FROM configuration_events
WHERE application_id = %(application_id)s AND id > %(after)s
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


def _resolved(
    *, configuration_id: str, application_id: str, revision: int, body: str, secret_paths: list[str]
) -> Resolved:
    return Resolved(configuration_id, application_id, revision, body.encode(), secret_paths)


class DeliveryRepository(Repository[Runner]):
    @overload
    def resolve(self: DeliveryRepository[Transaction], application_name: str, configuration_name: str) -> Resolved | None: ...
    @overload
    def resolve(
        self: DeliveryRepository[AsyncStatements], application_name: str, configuration_name: str
    ) -> Awaitable[Resolved | None]: ...

    def resolve(self, application_name: str, configuration_name: str):
        params = {"application_name": application_name, "configuration_name": configuration_name}
        return self.tx.fetch_one(RESOLVE, params, row=_resolved)

    def application_exists(self: DeliveryRepository[Transaction], application_id: str) -> bool:
        return self.tx.fetch_value(APPLICATION_EXISTS, {"application_id": application_id})

    def latest_event_id(self: DeliveryRepository[Transaction], application_id: str) -> int:
        return self.tx.fetch_value(LATEST_EVENT_ID, {"application_id": application_id})

    def events_after(self: DeliveryRepository[Transaction], application_id: str, after: int, limit: int) -> list[ChangeEvent]:
        params = {"application_id": application_id, "after": after, "limit": limit}
        return self.tx.fetch_all(EVENTS_AFTER, params, row=ChangeEvent)

    def prune_events(self: DeliveryRepository[Transaction], hours: int) -> int:
        return self.tx.execute(PRUNE_EVENTS, {"hours": hours})
