"""Delivery to internal services: resolve, 304, long-poll across workers, SSE, cache, metrics."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import psycopg2
import pytest
from svc.api.door import Door
from tests.configuration_helpers import create_application, user_token
from tests.configuration_helpers import create_configuration as create_in
from tests.conftest import bearer
from tests.metrics_helpers import moved, scrape, value

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


def read_events(response: httpx.Response, count: int) -> list[dict[str, str]]:
    events, current = [], {}
    for line in response.iter_lines():
        if not line:
            if "id" in current:
                events.append(current)
                if len(events) == count:
                    return events
            current = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(": ")
        current[field] = value
    return events


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
            missed = read_events(response, 3)
        assert [e["event"] for e in missed] == ["updated", "updated", "deleted"]
        assert all(json.loads(e["data"])["id"] > json.loads(received[-1]["data"])["id"] for e in missed)
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


def test_500_waiters_on_one_worker_are_all_woken_by_one_change(live_server, make_token, capsys):
    token = bearer(make_token("admin"))
    server = live_server(workers=1)
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


BY_ID_ROUTE = "/api/v1/configurations/{configuration_id}"


def door_cases(client, admin, make_token, database_url, read: str):
    """(method, headers, path, status, answered by the door when warm) for one of the door's reads."""
    app_id, config_id = create_configuration(client, admin, config={"rate": 3})
    _, hidden_id = create_configuration(client, admin, app_name="search")
    if read == "resolve":
        found, hidden, missing = "/api/v1/resolve/billing/limits", "/api/v1/resolve/search/limits", \
            "/api/v1/resolve/billing/nope"
        refused = ["/api/v1/resolve/bill%20ing/limits", "/api/v1/resolve/billing/" + "a" * 257]
        other_spelling = []
    else:
        found, hidden, missing = (f"/api/v1/configurations/{i}" for i in (config_id, hidden_id, "0" * 26))
        refused = ["/api/v1/configurations/not-a-ulid", "/api/v1/configurations/" + "8" * 26]
        other_spelling = [("GET", admin, "/api/v1/configurations/" + config_id.lower(), 200, True)]
    current = client.get(found, headers=admin).headers["etag"]
    scoped = bearer(make_token("service", application_id=app_id))
    return [
        ("GET", admin, found, 200, True),
        ("HEAD", admin, found, 200, True),
        ("GET", {**admin, "If-None-Match": current}, found, 304, True),
        ("GET", {**admin, "If-None-Match": f'W/{current}, "x.1"'}, found, 304, True),
        ("GET", {**admin, "If-None-Match": "*"}, found, 304, True),
        ("GET", {**admin, "If-None-Match": '"other.1"'}, found, 200, True),
        ("GET", {**admin, "If-Match": '"other.1"'}, found, 412, True),
        ("GET", {**admin, "If-None-Match": "junk"}, found, 412, True),
        ("GET", {}, found, 401, False),
        ("GET", bearer("svc_" + "x" * 43), found, 401, False),
        ("GET", {"Authorization": "Basic " + admin["Authorization"][7:]}, found, 401, False),
        ("GET", user_token(make_token, database_url), found, 403, True),
        ("GET", scoped, hidden, 404, True),  # hidden from this token
        ("GET", admin, missing, 404, True),
        *[("GET", admin, path, 422, False) for path in refused],
        *other_spelling,
    ]


@pytest.fixture
def passed_on(client) -> list[str]:
    """The paths of the requests the door passed on to FastAPI's routing (it answered the others)."""
    layer = client.app.middleware_stack  # built when the client started the app
    while not isinstance(layer, Door):
        layer = layer.app
    routing, paths = layer.app, []

    async def counted(scope, receive, send):
        paths.append(scope["path"])
        await routing(scope, receive, send)

    layer.app = counted
    return paths


def same_answer(route: httpx.Response, door: httpx.Response, **placeholders: tuple[str, str]) -> None:
    """The two answers are the same but for the request id, the date, and the pairs of strings in
    `placeholders` (what each request named: the route's first, the door's second)."""
    ignored = ("x-request-id", "date", *(("content-length",) if placeholders else ()))  # names differ in length

    def normalised(response: httpx.Response, side: int) -> tuple[dict, object]:
        text = response.text
        headers = {k: v for k, v in response.headers.items() if k not in ignored}
        for placeholder, values in placeholders.items():
            text = text.replace(values[side], placeholder)
            headers = {k: v.replace(values[side], placeholder) for k, v in headers.items()}
        if not text or "json" not in response.headers.get("content-type", ""):
            return headers, text
        body = json.loads(text)
        for moment in ("request_id", "created_at", "updated_at"):
            body.pop(moment, None)
        return headers, body

    assert normalised(route, 0) == normalised(door, 1)


