"""The processes a benchmark run starts: `svc serve`, the trivial baseline server, and cleanup.

Every process is started in its own session so that it (and the uvicorn workers it
spawns) can be stopped by its process group, and every one is registered with the
`Processes` registry that the runner closes in a `finally`, whatever happened.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from svc.db import Database
from svc.embedded import EmbeddedPostgres
from svc.migrate import Runner

ROOT = Path(__file__).resolve().parents[2]


def say(message: str) -> None:
    """Progress goes to stderr; stdout carries only the final table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A started HTTP server process (the supervisor; workers are its children)."""

    name: str
    process: subprocess.Popen
    base_url: str
    log_path: Path
    token: str | None = None

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes (spawned children), or the supervisor itself with one worker."""
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        workers = []
        for child in children:
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    workers.append(child.pid)
            except psutil.NoSuchProcess:
                continue
        return workers or [self.process.pid]

    def cpu_seconds(self) -> float:
        """CPU time used so far by the workers, with the subprocesses they waited for (git)."""
        return sum(_process_cpu(pid) for pid in self.worker_pids())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Processes:
    """Everything this run started; `close()` stops all of it."""

    servers: list[Server] = field(default_factory=list)
    pgdata: Path | None = None

    def start_service(self, data_dir: Path, *, host: str, workers: int, log_dir: Path) -> Server:
        """`svc serve` on embedded PostgreSQL in `data_dir`; reads the bootstrap token if one is printed."""
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["SVC_DATA_DIR"] = str(data_dir)
        self.pgdata = data_dir.resolve() / "postgres"
        port = free_port()
        command = [sys.executable, "-m", "svc.cli", "serve", "--host", host, "--port", str(port),
                   "--workers", str(workers)]
        server = self._start("svc serve", command, env, host, port, log_dir / "service.log", read_token=True)
        return server

    def start_trivial(self, *, host: str, workers: int, log_dir: Path) -> Server:
        port = free_port()
        command = [sys.executable, "-m", "tests.bench.trivial", "--host", host, "--port", str(port),
                   "--workers", str(workers)]
        return self._start("trivial", command, dict(os.environ), host, port, log_dir / "trivial.log",
                           read_token=False, ready_path="/trivial")

    def _start(self, name: str, command: list[str], env: dict[str, str], host: str, port: int, log_path: Path,
               *, read_token: bool, ready_path: str = "/ready") -> Server:
        log = open(log_path, "ab")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
                                   start_new_session=True)
        log.close()
        server = Server(name, process, f"http://{host}:{port}", log_path)
        self.servers.append(server)
        lines: list[str] = []
        threading.Thread(target=_drain, args=(process.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
            try:
                if httpx.get(server.base_url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{name} did not answer {ready_path} within 120 s:\n{server.log_tail()}")
        if read_token:
            # The bootstrap token is printed before uvicorn starts, so it is there once /ready answers.
            time.sleep(0.2)
            tokens = [line.strip() for line in lines if line.strip().startswith("svc_")]
            server.token = tokens[0] if tokens else None
        say(f"{name} ready on {server.base_url} (workers: {server.worker_pids()})")
        return server

    def stop(self, server: Server) -> None:
        """SIGTERM (graceful: `svc serve` stops its embedded PostgreSQL), SIGKILL of the group after 30 s."""
        if server in self.servers:
            self.servers.remove(server)
        process = server.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                say(f"{server.name} did not stop within 30 s; killing its process group")
        try:
            os.killpg(process.pid, signal.SIGKILL)  # leftover workers of this server's own session
        except ProcessLookupError:
            pass
        process.wait(10)

    def close(self) -> None:
        for server in list(reversed(self.servers)):
            try:
                self.stop(server)
            except Exception as exc:  # keep stopping the others
                say(f"could not stop {server.name}: {exc}")
        if self.pgdata is not None:
            stop_postgres_if_running(self.pgdata)


def _drain(stream, lines: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        lines.append(raw.decode(errors="replace"))


def postmaster(pgdata: Path):
    """pgserver's view of the running cluster (socket directory, pid), or None when stopped.

    Read from postmaster.pid, without registering this process as a holder of the cluster:
    `svc serve` stays the one that stops it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import PostmasterInfo
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):  # postmaster.pid being written or removed
        return None
    if info is None or not info.is_running():
        return None
    return info


def _process_cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system + times.children_user + times.children_system


def postgres_cpu_seconds(pgdata: Path) -> float:
    """CPU time of the whole PostgreSQL server: the postmaster with the backends it reaped,
    plus the live backends. Differences of two readings are the server's work in between."""
    info = postmaster(pgdata)
    if info is None:
        return 0.0
    total = _process_cpu(info.pid)
    try:
        children = psutil.Process(info.pid).children()
    except psutil.NoSuchProcess:
        return total
    for child in children:
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def backend_count(pgdata: Path) -> int:
    """How many processes the server runs now (its backends and its own)."""
    info = postmaster(pgdata)
    try:
        return len(psutil.Process(info.pid).children()) if info is not None else 0
    except psutil.NoSuchProcess:
        return 0


def settled_backends(pgdata: Path, count: int, within: float = 2.0) -> None:
    """Wait until the server runs no more than `count` processes again: a backend that exits
    while `postgres_cpu_seconds` reads is counted neither live nor reaped."""
    deadline = time.monotonic() + within
    while backend_count(pgdata) > count and time.monotonic() < deadline:
        time.sleep(0.02)


def database_url(pgdata: Path, database: str) -> str:
    info = postmaster(pgdata)
    if info is None:
        raise RuntimeError(f"the embedded PostgreSQL in {pgdata} is not running")
    return info.get_uri(database=database)


def postgres_bin(name: str) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH / name


@contextmanager
def scratch_database(*, min_size: int, max_size: int) -> Iterator[tuple[Path, str, Database]]:
    """A temporary directory holding a migrated embedded PostgreSQL, and a pool on it: (the
    directory, the database URL, the pool). The pool is closed, the server stopped and the
    directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="svc-bench-") as scratch:
        root = Path(scratch)
        postgres = EmbeddedPostgres(root / "postgres")
        try:
            Runner(postgres.url, progress=lambda line: None).up()
            db = Database(postgres.url, min_size=min_size, max_size=max_size)
            try:
                yield root, postgres.url, db
            finally:
                db.close()
        finally:
            postgres.stop()


def stop_postgres_if_running(pgdata: Path) -> None:
    """The safety net: `svc serve` stops its server on SIGTERM, but not when it was killed."""
    if postmaster(pgdata) is None:
        return
    say(f"embedded PostgreSQL in {pgdata} still running; stopping it")
    user = "pgserver" if os.geteuid() == 0 else None
    subprocess.run([str(postgres_bin("pg_ctl")), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
                   user=user, cwd="/", capture_output=True, timeout=60)
