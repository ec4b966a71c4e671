"""Content rules for catalog items, pure and free of I/O: one module per kind of item.

The catalog service calls, on every write of an item's content:

    validators.check(item.type, item.name, content)

which returns when the content is valid, raises `Unprocessable` (422) listing every violation
as `errors: [{path, message}]` when it parses but breaks rules, and raises `BadRequest` (400)
naming the position when a JSON content cannot be parsed at all. `validate` returns the list
instead of raising the 422. Where `path` points is described in `svc.validators.violations`.

A NUL character anywhere is a violation (PostgreSQL text cannot hold it), reported alone; so
is a NUL or a lone surrogate that an escape puts into a parsed string. Semantic versions for
releases are in `svc.validators.semver`.
"""

from __future__ import annotations

from collections.abc import Callable

from svc.validators.mcp import validate_mcp_server
from svc.validators.skill import validate_skill
from svc.validators.tool import validate_tool
from svc.validators.violations import Violation, unprocessable

_VALIDATORS: dict[str, tuple[str, Callable[[str, str], list[Violation]]]] = {
    "skill": ("SKILL.md", validate_skill),
    "mcp": ("server.json", validate_mcp_server),
    "tool": ("the tool definition", validate_tool),
}
KINDS = tuple(_VALIDATORS)


def validate(kind: str, name: str, content: str) -> list[Violation]:
    """Every violation of `content` as the content of the item `name` of type `kind`; [] when valid.

    Raises BadRequest when JSON content (mcp, tool) cannot be parsed; ValueError for an unknown kind.
    """
    if kind not in _VALIDATORS:
        raise ValueError(f"no validator for catalog items of type {kind!r}")
    return _VALIDATORS[kind][1](name, content)


def check(kind: str, name: str, content: str) -> None:
    """Return when `content` is valid; raise Unprocessable listing every violation, or BadRequest."""
    found = validate(kind, name, content)
    if found:
        raise unprocessable(_VALIDATORS[kind][0], found)


__all__ = ["KINDS", "Violation", "check", "validate"]
