"""Staleness after a write: how long any worker keeps serving the old version of a configuration.

Readers on several keep-alive connections (spread by the kernel over the workers) resolve the
configuration in a tight loop; a writer PUTs a new version, and from the moment its response
arrives each reader's time to see the new ETag is recorded. The promise is ≤ 1 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Staleness:
    writes: int
    readers: int
    delays_ms: list[float]  # one per (write, reader): time until that reader saw the new version

    @property
    def worst_ms(self) -> float:
        return max(self.delays_ms, default=0.0)

    def percentile(self, fraction: float) -> float:
        values = sorted(self.delays_ms)
        return values[min(len(values) - 1, int(fraction * len(values)))] if values else 0.0


async def _exchange(reader, writer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    writer.write(request)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def _request(method: str, host: str, path: str, token: str, body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {token}"]
    if body:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def run(base_url: str, *, resolve_path: str, change_path: str, token: str, admin_token: str,
        config: dict, writes: int = 20, readers: int = 16, timeout: float = 10.0) -> Staleness:
    """Make `writes` changes; after each, time how long each reader keeps seeing the old ETag."""
    url = urlsplit(base_url)

    async def scenario() -> list[float]:
        connections = [await asyncio.open_connection(url.hostname, url.port) for _ in range(readers + 1)]
        writer_conn, reader_conns = connections[0], connections[1:]
        get = _request("GET", url.netloc, resolve_path, token)
        delays: list[float] = []
        try:
            for n in range(writes):
                body = json.dumps({"config": {**config, "staleness_probe": n}}).encode()
                status, headers, _ = await _exchange(*writer_conn, _request("PUT", url.netloc, change_path,
                                                                            admin_token, body))
                written_at = time.monotonic()
                if status != 200:
                    raise RuntimeError(f"PUT answered {status}")
                new_etag = headers["etag"]

                async def until_fresh(conn) -> float:
                    while time.monotonic() - written_at < timeout:
                        status, headers, _ = await _exchange(*conn, get)
                        if status == 200 and headers.get("etag") == new_etag:
                            return (time.monotonic() - written_at) * 1000
                    return timeout * 1000

                delays += await asyncio.gather(*(until_fresh(conn) for conn in reader_conns))
                await asyncio.sleep(0.05)
        finally:
            for _, w in connections:
                w.close()
        return delays

    return Staleness(writes=writes, readers=readers, delays_ms=asyncio.run(scenario()))
