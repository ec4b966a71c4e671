"""The catalog: skills, MCP servers and tools, each an item whose content is a document.

An item's metadata (owner, type, name, description, tags, status, install count) is a row of
`catalog_items`; its content is a document of the kind named by its type, owned by the
item's owner. Everything a document has (save, history, versions, diff, rollback, import,
proposals) comes from `DocumentService`, mounted at `/catalog/{id}/document` through
`CatalogMount`; the content rules of `svc.validators` run in the one check every document
write path calls (`DocumentKind.validate`), so no route can skip them.

Who sees and changes an item is who sees and writes its owner's documents (the policy
module decides): a user's items are that user's alone, a team's are seen by its members and
written by its owners and admins, admins reach everything; nothing is public. An item the
caller may not see is 404, as if it did not exist.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field

from svc.content import ContentStore
from svc.db import Database, Transaction
from svc.errors import BadRequest, Conflict, NotFound, Unavailable, Unprocessable
from svc.ids import ULID_PATTERN, new_id
from svc.repositories.catalog import CatalogRepository, Item as ItemRow
from svc.repositories.documents import DocumentRepository
from svc.services import audit, policy
from svc.services.auth import Principal
from svc.services.claude_md import TeamMount, UserMount
from svc.services.documents import DocumentKind, DocumentService, Retirement, Target, utf8
from svc.services.marketplace import MarketplaceService
from svc.services.users import acting_name
from svc.services.pagination import Page, keyset_page
from svc.services.policy import Action
from svc.services.views import projected
from svc import catalog_types
from svc.catalog_types import BY_KIND, CATALOG_TYPES, KINDS
from svc.validators.semver import latest_release, parse_semver



def _check_content(data: bytes, target: Target) -> None:
    """The content rules of the item's type, on every write of its document (create, save,
    rollback, import, propose, accept): 422 listing every violation, 400 when unparseable."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the content is not UTF-8 text (invalid byte at offset {exc.start})") from exc
    catalog_types.check(target.kind.name, target.subject.name, text)


ITEM_KINDS = {
    t.kind: DocumentKind(
        name=t.kind, filename=t.filename, import_suffix=t.import_suffix, media_types=t.media_types, format=t.format,
        validate=_check_content,
    )
    for t in CATALOG_TYPES
}
EDITABLE_FIELDS = ("description", "tags", "status")


@dataclass(frozen=True)
class Draft:
    """An item being created: what its content check needs before the row exists."""

    name: str


def owner_mount(kind: DocumentKind, owner: dict[str, str | None]) -> UserMount | TeamMount:
    """The mount of the owner's documents: the same checks as its claude.md."""
    return TeamMount(kind) if owner.get("team_id") else UserMount(kind)


@dataclass(frozen=True)
class CatalogMount:
    """`/catalog/{id}/document`: the document of an item of one type (the route picks the
    mount by the item's type, which never changes)."""

    kind: DocumentKind

    def open(self, tx: Transaction, actor: Principal, owner_id: str | None, action: Action, *, hold: bool) -> Target:
        assert owner_id is not None
        item = CatalogRepository(tx).get(owner_id, lock="hold" if hold else None)
        if item is None or item.type != self.kind.name:
            raise NotFound(f"catalog item {owner_id} not found")
        return item_target(tx, actor, item, action, hold=hold)


def item_target(tx: Transaction, actor: Principal, item: ItemRow, action: Action, *, hold: bool = False) -> Target:
    """Check that the caller may do `action` to the item (as to its owner's documents) and
    name its document; a hidden item (or a missing owner) is 404 naming the item only."""
    kind = ITEM_KINDS[item.type]
    owner_id = item.owner_team_id or item.owner_user_id
    try:
        target = owner_mount(kind, item.owner).open(tx, actor, owner_id, action, hold=hold)
    except NotFound:
        raise NotFound(f"catalog item {item.id} not found") from None
    return Target(
        kind,
        owner={**target.owner, "document_id": item.document_id},
        audit={"catalog_item_id": item.id, "name": item.name},
        resource=target.resource,
        subject=item,
    )


# --- what the service answers (the routes' response models) ------------------------------

ItemType = Literal[KINDS]  # type: ignore[valid-type]
Status = Literal["active", "deprecated"]
Ulid = Annotated[str, Field(pattern=ULID_PATTERN)]


@dataclass(frozen=True)
class UserOwner:
    __pydantic_config__ = ConfigDict(extra="forbid")  # as a request body: {"user_id"} and nothing else
    user_id: Ulid


@dataclass(frozen=True)
class TeamOwner:
    __pydantic_config__ = ConfigDict(extra="forbid")
    team_id: Ulid


Owner = Annotated[UserOwner | TeamOwner, Field(description="a user or a team: exactly one of the two ids")]


