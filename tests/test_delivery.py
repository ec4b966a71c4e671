"""Delivery to internal services: resolve, 304, long-poll across workers, SSE, cache, metrics."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from itertools import islice

import httpx
import psycopg2
import pytest
from tests.conftest import bearer
from tests.metrics_helpers import scrape, value

JSON = {"Content-Type": "application/json"}
RESOLVE_ROUTE = "/api/v1/resolve/{application_name}/{configuration_name}"


def create_configuration(http, headers, app_name="billing", name="limits", config=None) -> tuple[str, str]:
    app = http.post("/api/v1/applications", headers=headers, json={"name": app_name})
    assert app.status_code == 201, app.text
    created = http.post(f"/api/v1/applications/{app.json()['id']}/configurations", headers=headers,
                        json={"name": name, "config": config or {"rate": 1}})
    assert created.status_code == 201, created.text
    return app.json()["id"], created.json()["id"]


def put_config(http, headers, configuration_id: str, config: dict) -> httpx.Response:
    response = http.put(f"/api/v1/configurations/{configuration_id}", headers=headers, json={"config": config})
    assert response.status_code == 200, response.text
    return response


def eventually(check, within: float = 10.0):
    """Poll `check` until it returns something truthy. The delivery promise is 1 s; that figure is
    measured by the benchmark, while tests leave room for a loaded machine."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.01)


def test_resolve_returns_the_json_itself_with_etag_and_304(client, admin):
    _, config_id = create_configuration(client, admin, config={"rate": 1, "nested": {"on": True}})
    resolved = client.get("/api/v1/resolve/billing/limits", headers=admin)
    assert resolved.status_code == 200
    assert resolved.json() == {"rate": 1, "nested": {"on": True}}
    assert resolved.headers["x-config-revision"] == "1"
    same = client.get(f"/api/v1/configurations/{config_id}", headers=admin)
    assert resolved.headers["etag"] == same.headers["etag"]

    not_modified = client.get("/api/v1/resolve/billing/limits", headers={**admin, "If-None-Match": resolved.headers["etag"]})
    assert not_modified.status_code == 304 and not_modified.content == b""
    stale = client.get("/api/v1/resolve/billing/limits", headers={**admin, "If-None-Match": '"other.1"'})
    assert stale.status_code == 200

    put_config(client, admin, config_id, {"rate": 2})
    fresh = eventually(lambda: (r := client.get("/api/v1/resolve/billing/limits", headers=admin)).json() == {"rate": 2} and r)
    assert fresh, "the new revision was never served"
    assert fresh.headers["x-config-revision"] == "2" and fresh.headers["etag"] != resolved.headers["etag"]


def test_resolve_unknown_names_and_bad_names(client, admin):
    create_configuration(client, admin)
    assert client.get("/api/v1/resolve/billing/nope", headers=admin).status_code == 404
    assert client.get("/api/v1/resolve/nope/limits", headers=admin).status_code == 404
    assert client.get("/api/v1/resolve/bill%20ing/limits", headers=admin).status_code == 422


def test_resolve_access_rules(client, admin, make_token):
    app_id, _ = create_configuration(client, admin)
    other_app, _ = create_configuration(client, admin, app_name="search")
    scoped = bearer(make_token("service", application_id=app_id))
    assert client.get("/api/v1/resolve/billing/limits", headers=scoped).status_code == 200
    hidden = client.get("/api/v1/resolve/search/limits", headers=scoped)
    assert hidden.status_code == 404 and "not found" in hidden.json()["detail"]
    assert client.get("/api/v1/resolve/billing/limits", headers=bearer(make_token("service", read_only=True))).status_code == 200
    assert client.get("/api/v1/resolve/billing/limits").status_code == 401
    assert client.get(f"/api/v1/applications/{other_app}/events", headers=scoped).status_code == 404


