"""Connection pools: transactions in threads (`Database`), and single statements on the event
loop over psycopg2's asynchronous mode (`AsyncStatements`), both over one `ConnectionPool`.

Each keeps two promises:

* When every connection is busy, a caller waits for one, bounded by `timeout`, and only then
  gets `Unavailable` (503).
* A connection broken by a database restart does not fail the next request that gets it: an
  idle connection whose socket became readable (the server sent its goodbye or closed it) is
  discarded at checkout, and a connection that failed at the protocol level is discarded when
  it is returned, so the service heals itself once PostgreSQL is back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import select
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import orjson
import psycopg2
import psycopg2.extensions
import psycopg2.extras

from svc.errors import InternalError, ServiceError, Unavailable
from svc.metrics import POOL_IN_USE, POOL_WAITING

log = logging.getLogger(__name__)

# JSONB in and out through orjson, which is faster than the stdlib json.
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
    one-statement record of a configuration change; measured in docs/performance-notes.md).
    It is the SQL text itself, with the same named parameters, so a
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


class ConnectionPool:
    """The connections of one pool, whichever kind of caller waits for them (`Database`: threads;
    `AsyncStatements`: the event loop): at most `size` open, opened on demand; an idle one the
    server closed is discarded at checkout, one that failed (or a broken one) is closed when it
    comes back, so the pool heals once PostgreSQL is back; each is counted in the pool gauges
    under the pool's name. The callers bound their own waiting (a semaphore of `size` slots of
    their kind) and open new connections their own way; this keeps what both share.
    """

    def __init__(self, name: str, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._idle: list[psycopg2.extensions.connection] = []  # the most recently used last
        self._open: set[psycopg2.extensions.connection] = set()
        self._in_use = 0
        self._waiting = 0
        self._in_use_gauge = POOL_IN_USE.labels(name)
        self._waiting_gauge = POOL_WAITING.labels(name)
        self.closed = False

    @contextmanager
    def waiting_for_slot(self) -> Iterator[None]:
        """Count the caller as waiting while the block runs."""
        with self._lock:
            self._waiting += 1
        self._waiting_gauge.inc()
        try:
            yield
        finally:
            self._waiting_gauge.dec()
            with self._lock:
                self._waiting -= 1

    def idle_connection(self) -> psycopg2.extensions.connection | None:
        """A healthy idle connection, the most recently used; None when none is idle (open one
        then, and hand it to `opened`). Raises Unavailable once the pool is closed."""
        if self.closed:
            raise Unavailable("database unavailable: the service is shutting down")
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if not _looks_broken(conn):
                return conn
            log.info("discarding a pooled connection the server closed")
            self.discard(conn)

    def opened(self, conn: psycopg2.extensions.connection) -> None:
        with self._lock:
            self._open.add(conn)

    def checked_out(self) -> None:
        with self._lock:
            self._in_use += 1
        self._in_use_gauge.inc()

    def checked_in(self, conn: psycopg2.extensions.connection, *, keep: bool) -> None:
        """Back to the idle connections, or closed when it is not to be kept or the pool is closed."""
        try:
            if keep and not self.closed:
                with self._lock:
                    self._idle.append(conn)
            else:
                self.discard(conn)
        finally:
            with self._lock:
                self._in_use -= 1
            self._in_use_gauge.dec()

    def discard(self, conn: psycopg2.extensions.connection) -> None:
        with self._lock:
            self._open.discard(conn)
        with suppress(*CONNECTION_ERRORS):
            conn.close()

    def close(self) -> None:
        """Close the idle connections now, and each one in use when it comes back."""
        self.closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            self.discard(conn)

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(max_size=self.size, open=len(self._open), in_use=self._in_use, waiting=self._waiting)


def _overloaded(timeout: float) -> Unavailable:
    return Unavailable(f"no database connection became free within {timeout:g} s; the service is overloaded")


def _connect_arguments(
    dsn: str, *, connect_timeout: int, statement_timeout_ms: int, application_name: str
) -> dict[str, Any]:
    return dict(
        dsn=dsn,
        connection_factory=PreparingConnection,
        connect_timeout=connect_timeout,
        application_name=application_name,
        options=f"-c statement_timeout={statement_timeout_ms}",
    )


class Database:
    """A bounded, self-healing pool of PostgreSQL connections for transactions in threads."""

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
        self._pool = ConnectionPool("transactions", max_size)
        self._connect = functools.partial(psycopg2.connect, **_connect_arguments(
            dsn, connect_timeout=connect_timeout, statement_timeout_ms=statement_timeout_ms,
            application_name=application_name,
        ))
        self._prewarm(min(min_size, max_size))

    def _prewarm(self, count: int) -> None:
        """Open `count` connections now; a database that is down at start-up does not stop the
        service from starting (it connects on demand)."""
        try:
            with ExitStack() as held:  # all at once, so that each is a connection of its own
                for _ in range(count):
                    held.enter_context(self.connection())
        except Unavailable as exc:
            log.warning("database not reachable at start-up; will connect on demand: %s", exc)

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """Check out a healthy connection; it always goes back to the pool."""
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._pool.checked_in(conn, keep=not _looks_broken(conn))
            self._slots.release()

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
        return self._pool.stats()

    def close(self) -> None:
        """Close the idle connections now, and each one in use when it comes back; later transactions get 503."""
        self._pool.close()

    def _checkout(self) -> psycopg2.extensions.connection:
        with self._pool.waiting_for_slot():
            acquired = self._slots.acquire(timeout=self.timeout)
        if not acquired:
            raise _overloaded(self.timeout)
        try:
            conn = self._pool.idle_connection() or self._new_connection()
        except BaseException:
            self._slots.release()
            raise
        self._pool.checked_out()
        return conn

    def _new_connection(self) -> psycopg2.extensions.connection:
        with _domain_errors():
            conn = self._connect()
        self._pool.opened(conn)
        return conn


class AsyncStatements:
    """Single statements on the running event loop, over a small bounded pool of psycopg2
    connections in asynchronous mode: no thread hop, and a slow statement holds one of these
    connections, never the loop (other coroutines run while it is in flight).

    Asynchronous mode is autocommit: each statement is its own transaction, so use this only
    where one statement is the whole unit of work (two statements see two snapshots and commit
    apart); a transaction goes through `Database`. The methods are `Transaction`'s, awaited:
    a repository runs over either (see `Statements`).

    Its connections are a `ConnectionPool` like `Database`'s: a caller waits up to `timeout` for
    a free one, then `Unavailable` (overloaded); one that a cancelled caller left mid-statement
    is closed when it comes back (never cancelled: `conn.cancel()` blocks); database errors
    become the same domain errors as a `Transaction`'s (`constraints=` included).

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
        self._connect = functools.partial(psycopg2.connect, async_=True, **_connect_arguments(
            dsn, connect_timeout=connect_timeout, statement_timeout_ms=statement_timeout_ms,
            application_name=application_name,
        ))
        self._slots = asyncio.Semaphore(size)
        self._pool = ConnectionPool("statements", size)

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
        return self._pool.stats()

    def close(self) -> None:
        """Close the idle connections now, and each one in use when it comes back; later statements get 503."""
        self._pool.close()

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
            # Kept unless the statement failed in a way that broke its connection or its caller
            # was cancelled while it ran (the connection is still busy with it).
            self._pool.checked_in(conn, keep=completed or not _looks_broken(conn))
            self._slots.release()

    async def _checkout(self) -> psycopg2.extensions.connection:
        if self._pool.closed:
            raise Unavailable("database unavailable: the service is shutting down")
        if self._slots.locked():
            with self._pool.waiting_for_slot():
                try:
                    async with asyncio.timeout(self.timeout):
                        await self._slots.acquire()
                except TimeoutError:
                    raise _overloaded(self.timeout) from None
        else:
            await self._slots.acquire()  # a free slot: taken without suspending
        try:
            conn = self._pool.idle_connection() or await self._new_connection()
        except BaseException:
            self._slots.release()
            raise
        self._pool.checked_out()
        return conn

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
        self._pool.opened(conn)
        return conn


# What a repository's statements run on.
Runner = TypeVar("Runner", Transaction, AsyncStatements)


class Repository(Generic[Runner]):
    """The base of a repository, whose SQL runs on `tx`: a `Transaction`, where each method returns
    its result, or `AsyncStatements`, where a method typed for it returns an awaitable of the same
    result (the same statement, run on the loop). A method whose `self` is typed `X[Transaction]`
    only is not for the loop."""

    def __init__(self, tx: Runner) -> None:
        self.tx = tx


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
