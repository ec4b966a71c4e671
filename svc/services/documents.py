"""Documents: every git-backed text (a user's or a team's claude.md, catalog items).

One service, mounted once per kind of owner: a `Mount` names the document a request
means (whose, which kind) and checks, in the service's transaction, that the caller may
do the action to it; everything else is shared: save, history, versions, diff, rollback,
import and proposals.

PostgreSQL is the source of truth for which versions exist; git holds the bytes. A save
runs: lock the document row → write the git objects → move the ref with a
compare-and-swap → insert the version row, advance the head, audit → commit. A crash
therefore leaves either a version both sides know, or a git commit (and ref position)
ahead of the database that no client was told about; the next save of that document
moves on from it, and `svc verify` reports and mends it.

A proposal's content is a commit on refs/proposals/<proposal id> whose parent is the
version it was based on. Accepting it needs the document still at that version (checked
under the document's row lock, so of two accepts on one base exactly one wins) and makes
a new version whose git author is the proposer.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from pathlib import PurePosixPath
from typing import Annotated, Any, BinaryIO, Literal, Protocol, Self

from pydantic import Field

from svc.content import Author, ContentStore, deleted_ref_name
from svc.db import Database, Transaction
from svc.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    Unprocessable,
    UnsupportedMediaType,
)
from svc.ids import new_id
from svc.repositories.documents import Document, DocumentRepository, Proposal as ProposalRow, Version
from svc.repositories.users import UserRepository
from svc.services import audit, policy
from svc.services.auth import Principal
from svc.services.pagination import Page, keyset_page
from svc.services.policy import Action, DocumentResource, ProposalResource
from svc.services.preconditions import Precondition, require_current
from svc.services.views import projected

log = logging.getLogger(__name__)

UTF8_CHARSETS = {"utf-8", "utf8", "us-ascii"}
UTF8_BOM = b"\xef\xbb\xbf"
READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class DocumentKind:
    """What a document is: its file name inside each commit, how it is imported, and the
    check every write path (save, rollback, import, accepting a proposal) runs on it."""

    name: str  # documents.kind
    filename: str
    import_suffix: str
    media_types: frozenset[str]
    format: str  # what an import must be, for messages: "Markdown"
    validate: Callable[[bytes, Target], None] = lambda data, target: None
    resource_type: str = ""  # what the audit trail calls its documents; default "<name>_document"

    @property
    def audit_resource(self) -> str:
        return self.resource_type or f"{self.name}_document"


@dataclass(frozen=True)
class Target:
    """The document a request names, once the caller may reach it: its owner (keyword
    arguments of DocumentRepository.find) and what the audit trail records of it."""

    kind: DocumentKind
    owner: dict[str, str]
    audit: dict[str, str]
    resource: DocumentResource  # for the policy
    subject: Any = field(default=None, compare=False)  # what a validator may need (a catalog item)


# --- what the service answers (the routes' response models) ------------------------------


@dataclass(frozen=True)
class DocumentState:
    """The current document."""

    content: str
    commit_sha: Annotated[str | None, Field(description="null until the first version is saved")]
    version: Annotated[int, Field(description="0 until the first version is saved")]
    updated_at: datetime | None

    @classmethod
    def of(cls, document: Document, data: bytes, **more: Any) -> Self:
        """The document at its head, whose content is `data` (`more`: the fields of a subclass)."""
        return cls(_text(data), document.head_sha, document.head_version, document.updated_at, **more)


NEVER_SAVED = DocumentState(content="", commit_sha=None, version=0, updated_at=None)


@dataclass(frozen=True)
class VersionEntry:
    version: int
    commit_sha: str
    author: str
    message: str
    created_at: datetime


@dataclass(frozen=True)
class History:
    versions: Annotated[list[VersionEntry], Field(description="newest first")]
    next: Annotated[str | None, Field(description="pass as `after` for older versions; null on the last page")]


@dataclass(frozen=True)
class DocumentVersion(VersionEntry):
    content: str


ProposalStatus = Literal["open", "accepted", "rejected", "withdrawn"]


@dataclass(frozen=True)
class Proposal:
    id: str
    status: ProposalStatus
    base_sha: Annotated[
        str | None, Field(description="the version it was based on; null for a document that had none")
    ]
    commit_sha: Annotated[
        str, Field(description="its content: a commit on refs/proposals/<id> whose parent is base_sha")
    ]
    author: Annotated[str, Field(description="the proposer")]
    message: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


@dataclass(frozen=True)
class ProposalWithDiff(Proposal):
    diff: Annotated[str, Field(description="unified diff from the base to the proposed content")]


@dataclass(frozen=True)
class Accepted(DocumentState):
    proposal: Proposal


class Mount(Protocol):
    """One way of naming a document's owner in a request."""

    kind: DocumentKind

    def open(
        self, tx: Transaction, actor: Principal, owner_id: str | None, action: Action, *, hold: bool
    ) -> Target:
        """Check the owner exists and the caller may do `action` (NotFound/Forbidden);
        with `hold`, keep the owner from being deleted until the transaction ends."""
        ...


