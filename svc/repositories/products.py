"""SQL for an application's product data: `application_documents` (metadata; the content is
the document of the same id), `work_items` and `source_repositories`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from svc.db import Constraints, Transaction
from svc.errors import Conflict


@dataclass(frozen=True)
class SourceRepository:
    id: str
    application_id: str
    name: str
    full_name: str
    description: str | None
    url: str | None
    default_branch: str | None
    is_private: bool
    language: str | None
    github_id: int | None
    stars_count: int
    forks_count: int
    revision: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class WorkItem:
    id: str
    application_id: str
    title: str
    description: str | None
    type: str
    status: str
    priority: str
    repository_id: str | None
    revision: int
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ApplicationDocument:
    """An application document's metadata joined with its document's head."""

    id: str
    application_id: str
    title: str
    type: str
    is_pinned: bool
    repository_id: str | None
    head_version: int
    head_sha: str | None
    created_at: datetime
    updated_at: datetime


REPOSITORY_FIELDS = (
    "name", "full_name", "description", "url", "default_branch", "is_private", "language", "github_id",
    "stars_count", "forks_count",
)
REPOSITORY_COLUMNS = f"id, application_id, {', '.join(REPOSITORY_FIELDS)}, revision, created_at, updated_at"
WORK_ITEM_FIELDS = ("title", "description", "type", "priority", "repository_id")
WORK_ITEM_COLUMNS = (
    "id, application_id, title, description, type, status, priority, repository_id, revision, created_by, "
    "created_at, updated_at"
)
DOCUMENT_FIELDS = ("title", "type", "is_pinned", "repository_id")
DOCUMENT_COLUMNS = (
    "a.id, a.application_id, a.title, a.type, a.is_pinned, a.repository_id, d.head_version, d.head_sha, "
    "a.created_at, greatest(a.updated_at, d.updated_at) AS updated_at"
)

# --- source repositories ------------------------------------------------------------------

INSERT_REPOSITORY = f"""
INSERT INTO source_repositories (id, application_id, {', '.join(REPOSITORY_FIELDS)})
VALUES (%(id)s, %(application_id)s, {', '.join(f'%({f})s' for f in REPOSITORY_FIELDS)})
RETURNING {REPOSITORY_COLUMNS}
"""

GET_REPOSITORY = f"SELECT {REPOSITORY_COLUMNS} FROM source_repositories WHERE id = %(id)s"
LOCK_REPOSITORY = f"{GET_REPOSITORY} FOR UPDATE"

LIST_REPOSITORIES = f"""
SELECT {REPOSITORY_COLUMNS} FROM source_repositories
WHERE application_id = %(application_id)s AND (%(after)s::text IS NULL OR id > %(after)s)
ORDER BY id
LIMIT %(limit)s
"""

UPDATE_REPOSITORY = f"""
UPDATE source_repositories
SET {', '.join(f'{f} = %({f})s' for f in REPOSITORY_FIELDS)}, revision = revision + 1, updated_at = now()
WHERE id = %(id)s
RETURNING {REPOSITORY_COLUMNS}
"""

DELETE_REPOSITORY = "DELETE FROM source_repositories WHERE id = %(id)s"

# A repository added by hand (no github_id) and imported later is the same repository: the
# import adopts it by its full name rather than adding a second row.
ADOPT_REPOSITORIES = """
UPDATE source_repositories r
SET github_id = i.github_id
FROM unnest(%(full_names)s::text[], %(github_ids)s::bigint[]) AS i (full_name, github_id)
WHERE r.id = (
      SELECT min(o.id) FROM source_repositories o
      WHERE o.application_id = %(application_id)s AND o.github_id IS NULL AND lower(o.full_name) = lower(i.full_name)
  )
  AND NOT EXISTS (
      SELECT 1 FROM source_repositories o WHERE o.application_id = %(application_id)s AND o.github_id = i.github_id
  )
"""

# Idempotent by GitHub's id: importing again refreshes the metadata (and counts a revision
# only when something changed).
UPSERT_REPOSITORIES = f"""
INSERT INTO source_repositories (id, application_id, {', '.join(REPOSITORY_FIELDS)})
SELECT i.id, %(application_id)s, i.name, i.full_name, i.description, i.url, i.default_branch, i.is_private,
       i.language, i.github_id, i.stars_count, i.forks_count
FROM unnest(%(ids)s::text[], %(names)s::text[], %(full_names)s::text[], %(descriptions)s::text[],
            %(urls)s::text[], %(default_branches)s::text[], %(privates)s::boolean[], %(languages)s::text[],
            %(github_ids)s::bigint[], %(stars)s::integer[], %(forks)s::integer[])
     AS i (id, name, full_name, description, url, default_branch, is_private, language, github_id,
           stars_count, forks_count)
ON CONFLICT ON CONSTRAINT source_repositories_application_id_github_id_key DO UPDATE
SET {', '.join(f'{f} = EXCLUDED.{f}' for f in REPOSITORY_FIELDS if f != 'github_id')},
    revision = source_repositories.revision + 1, updated_at = now()
