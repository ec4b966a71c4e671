"""claude.md saves/s: the service's save path next to bare git plumbing, on this machine.

    uv run python -m tests.bench.claude_md_saves [--seconds 5]

Measures, each for `--seconds`:

* plumbing: one save = `git hash-object -w --stdin` → `git mktree` → `git commit-tree`
  → `git update-ref <ref> <new> <old>`, four subprocesses, in a bare repository with
  the service's settings (`core.fsync=committed`);
* store: `ContentStore.save` alone (objects written in-process and fsynced, one
  `update-ref`);
* service: `ClaudeMdService.save` (row lock, git, version row, audit, COMMIT) on an
  embedded PostgreSQL, no HTTP;
* service + remote: the same with `SVC_GIT_REMOTE` set to a bare repository on this
  machine (each save also pushes by compare-and-swap before its COMMIT);
* two hosts + remote: two services with their own repositories on one database and one
  remote, every save made by the other host than the one before (each save first
  fetches the previous version, then pushes);

for one document (sequential) and for four documents written by four threads at once.
The three are measured in turn for `--rounds` rounds and the median of each is shown,
so that a machine whose load drifts treats them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from svc.content import Author, ContentStore, GitRemote
from svc.content.store import ZERO_SHA
from svc.ids import new_id
from svc.services.auth import Principal
from svc.services.claude_md import ClaudeMdService
from svc.services.marketplace import MarketplaceService
from svc.services.users import UserService
from tests.bench.processes import scratch_database

AUTHOR = Author("bench", "bench@svc.invalid")
PLUMBING_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@svc.invalid",
    "GIT_COMMITTER_NAME": "svc", "GIT_COMMITTER_EMAIL": "svc@svc.invalid",
}


def content(n: int) -> bytes:
    return (f"# claude.md\n\n- rule {n}\n" + "- keep answers short and test everything\n" * 20).encode()


def rate(save_one: Callable[[int, int], None], *, writers: int, seconds: float) -> float:
    """Saves/s when `writers` threads call save_one(writer, n) until the time is up."""
    deadline = time.monotonic() + seconds
    counts = [0] * writers

    def work(writer: int) -> None:
        while time.monotonic() < deadline:
            save_one(writer, counts[writer])
            counts[writer] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(work, range(writers)))
    return sum(counts) / (time.monotonic() - started)


def plumbing(repo: Path) -> Callable[[int, int], None]:
    heads: dict[int, str | None] = {}
    run = new_id()

    def git(*args: str, data: bytes | None = None) -> str:
        return subprocess.run(
            ["git", f"--git-dir={repo}", *args], input=data, capture_output=True, check=True, env=PLUMBING_ENV
        ).stdout.decode().strip()

    def save_one(writer: int, n: int) -> None:
        parent = heads.get(writer)
        blob = git("hash-object", "-w", "--stdin", data=content(n))
        tree = git("mktree", data=f"100644 blob {blob}\tclaude.md\n".encode())
        commit = git("commit-tree", tree, *(["-p", parent] if parent else []), "-m", "Update claude.md")
        git("update-ref", f"refs/docs/{run}-{writer}", commit, parent or ZERO_SHA)
        heads[writer] = commit

    return save_one


def store_only(store: ContentStore) -> Callable[[int, int], None]:
    heads: dict[int, str | None] = {}
    ids = {}

    def save_one(writer: int, n: int) -> None:
        document_id = ids.setdefault(writer, new_id())
        heads[writer] = store.save(document_id, content(n), parent=heads.get(writer), author=AUTHOR,
                                   message="Update claude.md")

    return save_one


def service(documents: ClaudeMdService, user_ids: list[str]) -> Callable[[int, int], None]:
    operator = Principal.operator()

    def save_one(writer: int, n: int) -> None:
        documents.save(operator, user_ids[writer], content=content(n).decode(), message=None, expected=None)

    return save_one


def alternating(hosts: list[ClaudeMdService], user_ids: list[str]) -> Callable[[int, int], None]:
    """Each writer's saves alternate between the hosts."""
    operator = Principal.operator()

    def save_one(writer: int, n: int) -> None:
        hosts[n % len(hosts)].save(operator, user_ids[writer], content=content(n).decode(), message=None, expected=None)

    return save_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch_database(min_size=4, max_size=8) as (root, _, db):
        store = ContentStore(root / "content.git")
        store.ensure()
        plumbing_repo = ContentStore(root / "plumbing.git")
        plumbing_repo.ensure()  # the same repository settings as the service's
        subprocess.run(["git", "init", "--quiet", "--bare", str(root / "remote.git")], check=True)
        remote = GitRemote(str(root / "remote.git"), timeout=30)
        hosts = []
        for name in ("host-a.git", "host-b.git"):
            host_store = ContentStore(root / name, remote)
            host_store.ensure()
            hosts.append(ClaudeMdService(db, host_store, max_bytes=1 << 20))
        users = UserService(db, store, MarketplaceService(db, store, root / "marketplaces"))
        documents = ClaudeMdService(db, store, max_bytes=1 << 20)

        def new_users(prefix: str) -> list[str]:
            return [
                users.create(Principal.operator(), email=f"{prefix}{i}@example.com", username=f"{prefix}{i}").id
                for i in range(4)
            ]

        user_ids, remote_ids, alternating_ids = new_users("u"), new_users("r"), new_users("a")
        contenders = {
            "plumbing (4 git commands)": lambda: plumbing(plumbing_repo.path),
            "store (in-process objects + update-ref)": lambda: store_only(store),
            "service (PostgreSQL + git, no HTTP)": lambda: service(documents, user_ids),
            "service + remote (push before COMMIT)": lambda: service(hosts[0], remote_ids),
            "two hosts + remote (fetch, push)": lambda: alternating(hosts, alternating_ids),
        }
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label in contenders}
        for _ in range(args.rounds):
            for label, make in contenders.items():
                samples[label].append(
                    (rate(make(), writers=1, seconds=args.seconds), rate(make(), writers=4, seconds=args.seconds))
                )
        measured = {}
        for label, runs in samples.items():
            one = statistics.median(r[0] for r in runs)
            four = statistics.median(r[1] for r in runs)
            measured[label] = (one, four)
            print(f"{label:<42} one document: {one:7.1f} saves/s   4 documents × 4 threads: {four:7.1f} saves/s")
        base_one, base_four = measured["plumbing (4 git commands)"]
        one, four = measured["service (PostgreSQL + git, no HTTP)"]
        print(f"service / plumbing: one document {one / base_one:.2f}, four documents {four / base_four:.2f}")
        for label in ("service + remote (push before COMMIT)", "two hosts + remote (fetch, push)"):
            with_one, with_four = measured[label]
            print(f"{label} / service: one document {with_one / one:.2f}, four documents {with_four / four:.2f}")


if __name__ == "__main__":
    main()
