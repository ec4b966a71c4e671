"""Keyset pagination: fetch one row more than asked to know whether a next page exists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True)
class Page(Generic[Item]):
    """A page of a list, as services answer it and routes declare it: its items and the cursor
    of the next page (null on the last)."""

    items: list[Item]
    next: str | None


def keyset_page(
    fetch: Callable[[int], Sequence[Item]], limit: int, cursor: Callable[[Item], Any] = attrgetter("id")
) -> Page[Item]:
    """A page of at most `limit` items: `fetch(n)` returns up to n rows in page order; it is
    asked for `limit + 1`, and the extra row only says that a next page exists. The page's
    `next` is the cursor (by default the id) of its last item."""
    rows = list(fetch(limit + 1))
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(items=rows, next=str(cursor(rows[-1])))
    return Page(items=rows, next=None)
