"""Connection pools: transactions over psycopg2's ThreadedConnectionPool (`Database`), and single
statements on the event loop over psycopg2's asynchronous mode (`AsyncStatements`).

The raw pool has two faults this module removes:

* When every connection is busy, `getconn()` raises `PoolError` at once.
  Here a caller waits on a semaphore, bounded by `timeout`, and only then
  gets `Unavailable` (503).
* A connection broken by a database restart stays in the pool and fails the
  next request that gets it. Here an idle connection whose socket became
  readable (the server sent its goodbye or closed it) is discarded at
  checkout, and a connection that failed at the protocol level is discarded
  when it is returned, so the service heals itself once PostgreSQL is back.

`AsyncStatements` keeps both promises for its own connections.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import select
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

import orjson
import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2.pool import ThreadedConnectionPool

from svc.errors import InternalError, ServiceError, Unavailable
from svc.metrics import POOL_IN_USE, POOL_WAITING

log = logging.getLogger(__name__)

# JSONB in and out through orjson: several times faster than the stdlib json.
psycopg2.extras.register_default_jsonb(loads=orjson.loads, globally=True)
psycopg2.extras.register_default_json(loads=orjson.loads, globally=True)

CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)

Row = TypeVar("Row")

# What a repository declares for the constraints its statements may break: the constraint's
# name → a function of the statement's parameters that builds the domain error to raise.
Constraints = Mapping[str, Callable[[dict[str, Any]], ServiceError]]
NO_CONSTRAINTS: Constraints = MappingProxyType({})


_PARAMETER = re.compile(r"%\((\w+)\)s")


class Prepared(str):
    """SQL that PostgreSQL plans once per connection (PREPARE) and then runs by name (EXECUTE).

    For the hottest statements, whose planning costs PostgreSQL as much as running them (the
    one-statement record of a configuration change: 0.54 ms of server CPU planned each time,
    0.28 ms prepared). It is the SQL text itself, with the same named parameters, so a
    connection that keeps no record of what it prepared (one not from these pools) simply runs
    the text. A parameter whose type the statement does not imply needs a cast (`%(x)s::text`).
    Prepared statements live in the server session: not for a pooler in transaction mode.
    """

    name: str
    prepare: str
    execute: str

    def __new__(cls, name: str, sql: str) -> Prepared:
        self = super().__new__(cls, sql)
        parameters = list(dict.fromkeys(_PARAMETER.findall(sql)))
        numbered = _PARAMETER.sub(lambda m: f"${parameters.index(m.group(1)) + 1}", sql).replace("%%", "%")
        self.name = name
        self.prepare = f"PREPARE {name} AS {numbered}"
        self.execute = f"EXECUTE {name}" + (f" ({', '.join(f'%({p})s' for p in parameters)})" if parameters else "")
        return self


class PreparingConnection(psycopg2.extensions.connection):
    """A connection that remembers which `Prepared` statements its session has prepared."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: set[str] = set()


def _to_prepare(conn: psycopg2.extensions.connection, sql: str) -> str | None:
    """The PREPARE that must run on `conn` before `sql` can (None when it need not, or cannot)."""
    if isinstance(sql, Prepared) and isinstance(conn, PreparingConnection) and sql.name not in conn.prepared:
        return sql.prepare
    return None


def _text(conn: psycopg2.extensions.connection, sql: str) -> str:
    """What to send for `sql` on `conn`: the EXECUTE of a statement it prepared, else the SQL."""
    if isinstance(sql, Prepared) and isinstance(conn, PreparingConnection) and sql.name in conn.prepared:
        return sql.execute
    return sql


def jsonb(value: Any) -> psycopg2.extras.Json:
    """Adapt a Python value as a JSON parameter, serialised with orjson."""
    return psycopg2.extras.Json(value, dumps=lambda v: orjson.dumps(v).decode())


@dataclass(frozen=True)
class PoolStats:
    max_size: int
    open: int
    in_use: int
    waiting: int


