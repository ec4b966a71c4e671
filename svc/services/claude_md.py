"""claude.md documents: one per user; every save is one git commit and one version row.

PostgreSQL is the source of truth for which versions exist; git holds the bytes. A
save runs: lock the document row → write the git objects → move the ref with a
compare-and-swap → insert the version row, advance the head, audit → commit. A
crash therefore leaves either a version both sides know, or a git commit (and ref
position) ahead of the database that no client was told about; the next save of
that document moves on from it, and `svc verify` reports and mends it.
"""

from __future__ import annotations

import difflib
import re
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from svc.content import Author, ContentStore
from svc.db import CONNECTION_ERRORS, Database, Transaction
from svc.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from svc.ids import new_id
from svc.repositories.claude_md import ClaudeMdRepository
from svc.repositories.users import UserRepository
from svc.services import audit
from svc.services.auth import Principal
from svc.services.pagination import page_of
from svc.services.preconditions import Precondition, require_current

DEFAULT_MESSAGE = "Update claude.md"
RESOURCE_TYPE = "claude_md_document"
# What browsers, curl (`-F file=@claude.md` sends octet-stream for .md) and editors send.
MARKDOWN_MEDIA_TYPES = {"text/markdown", "text/x-markdown", "text/plain", "application/octet-stream"}
UTF8_CHARSETS = {"utf-8", "utf8", "us-ascii"}
UTF8_BOM = b"\xef\xbb\xbf"
READ_CHUNK_BYTES = 64 * 1024


class ClaudeMdService:
    """`user_id=None` everywhere means the caller's own user (the `/me/claude-md` routes)."""

    def __init__(self, db: Database, store: ContentStore, *, max_bytes: int) -> None:
        self.db = db
        self.store = store
        self.max_bytes = max_bytes

    # --- reading -----------------------------------------------------------------------

    def get(self, actor: Principal, user_id: str | None) -> dict[str, Any]:
        """The current document; a user who never saved one has empty content, version 0."""
        owner = _owner(actor, user_id)
        with self.db.transaction() as tx:
            _require_user(tx, owner)
            document = ClaudeMdRepository(tx).of_user(owner)
        if document is None:
            return {"content": "", "commit_sha": None, "version": 0, "updated_at": None}
        return _state(document, self.store.read(document["head_sha"]))

    def history(self, actor: Principal, user_id: str | None, *, limit: int, before: int | None) -> dict[str, Any]:
        """Versions newest first, from PostgreSQL; `next` is the cursor of older ones."""
        owner = _owner(actor, user_id)
        with self.db.transaction() as tx:
            _require_user(tx, owner)
            docs = ClaudeMdRepository(tx)
            document = docs.of_user(owner)
            rows = [] if document is None else docs.history(document["id"], limit=limit + 1, before=before)
        page = page_of(rows, limit, key="version")
        return {"versions": page.items, "next": page.next}

    def version(self, actor: Principal, user_id: str | None, sha: str) -> dict[str, Any]:
        """One version with its content; `sha` may be abbreviated (7 or more hex digits)."""
        owner = _owner(actor, user_id)
        with self.db.transaction() as tx:
            [found] = _find_versions(tx, owner, sha)
        return {**found, "content": _text(self.store.read(found["commit_sha"]))}

    def diff(self, actor: Principal, user_id: str | None, from_sha: str, to_sha: str) -> str:
        """A unified diff from one version to another (any two, in either order)."""
        owner = _owner(actor, user_id)
        with self.db.transaction() as tx:
            source, target = _find_versions(tx, owner, from_sha, to_sha)
        return unified_diff(
            _text(self.store.read(source["commit_sha"])),
            _text(self.store.read(target["commit_sha"])),
            from_label=_label(source),
            to_label=_label(target),
        )

    # --- writing -----------------------------------------------------------------------

    def save(
        self,
        actor: Principal,
        user_id: str | None,
        *,
        content: str,
        message: str | None,
        expected: Precondition | None,
    ) -> dict[str, Any]:
        owner = _owner(actor, user_id)
        actor.require_write()
        data = _utf8(content, "content")
        return self._commit(actor, owner, data, message or DEFAULT_MESSAGE, expected, "claude_md.save")

    def rollback(
        self, actor: Principal, user_id: str | None, sha: str, *, expected: Precondition | None
    ) -> dict[str, Any]:
        """Save the content of an earlier version as a new version."""
        owner = _owner(actor, user_id)
        actor.require_write()
        with self.db.transaction() as tx:
            [found] = _find_versions(tx, owner, sha)
        data = self.store.read(found["commit_sha"])
        message = f"Rollback to version {found['commit_sha'][:7]}"
        return self._commit(actor, owner, data, message, expected, "claude_md.rollback")

    def import_file(
        self,
        actor: Principal,
        user_id: str | None,
        *,
        filename: str,
        content_type: str | None,
        stream: BinaryIO,
        expected: Precondition | None,
    ) -> dict[str, Any]:
        """Save an uploaded `.md` file as a new version. The file is checked whole before
        anything is written: type (415), size (413, read in bounded chunks), UTF-8 (400).
        A leading byte-order mark is dropped and CRLF line ends become LF."""
        owner = _owner(actor, user_id)
        actor.require_write()
        name = _markdown_filename(filename)
        _require_markdown_type(content_type)
        data = _normalized_markdown(_read_at_most(stream, self.max_bytes))
        return self._commit(actor, owner, data, f"Import claude.md from {name}", expected, "claude_md.import")

    def _commit(
        self,
        actor: Principal,
        owner: str,
        data: bytes,
        message: str,
        expected: Precondition | None,
        action: str,
    ) -> dict[str, Any]:
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"the document is {len(data)} bytes; the limit is {self.max_bytes} bytes")
        with self.db.transaction() as tx:
            user = UserRepository(tx).hold(owner)  # a deletion waits for this save
            if user is None:
                raise NotFound(f"user {owner} not found")
            docs = ClaudeMdRepository(tx)
            document = docs.create_and_lock(id=new_id(), user_id=owner)
            parent = document["head_sha"]
            require_current(expected, parent, subject="the document")
            author = _author(actor, user)
            commit_sha = self.store.save(document["id"], data, parent=parent, author=author, message=message)
            committing = False
            try:
                version, document = docs.add_version(
                    document["id"],
                    version=document["head_version"] + 1,
                    commit_sha=commit_sha,
                    author=author.name,
                    message=message,
                    size_bytes=len(data),
                )
                detail = {k: version[k] for k in ("version", "commit_sha", "size_bytes", "message")}
                audit.record(tx, actor, action, RESOURCE_TYPE, document["id"], {"user_id": owner, **detail})
                committing = True
                tx.commit()
            except BaseException as exc:
                # When the connection drops during COMMIT nobody knows whether it committed;
                # then the ref stays where it is: ahead of the database at worst, which the
                # next save and `svc verify` handle. Moving it back could leave it behind a
                # version the database recorded, and gc could later drop that commit.
                if not (committing and isinstance(exc, CONNECTION_ERRORS)):
                    self.store.undo(document["id"], commit_sha, parent)
                raise
        return _state(document, data)


