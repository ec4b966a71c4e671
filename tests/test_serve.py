"""`svc serve` as an operator runs it: embedded PostgreSQL, bootstrap token, clean stop."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from svc.serving import WORKER_HEALTHCHECK_SECONDS
from tests.conftest import answers_within, bearer, free_port

ROOT = Path(__file__).resolve().parent.parent


def svc(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "svc.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return env | {"SVC_DATA_DIR": str(data_dir), "SVC_ACCESS_LOG": "false"} | extra


def wait_healthy(base: str, process: subprocess.Popen, within: float) -> float:
    started = time.monotonic()
    if answers_within(f"{base}/health", process, within):
        return time.monotonic() - started
    assert process.poll() is None, process.stderr.read()
    raise AssertionError(f"/health did not answer within {within} s")


# How long a worker may take to answer the supervisor's health check (60 s for `svc serve`), with
# room: on a loaded machine (a CI runner) two starting workers have taken over 30 s to answer,
# and a starting worker takes as long to act on the SIGTERM that stops it.
SUPERVISOR_SECONDS = WORKER_HEALTHCHECK_SECONDS + 30


def stop(process: subprocess.Popen) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=SUPERVISOR_SECONDS)
    return out, err


def postgres_running(pgdata: Path) -> bool:
    return any(
        p.info["name"] == "postgres" and str(pgdata) in " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(attrs=["name", "cmdline"])
    )


def test_embedded_serve_bootstraps_once_and_stops_postgres(tmp_path):
    data_dir = tmp_path / "svc-data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = env_for(data_dir)

    first = svc("serve", "--port", str(port), env=env)
    try:
        wait_healthy(base, first, within=120)
        status = subprocess.run([sys.executable, "-m", "svc.cli", "migrate", "status"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert "0 pending" in status.stderr
    finally:
        out, err = stop(first)
    token = out.strip()
    assert token.startswith("svc_") and "\n" not in token, (out, err)
    assert token not in err
    assert not postgres_running(data_dir / "postgres"), "embedded PostgreSQL left running"

    second = svc("serve", "--port", str(port), env=env)
    try:
        wait_healthy(base, second, within=120)
        listed = httpx.get(f"{base}/api/v1/tokens", headers=bearer(token))
        assert listed.status_code == 200
        assert [t["name"] for t in listed.json()["items"]] == ["bootstrap-admin"]
    finally:
        out, _ = stop(second)
    assert out.strip() == "", "the bootstrap token must be printed only once"


def test_serve_refuses_to_start_with_pending_migrations(cluster, tmp_path):
    name = cluster.create_database(template=None)
    try:
        env = env_for(tmp_path, DATABASE_URL=cluster.url(name))
        process = svc("serve", "--port", str(free_port()), env=env)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 1
        assert "svc migrate" in err and "pending" in err
        assert out == ""
    finally:
        cluster.drop_database(name)


def test_token_create_prints_only_the_secret(settings, client):
    env = env_for(settings.data_dir, DATABASE_URL=settings.database_url.get_secret_value())
    created = subprocess.run([sys.executable, "-m", "svc.cli", "token", "create", "--role", "service",
                              "--name", "deployer", "--read-only"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("svc_") and "\n" not in secret
    assert client.get("/api/v1/tokens", headers=bearer(secret)).status_code == 403  # a service token

    listed = subprocess.run([sys.executable, "-m", "svc.cli", "token", "list"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    line = next(line for line in listed.stdout.splitlines() if "deployer" in line)
    token_id = line.split()[0]
    assert "read-only" in line and secret not in listed.stdout

    revoked = subprocess.run([sys.executable, "-m", "svc.cli", "token", "revoke", token_id], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0 and revoked.stdout == ""
    assert client.get("/api/v1/tokens", headers=bearer(secret)).status_code == 401

    bad = subprocess.run([sys.executable, "-m", "svc.cli", "token", "create", "--role", "user", "--name", "x"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "needs user_id" in bad.stderr and bad.stdout == ""


def test_psql_runs_against_the_configured_database(settings, client):
    env = env_for(settings.data_dir, DATABASE_URL=settings.database_url.get_secret_value())
    result = subprocess.run([sys.executable, "-m", "svc.cli", "psql", "-tAc", "SELECT count(*) FROM api_tokens"],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


# --- several workers: each listens on its own socket (svc/serving.py) ---------------------


def serve_workers(settings, tmp_path: Path, port: int, workers: int = 2) -> subprocess.Popen:
    env = env_for(tmp_path / "svc-data", DATABASE_URL=settings.database_url.get_secret_value())
    return svc("serve", "--port", str(port), "--workers", str(workers), env=env)


def connections_by_worker(server: subprocess.Popen, port: int) -> dict[int, int]:
    """How many connections to `port` each worker process holds."""
    held = {}
    for child in psutil.Process(server.pid).children():
        try:
            held[child.pid] = sum(1 for c in child.net_connections("tcp")
                                  if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED)
        except psutil.NoSuchProcess:
            continue
    return {pid: n for pid, n in held.items() if n or _is_worker(pid)}


def _is_worker(pid: int) -> bool:
    try:
        return "multiprocessing.spawn" in " ".join(psutil.Process(pid).cmdline()) and any(
            c.status == psutil.CONN_LISTEN for c in psutil.Process(pid).net_connections("tcp"))
    except psutil.NoSuchProcess:
        return False


def listening_workers(server: subprocess.Popen, count: int = 2, within: float = 30) -> list[int]:
    """The workers' pids, once `count` of them listen (the supervisor's socket does not)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        workers = [child.pid for child in psutil.Process(server.pid).children() if _is_worker(child.pid)]
        if len(workers) == count:
            return workers
        time.sleep(0.2)
    raise AssertionError(f"{count} workers did not listen within {within} s")