class Transaction:
    """One database transaction on one pooled connection; commit is explicit.

    Every statement runs through `_run`, the one place where database errors become domain
    errors: a lost connection (or a cancelled statement) is `Unavailable`, and a broken
    constraint the calling repository declared in `constraints` is the error it maps it to.
    Any other database error is a bug: `InternalError`, with the database's error as its cause.
    """

    def __init__(self, conn: psycopg2.extensions.connection) -> None:
        self.connection = conn
        self.committed = False
        self._after_commit: list[Callable[[], None]] = []

    def execute(
        self, sql: str, params: dict[str, Any] | None = None, *, constraints: Constraints = NO_CONSTRAINTS
    ) -> int:
        """Run a statement; return the number of rows it touched."""
        with self._run(sql, params, constraints) as cur:
            return _rows_touched(cur)

    def fetch_one(
        self, sql: str, params: dict[str, Any] | None = None, *, row: Callable[..., Row] = dict,
        constraints: Constraints = NO_CONSTRAINTS,
    ) -> Row | None:
        """The first row, built by `row` from its columns as keyword arguments (a dict by default)."""
        with self._run(sql, params, constraints) as cur:
            return _first_row(cur, row)

    def fetch_all(
        self, sql: str, params: dict[str, Any] | None = None, *, row: Callable[..., Row] = dict,
        constraints: Constraints = NO_CONSTRAINTS,
    ) -> list[Row]:
        """Every row, each built by `row` from its columns as keyword arguments (a dict by default)."""
        with self._run(sql, params, constraints) as cur:
            return _every_row(cur, row)

    def fetch_value(
        self, sql: str, params: dict[str, Any] | None = None, *, constraints: Constraints = NO_CONSTRAINTS
    ) -> Any:
        """The first column of the first row, or None."""
        with self._run(sql, params, constraints) as cur:
            return _first_value(cur)

    def commit(self) -> None:
        with _domain_errors():
            self.connection.commit()
        self.committed = True
        for callback in self._after_commit:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed; never if it rolls back."""
        self._after_commit.append(callback)

    def rollback(self) -> None:
        """Undo the transaction. A connection that is gone has nothing to undo; it is discarded on return."""
        with suppress(*CONNECTION_ERRORS):
            self.connection.rollback()

    @contextmanager
    def _run(
        self, sql: str, params: dict[str, Any] | None, constraints: Constraints
    ) -> Iterator[psycopg2.extensions.cursor]:
        conn = self.connection
        with _domain_errors(params, constraints), conn.cursor() as cur:
            if prepare := _to_prepare(conn, sql):
                cur.execute(prepare)
                conn.prepared.add(sql.name)
            cur.execute(_text(conn, sql), params)
            yield cur


class AutocommitStatements(Transaction):
    """Statements on a connection in autocommit: each one commits as it returns."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        callback()


def _rows_touched(cur: psycopg2.extensions.cursor) -> int:
    return cur.rowcount


def _first_row(cur: psycopg2.extensions.cursor, row: Callable[..., Row]) -> Row | None:
    found = cur.fetchone()
    if found is None:
        return None
    return row(**dict(zip([c.name for c in cur.description], found)))


def _every_row(cur: psycopg2.extensions.cursor, row: Callable[..., Row]) -> list[Row]:
    names = [c.name for c in cur.description]
    return [row(**dict(zip(names, found))) for found in cur.fetchall()]


def _first_value(cur: psycopg2.extensions.cursor) -> Any:
    found = cur.fetchone()
    return None if found is None else found[0]


@contextmanager
def _domain_errors(
    params: dict[str, Any] | None = None, constraints: Constraints = NO_CONSTRAINTS
) -> Iterator[None]:
    try:
        yield
    except psycopg2.Error as exc:
        raise _domain_error(exc, params, constraints) from exc


def _domain_error(exc: psycopg2.Error, params: dict[str, Any] | None, constraints: Constraints) -> Exception:
    """The domain error a database error means: a lost connection or a cancelled statement is
    `Unavailable`, a declared constraint its error, anything else `InternalError`."""
    if isinstance(exc, CONNECTION_ERRORS):
        return Unavailable(f"database unavailable: {_first_line(exc)}")
    error = constraints.get(getattr(exc.diag, "constraint_name", None) or "")
    if error is None:
        return InternalError(f"database error: {_first_line(exc)}")
    return error(params or {})


