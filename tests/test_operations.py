"""What an operator runs beside the service, as an operator runs it (`svc` processes on the embedded
default): secrets with several workers, key rotation with no restart, backup and restore."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import bearer, free_port
from tests.test_delivery import eventually
from tests.test_serve import ROOT, SUPERVISOR_SECONDS, env_for, listening_workers, stop, svc, wait_healthy

API = "/api/v1"


def run_svc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "svc.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


@dataclass
class Served:
    base: str
    process: subprocess.Popen
    headers: dict[str, str]
    env: dict[str, str]
    stderr: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base + API, headers=self.headers, timeout=30)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory for embedded data directories, outside pytest's basetemp: another pytest session
    starting resets that one's permissions to 0700, and the embedded server (run as the `pgserver`
    user under root) could no longer reach its files."""
    path = Path(tempfile.mkdtemp(prefix="svc-test-ops-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def serve_embedded(scratch: Path) -> Iterator:
    """Start `svc serve` on an embedded data directory; stopped before `scratch` is removed (its
    PostgreSQL would otherwise outlive its files)."""
    started: list[subprocess.Popen] = []

    def start(data_dir: Path, workers: int = 1, token: str | None = None) -> Served:
        port = free_port()
        env = env_for(data_dir)
        process = svc("serve", "--port", str(port), "--workers", str(workers), env=env)
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, process, within=180)
        if token is None:
            token = process.stdout.readline().strip()  # the bootstrap admin token, printed once
        return Served(base, process, bearer(token), env)

    yield start
    for process in started:
        if process.poll() is None:
            stop(process)


def create_secret_configuration(api: httpx.Client, password: str) -> dict:
    application = api.post("/applications", json={"name": "billing"})
    assert application.status_code == 201, application.text
    body = {"name": "db", "config": {"db": {"host": "pg", "password": password}}, "secret_paths": ["/db/password"]}
    created = api.post(f"/applications/{application.json()['id']}/configurations", json=body)
    assert created.status_code == 201, created.text
    return created.json()


def revealed_password(api: httpx.Client, configuration_id: str) -> tuple[int, object]:
    return revealed(api.get(f"/configurations/{configuration_id}", params={"reveal": "true"}))


def revealed(response: httpx.Response) -> tuple[int, object]:
    body = response.json()
    return response.status_code, (body.get("config") or {}).get("db", {}).get("password", body.get("detail"))


def test_two_workers_store_secrets_and_a_rotation_needs_no_restart_and_causes_no_error(serve_embedded, scratch):
    served = serve_embedded(scratch / "data", workers=2)
    workers = listening_workers(served.process, within=SUPERVISOR_SECONDS)  # both run before the key file changes
    key_file = scratch / "data" / "secret-keys"
    (old_key_id, old_key), = [line.split(":", 1) for line in key_file.read_text().split()]
    failures: list[str] = []
    reads: dict[int | None, list[int]] = {None: [], **{worker: [] for worker in workers}}  # statuses by worker
    finished = threading.Event()
    with served.client() as api:
        # Before, every write with secret_paths on a worker answered 503 "no secret key is configured".
        configuration_id = create_secret_configuration(api, "p-0")["id"]
        writer = (served, configuration_id, finished, failures, reads[None])
        loops = [threading.Thread(target=write_and_reveal, args=writer)]
        # One reader on each worker: the kernel alone could give all the connections to one.
        loops += [threading.Thread(target=reveal, args=(pinned_client(served, worker), configuration_id, finished,
                                                        failures, reads[worker]))
                  for worker in workers]
        for thread in loops:
            thread.start()

        def read_on_every_worker(more_than: dict[int, int]) -> bool:
            return all(len(reads[worker]) > more_than.get(worker, 0) + 10 for worker in workers)

        try:
            assert eventually(lambda: read_on_every_worker({}), within=60), "reads and writes not under way"
            rotated = run_svc("secrets", "rotate", "--batch-size", "1", env=served.env)
            when_rotated = {worker: len(reads[worker]) for worker in workers}
            assert eventually(lambda: read_on_every_worker(when_rotated), within=60), "a worker read nothing after"
        finally:
            finished.set()
            for thread in loops:
                thread.join(30)

    assert rotated.returncode == 0, rotated.stderr
    assert failures == [], failures[:5]
    (new_key_id, _), = [line.split(":", 1) for line in key_file.read_text().split()]
    assert new_key_id != old_key_id and f"retired from {key_file}: '{old_key_id}'" in rotated.stderr

    status = run_svc("secrets", "status", env=served.env)
    assert status.returncode == 0, status.stderr
    assert [line.split("\t")[0] for line in status.stdout.splitlines()] == [new_key_id]
    assert status.stdout.rstrip().endswith("held")

    _, err = stop(served.process)
    assert f"secret keys: {old_key_id} (the first encrypts) from key file {key_file}" in err
    assert old_key not in err
    assert err.index("serving on") > err.index("secret keys")


def pinned_client(served: Served, worker: int, tries: int = 100) -> httpx.Client:
    """A client whose keep-alive connection `worker` holds: the kernel gives each new connection to
    a worker by its address, so a few new connections find one."""
    for _ in range(tries):
        client = served.client()
        port = client_port(client.get(f"{served.base}/health"))
        if any(c.raddr and c.raddr.port == port for c in psutil.Process(worker).net_connections("tcp")):
            return client
        client.close()
    raise AssertionError(f"no connection reached worker {worker} in {tries} tries")


def client_port(response: httpx.Response) -> int:
    """The client's port of the connection that carried `response`."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def write_and_reveal(served: Served, configuration_id: str, finished: threading.Event, failures: list[str],
                     reads: list[int]) -> None:
    """New secret values written in a loop, each read back in clear."""
    with served.client() as api:
        n = 0
        while not finished.is_set():
            n += 1
            put = api.put(f"/configurations/{configuration_id}", json={"config": {"db": {"password": f"p-{n}"}}})
            status, password = revealed_password(api, configuration_id)
            reads.append(status)
            if put.status_code != 200 or status != 200 or password != f"p-{n}":
                failures.append(f"write {put.status_code}, then reveal: {status} {password}")


def reveal(api: httpx.Client, configuration_id: str, finished: threading.Event, failures: list[str],
           reads: list[int]) -> None:
    """The secret read in a loop over one connection (`api`'s, closed at the end), which must stay open."""
    port = None
    try:
        while not finished.is_set():
            response = api.get(f"/configurations/{configuration_id}", params={"reveal": "true"})
            status, password = revealed(response)
            reads.append(status)
            if status != 200 or not str(password).startswith("p-"):
                failures.append(f"reveal: {status} {password}")
            if port is not None and client_port(response) != port:
                failures.append("the reader's connection was closed: it may have moved to another worker")
            port = client_port(response)
    finally:
        api.close()


def service_state(api: httpx.Client, configuration_id: str, user_id: str) -> dict:
    """What a user of the service sees: a configuration in clear, its revisions, a document and its history."""
    def ok(response: httpx.Response) -> object:
        assert response.status_code == 200, response.text
        return response.json()

    return {
        "configuration": ok(api.get(f"/configurations/{configuration_id}", params={"reveal": "true"})),
        "revisions": ok(api.get(f"/configurations/{configuration_id}/revisions")),
        "document": ok(api.get(f"/users/{user_id}/claude-md")),
        "history": ok(api.get(f"/users/{user_id}/claude-md/history")),
    }


def test_backup_beside_a_running_service_restores_onto_a_new_data_directory(serve_embedded, scratch):
    served = serve_embedded(scratch / "first")
    with served.client() as api:
        configuration = create_secret_configuration(api, "s3cret")
        changed = api.put(f"/configurations/{configuration['id']}", json={"config": {"db": {"password": "s3cret-2"}}})
        assert changed.status_code == 200, changed.text
        user = api.post("/users", json={"email": "ada@example.com", "username": "ada"}).json()
        for content in ("# one\n", "# one\n\ntwo\n"):
            saved = api.put(f"/users/{user['id']}/claude-md", json={"content": content, "message": "edit"})
            assert saved.status_code == 200, saved.text
        before = service_state(api, configuration["id"], user["id"])

    backup = scratch / "svc.backup"
    made = run_svc("backup", str(backup), "--with-keys", env=served.env)  # online, beside the service
    assert made.returncode == 0, made.stderr
    assert "the backup holds the secret key file" in made.stderr
    with tarfile.open(backup) as archive:
        assert sorted(archive.getnames()) == ["content.bundle", "database.dump", "manifest.json", "secret-keys"]
        manifest = json.loads(archive.extractfile("manifest.json").read())
    key_id = (scratch / "first" / "secret-keys").read_text().split(":")[0]
    assert manifest["secret_key_ids"] == {key_id: {"configurations": 1, "revisions": 2}}
    assert manifest["migration"].endswith(".sql") and manifest["with_keys"] is True
    stop(served.process)

    second = scratch / "second"
    restored = run_svc("restore", str(backup), env=env_for(second))
    assert restored.returncode == 0, restored.stderr
    assert "checked 1 document(s): 0 problem(s)" in restored.stderr  # it ended by running `svc verify`

    again = run_svc("restore", str(backup), env=env_for(second))
    assert again.returncode == 1 and f"the data directory {second} is not empty" in again.stderr

    served_again = serve_embedded(second, token=served.headers["Authorization"].removeprefix("Bearer "))
    with served_again.client() as api:
        assert service_state(api, configuration["id"], user["id"]) == before


def test_restore_refuses_a_database_that_is_not_empty(settings, client, tmp_path):
    backup = tmp_path / "svc.backup"
    env = env_for(tmp_path / "data", DATABASE_URL=settings.database_url.get_secret_value())
    made = run_svc("backup", str(backup), env=env)
    assert made.returncode == 0, made.stderr
    assert run_svc("backup", str(backup), env=env).returncode == 1, "an existing file is not overwritten"

    refused = run_svc("restore", str(backup), env=env)  # the same, migrated, database
    assert refused.returncode == 1
    assert "the database of DATABASE_URL is not empty" in refused.stderr and "createdb" in refused.stderr