@dataclass(frozen=True)
class CurrentVersion:
    version: int
    commit_sha: str | None


@dataclass(frozen=True)
class Item:
    """A catalog item's API shape."""

    id: str
    type: ItemType
    name: str
    owner: Owner
    description: str
    tags: list[str]
    status: Status
    install_count: Annotated[int, Field(description="distinct users who installed it")]
    current_version: Annotated[CurrentVersion, Field(description="the document's newest version")]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: ItemRow, **more: Any) -> Self:
        """The item of a row (`more`: the fields of a subclass)."""
        owner = TeamOwner(row.owner_team_id) if row.owner_team_id else UserOwner(row.owner_user_id)
        return cls(
            row.id, row.type, row.name, owner, row.description, row.tags, row.status, row.install_count,  # type: ignore[arg-type]
            CurrentVersion(row.head_version, row.head_sha), row.created_at, row.updated_at, **more,
        )


@dataclass(frozen=True)
class Hit(Item):
    rank: Annotated[float, Field(description="ts_rank of the query (0 without one)")]


@dataclass(frozen=True)
class Installed(Item):
    installed_at: datetime


@dataclass(frozen=True)
class Release:
    version: str
    commit_sha: str
    notes: str | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class Releases:
    items: Annotated[list[Release], Field(description="highest version first")]
    latest: Annotated[str | None, Field(description="the highest version that is not a pre-release")]


