"""Load and bookkeeping shared by the fault tests: threads writing and reading through a live
server while something breaks, a record of every answer, and the check that every write a
client was told succeeded is stored."""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import psutil

from tests.claude_md_helpers import API, git, sql

LONG = os.environ.get("SVC_LONG_TESTS") == "1"


@dataclass(frozen=True)
class Answer:
    """One request of the load: what it wrote (if anything), and what came back."""

    kind: str  # "configuration", "document" or "read"
    target: str  # the configuration id or the user id written to
    sent: Any
    started: float
    elapsed: float
    status: int | None  # None: no answer (the connection was cut)
    content_type: str | None = None
    body: Any = None

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.kind != "read"


@dataclass(frozen=True)
class Request:
    kind: str
    target: str
    sent: Any
    method: str
    path: str
    body: Any = None


Job = Callable[[int], Request]  # the n-th request of a thread


def configuration_writer(configuration_id: str, writer: int) -> Job:
    """PUT a configuration over and over, each time with JSON no other request sends."""

    def job(n: int) -> Request:
        sent = {"writer": writer, "n": n}
        return Request("configuration", configuration_id, sent, "PUT", f"{API}/configurations/{configuration_id}",
                       {"config": sent})

    return job


def document_writer(user_id: str, writer: int) -> Job:
    """Save a user's claude.md over and over, each time with content no other request sends."""

    def job(n: int) -> Request:
        sent = f"# writer {writer}, save {n}\n"
        return Request("document", user_id, sent, "PUT", f"{API}/users/{user_id}/claude-md", {"content": sent})

    return job


def reader(path: str) -> Job:
    return lambda n: Request("read", path, None, "GET", path)


@dataclass
class Load:
    """Runs each job in its own thread, again and again, until stopped."""

    base_url: str
    headers: dict[str, str]
    jobs: list[Job]
    timeout: float = 15.0
    answers: list[Answer] = field(default_factory=list)
    # One TLS context for every client (unused: plain HTTP): building one loads the CA bundle,
    # ~50 ms of CPU, and a client is replaced after each cut connection.
    _tls: ssl.SSLContext = field(default_factory=httpx.create_ssl_context)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for job in self.jobs:
            thread = threading.Thread(target=self._run, args=(job,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _run(self, job: Job) -> None:
        n = 0
        http = self._client()
        while not self._stop.is_set():
            n += 1
            request = job(n)
            started = time.monotonic()
            try:
                response = http.request(request.method, request.path, json=request.body)
            except httpx.HTTPError:
                response = None
                http.close()  # its connection may lead to a killed worker
                http = self._client()
            elapsed = time.monotonic() - started
            answer = Answer(request.kind, request.target, request.sent, started, elapsed, None)
            if response is not None:
                content_type = response.headers.get("content-type", "")
                body = response.json() if content_type.endswith("json") else None
                answer = replace(answer, status=response.status_code, content_type=content_type, body=body)
            self.answers.append(answer)
            if not answer.status or answer.status >= 500:
                time.sleep(0.05)  # as a client told "retry shortly" would
        http.close()

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout, verify=self._tls)

    def wait_for(self, condition: Callable[[list[Answer]], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition(list(self.answers)):
            assert time.monotonic() < deadline, f"the load did not get there: {summary(self.answers)}"
            time.sleep(0.05)


def acknowledged_after(moment: float, count: int = 1) -> Callable[[list[Answer]], bool]:
    return lambda answers: sum(a.acknowledged and a.started > moment for a in answers) >= count


def summary(answers: list[Answer]) -> str:
    """Answers by status, e.g. "200: 123, 503: 45, no answer: 6"."""
    counts = Counter(a.status for a in answers)
    parts = [f"{status}: {counts[status]}" for status in sorted(s for s in counts if s is not None)]
    return ", ".join(parts + ([f"no answer: {counts[None]}"] if None in counts else []))


def worker_pids(process_id: int, *, started_before: float | None = None) -> set[int]:
    """The uvicorn worker processes under a live server's supervisor (those started before a
    moment: a worker that was just restarted is still importing the app)."""
    try:
        children = psutil.Process(process_id).children()
    except psutil.NoSuchProcess:
        return set()
    workers = set()
    for child in children:
        try:
            if "spawn_main" in " ".join(child.cmdline()) and (
                started_before is None or child.create_time() < started_before
            ):
                workers.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return workers


def assert_acknowledged_writes_are_stored(settings, answers: list[Answer]) -> dict[str, int]:
    """Every write a client got a 2xx for is in PostgreSQL (and its content in git);
    revision and version numbers are gapless. Returns the figures."""
    acknowledged = [a for a in answers if a.acknowledged]
    revisions = {
        (configuration_id, revision): config
        for configuration_id, revision, config in sql(
            settings, "SELECT configuration_id, revision, config FROM configuration_revisions"
        )
    }
    versions = {
        (user_id, version): sha
        for user_id, version, sha in sql(
            settings,
            "SELECT d.owner_user_id, v.version, v.commit_sha FROM document_versions v "
            "JOIN documents d ON d.id = v.document_id",
        )
    }
    missing = []
    for answer in acknowledged:
        if answer.kind == "configuration":
            stored = revisions.get((answer.target, answer.body["revision"]))
            if stored != answer.sent or answer.body["config"] != answer.sent:
                missing.append(answer)
        elif versions.get((answer.target, answer.body["version"])) != answer.body["commit_sha"]:
            missing.append(answer)
    assert missing == [], f"acknowledged writes that are not stored: {missing[:5]}"
    for numbers in (_by_owner(revisions), _by_owner(versions)):
        for owner, found in numbers.items():
            assert sorted(found) == list(range(1, len(found) + 1)), f"gaps in the numbering of {owner}"
    documents = [a for a in acknowledged if a.kind == "document"]
    for answer in documents:  # the bytes are in git, under the sha the client was given
        assert git(settings, "cat-file", "blob", f"{answer.body['commit_sha']}:claude.md") == answer.sent
    return {"acknowledged": len(acknowledged), "found": len(acknowledged) - len(missing)}


def _by_owner(numbered: dict[tuple[str, int], Any]) -> dict[str, list[int]]:
    owners: dict[str, list[int]] = {}
    for owner, number in numbered:
        owners.setdefault(owner, []).append(number)
    return owners
