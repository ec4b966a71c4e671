"""Blocking work behind an asynchronous surface: a service whose public methods are all coroutine
functions runs its transactional (blocking) ones in the thread pool itself, so that a caller never
has to know which of them block."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from anyio.to_thread import run_sync

P = ParamSpec("P")
R = TypeVar("R")


def in_thread_pool(blocking: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """`blocking` as a coroutine function that runs it in the thread pool: its caller's one hop."""

    @functools.wraps(blocking)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return await run_sync(functools.partial(blocking, *args, **kwargs))

    return run
