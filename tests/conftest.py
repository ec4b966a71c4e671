"""Test fixtures: a real PostgreSQL (embedded, or TEST_DATABASE_URL), one empty database per test
(cloned from a migrated template, or emptied after an earlier test), and the app wired to it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg2
import psycopg2.extensions
import pytest
import uvicorn
from fastapi.testclient import TestClient

from svc.api.app import create_app
from svc.config import Settings
from svc.embedded import EmbeddedPostgres
from svc.ids import new_id
from svc.migrate import Runner
from svc.services.auth import Principal
from svc.services.container import Services

T = TypeVar("T")

# One per pytest-xdist worker: with TEST_DATABASE_URL, the workers share one server.
TEMPLATE = f"svc_test_template{os.environ.get('PYTEST_XDIST_WORKER', '')}"
# The newest catalog row of a database: DDL, grants and settings write catalog rows (VACUUM and
# ANALYZE update theirs in place), so a test database whose value is still the template's has
# the template's tables, and emptying it gives the next test what a fresh copy would.
CATALOG_HORIZON = """
SELECT max(xmin::text::bigint) FROM (
    SELECT xmin FROM pg_class UNION ALL SELECT xmin FROM pg_attribute UNION ALL SELECT xmin FROM pg_attrdef
    UNION ALL SELECT xmin FROM pg_constraint UNION ALL SELECT xmin FROM pg_index UNION ALL SELECT xmin FROM pg_type
    UNION ALL SELECT xmin FROM pg_proc UNION ALL SELECT xmin FROM pg_trigger UNION ALL SELECT xmin FROM pg_namespace
    UNION ALL SELECT xmin FROM pg_extension UNION ALL SELECT xmin FROM pg_policy UNION ALL SELECT xmin FROM pg_rewrite
    UNION ALL SELECT xmin FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
) AS catalog
"""
# Every row of the application's tables (foreign keys unchecked: no order needed) and the
# sequences restarted; says how many rows it deleted.
EMPTY_DATABASE = """
DO $$
DECLARE
    application_table record;
    deleted bigint := 0;
    affected bigint;
BEGIN
    SET LOCAL session_replication_role = replica;
    FOR application_table IN
        SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
    LOOP
        EXECUTE format('DELETE FROM %I.%I', application_table.schemaname, application_table.tablename);
        GET DIAGNOSTICS affected = ROW_COUNT;
        deleted := deleted + affected;
    END LOOP;
    PERFORM setval(format('%I.%I', schemaname, sequencename), start_value, false) FROM pg_sequences
        WHERE schemaname = 'public';
    RAISE NOTICE 'deleted %', deleted;
