"""Streams end with their credentials, and a resumed stream never misses a change (issue 22).

A long-poll or SSE stream opened with a token gets nothing once the token is revoked (the
long-poll answers 401, the stream ends), on the revoking worker and on every other one. A
client that resumes with `Last-Event-ID` receives every change it has not seen, even one whose
transaction took a lower event id and committed after a later change had been sent.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import psycopg2

from svc.services.delivery import Position, StreamedChange
from tests.configuration_helpers import API, create_application, create_configuration, query
from tests.conftest import bearer
from tests.test_delivery import eventually, put_config, read_events

PROBLEM = "application/problem+json"


def service_token(http, admin: dict[str, str], **scope) -> tuple[str, dict[str, str]]:
    """A service token created through the API: its id and its headers."""
    created = http.post(f"{API}/tokens", json={"name": "streamer", "role": "service", **scope}, headers=admin)
    assert created.status_code == 201, created.text
    return created.json()["id"], bearer(created.json()["token"])


class LongPoll(threading.Thread):
    """One long-poll for a change of `billing/limits`, on its own connection."""

    def __init__(self, get, headers: dict[str, str], etag: str) -> None:
        super().__init__(daemon=True)
        self.get, self.headers, self.etag = get, headers, etag
        self.response: httpx.Response | None = None

    def run(self) -> None:
        self.response = self.get(f"{API}/resolve/billing/limits", params={"wait": 30},
                                 headers={**self.headers, "If-None-Match": self.etag})


class EventStream(threading.Thread):
    """One SSE stream read until the server ends it: its events, and when it ended."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.base_url, self.path, self.headers = base_url, path, headers
        self.open = threading.Event()
        self.events: list[dict] = []
        self.ended_at: float | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=20) as http, \
                http.stream("GET", self.path, headers=self.headers) as response:
            assert response.status_code == 200
            self.open.set()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    self.events.append(json.loads(line.removeprefix("data: ")))
        self.ended_at = time.monotonic()


async def drain(stream) -> list:
    """Every change a stream yields until it ends (keep-alives skipped)."""
    return [change.event async for change in stream if isinstance(change, StreamedChange)]


def test_a_revoked_token_gets_nothing_more_on_its_worker(client, admin, services):
    app = create_application(client, admin, "billing")
    config = create_configuration(client, admin, app["id"], "limits", {"rate": 1})
    token_id, token = service_token(client, admin, reveal_secrets=True)
    principal = client.portal.call(services.authenticator.principal, token["Authorization"].removeprefix("Bearer "))
    stream = client.portal.call(services.delivery.open_stream, principal, app["id"], None, 0.05)
    assert not isinstance(client.portal.call(anext, stream), StreamedChange)  # a keep-alive: the stream has subscribed
    streamed = client.portal.start_task_soon(drain, stream)
    poll = LongPoll(client.get, token, client.get(f"{API}/resolve/billing/limits", headers=token).headers["etag"])
    poll.start()
    try:
        put_config(client, admin, config["id"], {"rate": 2})  # reaches both while the token is live
        assert eventually(lambda: poll.response is not None)
        assert poll.response.status_code == 200 and poll.response.json() == {"rate": 2}
        poll = LongPoll(client.get, token, poll.response.headers["etag"])
        poll.start()
        time.sleep(0.3)  # parked

        assert client.delete(f"{API}/tokens/{token_id}", headers=admin).status_code == 200
        put_config(client, admin, config["id"], {"rate": 3})  # made after the revocation

        poll.join(10)
        assert poll.response.status_code == 401, poll.response.text
        assert poll.response.headers["content-type"] == PROBLEM
        assert [event.revision for event in streamed.result(timeout=10)] == [2], "the stream outlived its token"
    finally:
        streamed.cancel()


def test_a_stream_whose_application_is_deleted_with_its_token_ends(client, admin, services):
    """A token limited to an application is deleted with it: its long-poll answers, it never hangs."""
    app = create_application(client, admin, "billing")
    create_configuration(client, admin, app["id"], "limits", {"rate": 1})
    _, token = service_token(client, admin, application_id=app["id"])
    poll = LongPoll(client.get, token, client.get(f"{API}/resolve/billing/limits", headers=token).headers["etag"])
    poll.start()
    time.sleep(0.3)
    assert client.delete(f"{API}/applications/{app['id']}", headers=admin).status_code in (200, 204)
    poll.join(10)
    assert poll.response is not None and poll.response.status_code in (401, 404), poll.response
    assert poll.response.headers["content-type"] == PROBLEM


