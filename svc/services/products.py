"""Applications as products: their documents, work items and source repositories.

Who may do what follows the application, as for its configurations: members of its team read,
its owners and admins write; admin tokens and service tokens (scoped ones: their own
application only) as for configurations. A caller who may not read the application finds none
of its parts (404), as if they did not exist.

An application document is a document of the kind `application_document` owned by the
application: save, history, versions, diff, rollback and proposals are `DocumentService`'s,
mounted at `/documents/{id}` through `ApplicationDocumentMount`; its title, type, pin and
repository are a row of `application_documents` with the same id. Its ETag is the commit sha
of its current version, as for every document.

Lock order, shared by every write so that none waits on another in a cycle: the application
(held against deletion, or locked by the deletion), then the part's own rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeVar

from svc.content import ContentStore
from svc.db import Database, Transaction
from svc.errors import Conflict, NotFound, Unprocessable
from svc.github import GitHubClient, GitHubRepository
from svc.ids import new_id
from svc.repositories.applications import Application, ApplicationRepository
from svc.repositories.documents import DocumentRepository
from svc.repositories.products import (
    DOCUMENT_FIELDS,
    REPOSITORY_FIELDS,
    WORK_ITEM_FIELDS,
    ApplicationDocument,
    ProductRepository,
    SourceRepository,
    WorkItem,
)
from svc.services import audit, policy
from svc.services.auth import Principal
from svc.services.claude_md import MARKDOWN_MEDIA_TYPES
from svc.services.documents import DocumentKind, DocumentService, Retirement, Target
from svc.services.pagination import Page, keyset_page
from svc.services.policy import Action, ApplicationResource, DocumentResource
from svc.services.preconditions import Precondition, require_current
from svc.services.teams import membership
from svc.services.users import acting_name

APPLICATION_DOCUMENT = DocumentKind(
    name="application_document", filename="document.md", import_suffix=".md", media_types=MARKDOWN_MEDIA_TYPES,
    format="Markdown", resource_type="application_document",
)
DOCUMENT_TYPES = ("blueprint", "architecture", "note", "plan")
WORK_ITEM_TYPES = ("feature", "fix", "refactor", "investigation")
PRIORITIES = ("low", "medium", "high", "urgent")
STATUSES = ("todo", "in_progress", "done")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "todo": ("in_progress",),
    "in_progress": ("done", "todo"),
    "done": ("todo",),
}


@dataclass(frozen=True)
class CurrentVersion:
    version: int
    commit_sha: str | None


@dataclass(frozen=True)
class DocumentSummary:
    """An application document as lists show it (without its content)."""

    id: str
    application_id: str
    title: str
    type: str
    is_pinned: bool
    repository_id: str | None
    current_version: CurrentVersion
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: ApplicationDocument) -> DocumentSummary:
        fields = {k: v for k, v in asdict(row).items() if k not in ("head_version", "head_sha")}
        return cls(**fields, current_version=CurrentVersion(row.head_version, row.head_sha))


@dataclass(frozen=True)
class DocumentView(DocumentSummary):
    """An application document with its current content ("" before the first version)."""

    content: str


@dataclass(frozen=True)
class Imported:
    """The repositories an import named, as they are now, and how many it added or refreshed."""

    items: list[SourceRepository]
    changed: int


def row_version(item: WorkItem) -> str:
    """The ETag value of a work item or a repository: `<id>.<revision>`."""
    return f"{item.id}.{item.revision}"


def open_application(
    tx: Transaction, actor: Principal, application_id: str, *, write: bool, hold: bool = False,
    missing: NotFound | None = None,
) -> tuple[Application, ApplicationResource]:
    """The application, once the caller may read it (else `missing`: 404) and, with `write`,
    write it (403 for one who reads only). `hold` keeps it from being deleted until the
    transaction ends."""
    applications = ApplicationRepository(tx)
    row = applications.hold(application_id) if hold else applications.get(application_id)
    resource = ApplicationResource(application_id, None if row is None else membership(tx, actor, row.team_id))
    if row is None or not policy.can(actor, Action.READ_APPLICATION, resource):
        raise missing or NotFound(f"application {application_id} not found")
    if write:
        policy.require(actor, Action.WRITE_APPLICATION, resource)
    return row, resource


Child = TypeVar("Child", WorkItem, SourceRepository)


def _open_child(
    tx: Transaction, actor: Principal, fetch: Callable[..., Child | None], noun: str, row_id: str, *,
    write: bool, expected: Precondition | None,
) -> Child:
    """A row of an application (`fetch(row_id, lock=…)`), once the caller may read (write) that
    application; a write holds the application and locks the row, then checks `expected`."""
    missing = NotFound(f"{noun} {row_id} not found")
    found = fetch(row_id)
    if found is None:
        raise missing
    open_application(tx, actor, found.application_id, write=write, hold=write, missing=missing)
    if not write:
        return found
    locked = fetch(row_id, lock=True)
    if locked is None:
        raise missing
    require_current(expected, row_version(locked), subject=f"the {noun}")
    return locked


def _update_detail(current: WorkItem | SourceRepository, changed: dict[str, Any]) -> dict[str, Any]:
    """The audit detail of an update: the fields it changed, before and after."""
    return {"application_id": current.application_id, "before": {k: getattr(current, k) for k in changed},
            "after": changed}


def _require_repository(tx: Transaction, application_id: str, repository_id: str | None) -> None:
    if repository_id is not None and not ProductRepository(tx).repository_belongs(repository_id, application_id):
        raise Unprocessable(f"repository_id {repository_id} names no repository of this application")


# --- documents ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplicationDocumentMount:
    """`/documents/{id}/…`: an application's document by its own id."""

    kind: DocumentKind

    def open(self, tx: Transaction, actor: Principal, owner_id: str | None, action: Action, *, hold: bool) -> Target:
        assert owner_id is not None
        missing = NotFound(f"document {owner_id} not found")
        products = ProductRepository(tx)
        found = products.document(owner_id)
        if found is None:
            raise missing
        _, application = open_application(tx, actor, found.application_id, write=False, hold=hold, missing=missing)
        resource = DocumentResource(application=application)
        policy.require(actor, action, resource)
        if hold and products.document(owner_id, lock="hold") is None:  # deleted meanwhile
            raise missing
        return Target(
            self.kind,
            owner={"application_id": found.application_id, "document_id": owner_id},
            audit={"application_id": found.application_id, "document_id": owner_id},
            resource=resource,
            subject=found,
        )


