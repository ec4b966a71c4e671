"""Building the shapes services answer from the rows repositories give."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

View = TypeVar("View")


def projected(view: type[View], row: object, **more: Any) -> View:
    """A `view` (a dataclass) of `row`: each of its fields from the row's attribute of that name,
    except those given in `more` (the fields the row lacks, such as a subclass's)."""
    return view(**{f.name: getattr(row, f.name) for f in fields(view) if f.name not in more}, **more)  # type: ignore[arg-type]
