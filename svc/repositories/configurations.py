"""SQL for `configurations` and `configuration_revisions`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from svc.db import Constraints, Transaction, jsonb
from svc.errors import Conflict, NotFound

COLUMNS = "id, application_id, name, comments, config, schema, revision, created_at, updated_at"

INSERT = f"""
INSERT INTO configurations (id, application_id, name, comments, config, schema, revision)
VALUES (%(id)s, %(application_id)s, %(name)s, %(comments)s, %(config)s, %(schema)s, 1)
RETURNING {COLUMNS}
"""

GET = f"SELECT {COLUMNS} FROM configurations WHERE id = %(id)s"

# Writers lock the row first: the revision counter and the If-Match check happen under this lock.
LOCK = f"SELECT {COLUMNS} FROM configurations WHERE id = %(id)s FOR UPDATE"

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

UPDATE = f"""
UPDATE configurations
SET config = %(config)s, schema = %(schema)s, comments = %(comments)s, revision = %(revision)s,
    updated_at = now()
WHERE id = %(id)s
RETURNING {COLUMNS}
"""

DELETE = "DELETE FROM configurations WHERE id = %(id)s"

REVISION_COLUMNS = "revision, config, schema, comments, author, message, created_at"

INSERT_REVISION = """
INSERT INTO configuration_revisions (configuration_id, revision, config, schema, comments, author, message)
VALUES (%(configuration_id)s, %(revision)s, %(config)s, %(schema)s, %(comments)s, %(author)s, %(message)s)
"""

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


def configuration_version(configuration_id: str, revision: int) -> str:
    """The version string behind a configuration's ETag: `<id>.<revision>` (the one definition)."""
    return f"{configuration_id}.{revision}"


@dataclass(frozen=True)
class Configuration:
    id: str
    application_id: str
    name: str
    comments: str | None
    config: dict[str, Any]
    schema: dict[str, Any] | None
    revision: int
    created_at: datetime
    updated_at: datetime

    @property
    def version(self) -> str:
        return configuration_version(self.id, self.revision)


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
    comments: str | None
    author: str
    message: str | None
    created_at: datetime


class ConfigurationRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(
        self,
        *,
        id: str,
        application_id: str,
        name: str,
        comments: str | None,
        config: dict[str, Any],
        schema: dict[str, Any] | None,
    ) -> Configuration:
        params = {
            "id": id,
            "application_id": application_id,
            "name": name,
            "comments": comments,
            "config": jsonb(config),
            "schema": _nullable_jsonb(schema),
        }
        return self.tx.fetch_one(INSERT, params, row=Configuration, constraints=CONSTRAINTS)

    def get(self, configuration_id: str) -> Configuration | None:
        return self.tx.fetch_one(GET, {"id": configuration_id}, row=Configuration)

    def lock(self, configuration_id: str) -> Configuration | None:
        """The row, locked against other writers until the transaction ends."""
        return self.tx.fetch_one(LOCK, {"id": configuration_id}, row=Configuration)

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

    def update(
        self,
        configuration_id: str,
        *,
        config: dict[str, Any],
        schema: dict[str, Any] | None,
        comments: str | None,
        revision: int,
    ) -> Configuration:
        params = {
            "id": configuration_id,
            "config": jsonb(config),
            "schema": _nullable_jsonb(schema),
            "comments": comments,
            "revision": revision,
        }
        return self.tx.fetch_one(UPDATE, params, row=Configuration)

    def delete(self, configuration_id: str) -> None:
        self.tx.execute(DELETE, {"id": configuration_id})


class RevisionRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(
        self,
        configuration_id: str,
        *,
        revision: int,
        config: dict[str, Any],
        schema: dict[str, Any] | None,
        comments: str | None,
        author: str,
        message: str | None,
    ) -> None:
        params = {
            "configuration_id": configuration_id,
            "revision": revision,
            "config": jsonb(config),
            "schema": _nullable_jsonb(schema),
            "comments": comments,
            "author": author,
            "message": message,
        }
        self.tx.execute(INSERT_REVISION, params)

    def get(self, configuration_id: str, revision: int) -> Revision | None:
        params = {"configuration_id": configuration_id, "revision": revision}
        return self.tx.fetch_one(GET_REVISION, params, row=Revision)

    def list(self, configuration_id: str, *, limit: int, after: int | None) -> list[Revision]:
        params = {"configuration_id": configuration_id, "limit": limit, "after": after}
        return self.tx.fetch_all(LIST_REVISIONS, params, row=Revision)


def _nullable_jsonb(value: Any | None) -> Any:
    """SQL NULL for None (not the JSON `null` that jsonb(None) would be)."""
    return None if value is None else jsonb(value)