class ApplicationDocumentService:
    """An application's documents: their metadata here, everything else `DocumentService`'s."""

    def __init__(self, db: Database, store: ContentStore, *, max_bytes: int) -> None:
        self.db = db
        self.store = store
        self.mount = ApplicationDocumentMount(APPLICATION_DOCUMENT)
        self.documents = DocumentService(db, store, self.mount, max_bytes=max_bytes)

    def create(
        self, actor: Principal, application_id: str, *, fields: dict[str, Any], content: str, message: str | None
    ) -> DocumentView:
        """A new document with its first version (title, type, is_pinned, repository_id in `fields`)."""
        data = content.encode("utf-8")
        document_id = new_id()
        with self.db.transaction() as tx:
            _, application = open_application(tx, actor, application_id, write=True, hold=True)
            _require_repository(tx, application_id, fields.get("repository_id"))
            DocumentRepository(tx).create_and_lock(
                id=document_id, kind=APPLICATION_DOCUMENT.name, application_id=application_id, document_id=document_id
            )
            metadata = {f: fields.get(f) for f in DOCUMENT_FIELDS} | {"is_pinned": bool(fields.get("is_pinned"))}
            ProductRepository(tx).insert_document(id=document_id, application_id=application_id, fields=metadata)
            target = Target(
                APPLICATION_DOCUMENT,
                owner={"application_id": application_id, "document_id": document_id},
                audit={"application_id": application_id, "document_id": document_id, **metadata},
                resource=DocumentResource(application=application),
            )
            self.documents.write_version(
                tx, actor, target, data, message=message or f"Create {metadata['title']}", action="create"
            )
        return self.get(actor, document_id)

    def list(
        self, actor: Principal, application_id: str, *, type: str | None, pinned: bool | None, limit: int,
        after: str | None,
    ) -> Page[DocumentSummary]:
        """Pinned first, then newest; `after` is the `next` of the previous page."""
        cursor = _document_cursor(after)
        with self.db.transaction() as tx:
            open_application(tx, actor, application_id, write=False)
            products = ProductRepository(tx)
            page = keyset_page(
                lambda n: products.documents(application_id, type=type, pinned=pinned, limit=n, after=cursor),
                limit,
                cursor=lambda row: f"{int(row.is_pinned)}.{row.id}",
            )
        return Page(items=[DocumentSummary.of(row) for row in page.items], next=page.next)

    def get(self, actor: Principal, document_id: str) -> DocumentView:
        with self.db.transaction() as tx:
            row = self.mount.open(tx, actor, document_id, Action.READ_DOCUMENT, hold=False).subject
        return self._view(row)

    def update(
        self,
        actor: Principal,
        document_id: str,
        fields: dict[str, Any],
        *,
        content: str | None,
        message: str | None,
        expected: Precondition | None,
    ) -> DocumentView:
        """Change the metadata given; with `content`, save it as a new version. `expected` is
        checked against the current version under the document's lock."""
        data = None if content is None else content.encode("utf-8")
        with self.db.transaction() as tx:
            target = self.mount.open(tx, actor, document_id, Action.WRITE_DOCUMENT, hold=True)
            document = DocumentRepository(tx).lock(document_id)
            require_current(expected, document.head_sha, subject="the document")
            products = ProductRepository(tx)
            current = products.document(document_id)
            changed = {k: v for k, v in fields.items() if k in DOCUMENT_FIELDS and getattr(current, k) != v}
            if "repository_id" in changed:
                _require_repository(tx, current.application_id, changed["repository_id"])
            if changed:
                products.update_document(document_id, {**{f: getattr(current, f) for f in DOCUMENT_FIELDS}, **changed})
                audit.record(
                    tx, actor, "application_document.update", APPLICATION_DOCUMENT.audit_resource, document_id,
                    {**target.audit, "before": {k: getattr(current, k) for k in changed}, "after": changed},
                )
            if data is not None:
                self.documents.write_version(
                    tx, actor, target, data, message=message or f"Update {current.title}", action="save",
                    expected=expected,
                )
            else:
                tx.commit()
        return self.get(actor, document_id)

    def delete(self, actor: Principal, document_id: str, *, expected: Precondition | None) -> None:
        """Delete the document; its history stays readable under refs/deleted/<id> (named in the audit event)."""
        with self.db.transaction() as tx:
            target = self.mount.open(tx, actor, document_id, Action.WRITE_DOCUMENT, hold=True)
            ProductRepository(tx).document(document_id, lock="update")
            docs = DocumentRepository(tx)
            document = docs.lock(document_id)
            require_current(expected, document.head_sha, subject="the document")
            retirement = Retirement.of(tx, [document])
            docs.delete(document_id)
            [retired] = retirement.audit_detail()
            audit.record(
                tx, actor, "application_document.delete", APPLICATION_DOCUMENT.audit_resource, document_id,
                {**target.audit, "title": target.subject.title, **asdict(retired)},
            )
            tx.commit()
        retirement.carry_out(self.store)

    def _view(self, row: ApplicationDocument) -> DocumentView:
        content = "" if row.head_sha is None else self.store.read(row.head_sha, APPLICATION_DOCUMENT.filename)
        summary = DocumentSummary.of(row)
        return DocumentView(**{k: getattr(summary, k) for k in summary.__dataclass_fields__}, content=_text(content))