WHERE ({', '.join(f'source_repositories.{f}' for f in REPOSITORY_FIELDS)})
      IS DISTINCT FROM ({', '.join(f'EXCLUDED.{f}' for f in REPOSITORY_FIELDS)})
RETURNING {REPOSITORY_COLUMNS}
"""

REPOSITORIES_BY_GITHUB_ID = f"""
SELECT {REPOSITORY_COLUMNS} FROM source_repositories
WHERE application_id = %(application_id)s AND github_id = ANY(%(github_ids)s::bigint[])
ORDER BY full_name
"""

REPOSITORY_CONSTRAINTS: Constraints = {
    "source_repositories_application_id_github_id_key": lambda p: Conflict(
        f"a repository with github_id {p.get('github_id')} is already part of this application"
    ),
}

# --- work items ---------------------------------------------------------------------------

INSERT_WORK_ITEM = f"""
INSERT INTO work_items (id, application_id, title, description, type, priority, repository_id, created_by)
VALUES (%(id)s, %(application_id)s, %(title)s, %(description)s, %(type)s, %(priority)s, %(repository_id)s,
        %(created_by)s)
RETURNING {WORK_ITEM_COLUMNS}
"""

GET_WORK_ITEM = f"SELECT {WORK_ITEM_COLUMNS} FROM work_items WHERE id = %(id)s"
LOCK_WORK_ITEM = f"{GET_WORK_ITEM} FOR UPDATE"

LIST_WORK_ITEMS = f"""
SELECT {WORK_ITEM_COLUMNS} FROM work_items
WHERE application_id = %(application_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(type)s::text IS NULL OR type = %(type)s)
  AND (%(after)s::text IS NULL OR id > %(after)s)
ORDER BY id
LIMIT %(limit)s
"""

UPDATE_WORK_ITEM = f"""
UPDATE work_items
SET title = %(title)s, description = %(description)s, type = %(type)s, priority = %(priority)s,
    repository_id = %(repository_id)s, revision = revision + 1, updated_at = now()
WHERE id = %(id)s
RETURNING {WORK_ITEM_COLUMNS}
"""

SET_STATUS = f"""
UPDATE work_items SET status = %(status)s, revision = revision + 1, updated_at = now()
WHERE id = %(id)s
RETURNING {WORK_ITEM_COLUMNS}
"""

DELETE_WORK_ITEM = "DELETE FROM work_items WHERE id = %(id)s"

# --- application documents ----------------------------------------------------------------

INSERT_DOCUMENT = """
INSERT INTO application_documents (id, application_id, title, type, is_pinned, repository_id)
VALUES (%(id)s, %(application_id)s, %(title)s, %(type)s, %(is_pinned)s, %(repository_id)s)
"""

GET_DOCUMENT = f"""
SELECT {DOCUMENT_COLUMNS}
FROM application_documents a JOIN documents d ON d.id = a.id
WHERE a.id = %(id)s
"""
# Kept from being deleted (not from being changed) until the transaction ends: the writes of
# its content hold it, its deletion locks it first (then the document row, as writes do).
HOLD_DOCUMENT = f"{GET_DOCUMENT} FOR KEY SHARE OF a"
LOCK_DOCUMENT = f"{GET_DOCUMENT} FOR UPDATE OF a"

# Pinned first, then newest (ids are ULIDs: newest is the greatest); the cursor is
# "<0|1>.<id>" of the last row of the previous page.
LIST_DOCUMENTS = f"""
SELECT {DOCUMENT_COLUMNS}
FROM application_documents a JOIN documents d ON d.id = a.id
WHERE a.application_id = %(application_id)s
  AND (%(type)s::text IS NULL OR a.type = %(type)s)
  AND (%(pinned)s::boolean IS NULL OR a.is_pinned = %(pinned)s)
  AND (%(after_id)s::text IS NULL OR (a.is_pinned, a.id) < (%(after_pinned)s, %(after_id)s))
ORDER BY a.is_pinned DESC, a.id DESC
LIMIT %(limit)s
"""

UPDATE_DOCUMENT = """
UPDATE application_documents
SET title = %(title)s, type = %(type)s, is_pinned = %(is_pinned)s, repository_id = %(repository_id)s,
    updated_at = now()
WHERE id = %(id)s
"""

COUNT_PARTS = """
SELECT (SELECT count(*) FROM work_items WHERE application_id = %(id)s) AS work_items,
       (SELECT count(*) FROM source_repositories WHERE application_id = %(id)s) AS repositories
