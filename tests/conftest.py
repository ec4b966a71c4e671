"""Test fixtures: a real PostgreSQL (embedded, or TEST_DATABASE_URL), one fresh database per test
cloned from a migrated template, and the app wired to it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
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


@dataclass
class Cluster:
    """The PostgreSQL server the tests run against."""

    admin_url: str
    embedded: EmbeddedPostgres | None
    copy_strategy: str = ""  # how CREATE DATABASE copies the template (PostgreSQL >= 15)

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
    yield found
    found.drop_database(TEMPLATE)
    if found.embedded is not None:
        found.embedded.stop()
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def database_url(cluster: Cluster) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    name = cluster.create_database()
    yield cluster.url(name)
    cluster.drop_database(name)


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
    """Start `uvicorn svc.api.app:create_app` with N workers on this test's database."""
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
            [sys.executable, "-m", "uvicorn", "svc.api.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--no-access-log",
             "--timeout-worker-healthcheck", "60"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent,
        )
        started.append(process)
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180  # a loaded 2-core machine can take this long to start workers
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/ready", timeout=1).status_code == 200:
                    return LiveServer(base_url, process)
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"uvicorn did not become ready; see {log.name}")

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


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