class DocumentService:
    """Documents of one mount. `owner_id=None` means the caller itself (`/me`)."""

    def __init__(self, db: Database, store: ContentStore, mount: Mount, *, max_bytes: int) -> None:
        self.db = db
        self.store = store
        self.mount = mount
        self.kind = mount.kind
        self.max_bytes = max_bytes

    # --- reading -----------------------------------------------------------------------

    def get(self, actor: Principal, owner_id: str | None) -> DocumentState:
        """The current document; one never saved has empty content, version 0."""
        with self.db.transaction() as tx:
            _, document = self._open(tx, actor, owner_id, Action.READ_DOCUMENT)
        if document is None or document.head_sha is None:  # never saved (perhaps only proposed to)
            return NEVER_SAVED
        return DocumentState.of(document, self._read(document.head_sha))

    def history(self, actor: Principal, owner_id: str | None, *, limit: int, before: int | None) -> History:
        """Versions newest first, from PostgreSQL; `next` is the cursor of older ones."""
        with self.db.transaction() as tx:
            _, document = self._open(tx, actor, owner_id, Action.READ_DOCUMENT)
            docs = DocumentRepository(tx)
            page = keyset_page(
                lambda n: [] if document is None else docs.history(document.id, limit=n, before=before),
                limit,
                cursor=attrgetter("version"),
            )
        return History([projected(VersionEntry, version) for version in page.items], page.next)

    def version(self, actor: Principal, owner_id: str | None, sha: str) -> DocumentVersion:
        """One version with its content; `sha` may be abbreviated (7 or more hex digits)."""
        with self.db.transaction() as tx:
            _, document = self._open(tx, actor, owner_id, Action.READ_DOCUMENT)
            [found] = _find_versions(tx, document, sha)
        return projected(DocumentVersion, found, content=_text(self._read(found.commit_sha)))

    def diff(self, actor: Principal, owner_id: str | None, from_sha: str, to_sha: str) -> str:
        """A unified diff from one version to another (any two, in either order)."""
        with self.db.transaction() as tx:
            _, document = self._open(tx, actor, owner_id, Action.READ_DOCUMENT)
            source, target = _find_versions(tx, document, from_sha, to_sha)
        return self._diff(source.commit_sha, target.commit_sha, _label(source), _label(target))

    # --- writing -----------------------------------------------------------------------

    def save(
        self,
        actor: Principal,
        owner_id: str | None,
        *,
        content: str,
        message: str | None,
        expected: Precondition | None,
    ) -> DocumentState:
        self._authorize(actor, owner_id, Action.WRITE_DOCUMENT)
        data = utf8(content, "content")
        return self._commit(
            actor, owner_id, data, message or f"Update {self.kind.filename}", expected, "save"
        )

    def rollback(
        self, actor: Principal, owner_id: str | None, sha: str, *, expected: Precondition | None
    ) -> DocumentState:
        """Save the content of an earlier version as a new version."""
        with self.db.transaction() as tx:
            _, document = self._open(tx, actor, owner_id, Action.WRITE_DOCUMENT)
            [found] = _find_versions(tx, document, sha)
        data = self._read(found.commit_sha)
        message = f"Rollback to version {found.commit_sha[:7]}"
        return self._commit(actor, owner_id, data, message, expected, "rollback")

    def import_file(
        self,
        actor: Principal,
        owner_id: str | None,
        *,
        filename: str,
        content_type: str | None,
        stream: BinaryIO,
        expected: Precondition | None,
    ) -> DocumentState:
        """Save an uploaded file as a new version. The file is checked whole before
        anything is written: type (415), size (413, read in bounded chunks), UTF-8 (400).
        A leading byte-order mark is dropped and CRLF line ends become LF."""
        self._authorize(actor, owner_id, Action.WRITE_DOCUMENT)
        name = _upload_filename(filename, self.kind.import_suffix)
        _require_media_type(content_type, self.kind)
        data = _normalized_text(_read_at_most(stream, self.max_bytes))
        message = f"Import {self.kind.filename} from {name}"
        return self._commit(actor, owner_id, data, message, expected, "import")

    def _commit(
        self,
        actor: Principal,
        owner_id: str | None,
        data: bytes,
        message: str,
        expected: Precondition | None,
        action: str,
    ) -> DocumentState:
        self._check_size(data)
        with self.db.transaction() as tx:
            target = self.mount.open(tx, actor, owner_id, Action.WRITE_DOCUMENT, hold=True)
            document = self.write_version(tx, actor, target, data, message=message, action=action, expected=expected)
        return DocumentState.of(document, data)

    def write_version(
        self,
        tx: Transaction,
        actor: Principal,
        target: Target,
        data: bytes,
        *,
        message: str,
        action: str,
        expected: Precondition | None = None,
    ) -> Document:
        """Check `data` (size, the kind's rules), save it as the next version of the target's
        document, audit and commit `tx`, whose caller opened the target with `hold`. The catalog
        calls this too, to create an item with its first version in one transaction."""
        self._check_size(data)
        self.kind.validate(data, target)
        docs = DocumentRepository(tx)
        document = docs.create_and_lock(id=new_id(), kind=self.kind.name, **target.owner)
        require_current(expected, document.head_sha, subject="the document")
        with self._new_version(tx, document, data, _author(tx, actor), message) as (version, document):
            detail = {k: getattr(version, k) for k in ("version", "commit_sha", "size_bytes", "message")}
            audit.record(
                tx, actor, f"{self.kind.name}.{action}", self.kind.audit_resource, document.id,
                {**target.audit, **detail},
            )
            tx.commit()
        return document

    @contextmanager
    def _new_version(
        self, tx: Transaction, document: Document, data: bytes, author: Author, message: str
    ) -> Iterator[tuple[Version, Document]]:
        """Commit to git and record the next version (the row lock is held); the block audits
        and commits the transaction. If anything fails the ref moves back, unless the
        connection was lost: perhaps during COMMIT, so nobody knows whether it committed;
        the ref then stays ahead of the database at worst, which the next save and
        `svc verify` handle (moving it back could leave it behind a recorded version, and
        gc could later drop that commit)."""
        parent = document.head_sha
        commit_sha = self.store.save(
            document.id, data, parent=parent, author=author, message=message, filename=self.kind.filename
        )
        try:
            yield DocumentRepository(tx).add_version(
                document, commit_sha=commit_sha, author=author.name, message=message, size_bytes=len(data)
            )
        except BaseException as exc:
            if not isinstance(exc, Unavailable):
                self.store.undo(document.id, commit_sha, parent)
            raise

    # --- proposals ---------------------------------------------------------------------

    def propose(self, actor: Principal, owner_id: str | None, *, content: str, message: str) -> Proposal:
        """Store a suggested new content, based on the current version, for a writer to decide on."""
        self._authorize(actor, owner_id, Action.PROPOSE)
        data = utf8(content, "content")
        self._check_size(data)
        proposal_id = new_id()
        with self.db.transaction() as tx:
            target = self.mount.open(tx, actor, owner_id, Action.PROPOSE, hold=True)
            self.kind.validate(data, target)
            docs = DocumentRepository(tx)
            # Locked: the base is the head until this transaction ends.
            document = docs.create_and_lock(id=new_id(), kind=self.kind.name, **target.owner)
            author = _author(tx, actor)
            commit_sha = self.store.write_commit(
                data, parent=document.head_sha, author=author, message=message, filename=self.kind.filename
            )
            self.store.move_proposal_ref(proposal_id, commit_sha, None)  # created: it must not exist yet
            try:
                proposal = docs.insert_proposal(
                    id=proposal_id,
                    document_id=document.id,
                    base_version=document.head_version,
                    base_sha=document.head_sha,
                    commit_sha=commit_sha,
                    proposer_user_id=actor.user_id,
                    author=author.name,
                    author_email=author.email,
                    message=message,
                    size_bytes=len(data),
                )
                audit.record(
                    tx, actor, f"{self.kind.name}.propose", "document_proposal", proposal_id,
                    {**target.audit, "document_id": document.id, "base_sha": document.head_sha,
                     "commit_sha": commit_sha, "message": message},
                )
                tx.commit()
            except BaseException as exc:
                if not isinstance(exc, Unavailable):  # the connection lost during COMMIT: the row may exist
                    self.store.delete_proposal_ref(proposal_id, commit_sha)
                raise
        return projected(Proposal, proposal)

    def proposals(
        self, actor: Principal, owner_id: str | None, *, status: str | None, limit: int, after: str | None
    ) -> Page[Proposal]:
        with self.db.transaction() as tx:
            _, document = self._open(tx, actor, owner_id, Action.READ_DOCUMENT)
            docs = DocumentRepository(tx)
            page = keyset_page(
                lambda n: [] if document is None else docs.proposals(document.id, status=status, limit=n, after=after),
                limit,
            )
        return Page([projected(Proposal, row) for row in page.items], page.next)

    def proposal(self, actor: Principal, owner_id: str | None, proposal_id: str) -> ProposalWithDiff:
        """One proposal with a unified diff from its base to its content."""
        with self.db.transaction() as tx:
            _, document = self._open(tx, actor, owner_id, Action.READ_DOCUMENT)
            proposal = _find_proposal(tx, document, proposal_id)
        base = f"version {proposal.base_version} ({proposal.base_sha[:7]})" if proposal.base_sha else "empty document"
        diff = self._diff(proposal.base_sha, proposal.commit_sha, base, f"proposal {proposal.id}")
        return projected(ProposalWithDiff, proposal, diff=diff)

    def accept(
        self, actor: Principal, owner_id: str | None, proposal_id: str, *, expected: Precondition | None
    ) -> Accepted:
        """Make a proposal's content the next version, authored by the proposer; 409 unless
        the document is still at the proposal's base."""
        self._authorize(actor, owner_id, Action.DECIDE_PROPOSAL)
        with self.db.transaction() as tx:
            target = self.mount.open(tx, actor, owner_id, Action.DECIDE_PROPOSAL, hold=True)
            docs = DocumentRepository(tx)
            document = docs.find(self.kind.name, **target.owner)
            document = None if document is None else docs.lock(document.id)
            proposal = _find_proposal(tx, document, proposal_id, lock=True)
            _require_open(proposal)
            require_current(expected, None if document is None else document.head_sha, subject="the document")
            if document.head_sha != proposal.base_sha:
                raise Conflict(
                    f"the document moved on since proposal {proposal.id} was made: it was based on version "
                    f"{proposal.base_version} and the current version is {document.head_version} "
                    f"({document.head_sha}); propose again on the current version"
                )
            data = self._read(proposal.commit_sha)
            self.kind.validate(data, target)
            acceptor = _author(tx, actor).name
            message = f"{proposal.message}\n\nAccepted proposal {proposal.id} (accepted by {acceptor})"
            proposer = Author(proposal.author, proposal.author_email)
            with self._new_version(tx, document, data, proposer, message) as (version, document):
                decided = docs.decide(
                    proposal.id, status="accepted", decided_by=acceptor, accepted_version=version.version
                )
                audit.record(
                    tx, actor, f"{self.kind.name}.accept", "document_proposal", proposal.id,
                    {**target.audit, "document_id": document.id, "version": version.version,
                     "commit_sha": version.commit_sha, "proposer": proposal.author},
                )
                tx.commit()
        return Accepted.of(document, data, proposal=projected(Proposal, decided))

    def reject(self, actor: Principal, owner_id: str | None, proposal_id: str, *, reason: str | None) -> Proposal:
        return self._close(actor, owner_id, proposal_id, "rejected", reason)

    def withdraw(self, actor: Principal, owner_id: str | None, proposal_id: str) -> Proposal:
        """The proposer takes back their own open proposal."""
        return self._close(actor, owner_id, proposal_id, "withdrawn", None)

    def _close(
        self, actor: Principal, owner_id: str | None, proposal_id: str, status: str, reason: str | None
    ) -> Proposal:
        with self.db.transaction() as tx:
            if status == "rejected":
                target, document = self._open(tx, actor, owner_id, Action.DECIDE_PROPOSAL)
                proposal = _find_proposal(tx, document, proposal_id, lock=True)
            else:
                target, document = self._open(tx, actor, owner_id, Action.READ_DOCUMENT)
                proposal = _find_proposal(tx, document, proposal_id, lock=True)
                policy.require(actor, Action.WITHDRAW_PROPOSAL, ProposalResource(target.resource, proposal.proposer_user_id))
            _require_open(proposal)
            decided = DocumentRepository(tx).decide(
                proposal.id, status=status, decided_by=_author(tx, actor).name, reason=reason
            )
            verb = "reject" if status == "rejected" else "withdraw"
            audit.record(
                tx, actor, f"{self.kind.name}.{verb}", "document_proposal", proposal.id,
                {**target.audit, "document_id": proposal.document_id, "reason": reason},
            )
            tx.commit()
        return projected(Proposal, decided)

    # --- shared ------------------------------------------------------------------------

    def _open(
        self, tx: Transaction, actor: Principal, owner_id: str | None, action: Action
    ) -> tuple[Target, Document | None]:
        target = self.mount.open(tx, actor, owner_id, action, hold=False)
        return target, DocumentRepository(tx).find(self.kind.name, **target.owner)

    def _authorize(self, actor: Principal, owner_id: str | None, action: Action) -> None:
        """Refuse a write before its body is read; the write checks again under its locks."""
        with self.db.transaction() as tx:
            self.mount.open(tx, actor, owner_id, action, hold=False)

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"the document is {len(data)} bytes; the limit is {self.max_bytes} bytes")

    def _read(self, commit_sha: str) -> bytes:
        return self.store.read(commit_sha, self.kind.filename)

    def _diff(self, from_sha: str | None, to_sha: str, from_label: str, to_label: str) -> str:
        before = "" if from_sha is None else _text(self._read(from_sha))
        return unified_diff(
            before, _text(self._read(to_sha)), from_label=from_label, to_label=to_label, filename=self.kind.filename
        )


