"""What a validator reports, where it points, and the checks every kind of content shares.

Where a violation points (`Violation.path`) is always a JSON Pointer (RFC 6901):

- into the parsed JSON document for `server.json` and tool definitions (`/packages/0/version`);
- into the SKILL.md seen as `{"front-matter": {...}, "body": "..."}` for skills
  (`/front-matter/name`, `/front-matter/metadata/author`);
- `""` (the whole document) for what belongs to no field, such as a NUL character.

When a problem sits at a place in the text rather than in a field (a YAML syntax error, a tab,
a NUL), the message starts with `line L, column C` (1-based, counted in characters over the
whole content), and the path is the nearest field that holds it (`/front-matter` or `""`).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from svc.errors import Unprocessable
from svc.json_documents import MAX_REPORTED_VIOLATIONS
from svc.json_documents import format_pointer

NUL = "NUL character (U+0000), which cannot be stored"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Violation:
    """One way content breaks a rule: where (a JSON Pointer, see the module docstring) and why."""

    path: str
    message: str

    def as_error(self) -> dict[str, str]:
        """The `{path, message}` entry of a 422 problem's `errors` list."""
        return {"path": self.path, "message": self.message}


def summary(found: list[Violation]) -> str:
    """The first violation of `found` (non-empty) in words, and how many more there are."""
    first = found[0]
    where = f"at '{first.path}'" if first.path else "as a whole"
    more = f" (and {len(found) - 1} more, listed in errors)" if len(found) > 1 else ""
    return f"{where}: {first.message}{more}"


def unprocessable(what: str, found: list[Violation]) -> Unprocessable:
    """The 422 that lists every violation of `found` (non-empty); `what` names the content, e.g. 'SKILL.md'."""
    return Unprocessable(
        f"{what} is not valid {summary(found)}", errors=[v.as_error() for v in found[:MAX_REPORTED_VIOLATIONS]]
    )


def walk(value: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every node of a parsed document with its path, in document order.

    Iterative, so a document nested as deeply as its parser allowed cannot exhaust the stack.
    """
    stack: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    while stack:
        parts, node = stack.pop()
        yield parts, node
        if isinstance(node, Mapping):
            stack.extend(((*parts, key), item) for key, item in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend(((*parts, index), item) for index, item in reversed(list(enumerate(node))))


def position(text: str, index: int) -> str:
    """`line L, column C` (1-based, in characters) of the character at `index`."""
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


def nul_in_text(content: str) -> list[Violation]:
    """A violation when `content` holds a NUL character, which PostgreSQL cannot store in text."""
    index = content.find("\x00")
    if index < 0:
        return []
    return [Violation("", f"{position(content, index)}: the content contains the {NUL}")]


def unstorable_strings(document: Any, base: str = "") -> list[Violation]:
    """A violation for each string or key of a parsed document that text columns cannot hold.

    Escapes let a document parse to strings with a NUL (`\\u0000`, YAML `"\\0"`) or a lone
    surrogate (`\\ud800`), which the raw text never shows; the catalog may copy such a value
    (a name, a description) into PostgreSQL.
    """
    found = []
    for parts, node in walk(document):
        key = parts[-1] if parts else None
        for text in (node, key):
            problem = _unstorable(text) if isinstance(text, str) else None
            if problem:
                found.append(Violation(base + format_pointer(parts), problem))
                break
    return found


def _unstorable(text: str) -> str | None:
    if "\x00" in text:
        return f"contains the {NUL}"
    surrogate = _SURROGATE.search(text)
    if surrogate:
        code = f"U+{ord(surrogate.group()):04X}"
        return f"contains {code}, a lone surrogate, which is not a character and cannot be stored"
    return None


def kind_of(value: Any) -> str:
    """How a parsed value is described to a user: 'a boolean', 'a number', 'a list'..."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, datetime.date):
        return f"a date ({value.isoformat()})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple | set):
        return "a list"
    if isinstance(value, bytes):
        return "binary data"
    return "a string" if isinstance(value, str) else type(value).__name__


def string_field(
    document: Mapping[Any, Any],
    key: str,
    base: str,
    *,
    required: bool,
    max_length: int | None = None,
    non_blank: bool = False,
    hint: str = "",
) -> list[Violation]:
    """The violations of `document[key]` as a string field: missing, not a string, blank, too long.

    `hint` is appended to the not-a-string message (for YAML: how to quote a value).
    """
    path = base + format_pointer([key])
    if key not in document:
        return [Violation(path, f"{key} is required")] if required else []
    value = document[key]
    if not isinstance(value, str):
        return [Violation(path, f"{key} must be a string, not {kind_of(value)}{hint}")]
    if non_blank and not value.strip():
        return [Violation(path, f"{key} must not be empty")]
    if max_length is not None and len(value) > max_length:
        return [Violation(path, f"{key} must be at most {max_length} characters; it has {len(value)}")]
    return []


def unknown_keys(document: Mapping[Any, Any], allowed: tuple[str, ...], base: str, where: str) -> list[Violation]:
    """A violation for each key of `document` outside `allowed`; `where` names the place ('front matter')."""
    names = ", ".join(allowed)
    return [
        Violation(base + format_pointer([key]), f"{_key(key)} is not a key of {where} (allowed: {names})")
        for key in document
        if key not in allowed
    ]


def _key(key: Any) -> str:
    return repr(key) if isinstance(key, str) else kind_of(key)


def same_name(found: Any, expected: str, path: str) -> list[Violation]:
    """A violation unless the name in the content equals the item's name."""
    if not isinstance(found, str) or found == expected:
        return []
    return [Violation(path, f"the name is {found!r} but the item is named {expected!r}; they must be equal")]