def _text(data: bytes | str) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def _document_cursor(after: str | None) -> tuple[bool, str] | None:
    if after is None:
        return None
    pinned, _, document_id = after.partition(".")
    if pinned not in ("0", "1") or not document_id:
        raise Unprocessable("after is not a cursor of this list: pass the `next` of the previous page")
    return pinned == "1", document_id


# --- work items ---------------------------------------------------------------------------


class WorkItemService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, actor: Principal, application_id: str, fields: dict[str, Any]) -> WorkItem:
        """A new work item, in status `todo`."""
        with self.db.transaction() as tx:
            open_application(tx, actor, application_id, write=True, hold=True)
            _require_repository(tx, application_id, fields.get("repository_id"))
            values = {f: fields.get(f) for f in WORK_ITEM_FIELDS} | {"priority": fields.get("priority") or "medium"}
            item = ProductRepository(tx).insert_work_item(
                id=new_id(), application_id=application_id, created_by=acting_name(tx, actor), fields=values
            )
            audit.record(
                tx, actor, "work_item.create", "work_item", item.id, {"application_id": application_id, **values}
            )
            tx.commit()
        return item

    def list(
        self, actor: Principal, application_id: str, *, status: str | None, type: str | None, limit: int,
        after: str | None,
    ) -> Page[WorkItem]:
        """Work items in id order (oldest first), perhaps of one status or type."""
        with self.db.transaction() as tx:
            open_application(tx, actor, application_id, write=False)
            products = ProductRepository(tx)
            return keyset_page(
                lambda n: products.work_items(application_id, status=status, type=type, limit=n, after=after), limit
            )

    def get(self, actor: Principal, work_item_id: str) -> WorkItem:
        with self.db.transaction() as tx:
            return self._open(tx, actor, work_item_id, write=False)

    def update(
        self, actor: Principal, work_item_id: str, fields: dict[str, Any], *, expected: Precondition | None
    ) -> WorkItem:
        """Change the fields given (title, description, type, priority, repository_id)."""
        with self.db.transaction() as tx:
            current = self._open(tx, actor, work_item_id, write=True, expected=expected)
            changed = {k: v for k, v in fields.items() if k in WORK_ITEM_FIELDS and getattr(current, k) != v}
            if not changed:
                return current
            if "repository_id" in changed:
                _require_repository(tx, current.application_id, changed["repository_id"])
            updated = ProductRepository(tx).update_work_item(
                work_item_id, {**{f: getattr(current, f) for f in WORK_ITEM_FIELDS}, **changed}
            )
            audit.record(tx, actor, "work_item.update", "work_item", work_item_id, _update_detail(current, changed))
            tx.commit()
        return updated

    def transition(
        self, actor: Principal, work_item_id: str, status: str, *, expected: Precondition | None
    ) -> WorkItem:
        """Move the item to `status`: todo → in_progress → done, in_progress → todo, done → todo.
        Anything else is 409 naming the statuses it may move to; the check runs under the
        item's row lock, so of two conflicting transitions exactly one happens."""
        if status not in STATUSES:
            raise Unprocessable(f"status must be one of: {', '.join(STATUSES)}")
        with self.db.transaction() as tx:
            current = self._open(tx, actor, work_item_id, write=True, expected=expected)
            allowed = TRANSITIONS[current.status]
            if status not in allowed:
                raise Conflict(
                    f"work item {work_item_id} is {current.status}: it may move to {' or '.join(allowed)}, "
                    f"not to {status}"
                )
            moved = ProductRepository(tx).set_status(work_item_id, status)
            audit.record(
                tx, actor, "work_item.status", "work_item", work_item_id,
                {"application_id": current.application_id, "from": current.status, "to": status},
            )
            tx.commit()
        return moved

    def delete(self, actor: Principal, work_item_id: str, *, expected: Precondition | None) -> None:
        with self.db.transaction() as tx:
            current = self._open(tx, actor, work_item_id, write=True, expected=expected)
            ProductRepository(tx).delete_work_item(work_item_id)
            audit.record(
                tx, actor, "work_item.delete", "work_item", work_item_id,
                {"application_id": current.application_id, "title": current.title, "status": current.status},
            )
            tx.commit()

    def _open(
        self, tx: Transaction, actor: Principal, work_item_id: str, *, write: bool,
        expected: Precondition | None = None,
    ) -> WorkItem:
        return _open_child(tx, actor, ProductRepository(tx).work_item, "work item", work_item_id,
                           write=write, expected=expected)