@dataclass(frozen=True)
class RetiredDocument:
    document_id: str
    kind: str
    head_sha: str | None
    history_ref: str


@dataclass(frozen=True)
class Retirement:
    """The documents of an owner being deleted, and their proposals: after the deletion
    commits, each document's ref is renamed to refs/deleted/<id> (its history stays
    readable there) and the proposal refs go."""

    documents: list[Document]
    proposals: dict[str, str]

    @classmethod
    def lock(
        cls, tx: Transaction, *, user_id: str | None = None, team_id: str | None = None,
        application_id: str | None = None,
    ) -> Retirement:
        """Lock an owner's documents (in the transaction that deletes the owner)."""
        docs = DocumentRepository(tx)
        documents = docs.lock_owned(user_id=user_id, team_id=team_id, application_id=application_id)
        return cls.of(tx, documents)

    @classmethod
    def of(cls, tx: Transaction, documents: list[Document]) -> Retirement:
        """These documents (locked by the caller) and their proposals."""
        return cls(documents, DocumentRepository(tx).proposal_commits([d.id for d in documents]))

    def audit_detail(self) -> list[RetiredDocument]:
        """What the audit trail records of each document: where its history stays."""
        return [RetiredDocument(d.id, d.kind, d.head_sha, deleted_ref_name(d.id)) for d in self.documents]

    def carry_out(self, store: ContentStore) -> None:
        """After the commit. If renaming fails, `svc verify` reports the ref of a document that no
        longer exists and `--repair` renames it; the history is never dropped."""
        for document in self.documents:
            try:
                store.retire(document.id)
            except Unavailable as exc:
                log.error("document %s was deleted, but its ref stays: %s", document.id, exc.detail)
        for proposal_id, commit_sha in self.proposals.items():
            store.delete_proposal_ref(proposal_id, commit_sha)


