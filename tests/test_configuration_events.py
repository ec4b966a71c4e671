"""Change events (row + NOTIFY, only on commit) and the audit trail of configuration writes."""

from __future__ import annotations

import pytest

from svc import changes
from tests.configuration_helpers import API, Listener, create_application, create_configuration, query

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def listener(database_url):
    listening = Listener(database_url)
    yield listening
    listening.close()


def test_every_write_is_announced_once_committed(client, admin, listener, database_url):
    app = create_application(client, admin, "billing")
    created = create_configuration(client, admin, app["id"], "main", {"v": 1})
    target = f"{API}/configurations/{created['id']}"
    assert client.put(target, json={"config": {"v": 2}}, headers=admin).status_code == 200
    # Refused or empty writes announce nothing: the next notification is the merge patch's.
    assert client.put(target, json={"config": {"v": 3}}, headers=admin | {"If-Match": '"x.1"'}).status_code == 412
    assert client.put(target, json={"config": {"v": 2}}, headers=admin).json()["revision"] == 2
    assert client.patch(target, json={"v": 3}, headers=admin | MERGE_PATCH).status_code == 200
    assert client.post(f"{target}/rollback", json={"revision": 1}, headers=admin).status_code == 200
    assert client.delete(target, headers=admin).status_code == 204

    received = [listener.next() for _ in range(5)]
    assert [(e["kind"], e["revision"]) for e in received] == [
        ("created", 1), ("updated", 2), ("updated", 3), ("updated", 4), ("deleted", 4),
    ]
    assert received[0] == {
        "id": received[0]["id"],
        "application_id": app["id"],
        "application_name": "billing",
        "configuration_id": created["id"],
        "configuration_name": "main",
        "revision": 1,
        "kind": "created",
    }
    rows = query(database_url, "SELECT id, revision, kind FROM configuration_events ORDER BY id")
    assert rows == [(e["id"], e["revision"], e["kind"]) for e in received]


def test_notifications_wait_for_commit_and_vanish_on_rollback(services, client, admin, listener):
    app = create_application(client, admin, "billing")
    event = {"application_id": app["id"], "configuration_id": app["id"], "name": "main", "kind": "updated"}

    with services.db.transaction() as rolled_back:
        changes.publish(rolled_back, services.changes.announce, revision=1, **event)  # left without commit: rolls back
    with services.db.transaction() as held:
        changes.publish(held, services.changes.announce, revision=2, **event)
        with services.db.transaction() as other:
            changes.publish(other, services.changes.announce, revision=3, **event)
            other.commit()
        assert listener.next()["revision"] == 3  # 2 is still uncommitted; 1 never will be
        held.commit()
    assert listener.next()["revision"] == 2
    assert not listener.conn.notifies


def test_configuration_writes_are_audited_with_revisions(client, admin):
    app = create_application(client, admin, "billing")
    created = create_configuration(client, admin, app["id"], "main", {"v": 1})
    target = f"{API}/configurations/{created['id']}"
    client.put(target, json={"config": {"v": 2}}, headers=admin)
    client.patch(target, json={"v": 3}, headers=admin | MERGE_PATCH)
    client.post(f"{target}/rollback", json={"revision": 1}, headers=admin)
    client.delete(target, headers=admin)

    events = client.get(
        f"{API}/audit", params={"resource_type": "configuration", "resource_id": created["id"]}, headers=admin
    ).json()["items"]
    assert [(e["action"], e["detail"]["before_revision"], e["detail"]["after_revision"]) for e in events] == [
        ("configuration.delete", 4, None),
        ("configuration.rollback", 3, 4),
        ("configuration.update", 2, 3),
        ("configuration.update", 1, 2),
        ("configuration.create", None, 1),
    ]
    assert events[1]["detail"]["rolled_back_to"] == 1
    assert all(e["detail"]["application_id"] == app["id"] and e["detail"]["name"] == "main" for e in events)
    assert all(e["actor_name"] == "test-admin" for e in events)
