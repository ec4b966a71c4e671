"""Group commit on the event loop: one statement for every caller that asked while the previous
one was in flight.

A write of one configuration costs PostgreSQL a round trip, a plan's execution and a commit for
its read and again for its record; for sixteen concurrent writers the same statements taking
sixteen rows each cost little more than for one. `Batched` gathers the callers: the first
caller's item runs at once (on the next turn of the loop, so that items submitted in the same
turn join it); items submitted while it runs wait and go together in the next run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batched(Generic[Item, Result]):
    """`await batched(item)` runs `statement` on a batch of items and returns the result for `item`
    (matched by key), or None when the statement returned none for it.

    A run takes at most `limit` waiting items, in order, and at most one per key: an item whose key
    is already in the run waits for the next one (a statement may touch each row once), so items
    with one key run in the order they came. An error of the statement reaches every caller of
    that run. A caller that stops waiting (cancelled) does not stop the run its item is in.
    The instance belongs to the event loop that first awaits it.
    """

    def __init__(
        self,
        statement: Callable[[list[Item]], Awaitable[Iterable[Result]]],
        *,
        key: Callable[[Item], Hashable],
        result_key: Callable[[Result], Hashable],
        limit: int = 64,
    ) -> None:
        self._statement = statement
        self._key = key
        self._result_key = result_key
        self._limit = limit
        self._waiting: deque[tuple[Item, asyncio.Future[Result | None]]] = deque()
        self._running: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result | None:
        result: asyncio.Future[Result | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, result))
        if self._running is None:
            self._running = asyncio.create_task(self._run_while_waiting(), name="svc-batched")
        return await result

    async def _run_while_waiting(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result | None]]] = []
        try:
            while self._waiting:
                batch = self._take()
                if batch:
                    await self._run(batch)
        finally:
            self._running = None
            for _, result in [*batch, *self._waiting]:  # only when this task itself was cancelled
                result.cancel()

    def _take(self) -> list[tuple[Item, asyncio.Future[Result | None]]]:
        batch, keys, later = [], set(), []
        while self._waiting and len(batch) < self._limit:
            item, result = self._waiting.popleft()
            if result.done():  # its caller stopped waiting before the run
                continue
            key = self._key(item)
            if key in keys:
                later.append((item, result))
            else:
                keys.add(key)
                batch.append((item, result))
        self._waiting.extendleft(reversed(later))
        return batch

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result | None]]]) -> None:
        try:
            results = await self._statement([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - each caller receives the statement's error
            for _, result in batch:
                if not result.done():
                    result.set_exception(exc)
            return
        by_key = {self._result_key(r): r for r in results}
        for item, result in batch:
            if not result.done():
                result.set_result(by_key.get(self._key(item)))
