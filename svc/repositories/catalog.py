"""SQL for `catalog_items`, `catalog_releases` and `catalog_installs` (the content of an item
is its document: `documents` / `document_versions`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from svc.db import Constraints, Transaction
from svc.errors import Conflict, Unprocessable


@dataclass(frozen=True)
class Item:
    id: str
    owner_user_id: str | None
    owner_team_id: str | None
    type: str
    name: str
    description: str
    tags: list[str]
    status: str
    install_count: int
    document_id: str
    created_at: datetime
    updated_at: datetime
    head_version: int
    head_sha: str | None

    @property
    def owner(self) -> dict[str, str]:
        """The owner as keyword arguments: {"user_id": …} or {"team_id": …}."""
        return {"user_id": self.owner_user_id} if self.owner_user_id else {"team_id": self.owner_team_id}


@dataclass(frozen=True)
class Release:
    item_id: str
    version: str
    commit_sha: str
    notes: str | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class Found:
    """A search hit: the item and its rank (0 without a query)."""

    item: Item
    rank: float


# The item's updated_at is the later of its own fields' change and its content's.
ITEM_COLUMNS = (
    "i.id, i.owner_user_id, i.owner_team_id, i.type, i.name, i.description, i.tags, i.status, i.install_count, "
    "i.document_id, i.created_at, greatest(i.updated_at, d.updated_at) AS updated_at, d.head_version, d.head_sha"
)
ITEM_FROM = "catalog_items i JOIN documents d ON d.id = i.document_id"
RELEASE_COLUMNS = "item_id, version, commit_sha, notes, created_by, created_at"

# What a caller sees: everything (admins), else its own items and its teams' items.
VISIBLE = """(%(everyone)s
  OR i.owner_user_id = %(user_id)s
  OR i.owner_team_id IN (SELECT m.team_id FROM team_members m WHERE m.user_id = %(user_id)s))"""

# What an insert or update may break, as the error the caller sees.
CONSTRAINTS: Constraints = {
    "catalog_items_owner_type_name_key": lambda p: Conflict(f"this owner already has a {p['type']} named {p['name']!r}"),
    "catalog_items_name_check": lambda p: Unprocessable("an item name is 1–200 characters"),
    "catalog_items_description_check": lambda p: Unprocessable("a description is at most 1024 characters"),
    "catalog_items_tags_check": lambda p: Unprocessable("an item has at most 20 tags"),
}
RELEASE_CONSTRAINTS: Constraints = {
    "catalog_releases_pkey": lambda p: Conflict(f"release {p['version']} exists already; releases are immutable"),
    "catalog_releases_version_check": lambda p: Unprocessable("a release version is 5–256 characters"),
    "catalog_releases_notes_check": lambda p: Unprocessable("release notes are at most 4096 characters"),
}

INSERT_ITEM = """
INSERT INTO catalog_items (id, owner_user_id, owner_team_id, type, name, description, tags, document_id)
VALUES (%(id)s, %(owner_user_id)s, %(owner_team_id)s, %(type)s, %(name)s, %(description)s, %(tags)s, %(document_id)s)
RETURNING id
"""

GET_ITEM = f"SELECT {ITEM_COLUMNS} FROM {ITEM_FROM} WHERE i.id = %(id)s"
# Document writers hold the item against deletion; metadata changes and releases serialize
# on NO KEY UPDATE (which does not wait for the writers); deletion takes it all.
HOLD_ITEM = f"{GET_ITEM} FOR KEY SHARE OF i"
LOCK_ITEM_FOR_CHANGE = f"{GET_ITEM} FOR NO KEY UPDATE OF i"
LOCK_ITEM = f"{GET_ITEM} FOR UPDATE OF i"
TYPE_OF = "SELECT type FROM catalog_items WHERE id = %(id)s"

FIND_BY_NAME = f"""
SELECT {ITEM_COLUMNS} FROM {ITEM_FROM}
WHERE i.owner_user_id IS NOT DISTINCT FROM %(user_id)s AND i.owner_team_id IS NOT DISTINCT FROM %(team_id)s
  AND i.type = %(type)s AND i.name = %(name)s
