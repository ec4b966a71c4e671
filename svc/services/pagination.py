"""Keyset pagination: repositories fetch one row more than asked to know whether a next page exists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next: str | None


def page_of(rows: list[dict[str, Any]], limit: int, key: str = "id") -> Page:
    """Cut `limit + 1` fetched rows to a page; the cursor is the key of its last row."""
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(items=rows, next=str(rows[-1][key]))
    return Page(items=rows, next=None)
