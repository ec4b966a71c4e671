"""The git content store: repository creation, ref compare-and-swap, stale locks, processes, repacking."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil

from svc.content import Author, ContentStore
from svc.content.store import REPOSITORY_CONFIG, STALE_LOCK_SECONDS
from svc.services.auth import Principal
from tests.claude_md_helpers import ada, assert_problem, document_id, git, person, ref_path, save, svc_cli  # noqa: F401
from tests.fault_helpers import LONG

AUTHOR = Author("ada", "ada@example.com")

OPERATIONS = 1000 if LONG else 200


def _ensure(path: str) -> None:
    ContentStore(Path(path)).ensure()


def test_several_processes_creating_the_repository_at_once_make_one(tmp_path):
    path = tmp_path / "data" / "content.git"
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_ensure, args=(str(path),)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    store = ContentStore(path)
    assert store.is_ready()
    assert sorted(p.name for p in path.parent.iterdir()) == ["content.git"]  # no staging leftovers
    settings = {f"{section}.{option}": value for (section, option), value in REPOSITORY_CONFIG.items()}
    read_back = {key: _git_config(path, key) for key in [*settings, "core.bare"]}
    assert read_back == {**settings, "core.bare": "true"}  # as git itself reads the file


def _git_config(repository: Path, key: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repository), "config", "--get", key],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_store_round_trip_keeps_bytes_exactly(tmp_path):
    store = ContentStore(tmp_path / "content.git")
    store.ensure()
    content = "trailing newlines\n\n\n".encode() + bytes(range(1, 32))
    first = store.save("01JCZ5J7Q9T1V0G6W8E2X4Y6ZA", content, parent=None, author=AUTHOR, message="one")
    second = store.save("01JCZ5J7Q9T1V0G6W8E2X4Y6ZA", b"", parent=first, author=AUTHOR, message="two")
    assert store.read(first) == content
    assert store.read(second) == b""
    assert store.head("01JCZ5J7Q9T1V0G6W8E2X4Y6ZA") == second
    assert store.heads() == {"01JCZ5J7Q9T1V0G6W8E2X4Y6ZA": second}
    assert store.is_ancestor(first, second) and not store.is_ancestor(second, first)
    assert store.find_problems([first, second]) == {}


def test_no_git_processes_remain_after_many_operations(client, ada, services):
    """Every operation opens and closes its own Repo; none leaves a `git cat-file` behind (after
    200 operations; 1,000 with `SVC_LONG_TESTS=1`)."""
    documents = services.claude_md
    operator = Principal.operator()
    first = documents.save(operator, ada.id, content="v0", message=None, expected=None).commit_sha
    head = first
    for i in range(1, OPERATIONS):
        match i % 10:
            case 0:
                head = documents.save(operator, ada.id, content=f"v{i}", message=None, expected=None).commit_sha
            case 1 | 2 | 3 | 4:
                assert documents.get(operator, ada.id).commit_sha == head
            case 5 | 6 | 7:
                assert documents.version(operator, ada.id, first).content == "v0"
            case _:
                documents.diff(operator, ada.id, first, head)
    assert documents.get(operator, ada.id).version == OPERATIONS // 10
    leftovers = [p for p in psutil.Process().children(recursive=True) if "git" in p.name()]
    assert leftovers == []


def test_a_stale_ref_lock_is_removed_by_the_next_save(client, ada, settings):
    v1 = save(client, ada.document, ada.headers, "one")
    lock = ref_path(settings, ada).with_suffix(".lock")
    lock.write_text(v1["commit_sha"] + "\n")  # what a process killed inside update-ref leaves
    old = time.time() - STALE_LOCK_SECONDS - 1
    os.utime(lock, (old, old))
    v2 = save(client, ada.document, ada.headers, "two")
    assert v2["version"] == 2
    assert not lock.exists()
    assert git(settings, "rev-parse", f"refs/docs/{document_id(settings, ada)}").strip() == v2["commit_sha"]


def test_a_fresh_ref_lock_makes_the_save_retryable_and_writes_nothing(client, ada, settings):
    v1 = save(client, ada.document, ada.headers, "one")
    lock = ref_path(settings, ada).with_suffix(".lock")
    lock.write_text("in flight\n")
    assert_problem(client.put(ada.document, json={"content": "two"}, headers=ada.headers), 503, "retry")
    assert client.get(ada.document, headers=ada.headers).json()["commit_sha"] == v1["commit_sha"]
    lock.unlink()
    assert save(client, ada.document, ada.headers, "two")["version"] == 2


def test_a_save_moves_on_from_a_commit_the_database_never_recorded(client, ada, settings, services):
    v1 = save(client, ada.document, ada.headers, "one")
    doc_id = document_id(settings, ada)
    # A process that crashed after moving the ref and before its COMMIT leaves this behind.
    orphan = services.content.save(doc_id, b"lost", parent=v1["commit_sha"], author=AUTHOR, message="x")
    v2 = save(client, ada.document, ada.headers, "two")
    assert v2["version"] == 2
    assert git(settings, "log", "--format=%H", f"refs/docs/{doc_id}").split() == [v2["commit_sha"], v1["commit_sha"]]
    assert orphan not in git(settings, "log", "--format=%H", f"refs/docs/{doc_id}")


def test_a_save_recreates_a_missing_ref(client, ada, settings):
    v1 = save(client, ada.document, ada.headers, "one")
    doc_id = document_id(settings, ada)
    git(settings, "update-ref", "-d", f"refs/docs/{doc_id}")
    v2 = save(client, ada.document, ada.headers, "two")
    assert git(settings, "log", "--format=%H", f"refs/docs/{doc_id}").split() == [v2["commit_sha"], v1["commit_sha"]]


def test_ready_reports_a_missing_repository(client, settings):
    assert client.get("/ready").json()["checks"]["git"] is True
    shutil.rmtree(settings.git_path)
    response = client.get("/ready")
    assert_problem(response, 503, "git")


def test_gc_packs_loose_objects_and_everything_stays_readable(client, ada, settings, svc_cli):
    saved = [save(client, ada.document, ada.headers, f"version {i}") for i in range(5)]
    assert git(settings, "count-objects").startswith("15 objects")
    result = svc_cli("gc")
    assert result.code == 0
    assert "15 loose objects" in result.stderr and "0 loose objects" in result.stderr
    assert git(settings, "count-objects").startswith("0 objects")
    for i, version in enumerate(saved):
        response = client.get(f"{ada.document}/versions/{version['commit_sha']}", headers=ada.headers)
        assert response.json()["content"] == f"version {i}"
    assert save(client, ada.document, ada.headers, "after gc")["version"] == 6
    git(settings, "fsck", "--strict")

