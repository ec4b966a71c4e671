"""`svc catalog import DIR --owner team:NAME|user:USERNAME`: a directory of catalog content as
items of one owner.

Read from DIR, at any depth: `<name>/SKILL.md` (a skill named after its directory),
`server.json` (an MCP server named by its `name`) and `tools/<name>.json` (a tool). Each
file becomes a new item, a new version of the owner's item of that type and name, or
nothing when its content is unchanged, so a rerun changes nothing. A file that breaks the
rules is reported and skipped; the others go in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from svc.errors import ServiceError
from svc.services.auth import Principal
from svc.services.catalog import CatalogService
from svc.services.owners import parse_owner


@dataclass(frozen=True)
class Outcome:
    counts: dict[str, int]

    @property
    def failed(self) -> int:
        return self.counts.get("invalid", 0)


def catalog_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """(type, path) of every catalog file under `directory`, in path order."""
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        if path.name == "SKILL.md":
            yield "skill", path
        elif path.name == "server.json":
            yield "mcp", path
        elif path.parent.name == "tools" and path.suffix == ".json":
            yield "tool", path


def import_directory(
    catalog: CatalogService, actor: Principal, owner: str, directory: Path, *, progress: Callable[[str], None]
) -> Outcome:
    """Import every catalog file under `directory` for `owner` ("team:NAME" or "user:USERNAME")."""
    named = parse_owner(owner)
    owner_ids = catalog.owner_named(named.kind, named.name)
    if not directory.is_dir():
        raise ServiceError(f"{directory} is not a directory")
    files = list(catalog_files(directory))
    counts: dict[str, int] = {}
    for number, (item_type, path) in enumerate(files, 1):
        where = f"[{number}/{len(files)}] {path.relative_to(directory)}"
        try:
            content = path.read_bytes().decode("utf-8")
            item_name = _item_name(item_type, path, content)
            result = catalog.import_item(actor, owner_ids, type=item_type, name=item_name, content=content)
            progress(f"{where}: {item_type} {item_name} {result}")
        except (ServiceError, UnicodeDecodeError, ValueError) as exc:
            result = "invalid"
            errors = getattr(exc, "errors", None) or []
            detail = getattr(exc, "detail", str(exc))
            progress(f"{where}: invalid: {detail}" + "".join(f"\n    {e['path']}: {e['message']}" for e in errors))
        counts[result] = counts.get(result, 0) + 1
    return Outcome(counts)


def _item_name(item_type: str, path: Path, content: str) -> str:
    if item_type == "skill":
        return path.parent.name
    if item_type == "tool":
        return path.stem
    name = json.loads(content).get("name")
    if not isinstance(name, str):
        raise ValueError("server.json has no string `name`")
    return name
