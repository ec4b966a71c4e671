"""SQL for `claude_md_documents` and `claude_md_versions` (metadata; the bytes live in git)."""

from __future__ import annotations

from typing import Any

from svc.db import Transaction

DOCUMENT_COLUMNS = "id, user_id, head_version, head_sha, created_at, updated_at"
VERSION_COLUMNS = "version, commit_sha, author, message, size_bytes, created_at"

# The row is created by the first save, in its transaction; a concurrent first save waits
# on the unique index and then finds the row.
CREATE_DOCUMENT = """
INSERT INTO claude_md_documents (id, user_id)
VALUES (%(id)s, %(user_id)s)
ON CONFLICT (user_id) DO NOTHING
"""

GET_DOCUMENT_OF_USER = f"SELECT {DOCUMENT_COLUMNS} FROM claude_md_documents WHERE user_id = %(user_id)s"

# The lock that serializes writers of one document (and the repairs of `svc verify`).
LOCK_DOCUMENT_OF_USER = f"{GET_DOCUMENT_OF_USER} FOR UPDATE"
LOCK_DOCUMENT = f"SELECT {DOCUMENT_COLUMNS} FROM claude_md_documents WHERE id = %(id)s FOR UPDATE"

LIST_DOCUMENTS = f"""
SELECT {DOCUMENT_COLUMNS} FROM claude_md_documents
WHERE (%(after)s::text IS NULL OR id > %(after)s)
ORDER BY id
LIMIT %(limit)s
"""

DOCUMENT_EXISTS = "SELECT EXISTS (SELECT 1 FROM claude_md_documents WHERE id = %(id)s)"

INSERT_VERSION = f"""
INSERT INTO claude_md_versions (document_id, version, commit_sha, author, message, size_bytes)
VALUES (%(document_id)s, %(version)s, %(commit_sha)s, %(author)s, %(message)s, %(size_bytes)s)
RETURNING {VERSION_COLUMNS}
"""

ADVANCE_HEAD = f"""
UPDATE claude_md_documents
SET head_version = %(version)s, head_sha = %(commit_sha)s, updated_at = now()
WHERE id = %(id)s
RETURNING {DOCUMENT_COLUMNS}
"""

# Newest first; the cursor is the version number of the last entry of the previous page.
HISTORY = f"""
SELECT {VERSION_COLUMNS} FROM claude_md_versions
WHERE document_id = %(document_id)s
  AND (%(before)s::integer IS NULL OR version < %(before)s)
ORDER BY version DESC
LIMIT %(limit)s
"""

# A full sha or an abbreviation of one; two rows back means the abbreviation is ambiguous.
FIND_VERSIONS = f"""
SELECT {VERSION_COLUMNS} FROM claude_md_versions
WHERE document_id = %(document_id)s AND commit_sha LIKE %(prefix)s || '%%'
ORDER BY version
LIMIT 2
"""

VERSION_SHAS = """
SELECT document_id, commit_sha FROM claude_md_versions
WHERE document_id = ANY(%(document_ids)s)
ORDER BY document_id, version
"""


class ClaudeMdRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def of_user(self, user_id: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(GET_DOCUMENT_OF_USER, {"user_id": user_id})

    def lock_of_user(self, user_id: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(LOCK_DOCUMENT_OF_USER, {"user_id": user_id})

    def create_and_lock(self, *, id: str, user_id: str) -> dict[str, Any]:
        """The user's document, locked for writing; created (head version 0) when missing."""
        document = self.lock_of_user(user_id)
        if document is None:
            self.tx.execute(CREATE_DOCUMENT, {"id": id, "user_id": user_id})
            document = self.lock_of_user(user_id)
        return document

    def lock(self, document_id: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(LOCK_DOCUMENT, {"id": document_id})

    def list(self, *, limit: int, after: str | None) -> list[dict[str, Any]]:
        return self.tx.fetch_all(LIST_DOCUMENTS, {"limit": limit, "after": after})

    def exists(self, document_id: str) -> bool:
        return self.tx.fetch_value(DOCUMENT_EXISTS, {"id": document_id})

    def add_version(self, document_id: str, **version: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Record a version and make it the head; returns (version, document)."""
        row = self.tx.fetch_one(INSERT_VERSION, {"document_id": document_id, **version})
        document = self.tx.fetch_one(
            ADVANCE_HEAD, {"id": document_id, "version": row["version"], "commit_sha": row["commit_sha"]}
        )
        return row, document

    def history(self, document_id: str, *, limit: int, before: int | None) -> list[dict[str, Any]]:
        return self.tx.fetch_all(HISTORY, {"document_id": document_id, "limit": limit, "before": before})

    def find_versions(self, document_id: str, sha_prefix: str) -> list[dict[str, Any]]:
        return self.tx.fetch_all(FIND_VERSIONS, {"document_id": document_id, "prefix": sha_prefix})

    def version_shas(self, document_ids: list[str]) -> list[dict[str, Any]]:
        """(document_id, commit_sha) of every version of these documents."""
        return self.tx.fetch_all(VERSION_SHAS, {"document_ids": document_ids})
