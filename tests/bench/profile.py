"""Optional py-spy profiles of one service worker during each figure (`--profile`).

Each figure's samples are kept as collapsed stacks (results/profiles/<figure>.txt, loadable in
speedscope or flamegraph.pl) and summarised in the report: the functions where the worker's
CPU time goes, by own time (leaf frames) and by inclusive time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.bench.processes import Server, say

TOP = 8


@dataclass
class Recording:
    figure: str
    pid: int
    output: Path
    process: subprocess.Popen


def py_spy() -> str | None:
    return shutil.which("py-spy") or next(
        (str(p) for p in [Path(sys.executable).parent / "py-spy"] if p.exists()), None)


class Profiler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.binary = py_spy()
        if self.binary is None:
            say("--profile: py-spy not found (uv pip install py-spy); profiles are skipped")

    def start(self, figure: str, server: Server, seconds: float) -> Recording | None:
        if self.binary is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        pid = server.worker_pids()[0]
        output = self.directory / (re.sub(r"[^a-z0-9]+", "-", figure.lower()).strip("-") + ".txt")
        process = subprocess.Popen(
            [self.binary, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "200",
             "--nonblocking", "--format", "raw", "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return Recording(figure, pid, output, process)

    def finish(self, recording: Recording) -> str:
        try:
            _, stderr = recording.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            recording.process.kill()
            return f"profile of {recording.figure}: py-spy did not finish"
        if not recording.output.exists():
            return f"profile of {recording.figure}: none ({stderr.decode(errors='replace').strip()[-200:]})"
        return f"profile of {recording.figure} (worker {recording.pid}): " + summarise(recording.output)


def _short(frame: str) -> str:
    """`handle (svc/api/x.py:12)` → `handle (svc/api/x.py)`, library paths cut after site-packages."""
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    path = path.split("site-packages/")[-1].split("/lib/python3")[-1]
    return f"{name} ({path})"


def summarise(path: Path) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "no samples"

    def top(counter: Counter[str], keep) -> str:
        picked = [(f, n) for f, n in counter.most_common() if keep(f)][:TOP]
        return "; ".join(f"{f} {100 * n / total:.0f}%" for f, n in picked)

    return (f"{total} samples (file {path.name}). Own time: {top(own, lambda f: True)}. "
            f"Inclusive, svc code: {top(inclusive, lambda f: '(svc/' in f)}.")
