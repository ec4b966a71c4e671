"""Announcing configuration changes: an event row in the writer's transaction, a NOTIFY after it.

Listeners `LISTEN svc_configuration_changes` and receive, for each committed change, a JSON
payload `{"id", "application_id", "application_name", "configuration_id",
"configuration_name", "revision", "kind"}` where `id` is the `configuration_events` row and
`kind` is `created`, `updated` or `deleted`.

The writing transaction only records the event. PostgreSQL serialises committing transactions
that sent NOTIFY, database-wide and through their WAL flush, so the NOTIFY is sent once the
write has committed, by the worker's `ChangeFeed`: from the event loop, one statement at a time
for every change announced meanwhile, with `synchronous_commit` off (a notification is a hint;
the row is the record).
A change is therefore never announced before it commits, and one that rolls back never is.

An announcement is lost when a process dies between its commit and its NOTIFY, so every
worker also reads `configuration_events` every `CATCH_UP_SECONDS` (and right after its LISTEN
connection comes back) and delivers the events it has not heard of. Event ids are taken from a
sequence before commit, so they do not commit in order (the transaction that took id 10 may
commit after the one that took 11); a "highest id seen" would skip 10 forever. Each row
therefore carries its transaction's id, and each read returns every event of a transaction
that had not finished at the previous read (see `ChangeRepository.catch_up`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import orjson
from anyio.to_thread import run_sync

from svc.db import AsyncStatements, DedicatedConnection, Transaction, close_quietly, dedicated_connection
from svc.listener import ChangeListener
from svc.repositories.changes import ChangeRepository

log = logging.getLogger(__name__)

CHANNEL = "svc_configuration_changes"

# How often a worker reads the events it may have missed: well inside the 1 s staleness promise.
CATCH_UP_SECONDS = 0.25
# How many delivered event ids a worker remembers to deliver each event once, heard and read.
RECENT_IDS = 20_000
ANNOUNCE_BATCH = 1_000

Kind = Literal["created", "updated", "deleted"]
Announce = Callable[[str], None]
Handler = Callable[[dict[str, Any]], None]
StateHandler = Callable[[bool], None]


def publish(
    tx: Transaction,
    announce: Announce,
    *,
    application_id: str,
    configuration_id: str,
    name: str,
    revision: int,
    kind: Kind,
) -> int:
    """Record one change inside the caller's transaction and announce it once that commits; return the event id.

    Call it while the application row still exists: the notification carries its name.
    """
    change = ChangeRepository(tx).record(
        application_id=application_id, configuration_id=configuration_id, name=name, revision=revision, kind=kind
    )
    tx.after_commit(lambda: announce(change.payload))
    return change.id


class ChangeFeed:
    """One worker's configuration changes: it announces the worker's own committed writes, and
    hands every committed change, heard through LISTEN or caught up from the table, once to its
    subscribers on the event loop.

    A background thread with its own autocommit connection does the database work. `connected`
    is True while the LISTEN connection is up and the feed has caught up since it came up:
    only then may caches trust that every change reaches them.
    """

    def __init__(
        self,
        dsn: str,
        statements: AsyncStatements,
        *,
        connect_timeout: int = 5,
        catch_up_seconds: float = CATCH_UP_SECONDS,
    ) -> None:
        self.dsn = dsn
        self.statements = statements  # the loop's connections, for the NOTIFYs once the feed has started
        self.connect_timeout = connect_timeout
        self.catch_up_seconds = catch_up_seconds
        self.connected = False
        # Every event whose transaction id is below `floor` has been handed to the subscribers
        # (None until the first catch-up): a resume position for the streams (see delivery).
        self.floor: int | None = None
        self._handlers: list[Handler] = []
        self._state_handlers: list[StateHandler] = []
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._listening = False
        self._epoch = 0  # bumped when LISTEN comes up: only a read started after that may set `connected`
        self._connected_event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._unannounced: list[str] = []  # on the loop, for the next NOTIFY statement
        self._announcing: asyncio.Task[None] | None = None
        # Thread side.
        self._outbox: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._catch_up_soon = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._conn: DedicatedConnection | None = None
        self._floor: int | None = None
        self._last_read: set[int] = set()

    # --- wiring (event loop) ----------------------------------------------------------------

    def attach(self, listener: ChangeListener) -> None:
        listener.subscribe(CHANNEL, self._deliver)
        listener.on_state(self._on_listening)

    def subscribe(self, handler: Handler) -> None:
        """Call `handler(change)` on the event loop once for every committed change (the payload, parsed)."""
        self._handlers.append(handler)

    def on_state(self, handler: StateHandler) -> None:
        """Call `handler(connected)` whenever `connected` changes."""
        self._state_handlers.append(handler)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._ensure_thread()
        self._catch_up_soon.set()
        self._wake.set()

    async def stop(self) -> None:
        """Send what is still to be announced, then stop the thread."""
        if self._announcing is not None:
            await asyncio.shield(self._announcing)
        await run_sync(self.close)

    def close(self) -> None:
        """Send what the thread still has to announce, then stop it (blocks up to 10 s)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until LISTEN is in place and the first catch-up is done (start-up and tests)."""
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        except TimeoutError:
            pass
        return self.connected

    # --- announcing (any thread) --------------------------------------------------------------

    def announce(self, payload: str) -> None:
        """NOTIFY one committed change soon, and deliver it in this worker at once: queued on the
        event loop before the writer's response is sent. Before the feed has started (no loop),
        the feed's thread sends it."""
        if self._loop is None:
            self._outbox.put(payload)
            self._ensure_thread()
            self._wake.set()
        elif threading.get_ident() == self._loop_thread:
            self._announce_on_loop(payload)
        else:
            self._to_loop(self._announce_on_loop, payload)

    def _announce_on_loop(self, payload: str) -> None:
        self._unannounced.append(payload)
        self._deliver(payload)
        if self._announcing is None:
            self._announcing = asyncio.create_task(self._send_unannounced(), name="svc-announce")

    async def _send_unannounced(self) -> None:
        """Send what was announced, in one statement for all that gathered while the last one ran."""
        try:
            while self._unannounced:
                payloads, self._unannounced = self._unannounced[:ANNOUNCE_BATCH], self._unannounced[ANNOUNCE_BATCH:]
                try:
                    await ChangeRepository(self.statements).announce(CHANNEL, payloads)
                except Exception as exc:  # noqa: BLE001 - dropped: every worker's catch-up delivers them
                    log.warning("change feed: could not announce %d changes: %s", len(payloads), _reason(exc))
        finally:
            self._announcing = None

    def _ensure_thread(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="svc-change-feed", daemon=True)
                self._thread.start()

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        next_read = 0.0
        while True:
            stopping = self._stopping.is_set()
            try:
                self._announce_queued()
                if stopping:
                    break
                if self._loop is not None and (self._catch_up_soon.is_set() or time.monotonic() >= next_read):
                    self._catch_up_soon.clear()
                    next_read = time.monotonic() + self.catch_up_seconds
                    self._catch_up()
            except Exception as exc:  # the database is down, or a bug: keep the thread alive either way
                log.warning("change feed: %s; catching up again shortly", _reason(exc))
                self._close()
                if stopping:
                    break
                self._to_loop(self._caught_up_failed)
                next_read = time.monotonic() + 1.0
            if self._loop is None:
                self._wake.wait()
            else:
                self._wake.wait(max(0.0, next_read - time.monotonic()))
            self._wake.clear()
        self._close()

    def _announce_queued(self) -> None:
        while not self._outbox.empty():
            payloads: list[str] = []
            while len(payloads) < ANNOUNCE_BATCH:
                try:
                    payloads.append(self._outbox.get_nowait())
                except queue.Empty:
                    break
            # If this fails the payloads are dropped: every worker's catch-up delivers them.
            ChangeRepository(Transaction(self._connection())).announce(CHANNEL, payloads)

    def _catch_up(self) -> None:
        epoch = self._epoch
        caught = ChangeRepository(Transaction(self._connection())).catch_up(self._floor)
        self._floor = caught.floor if self._floor is None else max(self._floor, caught.floor)
        # An event stays in the window from the first read that sees it until its xid falls
        # below the floor, so comparing with the previous read alone finds the new ones.
        news = [event.payload for event in caught.events if event.id not in self._last_read]
        self._last_read = {event.id for event in caught.events}
        self._to_loop(self._caught_up, epoch, news, self._floor)

    def _connection(self) -> DedicatedConnection:
        if self._conn is None:
            self._conn = dedicated_connection(
                self.dsn,
                purpose="svc change feed",
                connect_timeout=self.connect_timeout,
                options="-c synchronous_commit=off -c statement_timeout=5000",
            )
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: the worker is shutting down
            pass

    # --- delivery (event loop) ----------------------------------------------------------------

    def _deliver(self, payload: str) -> None:
        change = orjson.loads(payload)
        if change["id"] in self._recent:
            return
        self._recent[change["id"]] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)
        for handler in self._handlers:
            try:
                handler(change)
            except Exception:  # one bad handler must not stop delivery to the others
                log.exception("change handler failed")

    def _caught_up(self, epoch: int, payloads: list[str], floor: int) -> None:
        for payload in payloads:
            self._deliver(payload)
        self.floor = floor
        if self._listening and epoch == self._epoch:
            self._set_connected(True)

    def _caught_up_failed(self) -> None:
        self._set_connected(False)

    def _on_listening(self, listening: bool) -> None:
        self._listening = listening
        if listening:
            self._epoch += 1
            self._catch_up_soon.set()
            self._wake.set()
        else:
            self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            self._connected_event.set()
        else:
            self._connected_event.clear()
        for handler in self._state_handlers:
            try:
                handler(connected)
            except Exception:
                log.exception("change feed state handler failed")


def _reason(exc: Exception) -> str:
    return str(exc).strip() or type(exc).__name__
