"""Long-poll wake-up: N waiters on one configuration, one change, time from the change to each waiter.

The client is raw asyncio streams (one keep-alive connection per waiter, reading only the
status line), so a thousand waiters cost the client next to nothing and do not distort the
wake-up times.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.bench.processes import say

CONNECT_BATCH = 100


@dataclass
class WakeUp:
    waiters: int
    woken: int  # answered 200 after the change
    early: int  # answered before the change (not held)
    statuses: dict[int | str, int]
    latencies_ms: list[float]  # from sending the PUT (the write included) to each 200's status line

    def percentile(self, fraction: float) -> float | None:
        values = sorted(self.latencies_ms)
        if not values:
            return None
        return values[min(len(values) - 1, int(fraction * len(values)))]


def _request(method: str, host: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive",
             *(f"{k}: {v}" for k, v in headers.items())]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _status_line(reader: asyncio.StreamReader) -> tuple[int, float]:
    line = await reader.readline()
    arrived = time.monotonic()
    if not line:
        raise ConnectionError("closed without a response")
    return int(line.split(b" ", 2)[1]), arrived


async def _whole_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    return status, body


async def _waiting_count(host: str, port: int, admin_token: str) -> int | None:
    """svc_long_poll_waiters summed over the workers, from /metrics (None when unavailable)."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(_request("GET", f"{host}:{port}", "/metrics", {"Authorization": f"Bearer {admin_token}",
                                                                    "Connection": "close"}))
        status, body = await asyncio.wait_for(_whole_response(reader), 10)
        writer.close()
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        return None
    found = re.search(rb"^svc_long_poll_waiters(?:\{[^}]*\})?\s+([\d.e+]+)$", body, re.M)
    return int(float(found.group(1))) if status == 200 and found else None


async def measure(base_url: str, *, path: str, etag: str, token: str, admin_token: str, waiters: int,
                  change_path: str, change_body: bytes, timeout: float) -> WakeUp:
    """Hold `waiters` long-polls on `path`, PUT `change_body` to `change_path`, time the wake-ups."""
    url = urlsplit(base_url)
    host, port = url.hostname, url.port
    netloc = f"{host}:{port}"
    headers = {"Authorization": f"Bearer {token}", "If-None-Match": etag}
    request = _request("GET", netloc, path, headers)
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open_one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        return reader, writer

    for start in range(0, waiters, CONNECT_BATCH):
        connections += await asyncio.gather(*(open_one() for _ in range(start, min(waiters, start + CONNECT_BATCH))))
    answers = [asyncio.ensure_future(_status_line(reader)) for reader, _ in connections]

    # Wait until the service holds them all (or, without /metrics, a few quiet seconds).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        held = await _waiting_count(host, port, admin_token)
        if held is None:
            await asyncio.sleep(3)
            break
        if held >= waiters:
            break
        await asyncio.sleep(0.2)
    early = {index for index, answer in enumerate(answers) if answer.done()}
    say(f"{waiters} long-polls sent, {waiters - len(early)} held; changing the configuration")

    reader, writer = await asyncio.open_connection(host, port)
    # Timed from sending the PUT: waiters are often answered before the PUT's own response is
    # read (the client is busy reading theirs), so its arrival is no usable start.
    changed_at = time.monotonic()
    writer.write(_request("PUT", netloc, change_path, {"Authorization": f"Bearer {token}"}, change_body))
    status, body = await asyncio.wait_for(_whole_response(reader), timeout)
    writer.close()
    if status != 200:
        raise RuntimeError(f"the change failed: {status} {body[:300]!r}")

    done, pending = await asyncio.wait(answers, timeout=timeout)
    for answer in pending:
        answer.cancel()
    statuses: dict[int | str, int] = {}
    latencies = []
    woken = 0
    for index, answer in enumerate(answers):
        if answer in pending:
            key: int | str = "no answer"
        elif answer.exception() is not None:
            key = "connection error"
        elif index in early:
            key = f"{answer.result()[0]} before the change"
        else:
            key, arrived = answer.result()
            if key == 200:
                woken += 1
                latencies.append((arrived - changed_at) * 1000)
        statuses[key] = statuses.get(key, 0) + 1
    for _, writer in connections:
        writer.close()
    return WakeUp(waiters, woken, len(early), statuses, latencies)


def run(base_url: str, **kwargs) -> WakeUp:
    return asyncio.run(measure(base_url, **kwargs))