def _find_versions(tx: Transaction, document: Document | None, *shas: str) -> list[Version]:
    """Versions of this document by (abbreviated) commit sha. A commit of any other
    document is not found, even though the repository holds it."""
    docs = DocumentRepository(tx)
    versions = []
    for sha in shas:
        found = [] if document is None else docs.find_versions(document.id, sha.lower())
        if not found:
            raise NotFound(f"{sha} is not a version of this document")
        if len(found) > 1:
            raise Unprocessable(f"'{sha}' abbreviates more than one version; give more of the sha")
        versions.append(found[0])
    return versions


def _find_proposal(tx: Transaction, document: Document | None, proposal_id: str, *, lock: bool = False) -> ProposalRow:
    found = None if document is None else DocumentRepository(tx).proposal(document.id, proposal_id, lock=lock)
    if found is None:
        raise NotFound(f"proposal {proposal_id} not found on this document")
    return found


def _require_open(proposal: ProposalRow) -> None:
    if proposal.status != "open":
        raise Conflict(f"proposal {proposal.id} is {proposal.status}; only an open proposal can be decided")


def _author(tx: Transaction, actor: Principal) -> Author:
    """The acting user, else the token's name at a placeholder address."""
    if actor.user_id is not None:
        user = UserRepository(tx).get(actor.user_id)
        if user is not None:
            return Author(user.username, user.email)
    slug = re.sub(r"[^a-z0-9._-]+", "-", actor.name.lower()).strip("-") or "token"
    return Author(actor.name, f"{slug}@svc.invalid")


