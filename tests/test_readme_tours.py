"""The README's tours run as written: every block fenced as ```sh tour=<name>, in order, one bash
session per tour under `set -euo pipefail`, against a live server; each `# => …` comment is
compared with what its command printed."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from svc.config import Settings
from tests.conftest import answers_within, free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```sh tour=(?P<tour>[\w-]+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
EXPECTED = re.compile(r"(?:^|\s)# => (?P<text>.*)$")
WILDCARD = "..."
TOUR_SECONDS = 90  # a loaded 2-core machine; each tour takes seconds when it is not
SERVER_START_SECONDS = 120


@dataclass
class Step:
    """Lines of shell run together, and the last lines they must print (none: not compared)."""

    code: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)


def tours(readme: str) -> dict[str, list[Step]]:
    """The tours in README order, each cut into steps that end where a `# =>` comment ends."""
    found: dict[str, list[Step]] = {}
    for block in FENCE.finditer(readme):
        steps = found.setdefault(block["tour"], [])
        step = Step()
        for line in block["body"].splitlines():
            marked = EXPECTED.search(line)
            standalone = line.lstrip().startswith("# => ")
            if step.expected and not standalone:
                steps.append(step)
                step = Step()
            if not standalone:
                step.code.append(line)
            if marked:
                step.expected.append(marked["text"].rstrip())
        steps.append(step)
    return found


def matches(expected: str, printed: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split(WILDCARD))
    return re.fullmatch(pattern, printed.rstrip()) is not None


def script(steps: list[Step], outputs: Path) -> str:
    """One bash script: each step sourced with its stdout captured apart, so that variables
    carry over and the first failing command stops the tour."""
    lines = ["set -euo pipefail"]
    for number, step in enumerate(steps):
        (outputs / f"{number}.sh").write_text("\n".join(step.code) + "\n")
        lines.append(f"echo '--- step {number}' >&2")
        lines.append(f"source {outputs / f'{number}.sh'} > {outputs / f'{number}.out'}")
    return "\n".join(lines) + "\n"


README_TOURS = tours(README.read_text())


def test_the_readme_has_the_four_tours() -> None:
    assert list(README_TOURS) == ["owner", "lead", "developer", "operator"]
    assert len(README.read_text().splitlines()) <= 700


@pytest.mark.parametrize("name", list(README_TOURS))
def test_no_tour_hides_a_failure(name: str) -> None:
    """Each curl either fails on an error status, or is a step whose output is compared."""
    for step in README_TOURS[name]:
        code = "\n".join(step.code)
        for call in re.findall(r"curl [^|]*", code):
            assert "--fail-with-body" in call or step.expected, (
                f"tour {name}: this curl neither fails on an error status nor has its output compared: {call}"
            )
        assert "localhost" not in code and "127.0.0.1" not in code, f"tour {name} names a host: use $API"
        assert "/dev/null" not in code.replace("-o /dev/null", ""), f"tour {name} throws output away"


@pytest.fixture
def tour_shell(settings: Settings, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A scratch directory and the environment a reader has after "First start": `svc serve`
    on this test's database, `$API` and `$TOKEN`, the admin token it printed, and `uv run` on
    this venv."""
    work = tmp_path / "tour"
    (work / "tests").mkdir(parents=True)
    (work / "tests" / "data").symlink_to(ROOT / "tests" / "data")
    svc = Path(sys.executable).parent / "svc"
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(f'#!/bin/sh\n[ "$1" = run ] || exit 2\nshift\nPATH="{svc.parent}:$PATH" exec "$@"\n')
    (bin_dir / "uv").chmod(0o755)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "SVC_DATA_DIR": str(work / ".svc"),
        "SVC_SECRET_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
        "API": f"http://127.0.0.1:{port}/api/v1",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    env.pop("VIRTUAL_ENV", None)
    printed, log = tmp_path / "serve.out", tmp_path / "serve.log"
    with open(printed, "wb") as out, open(log, "wb") as err:
        server = subprocess.Popen([str(svc), "serve", "--port", str(port)], env=env, stdout=out, stderr=err)
    try:
        assert answers_within(f"http://127.0.0.1:{port}/ready", server, SERVER_START_SECONDS), log.read_text()
        env["TOKEN"] = printed.read_text().strip()  # printed before the server listens
        yield work, env
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def run_tour(name: str, steps: list[Step], work: Path, env: dict[str, str], outputs: Path) -> str | None:
    """Run one tour in one bash session; say what went wrong, or None."""
    outputs.mkdir()
    log = outputs / "stderr"
    with open(log, "w") as stderr:
        shell = subprocess.Popen(
            ["bash", "-c", script(steps, outputs)], cwd=work, env=env,
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )
        try:
            status: int | str = shell.wait(TOUR_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
            status = f"killed after {TOUR_SECONDS} s"
    said = log.read_text()
    if status != 0:
        reached = [int(n) for n in re.findall(r"^--- step (\d+)$", said, re.MULTILINE)]
        failed = steps[reached[-1]] if reached else Step()
        printed = (outputs / f"{reached[-1]}.out").read_text() if reached else ""
        return (
            f"tour {name} stopped ({status}) in:\n" + "\n".join(failed.code)
            + f"\n--- stdout:\n{printed}\n--- stderr:\n{said[-3000:]}"
        )
    mismatches = []
    for number, step in enumerate(steps):
        if not step.expected:
            continue
        printed = (outputs / f"{number}.out").read_text().splitlines()
        tail = printed[-len(step.expected):]
        if len(tail) != len(step.expected) or not all(map(matches, step.expected, tail)):
            mismatches.append(
                "\n".join(step.code) + "\n--- expected (last lines):\n" + "\n".join(step.expected)
                + "\n--- printed:\n" + "\n".join(printed)
            )
    if mismatches:
        return f"tour {name} printed what the README does not say:\n\n" + "\n\n".join(mismatches)
    return None


def test_a_tour_that_breaks_fails(tmp_path: Path) -> None:
    """Variables carry over between blocks; a failing command, a failing stage of a pipeline
    and a wrong `# =>` each make the tour fail."""
    fence = "```"
    sample = tours(
        f"{fence}sh tour=ok\nNAME=svc\n{fence}\n\n{fence}sh tour=ok\necho \"$NAME\"   # => svc\n"
        "printf 'a\\nb\\n'\n# => a\n# => b\n"
        f"{fence}\n{fence}sh tour=fails\nfalse\necho never\n{fence}\n"
        f"{fence}sh tour=pipe\nfalse | cat\n{fence}\n"
        f"{fence}sh tour=wrong\necho 201   # => 200\n{fence}\n"
    )
    env = dict(os.environ)
    results = {name: run_tour(name, steps, tmp_path, env, tmp_path / name) for name, steps in sample.items()}
    assert results["ok"] is None
    assert results["fails"] is not None and "stopped" in results["fails"]
    assert results["pipe"] is not None and "stopped" in results["pipe"]
    assert results["wrong"] is not None and "printed what the README does not say" in results["wrong"]


def test_tours_run_as_written(tour_shell: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """All tours in README order against one server, each in its own shell, as a reader pastes them."""
    work, env = tour_shell
    problems = [run_tour(name, steps, work, env, tmp_path / f"out-{name}") for name, steps in README_TOURS.items()]
    failed = [problem for problem in problems if problem]
    if failed:
        pytest.fail("\n\n".join(failed))