@pytest.mark.parametrize("read,route", [("resolve", RESOLVE_ROUTE), ("by id", BY_ID_ROUTE)])
def test_the_cache_door_answers_exactly_as_the_route(client, admin, make_token, database_url, read, route, passed_on):
    """Each request is sent with both caches empty (the route answers) and again with the token
    cached (the door in front of FastAPI answers): status, body, headers and metric labels must
    be the same; the door leaves to the route only refused paths and tokens it does not hold."""
    cases = door_cases(client, admin, make_token, database_url, read)
    services = client.app.state.services
    for method, headers, path, status, by_door in cases:
        before = scrape(client, admin)
        services.authenticator.cache.clear()
        services.delivery.cache.clear()
        passed_on.clear()
        cold = client.request(method, path, headers=headers)
        warm = client.request(method, path, headers=headers)
        assert len(passed_on) == 2 - by_door, (method, path, headers)
        after = scrape(client, admin)
        assert cold.status_code == warm.status_code == status, (method, path, headers, cold.text)
        assert moved(before, after, "svc_http_requests_total", method=method, route=route, status=str(status)) == 2
        same_answer(cold, warm)


def oversized(limit: int):
    """A JSON body streamed without Content-Length, just over the limit."""
    yield b'{"config": {"pad": "'
    yield b"x" * limit
    yield b'"}}'


# (what, caller, the configuration's application, path after /configurations/, extra headers,
#  body, status, answered by the door when the token is cached)
PUT_CASES = [
    ("replace", "admin", "billing", "{id}", {}, b'{"config": {"rate": 2}, "message": "up"}', 200, True),
    ("every field", "admin", "billing", "{id}", {},
     b'{"config": {"rate": 2}, "comments": "c", "schema": {"type": "object"}, "secret_paths": []}', 200, True),
    ("If-Match current", "admin", "billing", "{id}", {"If-Match": "{etag}"}, b'{"config": {}}', 200, True),
    ("If-Match stale", "admin", "billing", "{id}", {"If-Match": '"{id}.9"'}, b'{"config": {}}', 412, True),
    ("If-Match malformed", "admin", "billing", "{id}", {"If-Match": "junk"}, b'{"config": {}}', 412, True),
    ("If-None-Match *", "admin", "billing", "{id}", {"If-None-Match": "*"}, b'{"config": {}}', 412, True),
    ("fails its schema", "admin", "billing", "{id}", {},
     b'{"config": {"rate": "x"}, "schema": {"properties": {"rate": {"type": "integer"}}}}', 422, True),
    ("lower-case id", "admin", "billing", "{lower}", {}, b'{"config": {}}', 200, True),
    ("a +json type", "admin", "billing", "{id}", {"Content-Type": "application/merge-patch+json"},
     b'{"config": {}}', 200, True),
    ("unknown id", "admin", "billing", "0" * 26, {}, b'{"config": {}}', 404, True),
    ("out of a scoped token's reach", "scoped", "search", "{id}", {}, b'{"config": {}}', 404, True),
    ("read-only token", "read-only", "billing", "{id}", {}, b'{"config": {}}', 403, True),
    ("over the body limit", "admin", "billing", "{id}", {}, oversized, 413, True),
    ("not JSON", "admin", "billing", "{id}", {}, b'{"config": ', 400, False),
    ("NaN", "admin", "billing", "{id}", {}, b'{"config": {"rate": NaN}}', 400, False),
    ("extra field", "admin", "billing", "{id}", {}, b'{"config": {}, "extra": 1}', 422, False),
    ("config not an object", "admin", "billing", "{id}", {}, b'{"config": [1]}', 422, False),
    ("empty body", "admin", "billing", "{id}", {}, b"", 422, False),
    ("text/plain", "admin", "billing", "{id}", {"Content-Type": "text/plain"}, b'{"config": {}}', 415, False),
    ("no Content-Type", "admin", "billing", "{id}", {"Content-Type": None}, b'{"config": {}}', 415, False),
    ("a query string", "admin", "billing", "{id}?message=q", {}, b'{"config": {}}', 200, False),
    ("not a ULID", "admin", "billing", "not-a-ulid", {}, b'{"config": {}}', 422, False),
    ("unknown token", "unknown", "billing", "{id}", {}, b'{"config": {}}', 401, False),
    ("no token", "nobody", "billing", "{id}", {}, b'{"config": {}}', 401, False),
]

