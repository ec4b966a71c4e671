"""SQL for `documents`, `document_versions` and `document_proposals` (metadata; the bytes
live in git)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from svc.db import Transaction


@dataclass(frozen=True)
class Document:
    id: str
    kind: str
    owner_user_id: str | None
    owner_team_id: str | None
    owner_application_id: str | None
    head_version: int
    head_sha: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Version:
    version: int
    commit_sha: str
    author: str
    message: str
    size_bytes: int
    created_at: datetime


@dataclass(frozen=True)
class VersionSha:
    document_id: str
    kind: str
    commit_sha: str


@dataclass(frozen=True)
class ProposalSha:
    id: str
    document_id: str
    kind: str
    commit_sha: str


@dataclass(frozen=True)
class Proposal:
    id: str
    document_id: str
    status: str
    base_version: int
    base_sha: str | None
    commit_sha: str
    proposer_user_id: str | None
    author: str
    author_email: str
    message: str
    size_bytes: int
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    accepted_version: int | None


DOCUMENT_COLUMNS = (
    "id, kind, owner_user_id, owner_team_id, owner_application_id, head_version, head_sha, created_at, updated_at"
)
VERSION_COLUMNS = "version, commit_sha, author, message, size_bytes, created_at"
PROPOSAL_COLUMNS = (
    "id, document_id, status, base_version, base_sha, commit_sha, proposer_user_id, author, author_email, "
    "message, size_bytes, created_at, decided_by, decided_at, reason, accepted_version"
)

# The row is created by the first save, in its transaction; a concurrent first save waits
# on the unique constraint and then finds the row.
CREATE_DOCUMENT = """
INSERT INTO documents (id, kind, owner_user_id, owner_team_id, owner_application_id)
VALUES (%(id)s, %(kind)s, %(owner_user_id)s, %(owner_team_id)s, %(owner_application_id)s)
ON CONFLICT DO NOTHING
"""

# An owner is a user, a team or an application: exactly one of the ids is given. An owner has
# one claude.md but many catalog items (or application documents), each its own document:
# those are named by their id.
FIND_DOCUMENT = f"""
SELECT {DOCUMENT_COLUMNS} FROM documents
WHERE kind = %(kind)s
  AND owner_user_id IS NOT DISTINCT FROM %(owner_user_id)s
  AND owner_team_id IS NOT DISTINCT FROM %(owner_team_id)s
  AND owner_application_id IS NOT DISTINCT FROM %(owner_application_id)s
  AND (%(id)s::text IS NULL OR id = %(id)s)
"""

# The lock that serializes writers of one document (and the repairs of `svc verify`).
LOCK_FOUND_DOCUMENT = f"{FIND_DOCUMENT} FOR UPDATE"
LOCK_DOCUMENT = f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = %(id)s FOR UPDATE"

LIST_DOCUMENTS = f"""
SELECT {DOCUMENT_COLUMNS} FROM documents
WHERE (%(after)s::text IS NULL OR id > %(after)s)
ORDER BY id
LIMIT %(limit)s
"""

DOCUMENT_EXISTS = "SELECT EXISTS (SELECT 1 FROM documents WHERE id = %(id)s)"

DELETE_DOCUMENT = "DELETE FROM documents WHERE id = %(id)s"

LOCK_OWNED = f"""
SELECT {DOCUMENT_COLUMNS} FROM documents
WHERE owner_user_id = %(user_id)s OR owner_team_id = %(team_id)s OR owner_application_id = %(application_id)s
ORDER BY id
FOR UPDATE
"""

INSERT_VERSION = f"""
INSERT INTO document_versions (document_id, version, commit_sha, author, message, size_bytes)
VALUES (%(document_id)s, %(version)s, %(commit_sha)s, %(author)s, %(message)s, %(size_bytes)s)
RETURNING {VERSION_COLUMNS}
"""

ADVANCE_HEAD = f"""
UPDATE documents
SET head_version = %(version)s, head_sha = %(commit_sha)s, updated_at = now()
WHERE id = %(id)s
RETURNING {DOCUMENT_COLUMNS}
"""

# Newest first; the cursor is the version number of the last entry of the previous page.
HISTORY = f"""
SELECT {VERSION_COLUMNS} FROM document_versions
WHERE document_id = %(document_id)s
  AND (%(before)s::integer IS NULL OR version < %(before)s)
