"""The catalog's item types, declared once: everything the catalog, the bundle, the
marketplace, `svc catalog import` and `svc verify` know about a type is here.

A new type is one more `CatalogType` in `CATALOG_TYPES`, its validator in
`svc/validators/`, and a migration that admits it in the `type` and `kind` checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from svc.claude_code import mcp_server_entry, server_key
from svc.validators.mcp import validate_mcp_server
from svc.validators.skill import validate_skill
from svc.validators.tool import validate_tool
from svc.validators.violations import Violation, unprocessable

# What browsers, curl (`-F file=@x.md` sends octet-stream for .md) and editors send.
MARKDOWN_MEDIA_TYPES = frozenset({"text/markdown", "text/x-markdown", "text/plain", "application/octet-stream"})
JSON_MEDIA_TYPES = frozenset({"application/json", "text/plain", "application/octet-stream"})


@dataclass(frozen=True)
class ClaudeCodeParts:
    """An item as Claude Code reads it: files (path → bytes, relative to `.claude/` in the
    bundle and to the plugin's root in a marketplace) and `.mcp.json` server entries."""

    files: dict[str, bytes] = field(default_factory=dict)
    mcp_servers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogType:
    kind: str  # catalog_items.type and documents.kind
    filename: str  # the content's file in each commit
    label: str  # what the content is, for messages: "SKILL.md"
    format: str  # what an import must be: "Markdown (SKILL.md)"
    import_suffix: str
    media_types: frozenset[str]
    content_type: str  # of `GET /catalog/{id}/content`
    validator: Callable[[str, str], list[Violation]]  # (item name, content) → violations
    parts: Callable[[str, bytes], ClaudeCodeParts]  # (item name, content) → what Claude Code reads
    is_plugin: bool  # a plugin in the owner's Claude Code marketplace (else: in the bundle only)
    plugin_name: Callable[[str], str]  # item name → plugin (and marketplace directory) name
    imports: Callable[[Path], bool]  # `svc catalog import`: is this file an item of the type?
    import_name: Callable[[Path, str], str]  # (file, content) → item name
    description: Callable[[str], str]  # a valid content's own description


def _skill_parts(name: str, data: bytes) -> ClaudeCodeParts:
    return ClaudeCodeParts(files={f"skills/{name}/SKILL.md": data})


def _mcp_parts(name: str, data: bytes) -> ClaudeCodeParts:
    entry = mcp_server_entry(json.loads(data))
    return ClaudeCodeParts(mcp_servers={server_key(name): entry} if entry is not None else {})


def _tool_parts(name: str, data: bytes) -> ClaudeCodeParts:
    return ClaudeCodeParts(files={f"tools/{name}.json": data})


def _front_matter_description(content: str) -> str:
    front_matter = content.split("\n---", 1)[0].removeprefix("---")
    return yaml.safe_load(front_matter)["description"]


def _json_description(content: str) -> str:
    return json.loads(content)["description"]


def _server_json_name(path: Path, content: str) -> str:
    name = json.loads(content).get("name")
    if not isinstance(name, str):
        raise ValueError("server.json has no string `name`")
    return name


SKILL = CatalogType(
    kind="skill", filename="SKILL.md", label="SKILL.md", format="Markdown (SKILL.md)", import_suffix=".md",
    media_types=MARKDOWN_MEDIA_TYPES, content_type="text/markdown; charset=utf-8", validator=validate_skill,
    parts=_skill_parts, is_plugin=True, plugin_name=lambda name: name,
    imports=lambda path: path.name == "SKILL.md", import_name=lambda path, content: path.parent.name,
    description=_front_matter_description,
)
MCP = CatalogType(
    kind="mcp", filename="server.json", label="server.json", format="JSON (server.json)", import_suffix=".json",
    media_types=JSON_MEDIA_TYPES, content_type="application/json", validator=validate_mcp_server,
    parts=_mcp_parts, is_plugin=True, plugin_name=server_key,
    imports=lambda path: path.name == "server.json", import_name=_server_json_name,
    description=_json_description,
)
TOOL = CatalogType(
    kind="tool", filename="tool.json", label="the tool definition", format="JSON (a tool definition)",
    import_suffix=".json", media_types=JSON_MEDIA_TYPES, content_type="application/json", validator=validate_tool,
    parts=_tool_parts, is_plugin=False, plugin_name=lambda name: name,
    imports=lambda path: path.parent.name == "tools" and path.suffix == ".json",
    import_name=lambda path, content: path.stem, description=_json_description,
)

CATALOG_TYPES: tuple[CatalogType, ...] = (SKILL, MCP, TOOL)
BY_KIND: dict[str, CatalogType] = {t.kind: t for t in CATALOG_TYPES}
KINDS: tuple[str, ...] = tuple(BY_KIND)


def validate(kind: str, name: str, content: str) -> list[Violation]:
    """Every violation of `content` as the content of the item `name` of type `kind`; [] when valid.

    Raises BadRequest when JSON content cannot be parsed; ValueError for an unknown kind.
    """
    if kind not in BY_KIND:
        raise ValueError(f"no validator for catalog items of type {kind!r}")
    return BY_KIND[kind].validator(name, content)


def check(kind: str, name: str, content: str) -> None:
    """Return when `content` is valid; raise Unprocessable listing every violation, or BadRequest."""
    found = validate(kind, name, content)
    if found:
        raise unprocessable(BY_KIND[kind].label, found)
