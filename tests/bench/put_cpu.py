"""In-process worker CPU of one configuration PUT (and, for comparison, one warm GET): the app is
called as an ASGI application on an embedded PostgreSQL, without a socket or an HTTP client, so
the figure is the worker's own work (the event loop, any thread hop and psycopg2's side of the
statements); PostgreSQL's CPU is another process and not counted.

    uv run python -m tests.bench.put_cpu [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import orjson

from svc.api.app import create_app
from svc.config import Settings
from svc.services.auth import Principal
from tests.bench.processes import scratch_database


async def call(
    app, method: str, path: str, headers: dict[str, str], body: bytes = b"", *, query: str = ""
) -> tuple[int, bytes]:
    """One request through the whole ASGI stack: (status, body)."""
    sent = False
    answer: dict = {"body": b""}

    async def receive():
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no disconnect while the request runs
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "app": app,
    }
    await app(scope, receive, send)
    return answer["status"], answer["body"]


async def measure(url: str, data_dir, requests: int, rounds: int) -> None:
    app = create_app(Settings(_env_file=None, database_url=url, data_dir=data_dir, access_log=False))
    async with app.router.lifespan_context(app):
        services = app.state.services
        secret = services.tokens.create(Principal.operator(), name="bench", role="admin").secret
        auth = {"Authorization": f"Bearer {secret}"}
        json_auth = {**auth, "Content-Type": "application/json"}
        status, created = await call(app, "POST", "/api/v1/applications", json_auth, b'{"name": "bench"}')
        application_id = orjson.loads(created)["id"]
        status, created = await call(app, "POST", f"/api/v1/applications/{application_id}/configurations",
                                     json_auth, b'{"name": "limits", "config": {"rate": 0}}')
        path = f"/api/v1/configurations/{orjson.loads(created)['id']}"
        counter = iter(range(10**9))

        async def put() -> int:
            body = orjson.dumps({"config": {"rate": next(counter), "burst": 10, "tier": "gold"}, "message": "bench"})
            return (await call(app, "PUT", path, json_auth, body))[0]

        async def get() -> int:
            return (await call(app, "GET", path, auth))[0]

        for label, request in (("PUT", put), ("GET (warm)", get)):
            per_request = []
            for _ in range(rounds):
                started = time.process_time()
                statuses = {await request() for _ in range(requests)}
                per_request.append((time.process_time() - started) / requests * 1e6)
                assert statuses == {200}, statuses
            print(f"{label:<12} worker CPU µs/request: median {statistics.median(per_request):.0f} "
                  f"(rounds of {requests}: {', '.join(f'{us:.0f}' for us in per_request)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    with scratch_database(min_size=1, max_size=4) as (root, url, _):
        asyncio.run(measure(url, root / "data", arguments.requests, arguments.rounds))


if __name__ == "__main__":
    main()
