"""git without the service: the plumbing baseline of a claude.md save, and the bulk loader.

The baseline does what one save needs with bare git commands, one subprocess each:
`hash-object -w --stdin` (blob) → `mktree` (tree with claude.md) → `commit-tree -p <parent>`
→ `update-ref <ref> <new> <old>` (compare-and-swap), on a scratch bare repository with the
service repository's fsync settings.

The bulk loader feeds `git fast-import` many commits on many `refs/docs/<id>` refs and
returns what PostgreSQL must record of each (see migrations/0003_claude_md.sql).
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ZERO_SHA = "0" * 40
FILENAME = "claude.md"
# The settings of the service's repository that decide how much a save costs on disk.
FSYNC_SETTINGS = ("core.fsync", "core.fsyncMethod", "core.fsyncObjectFiles")
COMMITTER = "svc <svc@svc.invalid>"

CLAUDE_MD = """# Working agreements

## Style
- Python 3.11, type hints everywhere, `ruff` clean.
- Prefer small functions with names that explain themselves; docstrings on public ones.
- Tests next to the code they cover; real PostgreSQL, never mocks.

## Commands
- `uv run pytest -x -q` before every commit.
- `uv run svc serve` to try things locally.

## Things to remember
- The content store is a bare git repository: never create a work tree.
- Migrations are append-only; name every constraint.
- Keep the public API backwards compatible: add fields, never rename them.

## Review checklist
1. Does every error come back as problem+json with a useful detail?
2. Is every change audited in its own transaction?
3. Are the ETags right after a write (and 412 on a stale If-Match)?
"""


def document_text(label: str, n: int) -> str:
    """A realistic claude.md (about 1 KiB) that differs from save to save."""
    return f"{CLAUDE_MD}\n## Notes ({label})\n- revision note {n}: {time.time_ns()}\n"


def git(repo: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(["git", f"--git-dir={repo}", *args], input=input, capture_output=True, env=env,
                               check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {completed.stderr.decode(errors='replace').strip()}")
    return completed.stdout.decode().strip()


def fsync_settings(repo: Path) -> dict[str, str]:
    """The fsync options set in a repository (unset ones are left out)."""
    found = {}
    for name in FSYNC_SETTINGS:
        completed = subprocess.run(["git", f"--git-dir={repo}", "config", "--get", name], capture_output=True,
                                   text=True)
        if completed.returncode == 0:
            found[name] = completed.stdout.strip()
    return found


def scratch_repository(path: Path, settings: dict[str, str]) -> Path:
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    for name, value in {**settings, "gc.auto": "0"}.items():
        git(path, "config", name, value)
    return path


GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@svc.invalid",
    "GIT_COMMITTER_NAME": "svc", "GIT_COMMITTER_EMAIL": "svc@svc.invalid",
}


def plumbing_save(repo: Path, ref: str, content: bytes, parent: str | None) -> str:
    """One claude.md save with bare git commands; returns the new commit."""
    blob = git(repo, "hash-object", "-w", "--stdin", input=content)
    tree = git(repo, "mktree", input=f"100644 blob {blob}\t{FILENAME}\n".encode())
    parents = ["-p", parent] if parent else []
    commit = git(repo, "commit-tree", tree, *parents, "-m", "Update claude.md", env=GIT_ENV)
    git(repo, "update-ref", ref, commit, parent or ZERO_SHA)
    return commit


@dataclass
class SaveRate:
    saves: int
    seconds: float
    cpu_seconds: float  # of the git processes

    @property
    def per_second(self) -> float:
        return self.saves / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        cpu = self.cpu_seconds * 1000 / self.saves if self.saves else 0.0
        return f"{self.per_second:,.1f} saves/s ({self.saves:,} saves; CPU/save: git {cpu:.2f} ms)"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def plumbing_rate(repo: Path, *, label: str, refs: int, parallel: int, seconds: float) -> SaveRate:
    """Saves/s with `parallel` workers for `seconds` on new refs refs/docs/<label>-<n>; each
    worker owns its refs (like the row lock in the service, which keeps two writers off one
    document)."""
    deadline = time.monotonic() + seconds
    counts = [0] * parallel
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        mine = [f"refs/docs/{label}-{r:04d}" for r in range(index, max(refs, parallel), parallel)]
        heads: dict[str, str | None] = {ref: None for ref in mine}
        n = 0
        try:
            while time.monotonic() < deadline:
                ref = mine[n % len(mine)]
                heads[ref] = plumbing_save(repo, ref, document_text(ref, n).encode(), heads[ref])
                n += 1
                counts[index] = n
        except BaseException as exc:  # reported once the others finish
            with lock:
                failures.append(exc)

    started, cpu = time.monotonic(), _children_cpu()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(worker, range(parallel)))
    elapsed = time.monotonic() - started
    if failures:
        raise RuntimeError(f"plumbing baseline failed: {failures[0]}")
    return SaveRate(sum(counts), elapsed, _children_cpu() - cpu)


# --- bulk loading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkVersion:
    document_id: str
    version: int
    commit_sha: str
    message: str
    size_bytes: int
    created_at: int  # unix seconds


def fast_import(repo: Path, documents: dict[str, int], *, author: str, scratch: Path) -> list[BulkVersion]:
    """Create `documents[id]` commits on refs/docs/<id> for each id with one `git fast-import`."""
    marks = scratch / "fast-import.marks"
    process = subprocess.Popen(
        ["git", f"--git-dir={repo}", "fast-import", "--quiet", f"--export-marks={marks}"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    now = int(time.time()) - 86_400
    planned: dict[int, tuple[str, int, int, int]] = {}
    mark = 0
    ident = author.encode()
    for document_id, versions in documents.items():
        chunks = []
        for version in range(1, versions + 1):
            mark += 1
            data = document_text(document_id, version).encode()
            message = b"Update claude.md\n"
            when = now + version
            planned[mark] = (document_id, version, len(data), when)
            chunks.append(b"commit refs/docs/%s\nmark :%d\nauthor %s %d +0000\ncommitter %s %d +0000\n"
                          b"data %d\n%s" % (document_id.encode(), mark, ident, when, COMMITTER.encode(), when,
                                            len(message), message))
            chunks.append(b"M 100644 inline %s\ndata %d\n%s\n" % (FILENAME.encode(), len(data), data))
        process.stdin.write(b"".join(chunks))
    process.stdin.close()
    stderr = process.stderr.read() if process.stderr else b""
    if process.wait() != 0:
        raise RuntimeError(f"git fast-import failed: {stderr.decode(errors='replace')}")
    shas = dict(line.split() for line in marks.read_text().splitlines())
    return [
        BulkVersion(document_id, version, shas[f":{m}"], "Update claude.md", size, when)
        for m, (document_id, version, size, when) in planned.items()
    ]
