"""`GET /me/bundle`: what a person's Claude Code needs, as one `.tar.gz` laid out as on disk.

    CLAUDE.md                  the caller's claude.md (left out when never saved)
    skills/<name>/SKILL.md     each installed skill
    .mcp.json                  {"mcpServers": {<name>: {...}}} for each installed MCP server
    tools/<name>.json          each installed tool definition

Each item is taken at its latest release, or its current version when it has none. The
archive is deterministic (sorted entries, fixed owner and mtime, gzip mtime 0), so its
ETag, a hash of the inputs (each item's commit and the claude.md version), names its bytes
and a 304 costs two queries and no git read. Items installed but no longer visible (a team
left) are not packed. Two installed items with one name (a user's and a team's) cannot
both be on disk: the one created first is packed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from typing import Any

import orjson

from svc.content import ContentStore
from svc.db import Database
from svc.repositories.catalog import CatalogRepository, Item
from svc.repositories.documents import DocumentRepository
from svc.services import policy
from svc.services.auth import Principal
from svc.services.catalog import ITEM_KINDS
from svc.services.claude_md import CLAUDE_MD
from svc.services.policy import Action
from svc.services.preconditions import Precondition, require_current
from svc.validators.semver import latest_release

BUNDLE_FORMAT = "1"  # part of the ETag: bump when the layout or the .mcp.json mapping changes
MAX_INSTALLS = 10_000
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

    def build(self, actor: Principal, *, expected: Precondition | None = None) -> Bundle:
        """The caller's bundle; without its bytes when the preconditions (If-None-Match) say the
        caller has it (412 when If-Match names another)."""
        policy.require(actor, Action.BE_A_USER)
        with self.db.transaction() as tx:
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
        etag = _etag(claude_md_sha, packed)
        if require_current(expected, etag, subject="the bundle", read=True):
            return Bundle(etag, None)
        return Bundle(etag, self._archive(claude_md_sha, packed))

    def _archive(self, claude_md_sha: str | None, packed: list[Packed]) -> bytes:
        files: dict[str, bytes] = {}
        servers: dict[str, Any] = {}
        wanted = [(entry.commit_sha, ITEM_KINDS[entry.item.type].filename) for entry in packed]
        if claude_md_sha:
            wanted.append((claude_md_sha, CLAUDE_MD.filename))
        contents = self.store.read_many(wanted)
        if claude_md_sha:
            files["CLAUDE.md"] = contents.pop()
        for entry, data in zip(packed, contents):
            item = entry.item
            if item.type == "skill":
                files.setdefault(f"skills/{item.name}/SKILL.md", data)
            elif item.type == "tool":
                files.setdefault(f"tools/{item.name}.json", data)
            else:
                server = mcp_server_entry(json.loads(data))
                if server is not None:
                    servers.setdefault(server_key(item.name), server)
        if servers:
            files[".mcp.json"] = orjson.dumps({"mcpServers": servers}, option=orjson.OPT_INDENT_2) + b"\n"
        return deterministic_tar_gz(files)


def _etag(claude_md_sha: str | None, packed: list[Packed]) -> str:
    inputs = [BUNDLE_FORMAT, claude_md_sha, *((p.item.id, p.item.type, p.item.name, p.commit_sha) for p in packed)]
    return hashlib.sha256(orjson.dumps(inputs)).hexdigest()


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


def server_key(name: str) -> str:
    """The `.mcp.json` key of a server: the last part of its reverse-DNS name
    (`io.github.user/weather` → `weather`), as Claude Code builds tool names from it."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name.rsplit("/", 1)[-1])


def mcp_server_entry(server: dict[str, Any]) -> dict[str, Any] | None:
    """How Claude Code starts a server.json's server: from its first package (npm → npx,
    pypi → uvx, oci → docker run), else its first remote (http or sse). Environment
    variables and headers keep `${NAME}` placeholders, which Claude Code fills in from the
    environment; package arguments with a value are passed, those with only a hint become
    placeholders. None when there is nothing Claude Code could start."""
    packages = server.get("packages") or []
    if packages:
        package = packages[0]
        env_names = [v["name"] for v in package.get("environmentVariables", [])]
        command, args = _launcher(package, env_names)
        if command is None:
            return None
        args += _arguments(package.get("packageArguments", []))
        return {"command": command, "args": args, "env": {name: f"${{{name}}}" for name in env_names}}
    remotes = server.get("remotes") or []
    if remotes:
        remote = remotes[0]
        url = remote["url"]
        for name, variable in (remote.get("variables") or {}).items():
            url = url.replace("{" + name + "}", variable.get("default") or f"${{{name.upper()}}}")
        entry: dict[str, Any] = {"type": "sse" if remote["type"] == "sse" else "http", "url": url}
        headers = {h["name"]: f"${{{_env_name(h['name'])}}}" for h in remote.get("headers", [])}
        if headers:
            entry["headers"] = headers
        return entry
    return None


def _launcher(package: dict[str, Any], env_names: list[str]) -> tuple[str | None, list[str]]:
    identifier, version = package["identifier"], package.get("version")
    registry = package.get("registryType")
    if registry == "npm":
        return "npx", ["-y", f"{identifier}@{version}" if version else identifier]
    if registry == "pypi":
        return "uvx", [f"{identifier}=={version}" if version else identifier]
    if registry == "oci":
        image = f"{identifier}:{version}" if version and ":" not in identifier.rsplit("/", 1)[-1] else identifier
        passed = [flag for name in env_names for flag in ("-e", name)]
        return "docker", ["run", "-i", "--rm", *passed, image]
    return None, []


def _arguments(arguments: list[dict[str, Any]]) -> list[str]:
    args: list[str] = []
    for argument in arguments:
        value = argument.get("value") or argument.get("default")
        if value is None and argument.get("valueHint"):
            value = f"${{{_env_name(argument['valueHint'])}}}"
        if argument.get("type") == "named":
            args.append(argument["name"])
        if value is not None:
            args.append(value)
    return args


def _env_name(text: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", text.upper())
