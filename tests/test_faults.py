"""Faults under load: PostgreSQL stopped and started again, workers killed with SIGKILL in the
middle of writes. Clients get answers they can act on (2xx, or 503 problem+json; a cut
connection only when its worker was killed), the service heals without a restart, and
every write a client was told succeeded is stored.

`SVC_LONG_TESTS=1` runs more outages and more kills:

    SVC_LONG_TESTS=1 uv run pytest tests/test_faults.py -s
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.claude_md_helpers import API, PROBLEM, create_user, git
from tests.configuration_helpers import create_application, create_configuration
from tests.fault_helpers import (
    LONG,
    Load,
    acknowledged_after,
    assert_acknowledged_writes_are_stored,
    configuration_writer,
    document_writer,
    reader,
    summary,
    worker_pids,
)

OUTAGES = 4 if LONG else 1
OUTAGE_SECONDS = 2.0
KILLS = 60 if LONG else 3
# Small on purpose: a request must not wait longer than these while PostgreSQL is away.
POOL_TIMEOUT = 1.0
CONNECT_TIMEOUT = 1
WRITERS = 3


def _writers(client, admin) -> list:
    """Jobs writing to configurations and claude.md documents, one resource per thread."""
    application = create_application(client, admin, "faults")
    jobs = []
    for writer in range(WRITERS):
        configuration = create_configuration(client, admin, application["id"], f"c{writer}", {"writer": writer})
        jobs.append(configuration_writer(configuration["id"], writer))
        jobs.append(document_writer(create_user(client, admin, f"writer{writer}")["id"], writer))
    reads = [reader(f"{API}/applications/{application['id']}/configurations"), reader(f"{API}/resolve/faults/c0")]
    return jobs + reads


def test_database_outage_under_load(cluster, client, admin, live_server, settings):
    if cluster.embedded is None:
        pytest.skip("stopping PostgreSQL needs the embedded server (TEST_DATABASE_URL is set)")
    jobs = _writers(client, admin)
    server = live_server(
        workers=2, SVC_POOL_TIMEOUT=str(POOL_TIMEOUT), SVC_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT), SVC_POOL_MAX_SIZE="4"
    )
    workers = worker_pids(server.process.pid)
    outages = []
    with Load(server.base_url, admin, jobs) as load:
        load.wait_for(acknowledged_after(0, count=10))
        for _ in range(OUTAGES):
            down = time.monotonic()
            cluster.embedded.stop()
            time.sleep(OUTAGE_SECONDS)
            cluster.embedded.start()
            up = time.monotonic()
            outages.append((down, up))
            load.wait_for(acknowledged_after(up, count=10))
    answers = load.answers

    assert worker_pids(server.process.pid) == workers  # healed without restarting a worker
    assert all(a.status is not None for a in answers), "a request got no answer at all"
    statuses = {a.status for a in answers}
    assert statuses <= {200, 503}, summary(answers)
    unavailable = [a for a in answers if a.status == 503]
    assert unavailable, "no request noticed the outage"
    assert all(a.content_type == PROBLEM and "unavailable" in a.body["detail"] for a in unavailable)
    # Nobody waits much longer than the pool and connect timeouts (the client gave up at 15 s).
    slowest = max(a.elapsed for a in answers)
    assert slowest < POOL_TIMEOUT + CONNECT_TIMEOUT + 3, f"a request took {slowest:.1f} s"

    figures = assert_acknowledged_writes_are_stored(settings, answers)
    writes = [a for a in answers if a.kind != "read"]
    print(
        f"\noutage: {len(answers)} requests ({len(writes)} writes), {len(outages)} PostgreSQL stop(s) of "
        f"{OUTAGE_SECONDS:g} s, answers {summary(answers)}, slowest {slowest:.2f} s; "
        f"{figures['acknowledged']} writes acknowledged, {figures['found']} found afterwards"
    )


def test_workers_killed_during_writes(client, admin, live_server, settings):
    jobs = _writers(client, admin)
    server = live_server(workers=2)
    victims: list[float] = []
    with Load(server.base_url, admin, jobs) as load:
        while len(victims) < KILLS:
            # Each kill lands while writes flow: some succeeded since the last one.
            load.wait_for(acknowledged_after(victims[-1] if victims else 0, count=2))
            time.sleep(random.uniform(0, 0.2))
            serving = worker_pids(server.process.pid, started_before=time.time() - 5)
            if serving:
                os.kill(random.choice(sorted(serving)), signal.SIGKILL)
                victims.append(time.monotonic())
        load.wait_for(acknowledged_after(victims[-1], count=10))
    answers = load.answers

    # A request whose worker died gets no answer; every answer is a success or a 503.
    assert {a.status for a in answers} <= {200, 503, None}, summary(answers)

    before = _verify(settings)
    assert before.returncode in (0, 1) and "document(s)" in before.stderr, before.stderr
    # What a kill may leave behind: a commit no client was told about (the worker died between
    # the git write and the database commit), or a ref lock. Never a version whose content is lost.
    assert {line.split("\t")[1] for line in before.stdout.splitlines()} <= {"unacknowledged_commit", "stale_lock"}
    repaired = _verify(settings, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    after = _verify(settings)
    assert (after.returncode, after.stdout) == (0, "")
    git(settings, "fsck", "--strict", "--no-dangling")

    figures = assert_acknowledged_writes_are_stored(settings, answers)
    writes = [a for a in answers if a.kind != "read"]
    print(
        f"\ncrashes: {len(victims)} workers killed with SIGKILL during {len(answers)} requests "
        f"({len(writes)} writes), answers {summary(answers)}; svc verify found {len(before.stdout.splitlines())} "
        f"problem(s), --repair mended them; {figures['acknowledged']} writes acknowledged, "
        f"{figures['found']} found afterwards"
    )


def _verify(settings, *args: str) -> subprocess.CompletedProcess:
    """`svc verify` as an operator runs it, against the test's database and data directory."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "SVC_DATA_DIR": str(settings.data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "svc.cli", "verify", *args],
        env=env, capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent,
    )