END $$
"""
# A test that left more rows than this gets a fresh database next: its dead rows would slow the next one.
MAX_ROWS_EMPTIED = 10_000


@dataclass
class Cluster:
    """The PostgreSQL server the tests run against."""

    admin_url: str
    embedded: EmbeddedPostgres | None
    copy_strategy: str = ""  # how CREATE DATABASE copies the template (PostgreSQL >= 15)
    template_horizon: int = 0  # CATALOG_HORIZON of the template
    spare: list[str] = field(default_factory=list)  # test databases emptied for the next tests

    def url(self, dbname: str) -> str:
        return psycopg2.extensions.make_dsn(self.admin_url, dbname=dbname)

    def execute(self, sql: str) -> None:
        conn = psycopg2.connect(self.admin_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create_database(self, template: str | None = TEMPLATE) -> str:
        name = f"svc_test_{new_id().lower()}"
        self.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}" {self.copy_strategy}' if template else ""))
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def lend_database(self) -> str:
        """An empty, migrated database for one test: an emptied one when there is one (a
        copy of the template costs ~100 ms of PostgreSQL's CPU; emptying one, ~20 ms)."""
        return self.spare.pop() if self.spare else self.create_database()

    def take_back(self, name: str) -> None:
        """After the test: its database emptied for the next test, or dropped when it cannot be."""
        if self._emptied(name):
            self.spare.append(name)
        else:
            self.drop_database(name)

    def _emptied(self, name: str) -> bool:
        """Disconnect everyone else from the database and delete its rows, if its catalog is still
        the template's and the test did not fill it; False when it cannot be reused."""
        try:
            conn = psycopg2.connect(self.url(name))
        except psycopg2.Error:
            return False
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT bool_and(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                if cur.fetchone()[0] is False:
                    return False  # a connection did not go away
                cur.execute(CATALOG_HORIZON)
                if cur.fetchone()[0] != self.template_horizon:
                    return False
                cur.execute(EMPTY_DATABASE)
            deleted = int(conn.notices[-1].rsplit(" ", 1)[1])
            return deleted <= MAX_ROWS_EMPTIED
        except psycopg2.Error:
            return False
        finally:
            conn.close()


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    external = os.environ.get("TEST_DATABASE_URL")
    # Not under pytest's basetemp: pytest deletes old basetemps when another session starts,
    # which would pull the data directory from under a server that is still running.
    scratch = Path(tempfile.mkdtemp(prefix="svc-test-pg-"))
    if external:
        found = Cluster(admin_url=external, embedded=None)
    else:
        embedded = EmbeddedPostgres(scratch / "data")
        # A scratch cluster that no test expects to survive a machine crash: without flushes to
        # disk, a database copied file by file from the template takes a third of the time.
        found = Cluster(admin_url=embedded.admin_url(), embedded=embedded, copy_strategy="STRATEGY FILE_COPY")
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            found.execute(f"ALTER SYSTEM SET {setting} = off")
        found.execute("SELECT pg_reload_conf()")
    found.drop_database(TEMPLATE)
    found.execute(f'CREATE DATABASE "{TEMPLATE}"')
    Runner(found.url(TEMPLATE), progress=lambda line: None).up()
    found.template_horizon = _catalog_horizon(found.url(TEMPLATE))
    yield found
    for name in found.spare:
        found.drop_database(name)
    found.drop_database(TEMPLATE)
    if found.embedded is not None:
        found.embedded.stop()
    shutil.rmtree(scratch, ignore_errors=True)


def _catalog_horizon(url: str) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(CATALOG_HORIZON)
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def database_url(cluster: Cluster) -> Iterator[str]:
    """An empty, migrated database for this test alone."""
    name = cluster.lend_database()
    yield cluster.url(name)
    cluster.take_back(name)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path / "data",
        pool_min_size=1,
        pool_max_size=8,
        pool_timeout=5.0,
        access_log=False,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def services(client: TestClient) -> Services:
    return client.app.state.services


def on_app_loop(client: TestClient, call: Callable[[], Awaitable[T]]) -> T:
    """Await `call()` on the application's event loop, where its asynchronous services belong
    (the configurations' write batches, the statement pool), from a test's thread."""
    return client.portal.call(call)


MakeToken = Callable[..., str]


@pytest.fixture
def make_token(services: Services) -> MakeToken:
    """Create a token directly (as an operator would with `svc token create`); return its secret."""

    def make(role: str = "admin", *, name: str | None = None, **scope: object) -> str:
        created = services.tokens.create(Principal.operator(), name=name or f"test-{role}", role=role, **scope)
        return created.secret

    return make


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def admin(make_token: MakeToken) -> dict[str, str]:
    """Headers of an admin caller."""
    return bearer(make_token("admin"))


# --- a real uvicorn, for multi-worker and load tests --------------------------------------


def answers_within(url: str, process: subprocess.Popen, within: float) -> bool:
    """Whether `url` answers 200 within `within` seconds while `process` (its server) runs. One
    client for every poll: each new httpx client loads the CA bundle, ~50 ms of CPU."""
    deadline = time.monotonic() + within
    with httpx.Client(timeout=1) as http:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if http.get(url).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen | None = None  # None: served by a thread of the test's process

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, **kwargs)


@pytest.fixture
def live_server(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Serve the app with N workers on this test's database, as `svc serve` does (its supervisor,
    a socket per worker), in processes of their own: `live_server(workers, **environment)`."""
    started: list[subprocess.Popen] = []

    def start(workers: int = 2, **env_overrides: str) -> LiveServer:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url.get_secret_value(),
            "SVC_DATA_DIR": str(settings.data_dir),
            "SVC_ACCESS_LOG": "false",
            **env_overrides,
        }
        log = open(tmp_path / f"uvicorn-{port}.log", "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.serve_app", str(port), str(workers)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,  # its own process group: the workers go with it, even when it is killed
        )
        started.append(process)
        base_url = f"http://127.0.0.1:{port}"
        # A loaded 2-core machine can take this long to start workers.
        if answers_within(f"{base_url}/ready", process, within=180):
            return LiveServer(base_url, process)
        raise RuntimeError(f"uvicorn did not become ready; see {log.name}")

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # none left: they all stopped
            os.killpg(process.pid, signal.SIGKILL)  # the server if it hung, workers it left behind
        process.wait()


@pytest.fixture
def served_app(settings: Settings) -> Iterator[Callable[..., LiveServer]]:
    """Serve the app on this test's database over real HTTP, by uvicorn in a thread of the test's
    process: `served_app(**changes)`, with settings changed by field name (`pool_max_size=4`). For
    clients that need a socket (git, raw HTTP) but not several workers: it starts in a fraction of
    a second, where `live_server` imports the service in new processes."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(**changes: object) -> LiveServer:
        server = uvicorn.Server(uvicorn.Config(
            create_app(settings.model_copy(update=changes)), host="127.0.0.1", port=free_port(),
            access_log=False, log_level="warning",
        ))
        thread = threading.Thread(target=server.run, name="served-app", daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.01)
        return LiveServer(f"http://127.0.0.1:{server.config.port}")

    yield serve
    for server, thread in running:
        server.should_exit = True
        thread.join(30)
