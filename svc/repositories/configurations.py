"""SQL for `configurations` and `configuration_revisions`; a change is recorded with its
`configuration_events` and `audit_events` rows by one statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from svc.db import Constraints, Prepared, Transaction, jsonb
from svc.errors import Conflict, NotFound
from svc.repositories.audit import ENTRY as AUDIT_ENTRY
from svc.repositories.audit import INSERT_COLUMNS as AUDIT_COLUMNS
from svc.repositories.audit import AuditEntry
from svc.repositories.changes import EVENT_COLUMNS, PAYLOAD

COLUMNS = "id, application_id, name, comments, config, schema, secret_paths, revision, created_at, updated_at"

GET = Prepared("svc_configuration", f"SELECT {COLUMNS} FROM configurations WHERE id = %(id)s")

# A writer's starting point in one round trip: the row, and what the access rule needs of its
# application (its team, and the writing user's role in that team).
_FOR_WRITE = f"""
SELECT {', '.join(f'c.{c}' for c in COLUMNS.split(', '))}, a.team_id, m.role AS team_role
FROM configurations c
JOIN applications a ON a.id = c.application_id
LEFT JOIN team_members m ON m.team_id = a.team_id AND m.user_id = %(user_id)s::ulid
WHERE c.id = %(id)s
"""
FOR_WRITE = Prepared("svc_configuration_for_write", _FOR_WRITE)
# The same, locked against other writers until the transaction ends.
LOCK_FOR_WRITE = _FOR_WRITE + "FOR UPDATE OF c\n"

# `config @> %(contains)s` is what the GIN index (jsonb_path_ops) serves.
LIST = f"""
SELECT {COLUMNS} FROM configurations
WHERE application_id = %(application_id)s
  AND (%(after)s::text IS NULL OR id > %(after)s)
  AND (%(contains)s::jsonb IS NULL OR config @> %(contains)s::jsonb)
ORDER BY id
LIMIT %(limit)s
"""

LOCK_OF_APPLICATION = """
SELECT id, name, revision FROM configurations
WHERE application_id = %(application_id)s
ORDER BY id
FOR UPDATE
"""

DELETE = "DELETE FROM configurations WHERE id = %(id)s"

REVISION_COLUMNS = "revision, config, schema, secret_paths, comments, author, message, created_at"

STATE = "%(config)s, %(schema)s, %(secret_paths)s, %(comments)s"

def _recording(change: str) -> str:
    """The statement that records a change (`change`: an INSERT or UPDATE of `configurations`
    RETURNING its columns) in one round trip and one transaction, even in autocommit: the new
    state (`written`), its revision row, its change event and its audit event. Every part reads
    `written`, so when the change touches no row (an update whose expected revision is no
    longer current) nothing at all is recorded and no row is returned."""
    return f"""
WITH written AS ({change}),
revision AS (
    INSERT INTO configuration_revisions
        (configuration_id, revision, config, schema, secret_paths, comments, author, message)
    SELECT id, revision, config, schema, secret_paths, comments, %(author)s::text, %(message)s::text FROM written
),
event AS (
    INSERT INTO configuration_events ({EVENT_COLUMNS})
    SELECT application_id, id, name, revision, %(kind)s::text FROM written
    RETURNING id, {EVENT_COLUMNS}
),
audit AS (
    INSERT INTO audit_events ({AUDIT_COLUMNS}) SELECT {AUDIT_ENTRY} FROM written
)
SELECT {', '.join(f'written.{c}' for c in COLUMNS.split(', '))}, event.id AS event_id, {PAYLOAD} AS payload
FROM written CROSS JOIN event LEFT JOIN applications ON applications.id = event.application_id
"""


RECORD_CREATION = _recording(f"""
    INSERT INTO configurations (id, application_id, name, config, schema, secret_paths, comments, revision)
    VALUES (%(id)s, %(application_id)s, %(name)s, {STATE}, 1)
    RETURNING {COLUMNS}""")

# Applies only while the row is at `expected_revision`: the writer's If-Match check and its
# new revision number were worked out from that state.
RECORD_UPDATE = Prepared("svc_configuration_update", _recording(f"""
    UPDATE configurations
    SET (config, schema, secret_paths, comments) = ({STATE}),
        revision = revision + 1,
        updated_at = now()
    WHERE id = %(id)s AND revision = %(expected_revision)s
    RETURNING {COLUMNS}"""))

GET_REVISION = f"""
SELECT {REVISION_COLUMNS} FROM configuration_revisions
WHERE configuration_id = %(configuration_id)s AND revision = %(revision)s
"""

# Newest first; the cursor is the number of the last revision of the previous page.
LIST_REVISIONS = f"""
SELECT {REVISION_COLUMNS} FROM configuration_revisions
WHERE configuration_id = %(configuration_id)s
  AND (%(after)s::integer IS NULL OR revision < %(after)s)
