"""Embedded PostgreSQL (the `pgserver` wheel) under the data directory.

Used when `DATABASE_URL` is unset. pgserver keeps a per-cluster list of the
processes holding it: every `svc` command registers itself, and the last one
to exit stops the server cleanly, so `svc token create` next to a running
`svc serve` reuses that server and leaves it running.
"""

from __future__ import annotations

import json
import logging
import subprocess
import warnings
from pathlib import Path

import psutil
import psycopg2

from svc.config import Settings

log = logging.getLogger(__name__)

DATABASE_NAME = "svc"


class EmbeddedPostgres:
    """Handle on the cluster in `pgdata`; started (or reused) on construction."""

    def __init__(self, pgdata: Path, *, stop_on_exit: bool = True) -> None:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver  # imported lazily: only embedded mode needs it

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata = pgdata
        _forget_dead_holders(pgserver, pgdata)
        self._server = pgserver.get_server(pgdata, cleanup_mode="stop" if stop_on_exit else None)
        self._socket_dir = self._server.get_postmaster_info().socket_dir
        self._ensure_database()

    @property
    def url(self) -> str:
        return self._server.get_uri(DATABASE_NAME)

    def admin_url(self) -> str:
        """URL of the maintenance database (`postgres`), for CREATE/DROP DATABASE."""
        return self._server.get_uri("postgres")

    def bin(self, name: str) -> Path:
        return postgres_binary(name)

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on this cluster as the user that owns it (pgserver runs as `pgserver` under root)."""
        user = self._server.system_user
        subprocess.run(
            [str(self.bin("pg_ctl")), "-D", str(self.pgdata), "-w", *args],
            check=True,
            capture_output=True,
            user=user,
            timeout=60,
            cwd="/",
        )

    def restart(self) -> None:
        """Restart the server in place (fast shutdown): every open connection is cut."""
        self.pg_ctl("-m", "fast", "-l", str(self.pgdata / "log"), "restart")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        """Start a stopped server again with the options pgserver used (socket only, no TCP)."""
        self.pg_ctl("-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self.pgdata / "log"), "start")

    def _ensure_database(self) -> None:
        conn = psycopg2.connect(self.admin_url())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        except psycopg2.errors.DuplicateDatabase:
            pass  # another svc process created it at the same moment
        finally:
            conn.close()


def _forget_dead_holders(pgserver_module, pgdata: Path) -> None:
    """Drop processes that died without releasing the cluster (kill -9, crash) from
    pgserver's holder list, so that the last live holder still stops the server."""
    holders = pgdata / ".handle_pids.json"
    if not holders.exists():
        return
    with pgserver_module.PostgresServer._lock:
        try:
            pids = json.loads(holders.read_text() or "[]")
        except ValueError:
            pids = []
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            holders.write_text(json.dumps(alive))


def database_url(settings: Settings) -> str:
    """The URL every component uses: `DATABASE_URL`, or the embedded cluster's (started if needed)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return EmbeddedPostgres(settings.pgdata).url


def postgres_binary(name: str) -> Path:
    """A PostgreSQL client program pgserver ships (psql, pg_dump, pg_restore): `svc psql`,
    `svc backup` and `svc restore` work without a system client."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH / name


def psql_binary() -> Path:
    return postgres_binary("psql")
