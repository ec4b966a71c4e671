"""Content rules for catalog items, pure and free of I/O: one module per kind of item.

The catalog service calls, on every write of an item's content (the validator of each type is
named in `svc.catalog_types`):

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

from svc.validators.violations import Violation, unprocessable


def validate(kind: str, name: str, content: str) -> list[Violation]:
    """Every violation of `content` as the content of the item `name` of type `kind`; [] when valid.

    Raises BadRequest when JSON content (mcp, tool) cannot be parsed; ValueError for an unknown kind.
    """
    # Imported here: the registry imports this package's validators.
    from svc.catalog_types import BY_KIND

    if kind not in BY_KIND:
        raise ValueError(f"no validator for catalog items of type {kind!r}")
    return BY_KIND[kind].validator(name, content)


def check(kind: str, name: str, content: str) -> None:
    """Return when `content` is valid; raise Unprocessable listing every violation, or BadRequest."""
    from svc.catalog_types import BY_KIND

    found = validate(kind, name, content)
    if found:
        raise unprocessable(BY_KIND[kind].label, found)


__all__ = ["Violation", "check", "validate"]