"""

UPDATE_ITEM = """
UPDATE catalog_items
SET description = %(description)s, tags = %(tags)s, status = %(status)s, updated_at = now()
WHERE id = %(id)s
"""

DELETE_DOCUMENT = "DELETE FROM documents WHERE id = %(document_id)s"  # the item, its releases and installs go with it

# Ranked by ts_rank (0 for every item without a query), then id; the cursor is the last
# (rank, id), so a page continues exactly where the last one ended. The page is cut before
# the join to documents, so only its rows are joined.
SEARCH = f"""
SELECT {ITEM_COLUMNS}, page.rank
FROM (
    SELECT i.id, r.rank
    FROM catalog_items i,
         LATERAL (SELECT CASE WHEN %(q)s::text IS NULL THEN 0::real
                              ELSE ts_rank(i.search, websearch_to_tsquery('english', %(q)s)) END AS rank) r
    WHERE (%(q)s::text IS NULL OR i.search @@ websearch_to_tsquery('english', %(q)s))
      AND {VISIBLE}
      AND (%(type)s::text IS NULL OR i.type = %(type)s)
      AND (%(tag)s::text IS NULL OR i.tags @> ARRAY[%(tag)s::text])
      AND (%(owner)s::text IS NULL OR i.owner_user_id = %(owner)s OR i.owner_team_id = %(owner)s)
      AND (%(status)s::text IS NULL OR i.status = %(status)s)
      AND (%(after_rank)s::real IS NULL OR r.rank < %(after_rank)s::real
           OR (r.rank = %(after_rank)s::real AND i.id > %(after_id)s))
    ORDER BY r.rank DESC, i.id
    LIMIT %(limit)s
) page
JOIN {ITEM_FROM} ON i.id = page.id
ORDER BY page.rank DESC, i.id
"""

# `svc catalog import --owner team:NAME|user:USERNAME`
OWNER_IDS = {
    "team": "SELECT id FROM teams WHERE name = %(name)s",
    "user": "SELECT id FROM users WHERE username = %(name)s",
}

# The items one owner's Claude Code marketplace may list (the service keeps those released).
OFFERED = f"""
SELECT {ITEM_COLUMNS} FROM {ITEM_FROM}
WHERE i.owner_user_id IS NOT DISTINCT FROM %(user_id)s AND i.owner_team_id IS NOT DISTINCT FROM %(team_id)s
  AND i.status = 'active' AND i.type = ANY(%(types)s)
ORDER BY i.id
"""
# One owner's marketplace is rebuilt by one transaction at a time, across every host.
LOCK_MARKETPLACE = "SELECT pg_advisory_xact_lock(hashtextextended('marketplace:' || %(owner_id)s, 0))"

INSERT_RELEASE = f"""
INSERT INTO catalog_releases (item_id, version, commit_sha, notes, created_by)
VALUES (%(item_id)s, %(version)s, %(commit_sha)s, %(notes)s, %(created_by)s)
RETURNING {RELEASE_COLUMNS}
"""
GET_RELEASE = f"SELECT {RELEASE_COLUMNS} FROM catalog_releases WHERE item_id = %(item_id)s AND version = %(version)s"
RELEASES_OF = f"SELECT {RELEASE_COLUMNS} FROM catalog_releases WHERE item_id = ANY(%(item_ids)s)"
ALL_RELEASES = f"SELECT {RELEASE_COLUMNS} FROM catalog_releases ORDER BY item_id, version"

INSTALL = """
INSERT INTO catalog_installs (item_id, user_id) VALUES (%(item_id)s, %(user_id)s)
ON CONFLICT ON CONSTRAINT catalog_installs_pkey DO NOTHING
"""
UNINSTALL = "DELETE FROM catalog_installs WHERE item_id = %(item_id)s AND user_id = %(user_id)s"

# The installed items the user still sees (a team it left keeps its items to itself).
INSTALLED = f"""
SELECT {ITEM_COLUMNS}, c.installed_at
FROM catalog_installs c JOIN {ITEM_FROM} ON i.id = c.item_id
WHERE c.user_id = %(user_id)s AND {VISIBLE}
  AND (%(after)s::text IS NULL OR i.id > %(after)s)
