"""The migration runner: numbered `.sql` files in `migrations/`, applied in order.

Rules, after Flyway and graphile-migrate:

* `NNNN_name.sql`; numbers unique; applied in ascending order.
* Each file and its `schema_migrations` record commit in one transaction,
  unless its first line is `-- svc:no-transaction` (for statements such as
  `CREATE INDEX CONCURRENTLY`; such a file should hold one statement).
* An applied file must never change: a checksum mismatch, or an applied file
  that disappeared, stops the runner before it touches anything.
* One runner at a time: a session advisory lock, taken with try-and-retry so
  that two runners never both apply a file and never deadlock.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
NO_TRANSACTION_MARKER = "-- svc:no-transaction"
FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every runner of this service.
ADVISORY_LOCK_KEY = 0x5356_435F_4D49_4752  # "SVC_MIGR"

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version      integer     PRIMARY KEY,
    name         text        NOT NULL,
    checksum     text        NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    execution_ms integer     NOT NULL
)
"""
SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
INSERT_APPLIED = """
INSERT INTO schema_migrations (version, name, checksum, execution_ms)
VALUES (%(version)s, %(name)s, %(checksum)s, %(execution_ms)s)
"""


class MigrationError(Exception):
    """The migrations cannot be applied as they are; the message says which file and why."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def transactional(self) -> bool:
        return not self.sql.lstrip().startswith(NO_TRANSACTION_MARKER)


@dataclass(frozen=True)
class Status:
    applied: list[Migration]
    pending: list[Migration]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read and check the migration files: well named, numbers unique."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILENAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_name.sql (lowercase)")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"duplicate migration number {version:04d}: {found[version].filename} and {path.name}")
        data = path.read_bytes()
        found[version] = Migration(
            version=version,
            name=match.group(2),
            path=path,
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )
    return [found[v] for v in sorted(found)]


class Runner:
    """Applies migrations to one database over its own (unpooled) connection."""

    def __init__(
        self,
        url: str,
        *,
        directory: Path = MIGRATIONS_DIR,
        lock_wait: float = 60.0,
        lock_timeout_ms: int = 10_000,
        statement_timeout_ms: int = 600_000,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.directory = directory
        self.lock_wait = lock_wait
        self.lock_timeout_ms = lock_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))

    def status(self) -> Status:
        """Which files are applied and which are pending; raises when history was altered."""
        files = load_migrations(self.directory)
        conn = self._connect()
        try:
            applied = self._applied(conn)
        finally:
            conn.close()
        return self._check(files, applied)

    def up(self, *, dry_run: bool = False) -> list[Migration]:
        """Apply every pending file; with `dry_run`, apply them in one transaction and roll back."""
        files = load_migrations(self.directory)
        conn = self._connect()
        try:
            self._lock(conn)
            try:
                with conn.cursor() as cur:
                    cur.execute(CREATE_TABLE)
                status = self._check(files, self._applied(conn))
                if not status.pending:
                    self.progress("database is up to date")
                    return []
                if dry_run:
                    self._dry_run(conn, status.pending)
                else:
                    for migration in status.pending:
                        self._apply(conn, migration)
                return status.pending
            finally:
                self._unlock(conn)
        finally:
            conn.close()

    def _connect(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(self.url, application_name="svc migrate")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = %s", (self.lock_timeout_ms,))
            cur.execute("SET statement_timeout = %s", (self.statement_timeout_ms,))
            cur.execute("SET client_min_messages = warning")
        return conn

    def _lock(self, conn: psycopg2.extensions.connection) -> None:
        deadline = time.monotonic() + self.lock_wait
        announced = False
        with conn.cursor() as cur:
            while True:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
                if cur.fetchone()[0]:
                    return
                if time.monotonic() > deadline:
                    raise MigrationError(f"another migration runner held the lock for over {self.lock_wait:g} s")
                if not announced:
                    self.progress("waiting for another migration runner to finish…")
                    announced = True
                time.sleep(0.2)

    def _unlock(self, conn: psycopg2.extensions.connection) -> None:
        if not conn.closed:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))

    @staticmethod
    def _applied(conn: psycopg2.extensions.connection) -> dict[int, tuple[str, str]]:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            if not cur.fetchone()[0]:
                return {}
            cur.execute(SELECT_APPLIED)
            return {version: (name, checksum) for version, name, checksum in cur.fetchall()}

    def _check(self, files: list[Migration], applied: dict[int, tuple[str, str]]) -> Status:
        by_version = {m.version: m for m in files}
        for version, (name, checksum) in sorted(applied.items()):
            migration = by_version.get(version)
            if migration is None:
                raise MigrationError(f"applied migration {version:04d}_{name}.sql is missing from {self.directory}")
            if migration.checksum != checksum:
                raise MigrationError(
                    f"{migration.filename} was edited after it was applied (checksum differs); "
                    "add a new migration instead of changing an applied one"
                )
        return Status(
            applied=[m for m in files if m.version in applied],
            pending=[m for m in files if m.version not in applied],
        )

    def _apply(self, conn: psycopg2.extensions.connection, migration: Migration) -> None:
        self.progress(f"applying {migration.filename} …")
        started = time.perf_counter()
        try:
            if migration.transactional:
                conn.autocommit = False
                with conn.cursor() as cur:
                    cur.execute(migration.sql)
                    cur.execute(INSERT_APPLIED, self._record(migration, started))
                conn.commit()
            else:
                with conn.cursor() as cur:
                    cur.execute(migration.sql)
                    cur.execute(INSERT_APPLIED, self._record(migration, started))
        except psycopg2.Error as exc:
            if not conn.closed:
                conn.rollback()
            raise MigrationError(f"{migration.filename} failed: {str(exc).strip()}") from exc
        finally:
            if not conn.closed:
                conn.autocommit = True
        self.progress(f"applied  {migration.filename} ({_elapsed_ms(started)} ms)")

    def _dry_run(self, conn: psycopg2.extensions.connection, pending: list[Migration]) -> None:
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                for migration in pending:
                    if not migration.transactional:
                        self.progress(f"skipped  {migration.filename} (no-transaction files cannot be rolled back)")
                        continue
                    started = time.perf_counter()
                    try:
                        cur.execute(migration.sql)
                    except psycopg2.Error as exc:
                        raise MigrationError(f"{migration.filename} failed: {str(exc).strip()}") from exc
                    self.progress(f"would apply {migration.filename} ({_elapsed_ms(started)} ms, rolled back)")
        finally:
            conn.rollback()
            conn.autocommit = True

    @staticmethod
    def _record(migration: Migration, started: float) -> dict[str, object]:
        return {
            "version": migration.version,
            "name": migration.name,
            "checksum": migration.checksum,
            "execution_ms": _elapsed_ms(started),
        }


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
