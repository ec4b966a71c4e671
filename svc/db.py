"""Connection pool and transaction context over psycopg2's ThreadedConnectionPool.

The raw pool has two faults this module removes:

* When every connection is busy, `getconn()` raises `PoolError` at once.
  Here a caller waits on a semaphore, bounded by `timeout`, and only then
  gets `Unavailable` (503).
* A connection broken by a database restart stays in the pool and fails the
  next request that gets it. Here an idle connection whose socket became
  readable (the server sent its goodbye or closed it) is discarded at
  checkout, and a connection that failed at the protocol level is discarded
  when it is returned, so the service heals itself once PostgreSQL is back.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2.pool import ThreadedConnectionPool

from svc.errors import Unavailable
from svc.metrics import POOL_IN_USE, POOL_WAITING

log = logging.getLogger(__name__)

# JSONB in and out through orjson: several times faster than the stdlib json.
psycopg2.extras.register_default_jsonb(loads=orjson.loads, globally=True)
psycopg2.extras.register_default_json(loads=orjson.loads, globally=True)

CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


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
    """One database transaction on one pooled connection; commit is explicit."""

    def __init__(self, conn: psycopg2.extensions.connection) -> None:
        self.connection = conn
        self.committed = False
        self._after_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        """Run a statement; return the number of rows it touched."""
        with self.connection.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def fetch_one(self, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        with self.connection.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            if row is None:
                return None
            return dict(zip([c.name for c in cur.description], row))

    def fetch_all(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.connection.cursor() as cur:
            cur.execute(sql, params)
            names = [c.name for c in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def fetch_value(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        with self.connection.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return None if row is None else row[0]

    def commit(self) -> None:
        self.connection.commit()
        self.committed = True
        for callback in self._after_commit:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed; never if it rolls back."""
        self._after_commit.append(callback)


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
        self._in_use = 0
        self._waiting = 0
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
        )
        self._pool.minconn = max_size
        self._prewarm(min(min_size, max_size))

    def _prewarm(self, count: int) -> None:
        conns = []
        try:
            for _ in range(count):
                conns.append(self._pool.getconn())
        except CONNECTION_ERRORS as exc:
            log.warning("database not reachable at start-up; will connect on demand: %s", exc)
        for conn in conns:
            self._pool.putconn(conn)

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
        try:
            with self.connection() as conn:
                tx = Transaction(conn)
                try:
                    yield tx
                finally:
                    if not tx.committed and not conn.closed:
                        conn.rollback()
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"database unavailable: {_first_line(exc)}") from exc

    def ping(self) -> bool:
        """True when a pooled connection answers `SELECT 1`."""
        try:
            with self.transaction() as tx:
                return tx.fetch_value("SELECT 1") == 1
        except Unavailable:
            return False

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(
                max_size=self.max_size,
                open=len(self._pool._pool) + len(self._pool._used),
                in_use=self._in_use,
                waiting=self._waiting,
            )

    def close(self) -> None:
        self._pool.closeall()

    def _checkout(self) -> psycopg2.extensions.connection:
        with self._lock:
            self._waiting += 1
        POOL_WAITING.inc()
        try:
            acquired = self._slots.acquire(timeout=self.timeout)
        finally:
            POOL_WAITING.dec()
            with self._lock:
                self._waiting -= 1
        if not acquired:
            raise Unavailable(
                f"no database connection became free within {self.timeout:g} s; the service is overloaded"
            )
        try:
            conn = self._healthy_connection()
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._in_use += 1
        POOL_IN_USE.inc()
        return conn

    def _healthy_connection(self) -> psycopg2.extensions.connection:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn = self._pool.getconn()
            except CONNECTION_ERRORS as exc:
                raise Unavailable(f"database unavailable: {_first_line(exc)}") from exc
            if not _looks_broken(conn):
                return conn
            log.info("discarding a pooled connection the server closed")
            self._pool.putconn(conn, close=True)
            if time.monotonic() > deadline:
                raise Unavailable("database unavailable: connections keep failing")

    def _checkin(self, conn: psycopg2.extensions.connection) -> None:
        close = _looks_broken(conn)
        try:
            self._pool.putconn(conn, close=close)
        finally:
            with self._lock:
                self._in_use -= 1
            POOL_IN_USE.dec()
            self._slots.release()


def _looks_broken(conn: psycopg2.extensions.connection) -> bool:
    """True when an idle connection is closed or its socket has data or EOF waiting.

    An idle pooled connection never expects bytes from the server, so a
    readable socket means the server sent a termination notice or hung up.
    Costs one non-blocking syscall, not a round trip.
    """
    if conn.closed:
        return True
    if conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def constraint_name(exc: psycopg2.Error) -> str | None:
    """The name of the constraint a violation broke, so services can map it precisely."""
    diag = getattr(exc, "diag", None)
    return getattr(diag, "constraint_name", None)