MERGE = {"Content-Type": "application/merge-patch+json"}
PATCH_CASES = [
    ("merge", "admin", "billing", "{id}", MERGE, b'{"rate": 2, "tier": {"name": "gold"}}', 200, True),
    ("merge deleting a key", "admin", "billing", "{id}", MERGE, b'{"rate": null}', 200, True),
    ("merge changing nothing", "admin", "billing", "{id}", MERGE, b'{"rate": 1}', 200, True),
    ("merge with parameters", "admin", "billing", "{id}", {"Content-Type": "Application/Merge-Patch+JSON; x=y"},
     b'{"rate": 3}', 200, True),
    ("merge not an object", "admin", "billing", "{id}", MERGE, b'[1]', 422, True),
    ("metadata", "admin", "billing", "{id}", {}, b'{"comments": "c", "message": "why"}', 200, True),
    ("metadata with a schema", "admin", "billing", "{id}", {},
     b'{"schema": {"properties": {"rate": {"type": "integer"}}}}', 200, True),
    ("metadata the config fails", "admin", "billing", "{id}", {},
     b'{"schema": {"properties": {"rate": {"type": "string"}}}}', 422, True),
    ("If-Match current", "admin", "billing", "{id}", {**MERGE, "If-Match": "{etag}"}, b'{"rate": 2}', 200, True),
    ("If-Match stale", "admin", "billing", "{id}", {**MERGE, "If-Match": '"{id}.9"'}, b'{"rate": 2}', 412, True),
    ("lower-case id", "admin", "billing", "{lower}", MERGE, b'{"rate": 2}', 200, True),
    ("unknown id", "admin", "billing", "0" * 26, MERGE, b'{"rate": 2}', 404, True),
    ("out of a scoped token's reach", "scoped", "search", "{id}", MERGE, b'{"rate": 2}', 404, True),
    ("read-only token", "read-only", "billing", "{id}", MERGE, b'{"rate": 2}', 403, True),
    ("over the body limit", "admin", "billing", "{id}", MERGE, oversized, 413, True),
    ("metadata with config", "admin", "billing", "{id}", {}, b'{"config": {}}', 422, False),
    ("NaN", "admin", "billing", "{id}", MERGE, b'{"rate": NaN}', 400, False),
    ("another +json type", "admin", "billing", "{id}", {"Content-Type": "application/json-patch+json"},
     b'[{"op": "remove", "path": "/rate"}]', 415, False),
    ("text/plain", "admin", "billing", "{id}", {"Content-Type": "text/plain"}, b'{"rate": 2}', 415, False),
    ("a query string", "admin", "billing", "{id}?message=q", MERGE, b'{"rate": 2}', 200, False),
    ("unknown token", "unknown", "billing", "{id}", MERGE, b'{"rate": 2}', 401, False),
]


@pytest.mark.parametrize("method,cases", [("PUT", PUT_CASES), ("PATCH", PATCH_CASES)])
def test_the_door_writes_exactly_as_the_route(client, admin, make_token, passed_on, method, cases):
    """Each PUT or PATCH is sent twice, to two configurations made alike: first with the token cache
    empty (the route answers), then with the caller's token cached (the door answers what it
    takes): status, body, headers and metric labels must be the same, but for the configurations'
    ids and names."""
    applications = {name: create_application(client, admin, name)["id"] for name in ("billing", "search")}
    callers = {
        "admin": admin,
        "scoped": bearer(make_token("service", application_id=applications["billing"])),
        "read-only": bearer(make_token("service", read_only=True)),
        "unknown": bearer("svc_" + "x" * 43),
        "nobody": {},
    }
    services = client.app.state.services
    for number, (what, caller, application, path, extra, body, status, by_door) in enumerate(cases):
        twins = [create_in(client, admin, applications[application], name=f"{side}-{number}", config={"rate": 1},
                           comments="made alike") for side in ("route", "door")]
        before = scrape(client, admin)
        answers, passes = [], []
        for twin, cached in zip(twins, (False, True)):
            services.authenticator.cache.clear()
            if cached:  # as any request authenticated by the route leaves it
                client.get("/api/v1/applications", headers=callers[caller])
            values = {"id": twin["id"], "lower": twin["id"].lower(), "etag": f'"{twin["id"]}.1"'}
            headers = {"Content-Type": "application/json", **callers[caller], **extra}  # None: not sent
            headers = {k: v.format(**values) for k, v in headers.items() if v is not None}
            content = body(services.settings.max_request_bytes) if callable(body) else body
            passed_on.clear()
            answers.append(client.request(method, "/api/v1/configurations/" + path.format(**values),
                                          headers=headers, content=content))
            passes.append(len(passed_on))
        route, door = answers
        assert route.status_code == door.status_code == status, (what, route.text, door.text)
        assert passes == [1, 0 if by_door else 1], what
        same_answer(route, door, ID=tuple(t["id"] for t in twins), NAME=tuple(t["name"] for t in twins))
        after = scrape(client, admin)
        assert moved(before, after, "svc_http_requests_total", method=method, route=BY_ID_ROUTE,
                     status=str(status)) == 2, what


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
