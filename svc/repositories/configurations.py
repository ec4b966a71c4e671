"""SQL for `configurations` and `configuration_revisions`."""

from __future__ import annotations

from typing import Any

from svc.db import Transaction, jsonb

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

REVISION_COLUMNS = "revision, config, author, message, created_at"

INSERT_REVISION = """
INSERT INTO configuration_revisions (configuration_id, revision, config, author, message)
VALUES (%(configuration_id)s, %(revision)s, %(config)s, %(author)s, %(message)s)
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
    ) -> dict[str, Any]:
        params = {
            "id": id,
            "application_id": application_id,
            "name": name,
            "comments": comments,
            "config": jsonb(config),
            "schema": _nullable_jsonb(schema),
        }
        return self.tx.fetch_one(INSERT, params)

    def get(self, configuration_id: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(GET, {"id": configuration_id})

    def lock(self, configuration_id: str) -> dict[str, Any] | None:
        """The row, locked against other writers until the transaction ends."""
        return self.tx.fetch_one(LOCK, {"id": configuration_id})

    def list(
        self, application_id: str, *, limit: int, after: str | None, contains: Any | None
    ) -> list[dict[str, Any]]:
        params = {
            "application_id": application_id,
            "limit": limit,
            "after": after,
            "contains": _nullable_jsonb(contains),
        }
        return self.tx.fetch_all(LIST, params)

    def lock_of_application(self, application_id: str) -> list[dict[str, Any]]:
        """Id, name and revision of every configuration of an application, locked."""
        return self.tx.fetch_all(LOCK_OF_APPLICATION, {"application_id": application_id})

    def update(
        self,
        configuration_id: str,
        *,
        config: dict[str, Any],
        schema: dict[str, Any] | None,
        comments: str | None,
        revision: int,
    ) -> dict[str, Any]:
        params = {
            "id": configuration_id,
            "config": jsonb(config),
            "schema": _nullable_jsonb(schema),
            "comments": comments,
            "revision": revision,
        }
        return self.tx.fetch_one(UPDATE, params)

    def delete(self, configuration_id: str) -> None:
        self.tx.execute(DELETE, {"id": configuration_id})


class RevisionRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(
        self, configuration_id: str, *, revision: int, config: dict[str, Any], author: str, message: str | None
    ) -> None:
        params = {
            "configuration_id": configuration_id,
            "revision": revision,
            "config": jsonb(config),
            "author": author,
            "message": message,
        }
        self.tx.execute(INSERT_REVISION, params)

    def get(self, configuration_id: str, revision: int) -> dict[str, Any] | None:
        return self.tx.fetch_one(GET_REVISION, {"configuration_id": configuration_id, "revision": revision})

    def list(self, configuration_id: str, *, limit: int, after: int | None) -> list[dict[str, Any]]:
        params = {"configuration_id": configuration_id, "limit": limit, "after": after}
        return self.tx.fetch_all(LIST_REVISIONS, params)


def _nullable_jsonb(value: Any | None) -> Any:
    """SQL NULL for None (not the JSON `null` that jsonb(None) would be)."""
    return None if value is None else jsonb(value)
