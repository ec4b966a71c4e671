"""An in-process cache that is only trusted while change notifications flow.

Entries are dropped by notifications; while the LISTEN connection is down the
cache is empty and bypassed (`enabled` is False), so a stale value is never
served silently. A value loaded from the database is stored only if no
invalidation happened while it was being loaded (the generation check), which
closes the race where a reader fetches the old row, the change's notification
is processed, and the reader then stores the old row.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class InvalidatingCache(Generic[Value]):
    def __init__(
        self,
        *,
        max_cost: int,
        cost: Callable[[Value], int] = lambda value: 1,
        ttl: float | None = None,
    ) -> None:
        self.max_cost = max_cost
        self.ttl = ttl
        self.enabled = False
        self.generation = 0
        self._cost = cost
        self._total = 0
        self._entries: OrderedDict[Hashable, tuple[Value, float]] = OrderedDict()

    def get(self, key: Hashable) -> Value | None:
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, stored_at = entry
        if self.ttl is not None and time.monotonic() - stored_at > self.ttl:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Value, generation: int) -> None:
        """Store a value loaded when `self.generation` was `generation`; drop it if anything changed since."""
        if not self.enabled or generation != self.generation:
            return
        self._remove(key)
        cost = self._cost(value)
        if cost > self.max_cost:
            return
        self._entries[key] = (value, time.monotonic())
        self._total += cost
        while self._total > self.max_cost:
            self._remove(next(iter(self._entries)))

    def invalidate(self, key: Hashable) -> None:
        self.generation += 1
        self._remove(key)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._total = 0

    def set_enabled(self, enabled: bool) -> None:
        """Follow whatever tells it of changes (LISTEN, the change feed): empty the cache on every change of state."""
        self.clear()
        self.enabled = enabled

    def __len__(self) -> int:
        return len(self._entries)

    def _remove(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._total -= self._cost(entry[0])