ORDER BY i.id
LIMIT %(limit)s
"""


class CatalogRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(
        self,
        *,
        id: str,
        owner_user_id: str | None,
        owner_team_id: str | None,
        type: str,
        name: str,
        description: str,
        tags: list[str],
        document_id: str,
    ) -> str:
        params = {
            "id": id, "owner_user_id": owner_user_id, "owner_team_id": owner_team_id, "type": type, "name": name,
            "description": description, "tags": tags, "document_id": document_id,
        }
        return self.tx.fetch_value(INSERT_ITEM, params, constraints=CONSTRAINTS)

    def get(self, item_id: str, *, lock: str | None = None) -> Item | None:
        """The item; `lock`: "hold" (against deletion), "change" (fields, releases) or "delete"."""
        sql = {None: GET_ITEM, "hold": HOLD_ITEM, "change": LOCK_ITEM_FOR_CHANGE, "delete": LOCK_ITEM}[lock]
        return self.tx.fetch_one(sql, {"id": item_id}, row=Item)

    def type_of(self, item_id: str) -> str | None:
        return self.tx.fetch_value(TYPE_OF, {"id": item_id})

    def find_by_name(self, *, type: str, name: str, user_id: str | None = None, team_id: str | None = None) -> Item | None:
        params = {"type": type, "name": name, "user_id": user_id, "team_id": team_id}
        return self.tx.fetch_one(FIND_BY_NAME, params, row=Item)

    def owner_id(self, kind: str, name: str) -> str | None:
        """The id of the team (`kind` "team") or user ("user") of that name."""
        return self.tx.fetch_value(OWNER_IDS[kind], {"name": name})

    def update(self, item_id: str, *, description: str, tags: list[str], status: str) -> None:
        params = {"id": item_id, "description": description, "tags": tags, "status": status}
        self.tx.execute(UPDATE_ITEM, params, constraints=CONSTRAINTS)

    def delete(self, item: Item) -> None:
        self.tx.execute(DELETE_DOCUMENT, {"document_id": item.document_id})

    def search(
        self,
        *,
        user_id: str | None,
        everyone: bool,
        q: str | None,
        type: str | None,
        tag: str | None,
        owner: str | None,
        status: str | None,
        after: tuple[float, str] | None,
        limit: int,
    ) -> list[Found]:
        params = {
            "user_id": user_id, "everyone": everyone, "q": q, "type": type, "tag": tag, "owner": owner,
            "status": status, "after_rank": after[0] if after else None, "after_id": after[1] if after else None,
            "limit": limit,
        }
        rows = self.tx.fetch_all(SEARCH, params)
        return [Found(Item(**{k: v for k, v in row.items() if k != "rank"}), row["rank"]) for row in rows]

    def offered(self, *, types: list[str], user_id: str | None = None, team_id: str | None = None) -> list[Item]:
        """The owner's active items of `types`, oldest first."""
        return self.tx.fetch_all(OFFERED, {"types": types, "user_id": user_id, "team_id": team_id}, row=Item)

    def lock_marketplace(self, owner_id: str) -> None:
        """Wait until no other transaction rebuilds this owner's marketplace; held until the end."""
        self.tx.execute(LOCK_MARKETPLACE, {"owner_id": owner_id})

    def insert_release(
        self, *, item_id: str, version: str, commit_sha: str, notes: str | None, created_by: str
    ) -> Release:
        params = {"item_id": item_id, "version": version, "commit_sha": commit_sha, "notes": notes,
                  "created_by": created_by}
        return self.tx.fetch_one(INSERT_RELEASE, params, row=Release, constraints=RELEASE_CONSTRAINTS)

    def release(self, item_id: str, version: str) -> Release | None:
        return self.tx.fetch_one(GET_RELEASE, {"item_id": item_id, "version": version}, row=Release)

    def releases(self, item_ids: list[str]) -> list[Release]:
        return self.tx.fetch_all(RELEASES_OF, {"item_ids": item_ids}, row=Release)

    def all_releases(self) -> list[Release]:
        return self.tx.fetch_all(ALL_RELEASES, row=Release)

    def install(self, item_id: str, user_id: str) -> bool:
        """Record the install; False when the user had it already."""
        return self.tx.execute(INSTALL, {"item_id": item_id, "user_id": user_id}) == 1

    def uninstall(self, item_id: str, user_id: str) -> bool:
        return self.tx.execute(UNINSTALL, {"item_id": item_id, "user_id": user_id}) == 1

    def installed(
        self, user_id: str, *, everyone: bool, limit: int, after: str | None = None
    ) -> list[tuple[Item, datetime]]:
        params = {"user_id": user_id, "everyone": everyone, "limit": limit, "after": after}
        rows = self.tx.fetch_all(INSTALLED, params)
        return [(Item(**{k: v for k, v in row.items() if k != "installed_at"}), row["installed_at"]) for row in rows]
