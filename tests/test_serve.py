"""`svc serve` as an operator runs it: embedded PostgreSQL, bootstrap token, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import bearer, free_port

ROOT = Path(__file__).resolve().parent.parent


def svc(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "svc.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return env | {"SVC_DATA_DIR": str(data_dir), "SVC_ACCESS_LOG": "false"} | extra


def wait_healthy(base: str, process: subprocess.Popen, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.1)
    raise AssertionError(f"/health did not answer within {within} s")


def stop(process: subprocess.Popen) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
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
        wait_healthy(base, first, within=15)
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
        wait_healthy(base, second, within=15)
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