def test_a_worker_that_cannot_hear_rechecks_before_every_change(client, admin, services, database_url):
    """While the LISTEN connection is down a revocation goes unheard: the stream checks its
    token again before each change it is handed, and ends instead of sending it."""
    app = create_application(client, admin, "billing")
    config = create_configuration(client, admin, app["id"], "limits", {"rate": 1})
    token_id, token = service_token(client, admin)
    principal = client.portal.call(services.authenticator.principal, token["Authorization"].removeprefix("Bearer "))
    stream = client.portal.call(services.delivery.open_stream, principal, app["id"], None, 0.05)
    assert not isinstance(client.portal.call(anext, stream), StreamedChange)  # subscribed
    streamed = client.portal.start_task_soon(drain, stream)
    listener, dsn = services.listener, services.listener.dsn
    listener.dsn = "postgresql://127.0.0.1:1/unreachable"  # it cannot come back until restored
    pid = listener.backend_pid()
    try:
        query(database_url, "SELECT pg_terminate_backend(%s)", (pid,))
        assert eventually(lambda: not services.changes.connected)
        query(database_url, "UPDATE api_tokens SET revoked_at = now() WHERE id = %s RETURNING id", (token_id,))
        put_config(client, admin, config["id"], {"rate": 2})
        assert streamed.result(timeout=10) == [], "a deaf worker streamed a change to a revoked token"
    finally:
        listener.dsn = dsn
        streamed.cancel()
    assert eventually(lambda: services.changes.connected)


def test_a_revoked_token_gets_nothing_more_on_any_worker(live_server, make_token, capsys):
    """Streams and long-polls on several connections, so both workers hold some, whichever one
    the revocation reaches: each hears it through PostgreSQL."""
    admin = bearer(make_token("admin"))
    server = live_server(workers=2)
    with server.client(headers=admin, timeout=20) as http:
        app = create_application(http, admin, "billing")
        config = create_configuration(http, admin, app["id"], "limits", {"rate": 1})
        token_id, token = service_token(http, admin, reveal_secrets=True)
        etag = http.get(f"{API}/resolve/billing/limits", headers=token).headers["etag"]
        streams = [EventStream(server.base_url, f"{API}/applications/{app['id']}/events", token) for _ in range(4)]
        polls = [LongPoll(httpx.Client(base_url=server.base_url, timeout=20).get, token, etag) for _ in range(4)]
        for waiter in (*streams, *polls):
            waiter.start()
        assert all(stream.open.wait(10) for stream in streams)
        time.sleep(0.5)  # the long-polls parked

        revoked_at = time.monotonic()
        assert http.delete(f"{API}/tokens/{token_id}").status_code == 200
        put_config(http, admin, config["id"], {"rate": 2})  # made after the revocation

        for waiter in (*streams, *polls):
            waiter.join(15)
    assert [poll.response.status_code for poll in polls] == [401] * 4
    assert all(poll.response.headers["content-type"] == PROBLEM for poll in polls)
    assert all(stream.ended_at is not None for stream in streams), "a stream outlived its token"
    assert [stream.events for stream in streams] == [[]] * 4, "a change made after the revocation was streamed"
    with capsys.disabled():
        closed = sorted(stream.ended_at - revoked_at for stream in streams)
        print(f"\nstreams closed {closed[0] * 1000:.0f}-{closed[-1] * 1000:.0f} ms after the revocation was sent")


