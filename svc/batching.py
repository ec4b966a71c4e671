"""Group commit on the event loop: one statement for every caller that asked while earlier
ones were in flight.

A write of one configuration costs PostgreSQL a round trip, a plan's execution and a commit for
its read and again for its record; for sixteen concurrent writers the same statements taking
sixteen rows each cost little more than for one. `Batched` gathers the callers: an item runs on
the loop's next turn (with the items submitted in the same turn) when fewer than `concurrency`
runs are in flight; otherwise it waits, and goes with the others waiting in the next run.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

# A run that would start within BUSY × gather seconds of the previous one's start waits up to
# `gather` for as many items as that one took: the instance is busy, and waiting costs less than
# running twice. An idle one does not wait.
BUSY = 5

Item = TypeVar("Item")
Result = TypeVar("Result")
# An item waiting for its run: its key (worked out once), the item, and its caller's result.
Waiting = tuple[Hashable, Item, "asyncio.Future[Result | None]"]


class Batched(Generic[Item, Result]):
    """`await batched(item)` runs `statement` on a batch of items and returns the result for `item`
    (matched by key), or None when the statement returned none for it.

    At most `concurrency` runs are in flight; while they all are, items wait, and the first run to
    finish takes those waiting. A run takes at most `limit` of them, in order, and at most one per
    key, whose key no run in flight has either: an item with the key of one already taken waits for
    a later run (a statement may touch each row once, and two statements in flight may not meet on
    a row), so items with one key run in the order they came. An error of the statement reaches
    every caller of that run. A caller that stops waiting (cancelled) does not stop the run its item
    is in. A run starts on the loop's next turn, so items submitted in the same turn go together;
    while the instance is busy (its last run started less than `BUSY` × `gather` seconds ago), a
    run that is free to start first waits up to `gather` seconds for as many items as the last run
    took (not at all when that many are waiting). The instance belongs to the event loop that
    first awaits it.
    """

    def __init__(
        self,
        statement: Callable[[list[Item]], Awaitable[Iterable[Result]]],
        *,
        key: Callable[[Item], Hashable],
        result_key: Callable[[Result], Hashable],
        limit: int = 64,
        concurrency: int = 1,
        gather: float = 0.0,
    ) -> None:
        self._statement = statement
        self._key = key
        self._result_key = result_key
        self._limit = limit
        self._concurrency = concurrency
        self._gather = gather
        self._last_started = -math.inf  # loop time
        self._last_size = 1
        self._gathering: asyncio.TimerHandle | None = None
        self._waiting: deque[Waiting[Item, Result]] = deque()
        self._in_flight: set[Hashable] = set()  # the keys of the runs in flight
        self._runs: set[asyncio.Task[None]] = set()
        self._starting = False

    async def __call__(self, item: Item) -> Result | None:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Result | None] = loop.create_future()
        self._waiting.append((self._key(item), item, result))
        if self._gathering is not None and len(self._waiting) >= self._last_size:
            self._gathering.cancel()  # as many as the last run took: no need to wait longer
            self._gathering = None
            loop.call_soon(self._start_runs)
        elif not self._starting and len(self._runs) < self._concurrency:
            self._starting = True  # on the loop's next turn, so that items submitted in this one join
            busy = loop.time() - self._last_started < BUSY * self._gather
            if busy and len(self._waiting) < self._last_size:
                self._gathering = loop.call_later(self._gather, self._start_runs)
            else:
                loop.call_soon(self._start_runs)
        return await result

    def _start_runs(self) -> None:
        self._starting = False
        if self._gathering is not None:
            self._gathering.cancel()
            self._gathering = None
        while self._waiting and len(self._runs) < self._concurrency:
            batch = self._take()
            if not batch:
                return
            self._last_started = asyncio.get_running_loop().time()
            self._last_size = len(batch)
            run = asyncio.create_task(self._run(batch), name="svc-batched")
            self._runs.add(run)
            run.add_done_callback(self._finished)

    def _finished(self, run: asyncio.Task[None]) -> None:
        self._runs.discard(run)
        self._start_runs()

    def _take(self) -> list[Waiting[Item, Result]]:
        batch, keys, later = [], set(), []
        while self._waiting and len(batch) < self._limit:
            waiting = self._waiting.popleft()
            key, _, result = waiting
            if result.done():  # its caller stopped waiting before the run
                continue
            if key in keys or key in self._in_flight:
                later.append(waiting)
            else:
                keys.add(key)
                batch.append(waiting)
        self._waiting.extendleft(reversed(later))
        self._in_flight |= keys
        return batch

    async def _run(self, batch: list[Waiting[Item, Result]]) -> None:
        try:
            results = await self._statement([item for _, item, _ in batch])
        except asyncio.CancelledError:
            for _, _, result in batch:
                result.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - each caller receives the statement's error
            for _, _, result in batch:
                if not result.done():
                    result.set_exception(exc)
            return
        finally:
            self._in_flight -= {key for key, _, _ in batch}
        by_key = {self._result_key(r): r for r in results}
        for key, _, result in batch:
            if not result.done():
                result.set_result(by_key.get(key))