ORDER BY version DESC
LIMIT %(limit)s
"""

# A full sha or an abbreviation of one; two rows back means the abbreviation is ambiguous.
FIND_VERSIONS = f"""
SELECT {VERSION_COLUMNS} FROM document_versions
WHERE document_id = %(document_id)s AND commit_sha LIKE %(prefix)s || '%%'
ORDER BY version
LIMIT 2
"""

VERSION_SHAS = """
SELECT v.document_id, d.kind, v.commit_sha
FROM document_versions v JOIN documents d ON d.id = v.document_id
WHERE v.document_id = ANY(%(document_ids)s)
ORDER BY v.document_id, v.version
"""

INSERT_PROPOSAL = f"""
INSERT INTO document_proposals (id, document_id, base_version, base_sha, commit_sha, proposer_user_id,
                                 author, author_email, message, size_bytes)
VALUES (%(id)s, %(document_id)s, %(base_version)s, %(base_sha)s, %(commit_sha)s, %(proposer_user_id)s,
        %(author)s, %(author_email)s, %(message)s, %(size_bytes)s)
RETURNING {PROPOSAL_COLUMNS}
"""

GET_PROPOSAL = f"SELECT {PROPOSAL_COLUMNS} FROM document_proposals WHERE id = %(id)s AND document_id = %(document_id)s"
LOCK_PROPOSAL = f"{GET_PROPOSAL} FOR UPDATE"

LIST_PROPOSALS = f"""
SELECT {PROPOSAL_COLUMNS} FROM document_proposals
WHERE document_id = %(document_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(after)s::text IS NULL OR id > %(after)s)
ORDER BY id
LIMIT %(limit)s
"""

DECIDE_PROPOSAL = f"""
UPDATE document_proposals
SET status = %(status)s, decided_by = %(decided_by)s, decided_at = now(), reason = %(reason)s,
    accepted_version = %(accepted_version)s
