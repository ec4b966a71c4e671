"""Content rules for catalog items, pure and free of I/O: one module per kind of item.

The catalog service calls, on every write of an item's content, the validator that
`svc.catalog_types` names for the item's type:

    catalog_types.check(item.type, item.name, content)

which returns when the content is valid, raises `Unprocessable` (422) listing every violation
as `errors: [{path, message}]` when it parses but breaks rules, and raises `BadRequest` (400)
naming the position when a JSON content cannot be parsed at all. `validate` returns the list
instead of raising the 422. Where `path` points is described in `svc.validators.violations`.

A NUL character anywhere is a violation (PostgreSQL text cannot hold it), reported alone; so
is a NUL or a lone surrogate that an escape puts into a parsed string. Semantic versions for
releases are in `svc.validators.semver`.
"""

from __future__ import annotations

from svc.validators.violations import Violation

__all__ = ["Violation"]