def _owner(actor: Principal, user_id: str | None) -> str:
    """Whose document this is, once the caller may reach it: admins reach any, a user only
    its own (another user's looks missing), service tokens none."""
    actor.require_role("admin", "user")
    if user_id is None:
        return actor.require_own_user()
    actor.require_user(user_id)
    return user_id


def _require_user(tx: Transaction, user_id: str) -> dict[str, Any]:
    user = UserRepository(tx).get(user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def _find_versions(tx: Transaction, owner: str, *shas: str) -> list[dict[str, Any]]:
    """Versions of this user's document by (abbreviated) commit sha. A commit of any other
    document is not found, even though the repository holds it."""
    _require_user(tx, owner)
    docs = ClaudeMdRepository(tx)
    document = docs.of_user(owner)
    versions = []
    for sha in shas:
        found = [] if document is None else docs.find_versions(document["id"], sha.lower())
        if not found:
            raise NotFound(f"{sha} is not a version of this document")
        if len(found) > 1:
            raise Unprocessable(f"'{sha}' abbreviates more than one version; give more of the sha")
        versions.append(found[0])
    return versions


def _author(actor: Principal, owner: dict[str, Any]) -> Author:
    """The acting user (user tokens reach only their own document), else the token's name."""
    if actor.user_id is not None:
        return Author(owner["username"], owner["email"])
    slug = re.sub(r"[^a-z0-9._-]+", "-", actor.name.lower()).strip("-") or "token"
    return Author(actor.name, f"{slug}@svc.invalid")


def _state(document: dict[str, Any], data: bytes) -> dict[str, Any]:
    return {
        "content": _text(data),
        "commit_sha": document["head_sha"],
        "version": document["head_version"],
        "updated_at": document["updated_at"],
    }


def _text(data: bytes) -> str:
    # Every stored version was UTF-8 when saved; `replace` only guards against a damaged object.
    return data.decode("utf-8", errors="replace")


def _utf8(value: str, field: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Unprocessable(f"{field} is not valid Unicode text (it contains a lone surrogate)") from exc


def _label(version: dict[str, Any]) -> str:
    return f"version {version['version']} ({version['commit_sha'][:7]})"


def unified_diff(before: str, after: str, *, from_label: str, to_label: str) -> str:
    """A unified diff of two texts as `diff -u` and git print it, "\\ No newline at end
    of file" included; empty when they are equal."""
    lines = difflib.unified_diff(
        _lines(before), _lines(after), "a/claude.md", "b/claude.md", from_label, to_label
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _lines(text: str) -> list[str]:
    """Lines split on LF only (str.splitlines would also split on CR, form feeds, U+2028...)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _markdown_filename(filename: str) -> str:
    name = PurePosixPath(filename.replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable())
    if not name.lower().endswith(".md"):
        raise UnsupportedMediaType(f"'{name}' is not a .md file; upload the document as a .md file")
    return name


def _require_markdown_type(content_type: str | None) -> None:
    media_type, *parameters = (content_type or "text/plain").split(";")
    media_type = media_type.strip().lower()
    if media_type not in MARKDOWN_MEDIA_TYPES:
        allowed = ", ".join(sorted(MARKDOWN_MEDIA_TYPES))
        raise UnsupportedMediaType(f"an upload of type {media_type} is not Markdown; send one of: {allowed}")
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if key.strip().lower() == "charset" and charset not in UTF8_CHARSETS:
            raise UnsupportedMediaType(f"the upload is declared as {charset}; only UTF-8 is accepted")


def _read_at_most(stream: BinaryIO, limit: int) -> bytes:
    """Read an upload in bounded chunks, refusing it once it passes `limit` bytes."""
    chunks = []
    size = 0
    while chunk := stream.read(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the file is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _normalized_markdown(raw: bytes) -> bytes:
    """UTF-8 text without a byte-order mark, with LF line ends."""
    data = raw.removeprefix(UTF8_BOM)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + len(raw) - len(data)
        raise BadRequest(f"the file is not UTF-8 text (invalid byte at offset {offset})") from exc
    return data.replace(b"\r\n", b"\n")