def _text(data: bytes) -> str:
    # Every stored version was UTF-8 when saved; `replace` only guards against a damaged object.
    return data.decode("utf-8", errors="replace")


def utf8(value: str, field: str) -> bytes:
    """`value` as UTF-8; 422 naming `field` when it holds a lone surrogate, which UTF-8 cannot encode."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Unprocessable(f"{field} is not valid Unicode text (it contains a lone surrogate)") from exc


def _label(version: Version) -> str:
    return f"version {version.version} ({version.commit_sha[:7]})"


def unified_diff(before: str, after: str, *, from_label: str, to_label: str, filename: str = "claude.md") -> str:
    """A unified diff of two texts as `diff -u` and git print it, "\\ No newline at end
    of file" included; empty when they are equal."""
    lines = difflib.unified_diff(
        _lines(before), _lines(after), f"a/{filename}", f"b/{filename}", from_label, to_label
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _lines(text: str) -> list[str]:
    """Lines split on LF only (str.splitlines would also split on CR, form feeds, U+2028...)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _upload_filename(filename: str, suffix: str) -> str:
    name = PurePosixPath(filename.replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable())
    if not name.lower().endswith(suffix):
        raise UnsupportedMediaType(f"'{name}' is not a {suffix} file; upload the document as a {suffix} file")
    return name


def _require_media_type(content_type: str | None, kind: DocumentKind) -> None:
    media_type, *parameters = (content_type or "text/plain").split(";")
    media_type = media_type.strip().lower()
    if media_type not in kind.media_types:
        listed = ", ".join(sorted(kind.media_types))
        raise UnsupportedMediaType(f"an upload of type {media_type} is not {kind.format}; send one of: {listed}")
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


def _normalized_text(raw: bytes) -> bytes:
    """UTF-8 text without a byte-order mark, with LF line ends."""
    data = raw.removeprefix(UTF8_BOM)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + len(raw) - len(data)
        raise BadRequest(f"the file is not UTF-8 text (invalid byte at offset {offset})") from exc
    return data.replace(b"\r\n", b"\n")