WHERE id = %(id)s AND status = 'open'
RETURNING {PROPOSAL_COLUMNS}
"""

PROPOSAL_SHAS = """
SELECT p.id, p.document_id, d.kind, p.commit_sha
FROM document_proposals p JOIN documents d ON d.id = p.document_id
ORDER BY p.id
"""

PROPOSAL_EXISTS = "SELECT EXISTS (SELECT 1 FROM document_proposals WHERE id = %(id)s)"

PROPOSALS_OF_DOCUMENTS = "SELECT id, commit_sha FROM document_proposals WHERE document_id = ANY(%(document_ids)s)"


class DocumentRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def find(
        self,
        kind: str,
        *,
        user_id: str | None = None,
        team_id: str | None = None,
        application_id: str | None = None,
        document_id: str | None = None,
    ) -> Document | None:
        """The document of this kind owned by a user, a team or an application (with
        `document_id`: that one of them)."""
        params = _owner(kind, user_id, team_id, application_id, document_id)
        return self.tx.fetch_one(FIND_DOCUMENT, params, row=Document)

    def create_and_lock(
        self,
        *,
        id: str,
        kind: str,
        user_id: str | None = None,
        team_id: str | None = None,
        application_id: str | None = None,
        document_id: str | None = None,
    ) -> Document:
        """The owner's document of this kind, locked for writing; created (head version 0) when
        missing, with the id `document_id` when given, else `id`."""
        params = _owner(kind, user_id, team_id, application_id, document_id)
        document = self.tx.fetch_one(LOCK_FOUND_DOCUMENT, params, row=Document)
        if document is None:
            self.tx.execute(CREATE_DOCUMENT, {**params, "id": document_id or id})
            document = self.tx.fetch_one(LOCK_FOUND_DOCUMENT, params, row=Document)
        return document

    def lock(self, document_id: str) -> Document | None:
        return self.tx.fetch_one(LOCK_DOCUMENT, {"id": document_id}, row=Document)

    def list(self, *, limit: int, after: str | None) -> list[Document]:
        return self.tx.fetch_all(LIST_DOCUMENTS, {"limit": limit, "after": after}, row=Document)

    def exists(self, document_id: str) -> bool:
        return self.tx.fetch_value(DOCUMENT_EXISTS, {"id": document_id})

    def lock_owned(
        self, *, user_id: str | None = None, team_id: str | None = None, application_id: str | None = None
    ) -> list[Document]:
        """Every document of a user, a team or an application, locked (before the owner is deleted)."""
        params = {"user_id": user_id, "team_id": team_id, "application_id": application_id}
        return self.tx.fetch_all(LOCK_OWNED, params, row=Document)

    def delete(self, document_id: str) -> None:
        """Delete a document's row with its versions and proposals (the caller retires its refs)."""
        self.tx.execute(DELETE_DOCUMENT, {"id": document_id})

    def add_version(
        self, document: Document, *, commit_sha: str, author: str, message: str, size_bytes: int
    ) -> tuple[Version, Document]:
        """Record the next version and make it the head; returns (version, document)."""
        params = {
            "document_id": document.id,
            "version": document.head_version + 1,
            "commit_sha": commit_sha,
            "author": author,
            "message": message,
            "size_bytes": size_bytes,
        }
        version = self.tx.fetch_one(INSERT_VERSION, params, row=Version)
        head = {"id": document.id, "version": version.version, "commit_sha": commit_sha}
        return version, self.tx.fetch_one(ADVANCE_HEAD, head, row=Document)

    def history(self, document_id: str, *, limit: int, before: int | None) -> list[Version]:
        return self.tx.fetch_all(HISTORY, {"document_id": document_id, "limit": limit, "before": before}, row=Version)

    def find_versions(self, document_id: str, sha_prefix: str) -> list[Version]:
        return self.tx.fetch_all(FIND_VERSIONS, {"document_id": document_id, "prefix": sha_prefix}, row=Version)

    def version_shas(self, document_ids: list[str]) -> list[VersionSha]:
        """(document id, kind, commit sha) of every version of these documents."""
        return self.tx.fetch_all(VERSION_SHAS, {"document_ids": document_ids}, row=VersionSha)

    # --- proposals ---------------------------------------------------------------------

    def insert_proposal(
        self,
        *,
        id: str,
        document_id: str,
        base_version: int,
        base_sha: str | None,
        commit_sha: str,
        proposer_user_id: str | None,
        author: str,
        author_email: str,
        message: str,
        size_bytes: int,
    ) -> Proposal:
        params = {
            "id": id,
            "document_id": document_id,
            "base_version": base_version,
            "base_sha": base_sha,
            "commit_sha": commit_sha,
            "proposer_user_id": proposer_user_id,
            "author": author,
            "author_email": author_email,
            "message": message,
            "size_bytes": size_bytes,
        }
        return self.tx.fetch_one(INSERT_PROPOSAL, params, row=Proposal)

    def proposal(self, document_id: str, proposal_id: str, *, lock: bool = False) -> Proposal | None:
        params = {"id": proposal_id, "document_id": document_id}
        return self.tx.fetch_one(LOCK_PROPOSAL if lock else GET_PROPOSAL, params, row=Proposal)

    def proposals(self, document_id: str, *, status: str | None, limit: int, after: str | None) -> list[Proposal]:
        params = {"document_id": document_id, "status": status, "limit": limit, "after": after}
        return self.tx.fetch_all(LIST_PROPOSALS, params, row=Proposal)

    def decide(
        self,
        proposal_id: str,
        *,
        status: str,
        decided_by: str,
        reason: str | None = None,
        accepted_version: int | None = None,
    ) -> Proposal | None:
        """Close an open proposal; None when it was not open."""
        params = {
            "id": proposal_id,
            "status": status,
            "decided_by": decided_by,
            "reason": reason,
            "accepted_version": accepted_version,
        }
        return self.tx.fetch_one(DECIDE_PROPOSAL, params, row=Proposal)

    def proposal_shas(self) -> list[ProposalSha]:
        """(id, document id, kind, commit sha) of every proposal."""
        return self.tx.fetch_all(PROPOSAL_SHAS, row=ProposalSha)

    def proposal_exists(self, proposal_id: str) -> bool:
        return self.tx.fetch_value(PROPOSAL_EXISTS, {"id": proposal_id})

    def proposal_commits(self, document_ids: list[str]) -> dict[str, str]:
        """Proposal id → commit sha, for every proposal of these documents."""
        rows = self.tx.fetch_all(PROPOSALS_OF_DOCUMENTS, {"document_ids": document_ids})
        return {row["id"]: row["commit_sha"] for row in rows}


def _owner(
    kind: str, user_id: str | None, team_id: str | None, application_id: str | None, document_id: str | None
) -> dict[str, str | None]:
    return {
        "kind": kind,
        "owner_user_id": user_id,
        "owner_team_id": team_id,
        "owner_application_id": application_id,
        "id": document_id,
    }
