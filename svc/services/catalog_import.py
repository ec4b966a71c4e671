"""`svc catalog import DIR --owner team:NAME|user:USERNAME`: a directory of catalog content as
items of one owner.

Read from DIR, at any depth: `<name>/SKILL.md` (a skill named after its directory),
`server.json` (an MCP server named by its `name`) and `tools/<name>.json` (a tool). Each
file becomes a new item, a new version of the owner's item of that type and name, or
nothing when its content is unchanged, so a rerun changes nothing. A file that breaks the
rules is reported and skipped; the others go in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from svc.catalog_types import BY_KIND, CATALOG_TYPES
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
        if path.is_file():
            found = next((t.kind for t in CATALOG_TYPES if t.imports(path)), None)
            if found is not None:
                yield found, path


def import_directory(
    catalog: CatalogService, actor: Principal, owner: str, directory: Path, *, progress: Callable[[str], None]
) -> Outcome:
    """Import every catalog file under `directory` for `owner` ("team:NAME" or "user:USERNAME")."""
    named = parse_owner(owner)
    items_owner = catalog.owner_named(named.kind, named.name)
    if not directory.is_dir():
        raise ServiceError(f"{directory} is not a directory")
    files = list(catalog_files(directory))
    counts: dict[str, int] = {}
    for number, (item_type, path) in enumerate(files, 1):
        where = f"[{number}/{len(files)}] {path.relative_to(directory)}"
        try:
            content = path.read_bytes().decode("utf-8")
            item_name = BY_KIND[item_type].import_name(path, content)
            result = catalog.import_item(actor, items_owner, type=item_type, name=item_name, content=content)
            progress(f"{where}: {item_type} {item_name} {result}")
        except (ServiceError, UnicodeDecodeError, ValueError) as exc:
            result = "invalid"
            errors = getattr(exc, "errors", None) or []
            detail = getattr(exc, "detail", str(exc))
            progress(f"{where}: invalid: {detail}" + "".join(f"\n    {e['path']}: {e['message']}" for e in errors))
        counts[result] = counts.get(result, 0) + 1
    return Outcome(counts)
