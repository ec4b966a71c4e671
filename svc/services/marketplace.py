"""Claude Code plugin marketplaces: each team's (and each user's) released skills and MCP
servers as a one-branch git repository that `claude plugin marketplace add` clones.

    .claude-plugin/marketplace.json              name, owner, one plugin per released active item
    plugins/<plugin>/.claude-plugin/plugin.json  name, description, version (the latest release)
    plugins/<skill>/skills/<skill>/SKILL.md      the released SKILL.md, byte for byte
    plugins/<server>/.mcp.json                   the released server.json as Claude Code reads it

Where it lives: the commit is made in the content store on `refs/marketplaces/<teams|users>/<id>`,
moved like every other ref there (compare-and-swap, on `SVC_GIT_REMOTE` first when there is
one), by the transaction of the change that alters it (a release, a deprecation, a new
description, a deletion, a rename) just before that transaction commits, and moved back if
the commit fails. One advisory lock per owner serializes those rebuilds across hosts, and
each rebuild reads the owner's items after taking it, so two changes at once both land.

What is served: a bare repository per marketplace under `<data dir>/marketplaces/`, holding
nothing but that branch, fetched from the content store when its head lags. git's own
`upload-pack` serves it, so no object of another marketplace, nor any document, is
reachable from a marketplace URL, whatever is asked for by id. Those repositories are
copies: deleting them is safe (they are made again on the next request).

When its team or user is deleted: the ref (here and on the remote) and the served copy are
deleted after the deletion commits (`discard`), not renamed to refs/deleted/ as a document's
ref is: a marketplace is derived data, every commit of it made from releases that keep
their own refs, so nothing is lost. `svc verify` reports a marketplace whose owner is gone,
or whose commit does not show what the database says (`drift`), and `--repair` mends both.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from svc.catalog_types import BY_KIND, CATALOG_TYPES
from svc.claude_code import json_file, marketplace_name
from svc.content import ContentStore
from svc.content.remote import RemoteMoved
from svc.content.store import MARKETPLACE_REFS, Author, loose_ref
from svc.db import Database, Transaction
from svc.errors import Conflict, NotFound, ServiceError, Unavailable
from svc.repositories.catalog import CatalogRepository, Item
from svc.repositories.teams import TeamRepository
from svc.repositories.users import UserRepository
from svc.services import policy
from svc.services.auth import Principal
from svc.services.policy import Action, DocumentResource, TeamResource
from svc.validators.semver import latest_release

log = logging.getLogger(__name__)

OwnerKind = Literal["teams", "users"]
KINDS: tuple[OwnerKind, ...] = get_args(OwnerKind)
PluginKey = tuple[str, str, str, str, str, str]  # item id, type, name, description, version, release commit
MAX_REMEMBERED_PLUGINS = 100_000
PLUGIN_KINDS = [t.kind for t in CATALOG_TYPES if t.is_plugin]
SERVED_BRANCH = "refs/heads/main"
AUTHOR = Author("svc", "svc@svc.invalid")
# The served repositories answer for their one branch only, whatever git's defaults elsewhere say.
SERVED_CONFIG = {
    "uploadpack.allowAnySHA1InWant": "false",
    "uploadpack.allowReachableSHA1InWant": "false",
    "uploadpack.allowTipSHA1InWant": "false",
    "gc.auto": "0",
    "core.logAllRefUpdates": "false",
}


@dataclass(frozen=True)
class Owner:
    """Whose marketplace: a team or a user, by id, with the names it is shown by."""

    kind: OwnerKind
    id: str
    name: str  # the team's name or the username: the URL's and (normalised) the marketplace's
    display_name: str

    @property
    def ref(self) -> str:
        return marketplace_ref(self.kind, self.id)

    @property
    def ids(self) -> dict[str, str]:
        return ids_of(self.kind, self.id)


def marketplace_ref(kind: OwnerKind, owner_id: str) -> str:
    return f"{MARKETPLACE_REFS}{kind}/{owner_id}"


def ids_of(kind: OwnerKind, owner_id: str) -> dict[str, str]:
    """The owner as `commit` and `publish` take it: {"team_id": …} or {"user_id": …}."""
    return {"team_id": owner_id} if kind == "teams" else {"user_id": owner_id}


@dataclass(frozen=True)
class Move:
    """A marketplace ref moved by a transaction that has not committed yet."""

    ref: str
    new: str
    old: str | None


class MarketplaceService:
    def __init__(self, db: Database, store: ContentStore, root: Path) -> None:
        self.db = db
        self.store = store
        self.root = root
        self._sync_lock = threading.Lock()
        # The tree each plugin was last made into here; a tree is reused only while the
        # previous marketplace commit still holds it (so it is reachable, never pruned).
        self._plugin_trees: dict[PluginKey, str] = {}

    # --- keeping it current ----------------------------------------------------------------

    def commit(self, tx: Transaction, owner_ids: dict[str, str | None], message: str) -> None:
        """Commit `tx`, a change the owner's marketplace shows, with that marketplace rebuilt in
        it (and its ref moved back if the commit fails)."""
        move = self.publish(tx, owner_ids, message)
        try:
            tx.commit()
        except BaseException:
            self.undo(move)
            raise

    def publish(self, tx: Transaction, owner_ids: dict[str, str | None], message: str) -> Move | None:
        """Rebuild the marketplace of the owner ({"team_id": …} or {"user_id": …}) from what
        `tx` sees, and move its ref there; None when nothing in it changed (or the owner is gone).
        Call last before committing, and `undo` the move if the commit fails."""
        owner = _locked_owner(tx, owner_ids)
        if owner is None:
            return None
        old, files, trees, made = self._build(tx, owner)
        written = self.store.write_tree_commit(files, trees=trees, parent=old, author=AUTHOR, message=message)
        for key, name in made.items():
            self._remember(key, written.trees[f"plugins/{name}"])
        if written.commit is None:
            return None
        self.store.move_ref(owner.ref, written.commit, old)
        return Move(owner.ref, written.commit, old)

    def undo(self, move: Move | None) -> None:
        """Move a marketplace ref back after its transaction failed (best effort: the next
        change of that marketplace rebuilds it from the database anyway)."""
        if move is None:
            return
        try:
            self.store.move_ref(move.ref, move.old, move.new)
        except (Unavailable, RemoteMoved) as exc:
            log.error("could not move %s back from %s: %s", move.ref, move.new, exc.detail)

    def _build(
        self, tx: Transaction, owner: Owner
    ) -> tuple[str | None, dict[str, bytes], dict[str, str], dict[PluginKey, str]]:
        """Where the owner's marketplace ref stands, and (as `_layout` gives them) the files and
        trees of the marketplace that `tx` sees, with the plugins made anew."""
        items = CatalogRepository(tx)
        offered = items.offered(types=PLUGIN_KINDS, **owner.ids)
        releases: dict[str, dict[str, str]] = {}
        for release in items.releases([item.id for item in offered]):
            releases.setdefault(release.item_id, {})[release.version] = release.commit_sha
        listed = []
        for item in offered:
            version = latest_release(releases.get(item.id, {}))
            if version is not None:
                listed.append((item, version, releases[item.id][version]))
        old = self.store.current_ref(owner.ref)
        kept = self.store.subtrees(old, "plugins") if old is not None else {}
        return old, *self._layout(owner, listed, kept)

    def _layout(
        self, owner: Owner, listed: list[tuple[Item, str, str]], kept: dict[str, str]
    ) -> tuple[dict[str, bytes], dict[str, str], dict[PluginKey, str]]:
        """The marketplace's files, the plugin directories kept from the previous commit (an
        unchanged plugin, which this process made itself, is not read or hashed again), and
        the plugins made anew (their key → name)."""
        files: dict[str, bytes] = {}
        trees: dict[str, str] = {}
        plugins = []
        named: set[str] = set()
        to_make: list[tuple[PluginKey, str, Item, dict[str, str], str]] = []
        for item, version, sha in listed:
            name = BY_KIND[item.type].plugin_name(item.name)
            if name in named:
                continue  # two items give one plugin name (a skill and a server): the older keeps it
            named.add(name)
            manifest = {"name": name, "description": item.description, "version": version}
            plugins.append({**manifest, "source": f"./plugins/{name}"})
            key = (item.id, item.type, item.name, item.description, version, sha)
            if name in kept and self._plugin_trees.get(key) == kept[name]:
                trees[f"plugins/{name}"] = kept[name]
            else:
                to_make.append((key, name, item, manifest, sha))
        contents = self.store.read_many([(sha, BY_KIND[item.type].filename) for _, _, item, _, sha in to_make])
        for (_, name, item, manifest, _), data in zip(to_make, contents):
            root = f"plugins/{name}"
            files[f"{root}/.claude-plugin/plugin.json"] = json_file(manifest)
            parts = BY_KIND[item.type].parts(item.name, data)
            files.update({f"{root}/{path}": content for path, content in parts.files.items()})
            if parts.mcp_servers:
                files[f"{root}/.mcp.json"] = json_file({"mcpServers": parts.mcp_servers})
        what = "team" if owner.kind == "teams" else "user"
        files[".claude-plugin/marketplace.json"] = json_file({
            "name": marketplace_name(owner.name),
            "owner": {"name": owner.display_name},
            "metadata": {"description": f"Released skills and MCP servers of the {what} {owner.name}"},
            "plugins": plugins,
        })
        return files, trees, {key: name for key, name, *_ in to_make}

    def _remember(self, key: PluginKey, tree: str) -> None:
        if len(self._plugin_trees) > MAX_REMEMBERED_PLUGINS:
            self._plugin_trees.clear()
        self._plugin_trees[key] = tree

    # --- checking and deleting ---------------------------------------------------------

    def drift(self, tx: Transaction, kind: OwnerKind, owner_id: str) -> str | None:
        """How the marketplace's commit differs from what the database says (holding its lock in
        `tx`, so no rebuild is in flight), or None when it does not or there is no ref yet; the
        tree it should have is only hashed, nothing is written. NotFound when the owner is gone."""
        owner = _locked_owner(tx, ids_of(kind, owner_id))
        if owner is None:
            raise NotFound(f"no {kind} {owner_id}")
        head, files, trees, _ = self._build(tx, owner)
        if head is None:
            return None
        wanted, shown = self.store.tree_sha(files, trees=trees), self.store.tree_of(head)
        if wanted == shown:
            return None
        return f"{owner.ref} is at {head}, which does not show what the database holds (tree {shown}, not {wanted})"

    def stored(self) -> set[tuple[OwnerKind, str]]:
        """Every marketplace (kind, owner id) with a ref here or on the remote, or a served copy."""
        refs = set(self.store.marketplace_refs())
        if self.store.remote is not None:
            refs |= {ref.removeprefix(MARKETPLACE_REFS) for ref in self.store.remote_refs(MARKETPLACE_REFS)}
        found = {(kind, owner_id) for kind, _, owner_id in (ref.partition("/") for ref in refs) if kind in KINDS}
        for kind in KINDS:  # a copy's name starts with a dot while it is being made
            found |= {(kind, path.name.removesuffix(".git")) for path in (self.root / kind).glob("[!.]*.git")}
        return found

    def delete(self, kind: OwnerKind, owner_id: str) -> None:
        """Delete the marketplace of a team or user that no longer exists: its ref, here and on
        the remote (`ContentStore.delete_ref`: compare-and-swap against the value read), then its
        served copy. Deleted, not kept under refs/deleted/: it is derived data, made again from
        the database. Done holding its lock, so a rebuild in flight lands first and none starts
        after (each finds no owner). Conflict, with nothing done, when the owner exists."""
        with self.db.transaction() as tx:
            if _locked_owner(tx, ids_of(kind, owner_id)) is not None:
                raise Conflict(f"the {kind.removesuffix('s')} {owner_id} exists: its marketplace stays")
            self.store.delete_ref(marketplace_ref(kind, owner_id))
            served = self._served(kind, owner_id)
            try:
                shutil.rmtree(served)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise Unavailable(f"could not remove the served copy {served}: {exc}") from exc

    def discard(self, kind: OwnerKind, owner_id: str) -> None:
        """After the commit that deleted a team or user: `delete` its marketplace, best effort
        (what stays, `svc verify --repair` removes)."""
        try:
            self.delete(kind, owner_id)
        except ServiceError as exc:
            log.error("the %s %s was deleted, but its marketplace stays: %s", kind.removesuffix("s"), owner_id, exc.detail)

    # --- serving -------------------------------------------------------------------------

    def repository(self, actor: Principal, kind: OwnerKind, name: str, *, shows_refs: bool = True) -> Path:
        """The bare repository to serve as the marketplace of the team or user `name`, brought
        up to date. NotFound when there is no such owner or the caller may not see it.
        `shows_refs=False`, for an answer that lists no refs (git's protocol-v2 capability
        advertisement): the repository as it stands, once it exists."""
        with self.db.transaction() as tx:
            owner = _visible_owner(tx, actor, kind, name)
        path = self._served(kind, owner.id)
        if not shows_refs and (path / "HEAD").is_file():
            return path
        head = self.store.current_ref(owner.ref)
        if head is None:  # nothing released yet: an empty marketplace, made once
            with self.db.transaction() as tx:
                self.commit(tx, owner.ids, "Open the marketplace")
            head = self.store.current_ref(owner.ref)
        self._sync(path, owner.ref, head)
        return path

    def _served(self, kind: OwnerKind, owner_id: str) -> Path:
        return self.root / kind / f"{owner_id}.git"

    def _sync(self, path: Path, ref: str, head: str | None) -> None:
        if not (path / "HEAD").is_file():
            _create_served(path)
        if head is None or loose_ref(path / SERVED_BRANCH) == head:
            return
        with self._sync_lock:
            if loose_ref(path / SERVED_BRANCH) == head:
                return
            result = _git(
                path, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-maintenance",
                str(self.store.path), f"+{ref}:{SERVED_BRANCH}",
            )
        if result.returncode != 0 and loose_ref(path / SERVED_BRANCH) is None:  # else another worker's fetch won
            raise Unavailable(f"could not bring the marketplace {path.name} up to date: {result.stderr.strip()}")


def _locked_owner(tx: Transaction, owner_ids: dict[str, str | None]) -> Owner | None:
    """The owner, read after taking its marketplace's lock: once the commit that deletes it is
    in, no rebuild finds it, so none can make its ref again after `delete`."""
    CatalogRepository(tx).lock_marketplace(owner_ids.get("team_id") or owner_ids.get("user_id") or "")
    return _owner(tx, owner_ids)


def _owner(tx: Transaction, owner_ids: dict[str, str | None]) -> Owner | None:
    team_id = owner_ids.get("team_id")
    if team_id is not None:
        team = TeamRepository(tx).get(team_id)
        return team and Owner("teams", team.id, team.name, team.display_name or team.name)
    user = UserRepository(tx).get(owner_ids["user_id"] or "")
    return user and Owner("users", user.id, user.username, user.display_name or user.username)


def _visible_owner(tx: Transaction, actor: Principal, kind: OwnerKind, name: str) -> Owner:
    """The owner named in a marketplace URL, when the caller may read its catalog: members
    of every role read their team's, a user reads their own, admins read all."""
    owner_id = CatalogRepository(tx).owner_id("team" if kind == "teams" else "user", name)
    if kind == "teams":
        teams = TeamRepository(tx)
        role = teams.role_of(owner_id, actor.user_id) if owner_id else None
        resource = DocumentResource(team=TeamResource(owner_id or "", role))
    else:
        resource = DocumentResource(user_id=owner_id or "")
    hidden = NotFound(f"no marketplace {kind}/{name}.git that this token may read")
    try:
        policy.require(actor, Action.READ_DOCUMENT, resource)
    except NotFound:
        raise hidden from None
    owner = _owner(tx, ids_of(kind, owner_id)) if owner_id else None
    if owner is None:
        raise hidden
    return owner


def _create_served(path: Path) -> None:
    """A bare repository for one marketplace, made aside and renamed into place (several
    workers may ask at once: one of them makes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        _git(staging, "init", "--quiet", "--bare", str(staging), check=True)
        _git(staging, "symbolic-ref", "HEAD", SERVED_BRANCH, check=True)
        for key, value in SERVED_CONFIG.items():
            _git(staging, "config", key, value, check=True)
        try:
            os.rename(staging, path)
        except OSError:
            if not (path / "HEAD").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _git(git_dir: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "GIT_DIR"}
    result = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise Unavailable(f"git {args[0]} failed in {git_dir}: {result.stderr.strip()}")
    return result