# --- repositories -------------------------------------------------------------------------


class SourceRepositoryService:
    """An application's source repositories, added by hand or imported from GitHub."""

    def __init__(self, db: Database, github: GitHubClient) -> None:
        self.db = db
        self.github = github

    def create(self, actor: Principal, application_id: str, fields: dict[str, Any]) -> SourceRepository:
        with self.db.transaction() as tx:
            open_application(tx, actor, application_id, write=True, hold=True)
            values = {f: fields.get(f) for f in REPOSITORY_FIELDS}
            values |= {k: fields.get(k) or 0 for k in ("stars_count", "forks_count")}
            values["is_private"] = bool(fields.get("is_private"))
            row = ProductRepository(tx).insert_repository(id=new_id(), application_id=application_id, fields=values)
            audit.record(
                tx, actor, "repository.create", "repository", row.id, {"application_id": application_id, **values}
            )
            tx.commit()
        return row

    def list(self, actor: Principal, application_id: str, *, limit: int, after: str | None) -> Page[SourceRepository]:
        with self.db.transaction() as tx:
            open_application(tx, actor, application_id, write=False)
            products = ProductRepository(tx)
            return keyset_page(lambda n: products.repositories(application_id, limit=n, after=after), limit)

    def get(self, actor: Principal, repository_id: str) -> SourceRepository:
        with self.db.transaction() as tx:
            return self._open(tx, actor, repository_id, write=False)

    def update(
        self, actor: Principal, repository_id: str, fields: dict[str, Any], *, expected: Precondition | None
    ) -> SourceRepository:
        with self.db.transaction() as tx:
            current = self._open(tx, actor, repository_id, write=True, expected=expected)
            changed = {k: v for k, v in fields.items() if k in REPOSITORY_FIELDS and getattr(current, k) != v}
            if not changed:
                return current
            updated = ProductRepository(tx).update_repository(
                repository_id, {**{f: getattr(current, f) for f in REPOSITORY_FIELDS}, **changed}
            )
            audit.record(tx, actor, "repository.update", "repository", repository_id, _update_detail(current, changed))
            tx.commit()
        return updated

    def delete(self, actor: Principal, repository_id: str, *, expected: Precondition | None) -> None:
        """Delete a repository; work items and documents that named it keep no repository."""
        with self.db.transaction() as tx:
            current = self._open(tx, actor, repository_id, write=True, expected=expected)
            ProductRepository(tx).delete_repository(repository_id)
            audit.record(
                tx, actor, "repository.delete", "repository", repository_id,
                {"application_id": current.application_id, "full_name": current.full_name},
            )
            tx.commit()

    def github_repositories(self, actor: Principal, token: str | None) -> list[GitHubRepository]:
        """The repositories the GitHub token's user may access, as GitHub lists them."""
        policy.require(actor, Action.LIST_GITHUB_REPOSITORIES)
        return self.github.repositories(token)

    def import_from_github(
        self, actor: Principal, application_id: str, full_names: list[str], token: str | None
    ) -> Imported:
        """Add (or refresh, by GitHub's id) the named repositories of the token's user. Every
        name must be one GitHub lists for the token; else nothing is imported (422)."""
        with self.db.transaction() as tx:  # refused before GitHub is asked (and the rate limit spent)
            open_application(tx, actor, application_id, write=True)
        listed = {repo.full_name.lower(): repo for repo in self.github.repositories(token)}
        wanted = list(dict.fromkeys(name.lower() for name in full_names))
        unknown = [name for name in full_names if name.lower() not in listed]
        if unknown:
            raise Unprocessable(
                f"GitHub does not list {', '.join(unknown)} for this token; check the names (owner/name) and "
                "that the token may read them"
            )
        rows = [{"id": new_id(), **asdict(listed[name])} for name in wanted]
        with self.db.transaction() as tx:
            open_application(tx, actor, application_id, write=True, hold=True)
            changed, current = ProductRepository(tx).upsert_repositories(application_id, rows)
            audit.record(
                tx, actor, "repository.import", "application", application_id,
                {"repositories": [{"id": r.id, "full_name": r.full_name, "github_id": r.github_id} for r in changed],
                 "requested": len(wanted)},
            )
            tx.commit()
        return Imported(items=current, changed=len(changed))

    def _open(
        self, tx: Transaction, actor: Principal, repository_id: str, *, write: bool,
        expected: Precondition | None = None,
    ) -> SourceRepository:
        return _open_child(tx, actor, ProductRepository(tx).repository, "repository", repository_id,
                           write=write, expected=expected)
