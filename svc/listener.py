"""One LISTEN connection per worker process, driven by the event loop.

The connection is not from the pool and no thread waits on it: the event loop
watches its socket (`add_reader`) and dispatches each notification to the
subscribers of its channel. When the connection drops, subscribers are told
(`on_state(False)`) at once, and the listener reconnects with back-off; on
success they are told again (`on_state(True)`), so caches can be emptied and
waiters re-check whatever they might have missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg2

from svc.db import DedicatedConnection, close_quietly, dedicated_connection
from svc.metrics import LISTENER_CONNECTED

log = logging.getLogger(__name__)

# Payload "tokens" or "applications": sent by triggers (migration 0004) when cached data went stale.
INVALIDATE_CHANNEL = "svc_invalidate"
# Payload "token", "user", "membership" or "application": sent by triggers (migration 0012) when
# a caller may have lost access, so open streams re-check theirs.
CREDENTIALS_CHANNEL = "svc_credentials"

Handler = Callable[[str], None]
StateHandler = Callable[[bool], None]


class ChangeListener:
    def __init__(self, dsn: str, channels: list[str], *, connect_timeout: int = 5) -> None:
        self.dsn = dsn
        self.channels = channels
        self.connect_timeout = connect_timeout
        self.connected = False
        self._handlers: dict[str, list[Handler]] = {channel: [] for channel in channels}
        self._state_handlers: list[StateHandler] = []
        self._conn: DedicatedConnection | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._lost = asyncio.Event()
        self._stopping = False

    def subscribe(self, channel: str, handler: Handler) -> None:
        """Call `handler(payload)` on the event loop for every notification on `channel`."""
        self._handlers[channel].append(handler)

    def on_state(self, handler: StateHandler) -> None:
        """Call `handler(connected)` whenever the LISTEN connection is lost or re-established."""
        self._state_handlers.append(handler)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="svc-listener")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._disconnect()
        LISTENER_CONNECTED.set(0)

    def backend_pid(self) -> int | None:
        """Server pid of the LISTEN connection (for diagnostics, and tests that cut it); None while
        there is none. Safe from another thread: the loop may close the connection meanwhile."""
        conn = self._conn
        try:
            return None if conn is None else conn.get_backend_pid()
        except psycopg2.InterfaceError:  # closed since it was read
            return None

    async def _run(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                await asyncio.to_thread(self._connect)
            except psycopg2.Error as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1f s", str(exc).strip(), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            self._lost.clear()
            self._fd = self._conn.fileno()
            self._loop.add_reader(self._fd, self._on_readable)
            self._set_state(True)
            await self._lost.wait()
            self._disconnect()
            self._set_state(False)

    def _connect(self) -> None:
        conn = dedicated_connection(self.dsn, purpose="svc listener", connect_timeout=self.connect_timeout)
        with conn.cursor() as cur:
            for channel in self.channels:
                cur.execute(f'LISTEN "{channel}"')
        self._conn = conn

    def _on_readable(self) -> None:
        conn = self._conn
        try:
            conn.poll()
        except (psycopg2.Error, OSError) as exc:
            log.warning("LISTEN connection lost: %s", str(exc).strip() or type(exc).__name__)
            self._lost.set()
            return
        if conn.closed:
            self._lost.set()
            return
        while conn.notifies:
            notify = conn.notifies.pop(0)
            for handler in self._handlers.get(notify.channel, ()):
                try:
                    handler(notify.payload)
                except Exception:  # one bad handler must not stop delivery to the others
                    log.exception("notification handler failed")

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        close_quietly(conn)

    def _set_state(self, connected: bool) -> None:
        self.connected = connected
        LISTENER_CONNECTED.set(1 if connected else 0)
        log.info("LISTEN connection %s", "established" if connected else "lost; caches bypassed")
        for handler in self._state_handlers:
            try:
                handler(connected)
            except Exception:
                log.exception("listener state handler failed")