def test_long_poll_times_out_with_304(client, admin):
    create_configuration(client, admin)
    current = client.get("/api/v1/resolve/billing/limits", headers=admin).headers["etag"]
    started = time.monotonic()
    held = client.get("/api/v1/resolve/billing/limits", params={"wait": 1},
                      headers={**admin, "If-None-Match": current})
    assert held.status_code == 304
    assert time.monotonic() - started >= 0.9


def test_long_poll_is_woken_by_a_change_and_by_deletion(client, admin):
    _, config_id = create_configuration(client, admin)
    current = client.get("/api/v1/resolve/billing/limits", headers=admin).headers["etag"]
    results: list[httpx.Response] = []

    def wait() -> None:
        results.append(client.get("/api/v1/resolve/billing/limits", params={"wait": 30},
                                  headers={**admin, "If-None-Match": current}))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    put_config(client, admin, config_id, {"rate": 5})
    waiter.join(10)
    assert results and results[0].status_code == 200 and results[0].json() == {"rate": 5}

    current = results[0].headers["etag"]
    results.clear()
    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    assert client.delete(f"/api/v1/configurations/{config_id}", headers=admin).status_code in (200, 204)
    waiter.join(10)
    assert results and results[0].status_code == 404


def test_cache_is_bypassed_while_listen_connection_is_down(client, admin, services, database_url):
    _, config_id = create_configuration(client, admin)
    client.get("/api/v1/resolve/billing/limits", headers=admin)
    assert eventually(lambda: len(services.delivery.cache) == 1)

    pid = services.listener.backend_pid()
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # A change made behind the service's back while it cannot hear: it must still be seen.
        assert eventually(lambda: not services.listener.connected or services.listener.backend_pid() != pid)
        cur.execute("UPDATE configurations SET config = '{\"rate\": 99}', revision = revision + 1 WHERE id = %s",
                    (config_id,))
    conn.close()
    seen = eventually(lambda: client.get("/api/v1/resolve/billing/limits", headers=admin).json() == {"rate": 99})
    assert seen, "a stale cached value was served after the LISTEN connection dropped"

    # Trusted again once LISTEN is back and the changes made meanwhile have been caught up.
    assert eventually(lambda: services.changes.connected and services.listener.backend_pid() != pid)
    client.get("/api/v1/resolve/billing/limits", headers=admin)
    assert eventually(lambda: len(services.delivery.cache) == 1), "cache not used again after reconnecting"
    put_config(client, admin, config_id, {"rate": 100})
    assert eventually(lambda: client.get("/api/v1/resolve/billing/limits", headers=admin).json() == {"rate": 100})


