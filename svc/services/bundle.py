"""`GET /me/bundle`: what a person's Claude Code needs in a project, as one `.tar.gz` laid out
as on disk once unpacked in the project's directory.

    .mcp.json                          {"mcpServers": {<name>: {...}}} for each installed MCP server
    .claude/CLAUDE.md                  the caller's claude.md (left out when never saved)
    .claude/skills/<name>/SKILL.md     each installed skill
    .claude/tools/<name>.json          each installed tool definition
    .claude/settings.json              `extraKnownMarketplaces`: the caller's teams' marketplaces

Each item is taken at its latest release, or its current version when it has none, and laid
out as its type in `svc.catalog_types` says (the MCP entries are the marketplace's own
translation). The archive is deterministic (sorted entries, fixed owner and mtime, gzip
mtime 0), so its ETag, a hash of the inputs (each item's commit, the claude.md version, the
marketplaces), names its bytes and a 304 costs three queries and no git read. Items installed
but no longer visible (a team left) are not packed. Two installed items with one name (a
user's and a team's) cannot both be on disk: the one created first is packed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from typing import Any

import orjson

from svc.catalog_types import BY_KIND
from svc.claude_code import json_file, marketplace_name
from svc.content import ContentStore
from svc.db import Database
from svc.repositories.catalog import CatalogRepository, Item
from svc.repositories.documents import DocumentRepository
from svc.repositories.teams import TeamRepository
from svc.services import policy
from svc.services.auth import Principal
from svc.services.claude_md import CLAUDE_MD
from svc.services.policy import Action
from svc.services.preconditions import Precondition, require_current
from svc.validators.semver import latest_release

BUNDLE_FORMAT = "2"  # part of the ETag: bump when the layout or the .mcp.json mapping changes
MAX_INSTALLS = 10_000
MAX_TEAMS = 1_000
FILE_MODE = 0o644


@dataclass(frozen=True)
class Packed:
    """One installed item as packed: its content at `commit_sha` (a release's or the current)."""

    item: Item
    commit_sha: str
    release: str | None


@dataclass(frozen=True)
class Bundle:
    etag: str
    data: bytes | None  # None when the caller has it already (If-None-Match)


class BundleService:
    def __init__(self, db: Database, store: ContentStore) -> None:
        self.db = db
        self.store = store

    def build(self, actor: Principal, *, git_base_url: str, expected: Precondition | None = None) -> Bundle:
        """The caller's bundle, its team marketplaces at `git_base_url` (`https://host/git`);
        without its bytes when the preconditions (If-None-Match) say the caller has it (412
        when If-Match names another)."""
        policy.require(actor, Action.BE_A_USER)
        with self.db.transaction() as tx:
            teams = TeamRepository(tx).list(limit=MAX_TEAMS, after=None, member_id=actor.user_id)
            claude_md = DocumentRepository(tx).find(CLAUDE_MD.name, user_id=actor.user_id)
            installed = [
                item for item, _ in CatalogRepository(tx).installed(
                    actor.user_id, everyone=policy.scope(actor).everything, limit=MAX_INSTALLS
                )
            ]
            releases: dict[str, dict[str, str]] = {}
            for release in CatalogRepository(tx).releases([item.id for item in installed]):
                releases.setdefault(release.item_id, {})[release.version] = release.commit_sha
        packed = []
        for item in sorted(installed, key=lambda i: i.id):  # ids sort by creation: the first of a name wins
            latest = latest_release(releases.get(item.id, {}))
            sha = releases[item.id][latest] if latest else item.head_sha
            packed.append(Packed(item, sha, latest))
        claude_md_sha = claude_md.head_sha if claude_md else None
        marketplaces = {
            marketplace_name(team.name): {"source": {"source": "git", "url": f"{git_base_url}/teams/{team.name}.git"}}
            for team in teams
        }
        etag = _etag(claude_md_sha, packed, marketplaces)
        if require_current(expected, etag, subject="the bundle", read=True):
            return Bundle(etag, None)
        return Bundle(etag, self._archive(claude_md_sha, packed, marketplaces))

    def _archive(self, claude_md_sha: str | None, packed: list[Packed], marketplaces: dict[str, Any]) -> bytes:
        files: dict[str, bytes] = {}
        servers: dict[str, Any] = {}
        wanted = [(entry.commit_sha, BY_KIND[entry.item.type].filename) for entry in packed]
        if claude_md_sha:
            wanted.append((claude_md_sha, CLAUDE_MD.filename))
        contents = self.store.read_many(wanted)
        if claude_md_sha:
            files[".claude/CLAUDE.md"] = contents.pop()
        for entry, data in zip(packed, contents):
            parts = BY_KIND[entry.item.type].parts(entry.item.name, data)
            for path, content in parts.files.items():
                files.setdefault(f".claude/{path}", content)
            for key, server in parts.mcp_servers.items():
                servers.setdefault(key, server)
        if servers:
            files[".mcp.json"] = json_file({"mcpServers": servers})
        if marketplaces:
            files[".claude/settings.json"] = json_file({"extraKnownMarketplaces": marketplaces})
        return deterministic_tar_gz(files)


def _etag(claude_md_sha: str | None, packed: list[Packed], marketplaces: dict[str, Any]) -> str:
    inputs = [
        BUNDLE_FORMAT, claude_md_sha, marketplaces,
        *((p.item.id, p.item.type, p.item.name, p.commit_sha) for p in packed),
    ]
    return hashlib.sha256(orjson.dumps(inputs, option=orjson.OPT_SORT_KEYS)).hexdigest()


def deterministic_tar_gz(files: dict[str, bytes]) -> bytes:
    """A .tar.gz of `files` (path → bytes) whose bytes depend on nothing else: sorted
    entries, directories listed, owner root, mtime 0, gzip without a name or time."""
    directories = sorted({"/".join(path.split("/")[:i]) for path in files for i in range(1, path.count("/") + 1)})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted([*directories, *files]):
            info = tarfile.TarInfo(path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if path in files:
                info.size = len(files[path])
                info.mode = FILE_MODE
                tar.addfile(info, io.BytesIO(files[path]))
            else:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