ORDER BY revision DESC
LIMIT %(limit)s
"""

CONSTRAINTS: Constraints = {
    "configurations_application_id_name_key": lambda p: Conflict(
        f"configuration name '{p['name']}' is already taken in application {p['application_id']}"
    ),
    # The application was deleted between the caller's check and the insert.
    "configurations_application_id_fkey": lambda p: NotFound(f"application {p['application_id']} not found"),
}


REVEALED = ".r"


def configuration_version(configuration_id: str, revision: int, *, revealed: bool = False) -> str:
    """The version string behind a configuration's ETag: `<id>.<revision>` (the one definition).

    A body with secret values in clear is another representation of the same revision (RFC 9110
    §8.8.3), so it has its own tag: `<id>.<revision>.r`.
    """
    return f"{configuration_id}.{revision}{REVEALED if revealed else ''}"


def state_version(version: str) -> str:
    """The version of the state behind either representation's version (for a write's If-Match)."""
    return version.removesuffix(REVEALED)


@dataclass(frozen=True)
class Configuration:
    id: str
    application_id: str
    name: str
    comments: str | None
    config: dict[str, Any]
    schema: dict[str, Any] | None
    secret_paths: list[str]
    revision: int
    created_at: datetime
    updated_at: datetime

    @property
    def version(self) -> str:
        return configuration_version(self.id, self.revision)


@dataclass(frozen=True)
class WriteTarget:
    """A configuration as a writer reads it, with its application's team and the writer's role in it."""

    configuration: Configuration
    team_id: str | None
    team_role: str | None


def _write_target(team_id: str | None, team_role: str | None, **columns: Any) -> WriteTarget:
    return WriteTarget(Configuration(**columns), team_id, team_role)


@dataclass(frozen=True)
class Recorded:
    """A change as one statement recorded it: the configuration's new state, and its change event."""

    configuration: Configuration
    event_id: int
    payload: str  # the event's announcement (svc/services/changes.py)


def _recorded(event_id: int, payload: str, **columns: Any) -> Recorded:
    return Recorded(Configuration(**columns), event_id, payload)


@dataclass(frozen=True)
class ConfigurationHead:
    """What deleting an application needs of each of its configurations."""

    id: str
    name: str
    revision: int


@dataclass(frozen=True)
class Revision:
    """One state of a configuration: its JSON with the schema and comments in force with it.

    `schema` is null when there was none, and on revisions made before migration 0005 (other
    than each configuration's newest then), whose schema and comments were not recorded.
    """

    revision: int
    config: dict[str, Any]
    schema: dict[str, Any] | None
    secret_paths: list[str]
    comments: str | None
    author: str
    message: str | None
    created_at: datetime


@dataclass(frozen=True)
class State:
    """What a write stores of a configuration (secret values sealed)."""

    config: dict[str, Any]
    schema: dict[str, Any] | None
    secret_paths: list[str]
    comments: str | None

    def params(self) -> dict[str, Any]:
        return {
            "config": jsonb(self.config),
            "schema": _nullable_jsonb(self.schema),
            "secret_paths": jsonb(self.secret_paths),
            "comments": self.comments,
        }


@dataclass(frozen=True)
class Event:
    """Who made a change and why: the revision's author and message, the change event's kind, the audit event."""

    author: str
    message: str | None
    kind: str
    audit: AuditEntry

    def params(self) -> dict[str, Any]:
        return {"author": self.author, "message": self.message, "kind": self.kind, **self.audit.params()}


@dataclass(frozen=True)
class Planned:
    """An update to record: the new state, the revision it was worked out from, and its event."""

    state: State
    expected_revision: int
    event: Event


class ConfigurationRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def record_creation(
        self, state: State, *, id: str, application_id: str, name: str, event: Event
    ) -> Recorded:
        """Insert a configuration at revision 1, with its revision, change event and audit event."""
        params = {**state.params(), **event.params(), "id": id, "application_id": application_id, "name": name}
        return self.tx.fetch_one(RECORD_CREATION, params, row=_recorded, constraints=CONSTRAINTS)

    def record_update(self, configuration_id: str, change: Planned) -> Recorded | None:
        """The configuration's next revision, with its revision row, change event and audit event;
        None, recording nothing, when the configuration is no longer at `change.expected_revision`."""
        params = {
            **change.state.params(), **change.event.params(),
            "id": configuration_id, "expected_revision": change.expected_revision,
        }
        return self.tx.fetch_one(RECORD_UPDATE, params, row=_recorded)

    def get(self, configuration_id: str) -> Configuration | None:
        return self.tx.fetch_one(GET, {"id": configuration_id}, row=Configuration)

    def for_write(self, configuration_id: str, user_id: str | None, *, lock: bool = False) -> WriteTarget | None:
        """The row a write starts from (locked against other writers until the transaction ends,
        with `lock`), and the access rule's facts for `user_id`."""
        params = {"id": configuration_id, "user_id": user_id}
        return self.tx.fetch_one(LOCK_FOR_WRITE if lock else FOR_WRITE, params, row=_write_target)

    def list(
        self, application_id: str, *, limit: int, after: str | None, contains: Any | None
    ) -> list[Configuration]:
        params = {
            "application_id": application_id,
            "limit": limit,
            "after": after,
            "contains": _nullable_jsonb(contains),
        }
        return self.tx.fetch_all(LIST, params, row=Configuration)

    def lock_of_application(self, application_id: str) -> list[ConfigurationHead]:
        """Id, name and revision of every configuration of an application, locked."""
        return self.tx.fetch_all(LOCK_OF_APPLICATION, {"application_id": application_id}, row=ConfigurationHead)

    def delete(self, configuration_id: str) -> None:
        self.tx.execute(DELETE, {"id": configuration_id})


class RevisionRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def get(self, configuration_id: str, revision: int) -> Revision | None:
        params = {"configuration_id": configuration_id, "revision": revision}
        return self.tx.fetch_one(GET_REVISION, params, row=Revision)

    def list(self, configuration_id: str, *, limit: int, after: int | None) -> list[Revision]:
        params = {"configuration_id": configuration_id, "limit": limit, "after": after}
        return self.tx.fetch_all(LIST_REVISIONS, params, row=Revision)


def _nullable_jsonb(value: Any | None) -> Any:
    """SQL NULL for None (not the JSON `null` that jsonb(None) would be)."""
    return None if value is None else jsonb(value)