def test_a_resume_sends_a_change_that_committed_after_a_later_one(client, admin, services, database_url):
    """Event ids are taken before commit: a change held open takes a lower id than one made and
    streamed meanwhile. Resuming from the later change's position must still send it."""
    app = create_application(client, admin, "billing")
    config = create_configuration(client, admin, app["id"], "limits", {"rate": 1})
    stream = client.portal.call(services.delivery.open_stream, admin_principal(client, services, admin),
                                app["id"], None, 0.05)
    assert not isinstance(client.portal.call(anext, stream), StreamedChange)  # subscribed

    late = psycopg2.connect(database_url)  # a writer whose commit is held up
    try:
        with late.cursor() as cur:
            cur.execute(
                "INSERT INTO configuration_events (application_id, configuration_id, name, revision, kind) "
                "VALUES (%s, %s, 'limits', 99, 'updated') RETURNING id", (app["id"], config["id"]))
            late_id = cur.fetchone()[0]
        put_config(client, admin, config["id"], {"rate": 2})
        later = client.portal.call(next_change, stream)
        assert later.event.id > late_id and later.event.revision == 2
        client.portal.call(stream.aclose)  # the client goes away after the later change
        late.commit()
    finally:
        late.close()

    resumed = client.portal.call(services.delivery.open_stream, admin_principal(client, services, admin),
                                 app["id"], Position.parse(str(later.position)), 0.05)
    replayed = client.portal.call(changes_until_quiet, resumed)
    assert late_id in [change.event.id for change in replayed], "the late change was skipped"
    # And through HTTP: the id sent is the position, accepted back as Last-Event-ID.
    assert str(later.position) == f"{later.event.id}-{later.position.floor}"


def test_an_idle_stream_moves_its_position_on_so_a_resume_repeats_nothing(client, admin, services, database_url):
    app = create_application(client, admin, "billing")
    config = create_configuration(client, admin, app["id"], "limits", {"rate": 1})
    principal = admin_principal(client, services, admin)
    stream = client.portal.call(services.delivery.open_stream, principal, app["id"], None, 0.05)
    assert not isinstance(client.portal.call(anext, stream), StreamedChange)  # subscribed
    put_config(client, admin, config["id"], {"rate": 2})
    change = client.portal.call(next_change, stream)
    (xid,) = query(database_url, "SELECT xid::text FROM configuration_events WHERE id = %s", (change.event.id,))[0]
    idle = client.portal.call(next_position, stream)
    while idle.floor <= int(xid):  # until the feed has read past the change's transaction
        idle = client.portal.call(next_position, stream)
    client.portal.call(stream.aclose)
    assert idle.id == change.event.id

    repeated = client.portal.call(services.delivery.open_stream, principal, app["id"], change.position, 0.05)
    assert [c.event.id for c in client.portal.call(changes_until_quiet, repeated)] == [change.event.id]
    resumed = client.portal.call(services.delivery.open_stream, principal, app["id"], idle, 0.05)
    assert client.portal.call(changes_until_quiet, resumed) == []


def test_the_sse_id_is_a_position_a_client_resumes_from(served_app, make_token):
    admin = bearer(make_token("admin"))
    server = served_app()
    with server.client(headers=admin, timeout=20) as http:
        app = create_application(http, admin, "billing")
        config = create_configuration(http, admin, app["id"], "limits", {"rate": 1})
        put_config(http, admin, config["id"], {"rate": 2})
        with http.stream("GET", f"{API}/applications/{app['id']}/events", headers={"Last-Event-ID": "0"}) as response:
            first, second = read_events(response, 2)
        event_id, floor = second["id"].split("-")
        assert event_id == str(json.loads(second["data"])["id"]) and floor.isdigit()
        put_config(http, admin, config["id"], {"rate": 3})
        with http.stream("GET", f"{API}/applications/{app['id']}/events",
                         headers={"Last-Event-ID": second["id"]}) as response:
            (third,) = read_events(response, 1)
        assert json.loads(third["data"])["revision"] == 3


def admin_principal(client, services, headers: dict[str, str]):
    return client.portal.call(services.authenticator.principal, headers["Authorization"].removeprefix("Bearer "))


async def next_change(stream):
    async for change in stream:
        if isinstance(change, StreamedChange):
            return change


async def next_position(stream) -> Position:
    """The next position a stream sends on its own (while idle)."""
    async for change in stream:
        if isinstance(change, Position):
            return change


async def changes_until_quiet(stream) -> list:
    """The changes a stream yields until its first keep-alive (the replay is done by then)."""
    changes = []
    async for change in stream:
        if not isinstance(change, StreamedChange):
            break
        changes.append(change)
    await stream.aclose()
    return changes
