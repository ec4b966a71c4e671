"""HTTP load: a request plan run by `wrk` (preferred) or by the Python fallback generator.

Both report the same `Result`: throughput, p50/p99 latency, and errors, where an error is
every response that is not 2xx (wrk itself counts only >= 400; bench.lua counts the rest)
plus every socket error (connect, read, write, timeout).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.processes import say

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "bench.lua"
REQUEST_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Request:
    """One request of a plan. A request with `body` (prefix, suffix) is sent with a unique body:
    prefix + a per-request sequence + suffix, so that every write changes something."""

    method: str
    path: str
    body: tuple[str, str] | None = None


@dataclass(frozen=True)
class Plan:
    """What to send: the requests (taken round-robin), common headers, and how to share them.

    `partition` gives each load-generator thread its own subset of the requests (writes to
    different rows stay apart); `stop_after` ends the run after about that many responses."""

    requests: list[Request]
    headers: dict[str, str] = field(default_factory=dict)
    partition: bool = False
    stop_after: int | None = None


@dataclass
class Result:
    tool: str
    requests: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    statuses: dict[int, int]
    socket_errors: int
    # CPU time per request of the server's workers and of PostgreSQL, when the runner measured them.
    cpu_ms: float | None = None
    postgres_cpu_ms: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300) + self.socket_errors

    def summary(self) -> str:
        latency = f"p50 {fmt_ms(self.p50_ms)}, p99 {fmt_ms(self.p99_ms)}"
        cpu = ""
        if self.cpu_ms is not None:
            cpu = f"; CPU/req: workers {self.cpu_ms:.2f} ms"
            if self.postgres_cpu_ms is not None:
                cpu += f", PostgreSQL {self.postgres_cpu_ms:.2f} ms"
        return f"{self.rps:,.0f} req/s ({latency}, {self.errors} errors, {self.requests:,} requests{cpu})"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms"


def find_wrk() -> str | None:
    """wrk on PATH; as root, try installing it once with apt-get."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    say("wrk not found; trying `apt-get install -y wrk`")
    for command in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        subprocess.run(command, capture_output=True, timeout=300)
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


def run(tool: str, base_url: str, plan: Plan, *, connections: int, seconds: float, threads: int = 1) -> Result:
    """Send `plan` to `base_url` over `connections` keep-alive connections for `seconds`
    (or until `plan.stop_after` responses)."""
    if tool == "wrk":
        return run_wrk(base_url, plan, connections=connections, seconds=seconds, threads=threads)
    from tests.bench.pyload import run_python

    return run_python(base_url, plan, connections=connections, seconds=seconds)


# --- wrk ---------------------------------------------------------------------------------------


def run_wrk(base_url: str, plan: Plan, *, connections: int, seconds: float, threads: int) -> Result:
    threads = max(1, min(threads, connections))
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as scratch:
        done_dir = Path(scratch) / "done"
        done_dir.mkdir()
        plan_path = Path(scratch) / "plan.lua"
        plan_path.write_text(plan_as_lua(plan, threads, done_dir))
        command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                   "--latency", "--timeout", f"{REQUEST_TIMEOUT_SECONDS}s", "-s", str(WRK_SCRIPT),
                   base_url, "--", str(plan_path)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + seconds + 60
            while process.poll() is None and time.monotonic() < deadline:
                if plan.stop_after is not None and len(list(done_dir.iterdir())) >= threads:
                    process.send_signal(signal.SIGINT)  # wrk prints its figures and exits
                    break
                time.sleep(0.05)
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr.strip() or stdout}")
    return parse_wrk(stdout)


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(number: str, unit: str) -> float:
    return float(number) * UNITS[unit]


def parse_wrk(output: str) -> Result:
    """Figures from wrk's text output (with --latency and bench.lua's status line)."""
    totals = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output)
    if totals is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    distribution = re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    percentiles = {int(p): _ms(value, unit) for p, value, unit in distribution}
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = sum(int(n) for n in socket.groups()) if socket else 0
    statuses: dict[int, int] = {}
    line = re.search(r"^BENCH-STATUSES (.*)$", output, re.M)
    if line and line.group(1).strip():
        for part in line.group(1).strip().split(","):
            status, count = part.split(":")
            statuses[int(status)] = int(count)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if not statuses and non_2xx:  # bench.lua not used: only what wrk itself saw as failed
        statuses[400] = int(non_2xx.group(1))
    requests = int(totals.group(1))
    if statuses and sum(statuses.values()) != requests:
        # Responses after a thread's stop are counted by wrk but not by bench.lua: 2xx unless shown otherwise.
        statuses.setdefault(200, 0)
        statuses[200] += max(0, requests - sum(statuses.values()))
    return Result(
        tool="wrk",
        requests=requests,
        seconds=_ms(totals.group(2), totals.group(3)) / 1000,
        p50_ms=percentiles.get(50),
        p99_ms=percentiles.get(99),
        statuses=statuses or {200: requests},
        socket_errors=socket_errors,
    )


def _lua_string(text: str) -> str:
    out = []
    for byte in text.encode():
        if 32 <= byte < 127 and byte not in (34, 92):
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def plan_as_lua(plan: Plan, threads: int, done_dir: Path) -> str:
    lines = ["return {", f"  threads = {threads},", f"  partition = {'true' if plan.partition else 'false'},",
             f"  done_dir = {_lua_string(str(done_dir))},"]
    if plan.stop_after is not None:
        lines.append(f"  stop_after = {plan.stop_after},")
    lines.append("  headers = {")
    for name, value in plan.headers.items():
        lines.append(f"    [{_lua_string(name)}] = {_lua_string(value)},")
    lines.append("  },")
    if all(request.body is None for request in plan.requests):
        # One string of "METHOD PATH" lines, split by bench.lua: a Lua chunk holds at most 2^16
        # constants, and a cold-read plan has more requests than that.
        listed = "".join(f"{request.method} {request.path}\n" for request in plan.requests)
        lines.append(f"  lines = {_lua_string(listed)},")
    else:
        lines.append("  requests = {")
        for request in plan.requests:
            fields = [f"method = {_lua_string(request.method)}", f"path = {_lua_string(request.path)}"]
            if request.body is not None:
                fields += [f"prefix = {_lua_string(request.body[0])}", f"suffix = {_lua_string(request.body[1])}"]
            lines.append("    { " + ", ".join(fields) + " },")
        lines.append("  },")
    lines.append("}")
    return "\n".join(lines) + "\n"
