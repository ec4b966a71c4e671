"""SQL for `configurations` and `configuration_revisions`; a change is recorded with its
`configuration_events` and `audit_events` rows by one statement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from svc.db import Constraints, Prepared, Transaction, jsonb
from svc.errors import Conflict, NotFound
from svc.repositories.audit import INSERT_COLUMNS as AUDIT_COLUMNS
from svc.repositories.audit import AuditEntry
from svc.repositories.changes import EVENT_COLUMNS, PAYLOAD

COLUMNS = "id, application_id, name, comments, config, schema, secret_paths, revision, created_at, updated_at"

GET = Prepared("svc_configuration", f"SELECT {COLUMNS} FROM configurations WHERE id = %(id)s")

# The statements of several writes at once name their rows in a JSON array (jsonb_to_recordset),
# which PostgreSQL guesses at 100 rows: joined plainly with `configurations`, it is planned as a
# scan of the whole table whenever that looks cheaper than 100 index lookups, as it does up to
# a few thousand configurations (measured: 400 pages read for one write among 2,000). So each row
# is looked up on its own, by a LATERAL subquery that its LIMIT keeps from being merged back into
# a join, or by `id = ANY (ARRAY(...))`, one index scan.

# Writers' starting points in one round trip, for several writes at once (`targets`: a JSON
# array of {"id", "user_id"}, ids distinct): each row, and what the access rule needs of its
# application (its team, and the writing user's role in that team).
_FOR_WRITE = f"""
SELECT {', '.join(f'c.{c}' for c in COLUMNS.split(', '))}, a.team_id, m.role AS team_role
FROM jsonb_to_recordset(%(targets)s::jsonb) AS target(id text, user_id text)
CROSS JOIN LATERAL (SELECT {COLUMNS} FROM configurations WHERE id = target.id LIMIT 1{{lock}}) AS c
JOIN applications a ON a.id = c.application_id
LEFT JOIN team_members m ON m.team_id = a.team_id AND m.user_id = target.user_id::ulid
"""
FOR_WRITE = Prepared("svc_configurations_for_write", _FOR_WRITE.format(lock=""))
# The same, locked against other writers until the transaction ends.
LOCK_FOR_WRITE = _FOR_WRITE.format(lock=" FOR UPDATE")

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


def _recording(change: str) -> str:
    """The statement that records changes (`%(changes)s`: a JSON array of `_change` objects;
    `change`: an INSERT or UPDATE of `configurations` from the rows of `change`, RETURNING its
    columns) in one round trip and one transaction, even in autocommit: for each, the new state
    (`written`), its revision row, its change event and its audit event.
    Every part reads `written`, so a change that touches no row (an update whose expected
    revision is no longer current) records nothing at all and returns no row; the others do."""
    return f"""
WITH change AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset(%(changes)s::jsonb) AS change(
        id text, application_id text, name text, expected_revision integer,
        config jsonb, schema jsonb, secret_paths jsonb, comments text,
        author text, message text, kind text, audit jsonb
    )
),
written AS ({change}),
recorded AS (SELECT written.*, change.author, change.message, change.kind, change.audit
             FROM written JOIN change ON change.id = written.id),
