"""Changes announced after commit, and caught up from `configuration_events` when an announcement
never comes: every worker sees every committed change (once), even one whose NOTIFY was lost and
one whose event id committed after a higher one; a rolled-back change reaches nobody."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from svc.api.app import create_app
from svc.repositories.changes import ChangeRepository
from svc import changes
from svc.services.auth import Principal
from svc.services.container import Services
from svc.services.delivery import ByName, Position
from tests.configuration_helpers import API, create_application, create_configuration, query
from tests.test_delivery import eventually

RESOLVE = f"{API}/resolve/billing"


@pytest.fixture
def other(settings) -> Iterator[TestClient]:
    """A second worker on the same database (as another process or host would be)."""
    with TestClient(create_app(settings)) as second:
        yield second


def services_of(client: TestClient) -> Services:
    return client.app.state.services


def delivered_ids(client: TestClient) -> list[int]:
    """Record the id of every change the worker's feed hands to its subscribers, in order."""
    ids: list[int] = []
    client.portal.call(lambda: services_of(client).changes.subscribe(lambda change: ids.append(change["id"])))
    return ids


def resolved(client: TestClient, admin: dict[str, str], name: str) -> dict:
    response = client.get(f"{RESOLVE}/{name}", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


def cached(client: TestClient, name: str) -> bool:
    return services_of(client).delivery.cache.get(ByName("billing", name)) is not None  # the masked body


async def first_events(stream, count: int) -> list:
    """The first `count` changes a stream yields (keep-alives skipped)."""
    events = []
    async for change in stream:
        if change is not None:
            events.append(change.event)
            if len(events) == count:
                return events


def test_a_change_whose_announcement_was_lost_still_reaches_every_worker(
    client, other, admin, monkeypatch, database_url
):
    app = create_application(client, admin, "billing")
    config = create_configuration(client, admin, app["id"], "limits", {"rate": 1})
    assert eventually(lambda: resolved(other, admin, "limits") == {"rate": 1} and cached(other, "limits"))
    second = services_of(other)
    etag = other.get(f"{RESOLVE}/limits", headers=admin).headers["etag"].strip('"')
    waiter = other.portal.start_task_soon(
        second.delivery.wait_for_change, Principal.operator(), "billing", "limits", frozenset({etag}), 30
    )
    # From the latest event on (Last-Event-ID), so the stream sees the change whenever it subscribes.
    latest = query(database_url, "SELECT max(id) FROM configuration_events")[0][0]
    stream = other.portal.call(second.delivery.open_stream, Principal.operator(), app["id"], Position(latest), 30)

    streamed = other.portal.start_task_soon(first_events, stream, 1)
    try:
        # The writer dies between its commit and its NOTIFY: the announcement never leaves.
        monkeypatch.setattr(services_of(client).configurations, "announce", lambda payload: None)
        assert client.put(f"{API}/configurations/{config['id']}", json={"config": {"rate": 2}},
                          headers=admin).status_code == 200

        assert eventually(lambda: resolved(other, admin, "limits") == {"rate": 2}), "the other worker kept it"
        assert eventually(lambda: resolved(client, admin, "limits") == {"rate": 2}), "the writer's worker kept it"
        assert waiter.result(timeout=10).revision == 2
        assert [(e.revision, e.kind) for e in streamed.result(timeout=10)] == [(2, "updated")]
    finally:  # a waiter or stream left running would hold the worker's shutdown
        waiter.cancel()
        streamed.cancel()


def test_an_event_id_that_commits_after_a_higher_one_is_not_skipped(client, other, admin, services):
    """Ids come from a sequence: the transaction that took the lower id may commit last."""
    app = create_application(client, admin, "billing")
    first = create_configuration(client, admin, app["id"], "first", {"v": 1})
    second = create_configuration(client, admin, app["id"], "second", {"v": 1})
    delivered = delivered_ids(other)
    for name in ("first", "second"):
        assert resolved(other, admin, name) == {"v": 1}

    def change(tx, configuration: dict) -> int:
        """The configuration's next revision and its event, with no announcement."""
        tx.execute("UPDATE configurations SET config = '{\"v\": 2}', revision = 2 WHERE id = %(id)s",
                   {"id": configuration["id"]})
        return ChangeRepository(tx).record(application_id=app["id"], configuration_id=configuration["id"],
                                           name=configuration["name"], revision=2, kind="updated").id

    with services.db.transaction() as rolled_back:
        never = change(rolled_back, second)  # never committed: must reach nobody
    with services.db.transaction() as late:
        low = change(late, first)
        with services.db.transaction() as early:
            high = change(early, second)
            early.commit()
        assert never < low < high
        assert eventually(lambda: resolved(other, admin, "second") == {"v": 2})
        assert eventually(lambda: resolved(other, admin, "first") == {"v": 1} and cached(other, "first"))
        late.commit()

    assert eventually(lambda: resolved(other, admin, "first") == {"v": 2}), "event committed out of order was skipped"
    assert eventually(lambda: low in delivered)
    assert high in delivered and never not in delivered
    assert len(delivered) == len(set(delivered)), "a change was delivered twice"


def test_the_change_stream_sends_a_lower_id_that_arrives_after_a_higher_one(client, admin, services):
    """Changes committed on several workers are announced in any order; none may be dropped."""
    app = create_application(client, admin, "billing")
    event = {"application_id": app["id"], "configuration_id": app["id"], "name": "main", "kind": "updated"}
    stream = client.portal.call(services.delivery.open_stream, Principal.operator(), app["id"], None, 0.05)
    assert client.portal.call(anext, stream) is None  # a keep-alive: the stream has subscribed
    streamed = client.portal.start_task_soon(first_events, stream, 2)
    try:
        with services.db.transaction() as late:
            low = changes.publish(late, services.changes.announce, revision=1, **event)
            with services.db.transaction() as early:
                high = changes.publish(early, services.changes.announce, revision=2, **event)
                early.commit()
            late.commit()
        assert [e.id for e in streamed.result(timeout=10)] == [high, low]
    finally:
        streamed.cancel()