class _Occupancy:
    """How many of one pool's connections are checked out and how many callers wait for one,
    kept in step with the pool gauges under the pool's label."""

    def __init__(self, pool: str) -> None:
        self._lock = threading.Lock()
        self.in_use = 0
        self.waiting = 0
        self._in_use_gauge = POOL_IN_USE.labels(pool)
        self._waiting_gauge = POOL_WAITING.labels(pool)

    @contextmanager
    def waiting_for_slot(self) -> Iterator[None]:
        """Count the caller as waiting while the block runs."""
        with self._lock:
            self.waiting += 1
        self._waiting_gauge.inc()
        try:
            yield
        finally:
            self._waiting_gauge.dec()
            with self._lock:
                self.waiting -= 1

    def checked_out(self) -> None:
        with self._lock:
            self.in_use += 1
        self._in_use_gauge.inc()

    def checked_in(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._in_use_gauge.dec()

    def stats(self, max_size: int, open_: int) -> PoolStats:
        return PoolStats(max_size=max_size, open=open_, in_use=self.in_use, waiting=self.waiting)


def _overloaded(timeout: float) -> Unavailable:
    return Unavailable(f"no database connection became free within {timeout:g} s; the service is overloaded")


class Database:
    """A bounded, self-healing pool of PostgreSQL connections."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        connect_timeout: int = 5,
        statement_timeout_ms: int = 30_000,
        application_name: str = "svc",
    ) -> None:
        self.max_size = max_size
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(max_size)
        self._lock = threading.Lock()
        self._occupancy = _Occupancy("transactions")
        # The connections this pool holds open, counted here rather than read from the raw
        # pool's private lists: one is added when getconn() hands out one not seen before, and
        # removed when it is returned with close=True (the only way it closes one, since
        # minconn is raised to max_size below) or by close().
        self._open: set[psycopg2.extensions.connection] = set()
        options = f"-c statement_timeout={statement_timeout_ms}"
        # minconn=0 so that a database that is down at start-up does not stop the
        # service from starting; minconn is then raised so the pool keeps every
        # returned connection (the raw pool closes any above minconn).
        self._pool = ThreadedConnectionPool(
            0,
            max_size,
            dsn,
            connect_timeout=connect_timeout,
            application_name=application_name,
            options=options,
            connection_factory=PreparingConnection,
        )
        self._pool.minconn = max_size
        self._prewarm(min(min_size, max_size))

    def _prewarm(self, count: int) -> None:
        conns = []
        try:
            for _ in range(count):
                conns.append(self._getconn())
        except CONNECTION_ERRORS as exc:
            log.warning("database not reachable at start-up; will connect on demand: %s", exc)
        for conn in conns:
            self._putconn(conn, close=False)

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """Check out a healthy connection; it always goes back to the pool."""
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Run a block in one transaction: commit is explicit, anything else rolls back."""
        with self.connection() as conn:
            tx = Transaction(conn)
            try:
                yield tx
            finally:
                if not tx.committed and not conn.closed:
                    tx.rollback()

    @contextmanager
    def autocommit(self) -> Iterator[Transaction]:
        """Run statements each in its own transaction: no BEGIN, COMMIT or ROLLBACK round trips.

        Use it where one statement answers a read (several would not see one snapshot), or where
        one statement makes a whole change (see `ConfigurationService` writes). Each statement has
        committed when it returns, so `after_commit` callbacks run at once.
        """
        with self.connection() as conn:
            conn.autocommit = True  # a client-side flag while idle: no round trip
            try:
                yield AutocommitStatements(conn)
            finally:
                if not conn.closed:
                    with suppress(*CONNECTION_ERRORS):  # a broken one is discarded on return
                        conn.autocommit = False

    def ping(self) -> bool:
        """True when a pooled connection answers `SELECT 1`."""
        try:
            with self.transaction() as tx:
                return tx.fetch_value("SELECT 1") == 1
        except Unavailable:
            return False

    def stats(self) -> PoolStats:
        with self._lock:
            return self._occupancy.stats(self.max_size, len(self._open))

    def close(self) -> None:
        self._pool.closeall()
        with self._lock:
            self._open.clear()

    def _getconn(self) -> psycopg2.extensions.connection:
        conn = self._pool.getconn()
        with self._lock:
            self._open.add(conn)
        return conn

    def _putconn(self, conn: psycopg2.extensions.connection, *, close: bool) -> None:
        if close:
            with self._lock:
                self._open.discard(conn)
        self._pool.putconn(conn, close=close)

    def _checkout(self) -> psycopg2.extensions.connection:
        with self._occupancy.waiting_for_slot():
            acquired = self._slots.acquire(timeout=self.timeout)
        if not acquired:
            raise _overloaded(self.timeout)
        try:
            conn = self._healthy_connection()
        except BaseException:
            self._slots.release()
            raise
        self._occupancy.checked_out()
        return conn

    def _healthy_connection(self) -> psycopg2.extensions.connection:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn = self._getconn()
            except CONNECTION_ERRORS as exc:
                raise Unavailable(f"database unavailable: {_first_line(exc)}") from exc
            if not _looks_broken(conn):
                return conn
            log.info("discarding a pooled connection the server closed")
            self._putconn(conn, close=True)
            if time.monotonic() > deadline:
                raise Unavailable("database unavailable: connections keep failing")

    def _checkin(self, conn: psycopg2.extensions.connection) -> None:
        close = _looks_broken(conn)
        try:
            self._putconn(conn, close=close)
        finally:
            self._occupancy.checked_in()
            self._slots.release()


class AsyncStatements:
    """Single statements on the running event loop, over a small bounded pool of psycopg2
    connections in asynchronous mode: no thread hop, and a slow statement holds one of these
    connections, never the loop (other coroutines run while it is in flight).

    Asynchronous mode is autocommit: each statement is its own transaction, so use this only
    where one statement is the whole unit of work (two statements see two snapshots and commit
    apart); a transaction goes through `Database`. The methods are `Transaction`'s, awaited.
    Hence a repository method whose body is `return self.tx.fetch_one(SQL, params, row=X)`
    returns the row over a `Transaction` and an awaitable of it over an `AsyncStatements`:
    repositories stay the only place with SQL and serve both.

    It keeps `Database`'s promises for its own connections: at most `size`, opened on demand;
    a caller waits up to `timeout` for a free one, then `Unavailable` (overloaded); one the server
    closed is discarded at checkout, and one that failed, or that a cancelled caller left
    mid-statement, is closed when it comes back (never cancelled: `conn.cancel()` blocks), so
    the pool heals once PostgreSQL is back; database errors become the same domain errors as a
    `Transaction`'s (`constraints=` included, for INSERT and UPDATE statements too).

    The pool belongs to the event loop that first waits on it (the worker's): use and close it there.
    """

    def __init__(
        self,
        dsn: str,
        *,
        size: int = 4,
        timeout: float = 5.0,
        connect_timeout: int = 5,
        statement_timeout_ms: int = 30_000,
        application_name: str = "svc",
    ) -> None:
        self.size = size
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._connect = functools.partial(
            psycopg2.connect,
            dsn,
            async_=True,
            connection_factory=PreparingConnection,
            connect_timeout=connect_timeout,
            application_name=application_name,
            options=f"-c statement_timeout={statement_timeout_ms}",
        )
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg2.extensions.connection] = []  # the most recently used last
        self._open: set[psycopg2.extensions.connection] = set()
        self._occupancy = _Occupancy("statements")
        self._closed = False

    async def execute(
        self, sql: str, params: dict[str, Any] | None = None, *, constraints: Constraints = NO_CONSTRAINTS
    ) -> int:
        """Run a statement; return the number of rows it touched."""
        return await self._run(sql, params, constraints, _rows_touched)

    async def fetch_one(
        self, sql: str, params: dict[str, Any] | None = None, *, row: Callable[..., Row] = dict,
        constraints: Constraints = NO_CONSTRAINTS,
    ) -> Row | None:
        """The first row, built by `row` from its columns as keyword arguments (a dict by default)."""
        return await self._run(sql, params, constraints, lambda cur: _first_row(cur, row))

    async def fetch_all(
        self, sql: str, params: dict[str, Any] | None = None, *, row: Callable[..., Row] = dict,
        constraints: Constraints = NO_CONSTRAINTS,
    ) -> list[Row]:
        """Every row, each built by `row` from its columns as keyword arguments (a dict by default)."""
        return await self._run(sql, params, constraints, lambda cur: _every_row(cur, row))

    async def fetch_value(
        self, sql: str, params: dict[str, Any] | None = None, *, constraints: Constraints = NO_CONSTRAINTS
    ) -> Any:
        """The first column of the first row, or None."""
        return await self._run(sql, params, constraints, _first_value)

    def stats(self) -> PoolStats:
        return self._occupancy.stats(self.size, len(self._open))

    def close(self) -> None:
        """Close the idle connections now, and each one in use when it comes back; later statements get 503."""
        self._closed = True
        while self._idle:
            self._discard(self._idle.pop())

    async def _run(
        self,
        sql: str,
        params: dict[str, Any] | None,
        constraints: Constraints,
        result: Callable[[psycopg2.extensions.cursor], Any],
    ) -> Any:
        conn = await self._checkout()
        completed = False
        try:
            # Not closed by a `with`: closing a cursor whose statement is still running (its
            # caller was cancelled) raises, and the connection is discarded anyway.
            cur = conn.cursor()
            if prepare := _to_prepare(conn, sql):
                cur.execute(prepare)
                await _completion(conn)
                conn.prepared.add(sql.name)
            cur.execute(_text(conn, sql), params)
            await _completion(conn)
            completed = True
            return result(cur)
        except psycopg2.Error as exc:
            raise _domain_error(exc, params, constraints) from exc
        finally:
            self._checkin(conn, completed)

    async def _checkout(self) -> psycopg2.extensions.connection:
        if self._closed:
            raise Unavailable("database unavailable: the service is shutting down")
        if self._slots.locked():
            with self._occupancy.waiting_for_slot():
                try:
                    async with asyncio.timeout(self.timeout):
                        await self._slots.acquire()
                except TimeoutError:
                    raise _overloaded(self.timeout) from None
        else:
            await self._slots.acquire()  # a free slot: taken without suspending
        try:
            conn = await self._healthy_connection()
        except BaseException:
            self._slots.release()
            raise
        self._occupancy.checked_out()
        return conn

    async def _healthy_connection(self) -> psycopg2.extensions.connection:
        while self._idle:
            conn = self._idle.pop()
            if not _looks_broken(conn):
                return conn
            log.info("discarding a pooled connection the server closed")
            self._discard(conn)
        return await self._new_connection()

    async def _new_connection(self) -> psycopg2.extensions.connection:
        conn = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                with _domain_errors():
                    # libpq resolves the host name before connect returns, blocking: in a thread.
                    conn = await asyncio.get_running_loop().run_in_executor(None, self._connect)
                    await _completion(conn)  # the handshake, on the loop
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, TimeoutError):
                raise Unavailable(f"database unavailable: no connection within {self.connect_timeout} s") from exc
            raise
        self._open.add(conn)
        return conn

    def _checkin(self, conn: psycopg2.extensions.connection, completed: bool) -> None:
        """Back to the pool, unless the statement failed in a way that broke its connection or its
        caller was cancelled while it ran (the connection is still busy with it)."""
        try:
            if self._closed or (not completed and _looks_broken(conn)):
                self._discard(conn)
            else:
                self._idle.append(conn)
        finally:
            self._occupancy.checked_in()
            self._slots.release()

    def _discard(self, conn: psycopg2.extensions.connection) -> None:
        self._open.discard(conn)
        with suppress(*CONNECTION_ERRORS):
            conn.close()