revision AS (
    INSERT INTO configuration_revisions
        (configuration_id, revision, config, schema, secret_paths, comments, author, message)
    SELECT id, revision, config, schema, secret_paths, comments, author, message FROM recorded
),
event AS (
    INSERT INTO configuration_events ({EVENT_COLUMNS})
    SELECT application_id, id, name, revision, kind FROM recorded
    RETURNING id, {EVENT_COLUMNS}
),
audit AS (
    INSERT INTO audit_events ({AUDIT_COLUMNS})
    SELECT {', '.join(f'entry.{c}' for c in AUDIT_COLUMNS.split(', '))}
    FROM recorded CROSS JOIN jsonb_populate_record(NULL::audit_events, recorded.audit) AS entry
)
SELECT {', '.join(f'written.{c}' for c in COLUMNS.split(', '))}, event.id AS event_id, {PAYLOAD} AS payload
FROM written JOIN event ON event.configuration_id = written.id
LEFT JOIN applications ON applications.id = event.application_id
"""


RECORD_CREATION = _recording(f"""
    INSERT INTO configurations (id, application_id, name, config, schema, secret_paths, comments, revision)
    SELECT id, application_id, name, config, schema, secret_paths, comments, 1 FROM change
    RETURNING {COLUMNS}""")

# Each change applies only while its row is at its `expected_revision`: the writer's If-Match
# check and its new revision number were worked out from that state. A row another transaction
# holds is about to move on, so it is skipped (recording nothing, as a moved row) rather than
# waited for: one busy row does not hold up the other changes of the statement, and two
# statements that take the same rows in different orders cannot deadlock.
RECORD_UPDATES = Prepared("svc_configuration_updates", _recording(f"""
    UPDATE configurations c
    SET (config, schema, secret_paths, comments) = (change.config, change.schema, change.secret_paths, change.comments),
        revision = c.revision + 1,
        updated_at = now()
    FROM (
        SELECT change.* FROM change
        CROSS JOIN LATERAL (
            SELECT FROM configurations current
            WHERE current.id = change.id AND current.revision = change.expected_revision
            FOR UPDATE SKIP LOCKED
        ) AS current
    ) AS change
    WHERE c.id = change.id AND c.id = ANY (ARRAY(SELECT id FROM change))
    RETURNING {', '.join(f'c.{c}' for c in COLUMNS.split(', '))}"""))

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
    payload: str  # the event's announcement (svc/changes.py)


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


@dataclass(frozen=True)
class Event:
    """Who made a change and why: the revision's author and message, the change event's kind, the audit event."""

    author: str
    message: str | None
    kind: str
    audit: AuditEntry


@dataclass(frozen=True)
class Planned:
    """An update to record: the configuration, its new state, the revision that was worked out
    from, and its event."""

    configuration_id: str
    state: State
    expected_revision: int
    event: Event


def _change(configuration_id: str, state: State, event: Event, **more: Any) -> dict[str, Any]:
    """One element of the recording statement's `changes` (serialised by orjson, dataclasses as objects)."""
    return {"id": configuration_id, **vars(state), **vars(event), **more}


class ConfigurationRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def record_creation(
        self, state: State, *, id: str, application_id: str, name: str, event: Event
    ) -> Recorded:
        """Insert a configuration at revision 1, with its revision, change event and audit event."""
        changes = [_change(id, state, event, application_id=application_id, name=name)]
        params = {"changes": jsonb(changes), "application_id": application_id, "name": name}  # names for CONSTRAINTS
        return self.tx.fetch_one(RECORD_CREATION, params, row=_recorded, constraints=CONSTRAINTS)

    def record_updates(self, changes: Sequence[Planned]) -> list[Recorded]:
        """Each configuration's next revision (configurations distinct), with its revision row, change
        event and audit event, all in one statement; a configuration no longer at its change's
        `expected_revision` records nothing and has no row in the result."""
        planned = [_change(c.configuration_id, c.state, c.event, expected_revision=c.expected_revision)
                   for c in changes]
        return self.tx.fetch_all(RECORD_UPDATES, {"changes": jsonb(planned)}, row=_recorded)

    def get(self, configuration_id: str) -> Configuration | None:
        return self.tx.fetch_one(GET, {"id": configuration_id}, row=Configuration)

    def for_writes(self, targets: Sequence[tuple[str, str | None]], *, lock: bool = False) -> list[WriteTarget]:
        """The rows writes start from, for (configuration id, writing user id) pairs (ids distinct;
        a missing configuration has no row), each with the access rule's facts for its user;
        with `lock`, locked against other writers until the transaction ends."""
        params = {"targets": jsonb([{"id": id_, "user_id": user_id} for id_, user_id in targets])}
        return self.tx.fetch_all(LOCK_FOR_WRITE if lock else FOR_WRITE, params, row=_write_target)

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
