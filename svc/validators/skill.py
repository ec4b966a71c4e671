"""SKILL.md in the Agent Skills format: YAML front matter between `---` lines, then Markdown.

Rules from the Agent Skills specification, https://agentskills.io/specification
(repository agentskills/agentskills, docs/specification.mdx at commit 69ef37e, 2026-08-09),
and its reference validator skills-ref (skills-ref/src/skills_ref/validator.py, same commit):

- the file starts with a `---` line; the front matter ends at the next `---` line;
- the front matter is a YAML mapping with only these keys:
  `name` (required; 1-64 of a-z, 0-9 and `-`, not starting or ending with `-`, no `--`;
  here also equal to the item's name, as the spec asks it to equal the skill's directory),
  `description` (required; 1-1024 characters, not blank),
  `license` (a string), `compatibility` (1-500 characters), `metadata` (a mapping of string
  keys to string values), `allowed-tools` (a space-separated string of tools; experimental);
- the Markdown body after it has no format restrictions and may be empty.

The YAML is read with PyYAML's safe loader (no object construction) and stricter than YAML
itself where strictness protects the catalog: anchors and aliases are refused outright (an
"alias bomb" is refused at its first anchor, before anything expands), as are merge keys
(`<<`), a key given twice, and tabs in indentation (YAML forbids them; PyYAML's message for
them is cryptic). A line whose leading whitespace holds a tab is refused even inside a block
scalar, where YAML would take a tab after the indentation as content.

A value is never converted: `name: 123` or `description: yes` (a YAML 1.1 boolean) or
`version: 1.0` under metadata is refused as "not a string", with a hint to quote it; numbers
such as `.inf` and `.nan` are refused the same way.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from svc.json_documents import format_pointer
from svc.validators.violations import (
    Violation,
    kind_of,
    nul_in_text,
    position,
    same_name,
    string_field,
    unknown_keys,
    unstorable_strings,
)

FRONT_MATTER = "/front-matter"
KEYS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
MAX_NAME_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 1024
MAX_COMPATIBILITY_LENGTH = 500
QUOTE_HINT = "; put it in quotes to make it a string"

_OPENING = re.compile(r"---[ \t]*\r?\n")
_CLOSING = re.compile(r"^---[ \t]*(?:\r?\n|\Z)", re.MULTILINE)
_NAME_CHARACTER = re.compile(r"[a-z0-9-]")
_TAB_INDENT = re.compile(r"^( *)\t[ \t]*\S", re.MULTILINE)


class _FrontMatterLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors, aliases, merge keys and keys given twice."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ComposerError(
                None, None, "anchors and aliases (& and *) are not allowed in front matter", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        # PyYAML's scalar constructors raise plain Python errors of many kinds on text that
        # resolves to a type but does not parse as it (`2024-13-01`, `!!int ''`, 5000 digits).
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as exc:
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise ConstructorError(
                None, None, f"{node.value!r} cannot be read as {kind}{QUOTE_HINT}", node.start_mark
            ) from exc

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)  # raises PyYAML's own error
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ConstructorError(
                    None, None, "merge keys (<<) are not allowed in front matter", key_node.start_mark
                )
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable):
                if key in seen:
                    raise ConstructorError(None, None, f"the key {key!r} appears twice", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def validate_skill(name: str, content: str) -> list[Violation]:
    """Every way `content` fails to be a SKILL.md for the item `name`; [] when it is one."""
    found = nul_in_text(content)
    if found:
        return found
    if content.startswith("\ufeff"):
        return [Violation("", "the content starts with a byte order mark (U+FEFF); the first line must be ---")]
    opening = _OPENING.match(content)
    if opening is None:
        return [Violation(FRONT_MATTER, "a SKILL.md starts with a line '---' that opens its YAML front matter")]
    closing = _CLOSING.search(content, opening.end())
    if closing is None:
        return [Violation(FRONT_MATTER, "the front matter is not closed: no line '---' follows the opening one")]
    start = opening.end()
    text = content[start : closing.start()]
    tabs = [
        Violation(FRONT_MATTER, f"{position(content, start + m.end(1))}: a tab is used for indentation; "
                  "YAML indents with spaces only")
        for m in _TAB_INDENT.finditer(text)
    ]
    if tabs:
        return tabs
    front_matter, found = _load(content, start, text)
    if found:
        return found
    if not isinstance(front_matter, Mapping):
        return [Violation(FRONT_MATTER, f"the front matter must be a YAML mapping, not {kind_of(front_matter)}")]
    return [
        *unknown_keys(front_matter, KEYS, FRONT_MATTER, "the front matter"),
        *_name(front_matter, name),
        *string_field(
            front_matter, "description", FRONT_MATTER,
            required=True, non_blank=True, max_length=MAX_DESCRIPTION_LENGTH, hint=QUOTE_HINT,
        ),
        *string_field(front_matter, "license", FRONT_MATTER, required=False, hint=QUOTE_HINT),
        *string_field(
            front_matter, "compatibility", FRONT_MATTER,
            required=False, non_blank=True, max_length=MAX_COMPATIBILITY_LENGTH, hint=QUOTE_HINT,
        ),
        *_metadata(front_matter),
        *_allowed_tools(front_matter),
        *unstorable_strings(front_matter, FRONT_MATTER),
    ]


def _load(content: str, start: int, text: str) -> tuple[Any, list[Violation]]:
    """The parsed front matter `text` (found at `start` in `content`), or the violation saying why it cannot be read."""
    try:
        return yaml.load(text, Loader=_FrontMatterLoader), []  # a SafeLoader subclass: no object construction
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{position(content, start + mark.index)}: " if mark is not None else ""
        context = f" ({exc.context})" if exc.context else ""
        return None, [Violation(FRONT_MATTER, f"{where}the front matter is not valid YAML: {exc.problem}{context}")]
    except yaml.reader.ReaderError as exc:
        return None, [Violation(
            FRONT_MATTER,
            f"{position(content, start + exc.position)}: the front matter contains the character "
            f"U+{exc.character:04X}, which YAML does not allow unescaped",
        )]
    except yaml.YAMLError as exc:
        return None, [Violation(FRONT_MATTER, f"the front matter is not valid YAML: {exc}")]
    except RecursionError:
        return None, [Violation(FRONT_MATTER, "the front matter nests too deeply to be read")]


def _name(front_matter: Mapping[Any, Any], item_name: str) -> list[Violation]:
    found = string_field(front_matter, "name", FRONT_MATTER, required=True, hint=QUOTE_HINT)
    if found:
        return found
    value: str = front_matter["name"]
    path = FRONT_MATTER + "/name"
    if not 1 <= len(value) <= MAX_NAME_LENGTH:
        found.append(Violation(path, f"name must be 1-{MAX_NAME_LENGTH} characters; it has {len(value)}"))
    wrong = sorted({c for c in value if not _NAME_CHARACTER.fullmatch(c)})
    if wrong:
        shown = ", ".join(repr(c) for c in wrong)
        found.append(
            Violation(path, f"name may contain only lowercase letters a-z, digits and hyphens; it contains {shown}")
        )
    if value.startswith("-") or value.endswith("-"):
        found.append(Violation(path, "name must not start or end with a hyphen"))
    if "--" in value:
        found.append(Violation(path, "name must not contain two hyphens in a row"))
    return found + same_name(value, item_name, path)


def _metadata(front_matter: Mapping[Any, Any]) -> list[Violation]:
    if "metadata" not in front_matter:
        return []
    metadata = front_matter["metadata"]
    path = FRONT_MATTER + "/metadata"
    if not isinstance(metadata, Mapping):
        return [Violation(path, f"metadata must be a mapping of string keys to string values, not {kind_of(metadata)}")]
    found = []
    for key, value in metadata.items():
        entry = path + format_pointer([key])
        if not isinstance(key, str):
            found.append(Violation(entry, f"metadata keys must be strings, not {kind_of(key)}{QUOTE_HINT}"))
        elif not isinstance(value, str):
            found.append(Violation(entry, f"metadata values must be strings, not {kind_of(value)}{QUOTE_HINT}"))
    return found


def _allowed_tools(front_matter: Mapping[Any, Any]) -> list[Violation]:
    value = front_matter.get("allowed-tools")
    if isinstance(value, list):
        return [Violation(
            FRONT_MATTER + "/allowed-tools",
            "allowed-tools must be one space-separated string (e.g. 'Bash(git:*) Read'), not a list",
        )]
    return string_field(front_matter, "allowed-tools", FRONT_MATTER, required=False, non_blank=True, hint=QUOTE_HINT)
