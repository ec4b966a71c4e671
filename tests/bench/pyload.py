"""FALLBACK load generator for machines without wrk: several processes, each running asyncio
keep-alive connections over raw sockets (no HTTP library in the hot path).

It is slower than wrk and competes with the server for CPU, so its figures are a lower bound
of what the server can do; the runner labels every figure it produces as `python-loadgen`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from array import array
from urllib.parse import urlsplit

from tests.bench.load import REQUEST_TIMEOUT_SECONDS, Plan, Request, Result


def run_python(base_url: str, plan: Plan, *, connections: int, seconds: float) -> Result:
    processes = max(1, min(connections, os.cpu_count() or 1))
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    answered = context.Value("q", 0)
    started = time.monotonic()
    workers = [
        context.Process(target=_process, args=(base_url, plan, list(range(k, connections, processes)), connections,
                                                seconds, answered, results))
        for k in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join(10)
    elapsed = time.monotonic() - started
    latencies = sorted(x for outcome in outcomes for x in outcome["latencies"])
    statuses: dict[int, int] = {}
    for outcome in outcomes:
        for status, n in outcome["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    return Result(
        tool="python-loadgen",
        requests=len(latencies),
        seconds=max(outcome["seconds"] for outcome in outcomes) if outcomes else elapsed,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        statuses=statuses,
        socket_errors=sum(outcome["socket_errors"] for outcome in outcomes),
    )


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))] * 1000


def _process(base_url, plan: Plan, mine: list[int], connections: int, seconds: float, answered, results) -> None:
    outcome = {"latencies": array("d"), "statuses": {}, "socket_errors": 0, "seconds": 0.0}
    started = time.monotonic()
    asyncio.run(_connections(base_url, plan, mine, connections, started + seconds, answered, outcome))
    outcome["seconds"] = time.monotonic() - started
    outcome["latencies"] = outcome["latencies"].tolist()
    results.put(outcome)


async def _connections(base_url, plan, mine, connections, deadline, answered, outcome) -> None:
    await asyncio.gather(*(_connection(base_url, plan, index, connections, deadline, answered, outcome)
                           for index in mine))


def _encode(request: Request, host: str, headers: dict[str, str], sequence: str) -> bytes:
    body = b""
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if request.body is not None:
        body = (request.body[0] + sequence + request.body[1]).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(base_url, plan: Plan, index, connections, deadline, answered, outcome) -> None:
    url = urlsplit(base_url)
    # Partitioned plans pin each connection to its own requests (rows written by one connection only).
    requests = plan.requests[index::connections] if plan.partition and len(plan.requests) >= connections \
        else plan.requests
    position = index * max(1, len(requests) // connections)
    fixed = {i: _encode(r, url.netloc, plan.headers, "") for i, r in enumerate(requests) if r.body is None}
    sequence = 0
    reader = writer = None
    while time.monotonic() < deadline:
        if plan.stop_after is not None and answered.value >= plan.stop_after:
            break
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(url.hostname, url.port)
            except OSError:
                outcome["socket_errors"] += 1
                await asyncio.sleep(0.05)
                continue
        i = position % len(requests)
        position += 1
        sequence += 1
        payload = fixed.get(i) or _encode(requests[i], url.netloc, plan.headers, f"{index}-{sequence}")
        sent = time.monotonic()
        try:
            writer.write(payload)
            status, keep_alive = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_SECONDS)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            outcome["socket_errors"] += 1
            writer.close()
            reader = writer = None
            continue
        outcome["latencies"].append(time.monotonic() - sent)
        outcome["statuses"][status] = outcome["statuses"].get(status, 0) + 1
        with answered.get_lock():
            answered.value += 1
        if not keep_alive:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers.get("connection", "").lower() != "close"