"""

# A repository_id given to a work item or a document must be one of the same application's.
REPOSITORY_OF_APPLICATION = """
SELECT EXISTS (SELECT 1 FROM source_repositories WHERE id = %(id)s AND application_id = %(application_id)s)
"""


class ProductRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    # --- source repositories -----------------------------------------------------------

    def insert_repository(self, *, id: str, application_id: str, fields: dict[str, Any]) -> SourceRepository:
        params = {"id": id, "application_id": application_id, **{f: fields.get(f) for f in REPOSITORY_FIELDS}}
        return self.tx.fetch_one(INSERT_REPOSITORY, params, row=SourceRepository, constraints=REPOSITORY_CONSTRAINTS)

    def repository(self, repository_id: str, *, lock: bool = False) -> SourceRepository | None:
        sql = LOCK_REPOSITORY if lock else GET_REPOSITORY
        return self.tx.fetch_one(sql, {"id": repository_id}, row=SourceRepository)

    def repositories(self, application_id: str, *, limit: int, after: str | None) -> list[SourceRepository]:
        params = {"application_id": application_id, "limit": limit, "after": after}
        return self.tx.fetch_all(LIST_REPOSITORIES, params, row=SourceRepository)

    def update_repository(self, repository_id: str, fields: dict[str, Any]) -> SourceRepository:
        params = {"id": repository_id, **fields}
        return self.tx.fetch_one(UPDATE_REPOSITORY, params, row=SourceRepository, constraints=REPOSITORY_CONSTRAINTS)

    def delete_repository(self, repository_id: str) -> None:
        self.tx.execute(DELETE_REPOSITORY, {"id": repository_id})

    def upsert_repositories(
        self, application_id: str, rows: list[dict[str, Any]]
    ) -> tuple[list[SourceRepository], list[SourceRepository]]:
        """Insert or refresh these repositories (by github_id); returns (changed rows, all rows)."""
        columns = {
            "ids": "id", "names": "name", "full_names": "full_name", "descriptions": "description", "urls": "url",
            "default_branches": "default_branch", "privates": "is_private", "languages": "language",
            "github_ids": "github_id", "stars": "stars_count", "forks": "forks_count",
        }
        params = {"application_id": application_id, **{k: [row[c] for row in rows] for k, c in columns.items()}}
        self.tx.execute(ADOPT_REPOSITORIES, params)
        changed = self.tx.fetch_all(UPSERT_REPOSITORIES, params, row=SourceRepository)
        current = self.tx.fetch_all(REPOSITORIES_BY_GITHUB_ID, params, row=SourceRepository)
        return changed, current

    def repository_belongs(self, repository_id: str, application_id: str) -> bool:
        return self.tx.fetch_value(REPOSITORY_OF_APPLICATION, {"id": repository_id, "application_id": application_id})

    # --- work items --------------------------------------------------------------------

    def insert_work_item(self, *, id: str, application_id: str, created_by: str, fields: dict[str, Any]) -> WorkItem:
        params = {"id": id, "application_id": application_id, "created_by": created_by, **fields}
        return self.tx.fetch_one(INSERT_WORK_ITEM, params, row=WorkItem)

    def work_item(self, work_item_id: str, *, lock: bool = False) -> WorkItem | None:
        return self.tx.fetch_one(LOCK_WORK_ITEM if lock else GET_WORK_ITEM, {"id": work_item_id}, row=WorkItem)

    def work_items(
        self, application_id: str, *, status: str | None, type: str | None, limit: int, after: str | None
    ) -> list[WorkItem]:
        params = {"application_id": application_id, "status": status, "type": type, "limit": limit, "after": after}
        return self.tx.fetch_all(LIST_WORK_ITEMS, params, row=WorkItem)

    def update_work_item(self, work_item_id: str, fields: dict[str, Any]) -> WorkItem:
        return self.tx.fetch_one(UPDATE_WORK_ITEM, {"id": work_item_id, **fields}, row=WorkItem)

    def set_status(self, work_item_id: str, status: str) -> WorkItem:
        return self.tx.fetch_one(SET_STATUS, {"id": work_item_id, "status": status}, row=WorkItem)

    def delete_work_item(self, work_item_id: str) -> None:
        self.tx.execute(DELETE_WORK_ITEM, {"id": work_item_id})

    # --- application documents ---------------------------------------------------------

    def insert_document(self, *, id: str, application_id: str, fields: dict[str, Any]) -> None:
        self.tx.execute(INSERT_DOCUMENT, {"id": id, "application_id": application_id, **fields})

    def document(self, document_id: str, *, lock: str | None = None) -> ApplicationDocument | None:
        """The document's metadata; `lock`: "hold" (keep it from being deleted) or "update"."""
        sql = {None: GET_DOCUMENT, "hold": HOLD_DOCUMENT, "update": LOCK_DOCUMENT}[lock]
        return self.tx.fetch_one(sql, {"id": document_id}, row=ApplicationDocument)

    def documents(
        self, application_id: str, *, type: str | None, pinned: bool | None, limit: int, after: tuple[bool, str] | None
    ) -> list[ApplicationDocument]:
        params = {
            "application_id": application_id, "type": type, "pinned": pinned, "limit": limit,
            "after_pinned": None if after is None else after[0], "after_id": None if after is None else after[1],
        }
        return self.tx.fetch_all(LIST_DOCUMENTS, params, row=ApplicationDocument)

    def update_document(self, document_id: str, fields: dict[str, Any]) -> None:
        self.tx.execute(UPDATE_DOCUMENT, {"id": document_id, **fields})

    def count_parts(self, application_id: str) -> dict[str, int]:
        """How many work items and repositories an application has (for the audit of its deletion)."""
        return dict(self.tx.fetch_one(COUNT_PARTS, {"id": application_id}))