def sse_events(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The events of an SSE response as they come, each a dict of its fields."""
    current: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in current:  # an `id:` alone moves the resume position on; it is no event
                yield current
            current = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(": ")
        current[field] = value


def read_events(response: httpx.Response, count: int) -> list[dict[str, str]]:
    return list(islice(sse_events(response), count))


def test_event_stream_delivers_changes_and_replays_after_reconnect(live_server, make_token):
    token = bearer(make_token("admin"))
    server = live_server(workers=2)
    with server.client(headers=token, timeout=15) as http:
        app_id, config_id = create_configuration(http, token)
        received: list[dict[str, str]] = []

        def listen() -> None:
            with http.stream("GET", f"/api/v1/applications/{app_id}/events") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                received.extend(read_events(response, 2))

        listener = threading.Thread(target=listen)
        listener.start()
        time.sleep(0.5)
        put_config(http, token, config_id, {"rate": 2})
        put_config(http, token, config_id, {"rate": 3})
        listener.join(10)
        assert [(e["event"], e["data"].count('"revision":')) for e in received] == [("updated", 1)] * 2
        last_id = received[-1]["id"]

        # While the client is away: two more changes and a deletion.
        put_config(http, token, config_id, {"rate": 4})
        put_config(http, token, config_id, {"rate": 5})
        http.delete(f"/api/v1/configurations/{config_id}")
        with http.stream("GET", f"/api/v1/applications/{app_id}/events",
                         headers={"Last-Event-ID": last_id}) as response:
            # The changes made meanwhile, after repeats of the ones received (allowed on a resume).
            seen = {json.loads(e["data"])["id"] for e in received}
            fresh = (event for event in sse_events(response) if json.loads(event["data"])["id"] not in seen)
            missed = list(islice(fresh, 3))
        assert [e["event"] for e in missed] == ["updated", "updated", "deleted"]
        for bad_id in ("abc", "1-", "-1", "99999999999999999999", "1-99999999999999999999"):
            bad = http.get(f"/api/v1/applications/{app_id}/events", headers={"Last-Event-ID": bad_id})
            assert bad.status_code == 400, bad_id
            assert bad.headers["content-type"] == "application/problem+json"


async def long_poll(server, token: dict[str, str], path: str, etag: str) -> tuple[bytes, float]:
    """One waiter on its own connection, with a raw socket: httpx would be the bottleneck at 500."""
    host, port = server.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token['Authorization']}\r\n"
                 f"If-None-Match: {etag}\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    answered_at = time.monotonic()
    writer.close()
    return status_line, answered_at


def wake_many(server, token, config_id: str, count: int) -> tuple[int, list[float]]:
    """Park `count` long-polls, change the configuration once; return how many got 200 and their delays."""
    with server.client(headers=token, timeout=15) as http:
        current = http.get("/api/v1/resolve/billing/limits").headers["etag"]

    async def scenario() -> list[tuple[bytes, float]]:
        path = "/api/v1/resolve/billing/limits?wait=60"
        waiters = [asyncio.create_task(long_poll(server, token, path, current)) for _ in range(count)]
        await asyncio.sleep(2.0)  # let every request arrive and park
        async with httpx.AsyncClient(base_url=server.base_url, headers=token) as c:
            # From the moment the write is sent: the writer's worker wakes its waiters before it answers.
            changed_at = time.monotonic()
            put = await c.put(f"/api/v1/configurations/{config_id}", json={"config": {"rate": count}})
            assert put.status_code == 200
        done = await asyncio.gather(*waiters)
        return [(line, at - changed_at) for line, at in done]

    results = asyncio.run(scenario())
    woken = sum(1 for line, _ in results if line.startswith(b"HTTP/1.1 200"))
    return woken, sorted(delay for _, delay in results)


def test_long_poll_wakes_waiters_in_every_worker(live_server, make_token, tmp_path):
    token = bearer(make_token("admin"))
    shared_metrics = tmp_path / "metrics"  # multiprocess metrics, as `svc serve` sets them up for workers
    shared_metrics.mkdir()
    server = live_server(workers=2, PROMETHEUS_MULTIPROC_DIR=str(shared_metrics))
    with server.client(headers=token, timeout=15) as http:
        _, config_id = create_configuration(http, token)
    # 40 separate connections: the kernel spreads them over both workers.
    woken, delays = wake_many(server, token, config_id, 40)
    assert woken == 40
    with server.client(headers=token, timeout=15) as http:
        samples = scrape(http, token)  # one scrape, both workers' figures
    assert value(samples, "svc_http_requests_total", method="GET", route=RESOLVE_ROUTE, status="200") == 41
    assert value(samples, "svc_http_request_duration_seconds_count", method="GET", route=RESOLVE_ROUTE) == 1
    assert value(samples, "svc_listener_connected") == 1


def test_500_waiters_on_one_worker_are_all_woken_by_one_change(served_app, make_token, capsys):
    token = bearer(make_token("admin"))
    server = served_app()
    with server.client(headers=token, timeout=15) as http:
        _, config_id = create_configuration(http, token)
    woken, delays = wake_many(server, token, config_id, 500)
    with capsys.disabled():
        print(f"\n500 long-poll waiters on one worker: {woken} woken after one change, "
              f"p50 {delays[250] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms")
    assert woken == 500


def test_metrics_are_admin_only_by_default(client, admin, make_token):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(make_token("service"))).status_code == 403
    client.get("/health")
    body = client.get("/metrics", headers=admin)
    assert body.status_code == 200
    for name in ("svc_http_requests_total", "svc_db_pool_in_use", "svc_cache_lookups_total", "svc_long_poll_waiters"):
        assert name in body.text


@pytest.mark.parametrize("mode,status", [("public", 200), ("off", 404)])
def test_metrics_modes(settings, mode, status):
    from fastapi.testclient import TestClient

    from svc.api.app import create_app

    with TestClient(create_app(settings.model_copy(update={"metrics": mode}))) as c:
        assert c.get("/metrics").status_code == status


def test_a_request_makes_at_most_one_thread_hop(client, admin, services, monkeypatch):
    """Blocking work leaves the event loop once per request at most; a read by id not at all (a
    cache miss is one statement on the loop, a warm read is answered by the door; the document is
    the one the write returned), and the other reads of configurations and applications, and the writes
    of configurations."""
    from anyio._backends._asyncio import AsyncIOBackend

    _, config_id = create_configuration(client, admin)
    written = put_config(client, admin, config_id, {"rate": 7, "nested": [1.5, None, "é"]})
    hops: list[str] = []
    hop = AsyncIOBackend.run_sync_in_worker_thread.__func__

    async def counted(cls, func, *args, **kwargs):
        hops.append(getattr(func, "__qualname__", repr(func)))
        return await hop(cls, func, *args, **kwargs)

    monkeypatch.setattr(AsyncIOBackend, "run_sync_in_worker_thread", classmethod(counted))
    path = f"/api/v1/configurations/{config_id}"
    for method, headers, status in [("GET", admin, 200), ("HEAD", admin, 200),
                                    ("GET", {**admin, "If-None-Match": written.headers["etag"]}, 304)]:
        services.delivery.cache.clear()
        hops.clear()
        cold = client.request(method, path, headers=headers)
        assert cold.status_code == status and hops == [], (method, hops)
        hops.clear()
        warm = client.request(method, path, headers=headers)
        assert warm.status_code == status and hops == [], (method, hops)
        if method == "GET" and status == 200:
            assert cold.content == warm.content == written.content
            assert cold.headers["etag"] == written.headers["etag"]
    app_id = client.get(path, headers=admin).json()["application_id"]
    reads = ["/api/v1/configurations/" + "0" * 26, f"{path}/revisions", f"{path}/revisions/1",
             f"{path}/diff?from=1&to=2", f"/api/v1/applications/{app_id}/configurations",
             f"/api/v1/applications/{app_id}", "/api/v1/applications"]
    writes = [("PUT", path, {"config": {"rate": 8}}, 200), ("PATCH", path, {"comments": "hop"}, 200),
              ("POST", f"{path}/rollback", {"revision": 1}, 200),
              ("POST", f"/api/v1/applications/{app_id}/configurations", {"name": "other", "config": {}}, 201),
              ("DELETE", path, None, 204)]
    for method, other, body, status in [("GET", read, None, None) for read in reads] + writes:
        hops.clear()
        answer = client.request(method, other, headers=admin, json=body)
        assert answer.status_code == status or (status is None and answer.status_code in (200, 404)), answer.text
        assert len(hops) <= 1, (method, other, hops)


def test_a_write_is_read_back_by_id_at_once_by_its_worker(client, admin):
    """Read-your-writes by id: the writer's worker drops its cached document before it answers
    the write, without waiting for the NOTIFY."""
    _, config_id = create_configuration(client, admin)
    path = f"/api/v1/configurations/{config_id}"
    for rate in range(2, 8):
        assert client.get(path, headers=admin).status_code == 200  # cached
        assert client.get(path, headers=admin).json()["config"] == {"rate": rate - 1}
        put_config(client, admin, config_id, {"rate": rate})
        assert client.get(path, headers=admin).json()["config"] == {"rate": rate}
    assert client.delete(path, headers=admin).status_code == 204
    assert client.get(path, headers=admin).status_code == 404