async def _completion(conn: psycopg2.extensions.connection) -> None:
    """Drive an asynchronous connection's pending work (its handshake, or a statement) to the end,
    waiting on the running loop for its socket; raises the database's error."""
    loop = asyncio.get_running_loop()
    while (state := conn.poll()) != psycopg2.extensions.POLL_OK:
        if state == psycopg2.extensions.POLL_READ:
            watch, unwatch = loop.add_reader, loop.remove_reader
        elif state == psycopg2.extensions.POLL_WRITE:
            watch, unwatch = loop.add_writer, loop.remove_writer
        else:
            raise psycopg2.OperationalError(f"unexpected state {state} of an asynchronous connection")
        fd = conn.fileno()  # may change during the handshake, when libpq tries another address
        ready = loop.create_future()
        watch(fd, _set_done, ready)
        try:
            await ready
        finally:
            unwatch(fd)


def _set_done(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _looks_broken(conn: psycopg2.extensions.connection) -> bool:
    """True when an idle connection is closed or its socket has data or EOF waiting.

    An idle pooled connection never expects bytes from the server, so a
    readable socket means the server sent a termination notice or hung up.
    Costs one non-blocking syscall, not a round trip.
    """
    if conn.closed:
        return True
    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__



# --- dedicated connections ------------------------------------------------------------------
# A background part that holds one connection for its whole life (the LISTEN connection, the
# change feed) takes it from here, never from a pool: it must not be borrowed from or starve
# requests.

DedicatedConnection = psycopg2.extensions.connection


def dedicated_connection(
    dsn: str, *, purpose: str, connect_timeout: int, options: str | None = None
) -> DedicatedConnection:
    """A connection of its own, outside every pool, in autocommit, named `purpose` in
    pg_stat_activity. TCP keep-alives notice a silently dead peer within ~15 s even when
    nothing is sent. Raises psycopg2.Error when the database cannot be reached."""
    extra = {} if options is None else {"options": options}
    conn = psycopg2.connect(
        dsn,
        connect_timeout=connect_timeout,
        application_name=purpose,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=5,
        keepalives_count=2,
        **extra,
    )
    conn.autocommit = True
    return conn


def close_quietly(conn: DedicatedConnection | None) -> None:
    """Close a dedicated connection that may already be broken."""
    if conn is not None:
        with suppress(psycopg2.Error):
            conn.close()