class CatalogService:
    def __init__(self, db: Database, store: ContentStore, marketplace: MarketplaceService, *, max_bytes: int) -> None:
        self.db = db
        self.store = store
        self.marketplace = marketplace
        self.documents = {
            name: DocumentService(db, store, CatalogMount(kind), max_bytes=max_bytes) for name, kind in ITEM_KINDS.items()
        }
        self._types: dict[str, str] = {}  # item id → type: a type never changes, an id is never reused

    def documents_of(self, item_id: str) -> DocumentService:
        """The document service of the item's type (any, when there is no such item: it answers 404)."""
        item_type = self._types.get(item_id)
        if item_type is None:
            with self.db.transaction() as tx:
                item_type = CatalogRepository(tx).type_of(item_id)
            if item_type is None:
                return self.documents[CATALOG_TYPES[0].kind]
            if len(self._types) > 100_000:
                self._types.clear()
            self._types[item_id] = item_type
        return self.documents[item_type]

    # --- items -------------------------------------------------------------------------

    def create(
        self,
        actor: Principal,
        *,
        type: str,
        name: str,
        owner: dict[str, str | None],
        description: str,
        tags: list[str],
        content: str,
        message: str | None = None,
    ) -> Item:
        """A new item with its first version; the content is checked before anything is written."""
        kind = ITEM_KINDS[type]
        data = utf8(content, "content")
        with self.db.transaction() as tx:
            owner_id = owner.get("team_id") or owner.get("user_id")
            target = owner_mount(kind, owner).open(tx, actor, owner_id, Action.WRITE_DOCUMENT, hold=True)
            document_id, item_id = new_id(), new_id()
            DocumentRepository(tx).create_and_lock(id=document_id, kind=type, **target.owner, document_id=document_id)
            CatalogRepository(tx).insert(
                id=item_id, owner_user_id=target.owner.get("user_id"), owner_team_id=target.owner.get("team_id"),
                type=type, name=name, description=description, tags=tags, document_id=document_id,
            )
            audit.record(
                tx, actor, "catalog.create", "catalog_item", item_id,
                {"type": type, "name": name, **target.owner, "description": description, "tags": tags},
            )
            document = Target(
                kind, owner={**target.owner, "document_id": document_id},
                audit={"catalog_item_id": item_id, "name": name}, resource=target.resource, subject=Draft(name),
            )
            self.documents[type].write_version(
                tx, actor, document, data, message=message or f"Create {kind.filename}", action="create"
            )
        self._types[item_id] = type
        return self.get(actor, item_id)

    def get(self, actor: Principal, item_id: str) -> Item:
        with self.db.transaction() as tx:
            return Item.of(self._open(tx, actor, item_id, Action.READ_DOCUMENT))

    def update(self, actor: Principal, item_id: str, fields: dict[str, Any]) -> Item:
        """Change description, tags or status (the name is part of the content; the type never changes)."""
        with self.db.transaction() as tx:
            item = self._open(tx, actor, item_id, Action.WRITE_DOCUMENT, lock="change")
            current = {k: getattr(item, k) for k in EDITABLE_FIELDS}
            changed = {k: v for k, v in fields.items() if k in EDITABLE_FIELDS and current[k] != v}
            if changed:
                items = CatalogRepository(tx)
                items.update(item_id, **{**current, **changed})
                audit.record(
                    tx, actor, "catalog.update", "catalog_item", item_id,
                    {"name": item.name, "before": {k: current[k] for k in changed}, "after": changed},
                )
                item = items.get(item_id)
                what = ", ".join(sorted(changed))
                self.marketplace.commit(tx, item.owner, f"Change the {what} of {item.name}")
        return Item.of(item)

    def delete(self, actor: Principal, item_id: str) -> None:
        """Delete the item with its releases and installs; its document's history stays in git
        under refs/deleted/<document id>."""
        with self.db.transaction() as tx:
            item = self._open(tx, actor, item_id, Action.WRITE_DOCUMENT, lock="delete")
            items, docs = CatalogRepository(tx), DocumentRepository(tx)
            document = docs.lock(item.document_id)
            retirement = Retirement([document], docs.proposal_commits([document.id]))
            releases = {r.version: r.commit_sha for r in items.releases([item.id])}
            items.delete(item)
            audit.record(
                tx, actor, "catalog.delete", "catalog_item", item_id,
                {"type": item.type, "name": item.name, **item.owner, "history": retirement.audit_detail()},
            )
            self.marketplace.commit(tx, item.owner, f"Delete {item.name}")
        retirement.carry_out(self.store)
        self.store.delete_release_refs(item_id, releases)

    def import_item(
        self, actor: Principal, owner: UserOwner | TeamOwner, *, type: str, name: str, content: str
    ) -> str:
        """Create the owner's item `name` with `content`, or save `content` as its next version;
        "created", "updated" or "unchanged" (its current content is the same: nothing written).
        The description is the content's own (front matter, server.json, tool definition)."""
        owner_ids = asdict(owner)
        with self.db.transaction() as tx:
            item = CatalogRepository(tx).find_by_name(type=type, name=name, **owner_ids)
        if item is None:
            catalog_types.check(type, name, content)
            self.create(
                actor, type=type, name=name, owner=owner_ids, description=BY_KIND[type].description(content)[:1024], tags=[],
                content=content, message=f"Import {ITEM_KINDS[type].filename}",
            )
            return "created"
        if self.store.read(item.head_sha, ITEM_KINDS[type].filename) == utf8(content, "content"):
            return "unchanged"
        expected = frozenset({item.head_sha})
        self.documents[type].save(
            actor, item.id, content=content, message=f"Import {ITEM_KINDS[type].filename}", expected=expected
        )
        return "updated"

    def owner_named(self, kind: str, name: str) -> UserOwner | TeamOwner:
        """The team or user so named ("team" or "user")."""
        with self.db.transaction() as tx:
            owner_id = CatalogRepository(tx).owner_id(kind, name)
        if owner_id is None:
            raise NotFound(f"no {kind} named {name!r}")
        return TeamOwner(owner_id) if kind == "team" else UserOwner(owner_id)

    # --- search ------------------------------------------------------------------------

    def search(
        self,
        actor: Principal,
        *,
        q: str | None,
        type: str | None,
        tag: str | None,
        owner: str | None,
        status: str,
        limit: int,
        after: str | None,
    ) -> Page[Hit]:
        """Ranked full-text search over what the caller may see; `status` "all" includes deprecated items."""
        policy.require(actor, Action.SEARCH_CATALOG)
        with self.db.transaction() as tx:
            page = keyset_page(
                lambda n: CatalogRepository(tx).search(
                    user_id=actor.user_id, everyone=policy.scope(actor).everything, q=q or None, type=type, tag=tag, owner=owner,
                    status=None if status == "all" else status, after=_decode_cursor(after), limit=n,
                ),
                limit,
                cursor=lambda found: _encode_cursor(found.rank, found.item.id),
            )
        return Page([Hit.of(found.item, rank=found.rank) for found in page.items], page.next)

    # --- releases ----------------------------------------------------------------------

    def create_release(
        self, actor: Principal, item_id: str, *, version: str, sha: str | None, notes: str | None
    ) -> Release:
        """Pin `version` to a version of the content (default: the current one). A version is
        unique per item and immutable: of two creations of one version exactly one wins (both
        lock the item row; the second then finds the first), the other is 409."""
        parse_semver(version)
        if version.endswith(".lock"):
            raise Unprocessable("version: a version ending in '.lock' cannot name a git ref; choose another")
        with self.db.transaction() as tx:
            item = self._open(tx, actor, item_id, Action.RELEASE_ITEM, lock="change")
            items = CatalogRepository(tx)
            commit_sha = self._version_sha(tx, item, sha)
            existing = items.release(item_id, version)
            if existing is not None:
                raise Conflict(
                    f"release {version} of {item.name} exists already (commit {existing.commit_sha}); "
                    "releases are immutable: choose a new version"
                )
            self.store.create_release_ref(item_id, version, commit_sha)
            try:
                release = items.insert_release(
                    item_id=item_id, version=version, commit_sha=commit_sha, notes=notes,
                    created_by=acting_name(tx, actor),
                )
                audit.record(
                    tx, actor, "catalog.release", "catalog_item", item_id,
                    {"name": item.name, "version": version, "commit_sha": commit_sha, "notes": notes},
                )
                self.marketplace.commit(tx, item.owner, f"Release {item.name} {version}")
            except BaseException as exc:
                if not isinstance(exc, Unavailable):  # the connection lost during COMMIT: the row may exist
                    self.store.delete_release_refs(item_id, {version: commit_sha})
                raise
        return projected(Release, release)

    def releases(self, actor: Principal, item_id: str) -> Releases:
        """Releases, highest version first."""
        with self.db.transaction() as tx:
            self._open(tx, actor, item_id, Action.READ_DOCUMENT)
            found = CatalogRepository(tx).releases([item_id])
        found.sort(key=lambda r: (parse_semver(r.version).precedence, r.version), reverse=True)
        return Releases([projected(Release, r) for r in found], latest_release(r.version for r in found))

    def content(self, actor: Principal, item_id: str, release: str | None) -> tuple[bytes, str, str]:
        """(bytes, commit sha, content type) of a release ("latest": the highest that is not a
        pre-release) or, without one, of the current version."""
        with self.db.transaction() as tx:
            item = self._open(tx, actor, item_id, Action.READ_DOCUMENT)
            commit_sha = item.head_sha
            if release is not None:
                releases = {r.version: r.commit_sha for r in CatalogRepository(tx).releases([item_id])}
                version = latest_release(releases) if release == "latest" else release
                if version not in releases:
                    raise NotFound(
                        f"{item.name} has no release {release}" if release != "latest"
                        else f"{item.name} has no release yet (pre-releases do not count as latest)"
                    )
                commit_sha = releases[version]
        kind = ITEM_KINDS[item.type]
        return self.store.read(commit_sha, kind.filename), commit_sha, BY_KIND[item.type].content_type

    # --- installs ----------------------------------------------------------------------

    def install(self, actor: Principal, item_id: str) -> Item:
        """Record that the caller uses the item (again: no change)."""
        return self._set_installed(actor, item_id, True)

    def uninstall(self, actor: Principal, item_id: str) -> Item:
        return self._set_installed(actor, item_id, False)

    def _set_installed(self, actor: Principal, item_id: str, installed: bool) -> Item:
        with self.db.transaction() as tx:
            item = self._open(tx, actor, item_id, Action.INSTALL_ITEM)
            items = CatalogRepository(tx)
            change = items.install if installed else items.uninstall
            if change(item_id, actor.user_id):
                verb = "install" if installed else "uninstall"
                audit.record(tx, actor, f"catalog.{verb}", "catalog_item", item_id, {"name": item.name})
                item = items.get(item_id)
                tx.commit()
        return Item.of(item)

    def installs(self, actor: Principal, *, limit: int, after: str | None) -> Page[Installed]:
        """The caller's installed items that it still sees."""
        policy.require(actor, Action.BE_A_USER)
        with self.db.transaction() as tx:
            page = keyset_page(
                lambda n: CatalogRepository(tx).installed(actor.user_id, everyone=policy.scope(actor).everything, limit=n, after=after),
                limit,
                cursor=lambda row: row[0].id,
            )
        return Page([Installed.of(item, installed_at=at) for item, at in page.items], page.next)

    # --- shared ------------------------------------------------------------------------

    def _open(self, tx: Transaction, actor: Principal, item_id: str, action: Action, *, lock: str | None = None) -> ItemRow:
        item = CatalogRepository(tx).get(item_id, lock=lock)
        if item is None:
            raise NotFound(f"catalog item {item_id} not found")
        item_target(tx, actor, item, action)
        return item

    def _version_sha(self, tx: Transaction, item: ItemRow, sha: str | None) -> str:
        if sha is None:
            return item.head_sha
        found = DocumentRepository(tx).find_versions(item.document_id, sha.lower())
        if not found:
            raise NotFound(f"{sha} is not a version of {item.name}")
        if len(found) > 1:
            raise Unprocessable(f"'{sha}' abbreviates more than one version; give more of the sha")
        return found[0].commit_sha




def _encode_cursor(rank: float, item_id: str) -> str:
    """The last hit's (rank, id): the rank as the hex of its exact 4-byte float, so that the
    next page starts exactly after it."""
    return f"{struct.pack('>f', rank).hex()}.{item_id}"


def _decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    """The route's pattern admits only cursors of that form, each a position in the order."""
    if cursor is None:
        return None
    rank, item_id = cursor.split(".")
    return struct.unpack(">f", bytes.fromhex(rank))[0], item_id