def open_served_connections(port: int, count: int) -> list[socket.socket]:
    """`count` keep-alive connections opened at once, as a load balancer or wrk opens its pool
    (connects started together, not one after the other), each answered once: a worker took it."""
    connections = [socket.socket() for _ in range(count)]
    for conn in connections:
        conn.setblocking(False)
        conn.connect_ex(("127.0.0.1", port))
    for conn in connections:
        select.select([], [conn], [], 10)
        conn.setblocking(True)
        conn.settimeout(10)
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: svc\r\n\r\n")
    for conn in connections:
        assert conn.recv(65536).startswith(b"HTTP/1.1 200"), "a connection was not answered"
    return connections


def test_keep_alive_connections_opened_together_reach_every_worker(settings, tmp_path):
    # One shared socket lets the first worker to wake accept all of them (measured: 16/0 and 15/1
    # splits over two workers); with a socket per worker the kernel spreads them (all 16 on one
    # of two workers: probability 2^-15).
    port = free_port()
    server = serve_workers(settings, tmp_path, port)
    connections = []
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server, within=SUPERVISOR_SECONDS)
        listening_workers(server)
        connections = open_served_connections(port, 16)
        held = connections_by_worker(server, port)
        assert sum(held.values()) == 16, held
        assert len(held) == 2 and all(held.values()), f"connections per worker: {held}"
    finally:
        for conn in connections:
            conn.close()
        stop(server)


def test_a_killed_worker_is_replaced_by_one_listening_on_its_own_socket(settings, tmp_path):
    port = free_port()
    server = serve_workers(settings, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    connections = []
    try:
        wait_healthy(base, server, within=SUPERVISOR_SECONDS)
        workers = listening_workers(server)
        os.kill(workers[0], signal.SIGKILL)
        replacement = replaced(server, workers[0], beside=workers[1], within=SUPERVISOR_SECONDS)
        connections = open_served_connections(port, 16)
        held = connections_by_worker(server, port)
        assert held.get(replacement, 0) > 0 and held.get(workers[1], 0) > 0, f"connections per worker: {held}"
        with silent(workers[1]):
            os.kill(replacement, signal.SIGKILL)
            # uvicorn's supervisor waited for the silent worker's answer first, a minute; a worker
            # starting on a loaded machine has taken over 30 s.
            second = replaced(server, replacement, beside=workers[1], within=WORKER_HEALTHCHECK_SECONDS - 10)
            assert stops_promptly(server, other=second)
    finally:
        for conn in connections:
            conn.close()
        stop(server)


def replaced(server: subprocess.Popen, killed: int, beside: int, within: float) -> int:
    """The worker started in the place of `killed`, once it listens beside `beside`."""
    deadline = time.monotonic() + within
    while not (new := set(listening_workers(server, within=within)) - {killed, beside}):
        assert time.monotonic() < deadline, f"the killed worker was not replaced within {within} s"
        time.sleep(0.2)
    (replacement,) = new
    return replacement


@contextmanager
def silent(worker: int) -> Iterator[None]:
    """A worker that does not answer the supervisor's health check (stopped here; slow to start on
    a loaded host, or hung in life), once the supervisor has started asking it."""
    os.kill(worker, signal.SIGSTOP)
    try:
        time.sleep(1.5)
        yield
    finally:
        os.kill(worker, signal.SIGCONT)


def stops_promptly(server: subprocess.Popen, other: int) -> bool:
    """SIGTERM reaches the workers while one is silent: uvicorn's own supervisor answered only
    after the health check's timeout, a minute."""
    server.send_signal(signal.SIGTERM)
    try:
        psutil.Process(other).wait(timeout=15)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_stops_with_a_failure_status_when_the_application_cannot_start(settings, tmp_path, workers):
    # A worker whose application fails to start would fail the same way again: the supervisor
    # stops rather than start it forever, and says so in its exit status (systemd and the like).
    data_dir = tmp_path / "svc-data"
    data_dir.mkdir()
    (data_dir / "content.git").write_text("a file where the content repository belongs")
    server = serve_workers(settings, tmp_path, free_port(), workers)
    out, err = server.communicate(timeout=SUPERVISOR_SECONDS)
    assert server.returncode == 3, err
    assert "NotADirectoryError" in err  # the worker's own error
    assert "stopped: the application failed to start" in err


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "reuse-port"])
def test_serve_refuses_an_address_something_else_listens_on(settings, tmp_path, reuse_port):
    # A forgotten `svc serve` listens with SO_REUSEPORT: joining it would split the traffic
    # with it silently, so that is refused like any other listener.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        server = serve_workers(settings, tmp_path, port)
        out, err = server.communicate(timeout=180)
    assert server.returncode == 2, err
    assert f"refusing to start: cannot listen on 127.0.0.1:{port}: Address already in use" in err
    assert "serving" not in err, "nothing was served"
