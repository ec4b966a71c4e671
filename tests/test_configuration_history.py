"""Revisions, diff, rollback, and optimistic concurrency between real concurrent writers."""

from __future__ import annotations

import threading

import jsonpatch
import pytest

from svc.ids import new_id
from tests.conftest import bearer
from tests.configuration_helpers import API, create_application, create_configuration


@pytest.fixture
def configuration(client, admin):
    """A configuration with three revisions."""
    app = create_application(client, admin, "billing")
    created = create_configuration(client, admin, app["id"], "main", {"port": 1, "hosts": ["a"], "debug": True})
    base = f"{API}/configurations/{created['id']}"
    client.put(base, json={"config": {"port": 2, "hosts": ["a", "b"], "debug": True}, "message": "two"},
               headers=admin)
    client.put(base, json={"config": {"port": 3, "hosts": ["b"], "tls": {"on": True}}, "message": "three"},
               headers=admin)
    return created


def url(configuration: dict, suffix: str = "") -> str:
    return f"{API}/configurations/{configuration['id']}{suffix}"


def test_revisions_newest_first_with_pages(client, admin, configuration):
    listed = client.get(url(configuration, "/revisions"), headers=admin)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [r["revision"] for r in items] == [3, 2, 1]
    assert set(items[0]) == {"revision", "config", "schema", "comments", "author", "message", "created_at"}
    assert items[0]["message"] == "three" and items[2]["message"] is None and items[0]["author"] == "test-admin"

    first = client.get(url(configuration, "/revisions"), params={"limit": 2}, headers=admin).json()
    assert [r["revision"] for r in first["items"]] == [3, 2] and first["next"] == "2"
    rest = client.get(url(configuration, "/revisions"), params={"limit": 2, "after": first["next"]},
                      headers=admin).json()
    assert [r["revision"] for r in rest["items"]] == [1] and rest["next"] is None


def test_one_revision(client, admin, configuration):
    second = client.get(url(configuration, "/revisions/2"), headers=admin)
    assert second.status_code == 200
    assert second.json()["config"] == {"port": 2, "hosts": ["a", "b"], "debug": True}
    assert client.get(url(configuration, "/revisions/9"), headers=admin).status_code == 404
    assert client.get(url(configuration, "/revisions/0"), headers=admin).status_code == 422
    assert client.get(f"{API}/configurations/{new_id()}/revisions/1", headers=admin).status_code == 404
    assert client.get(f"{API}/configurations/{new_id()}/revisions", headers=admin).status_code == 404


def test_diff_between_non_adjacent_revisions_is_a_json_patch(client, admin, configuration):
    response = client.get(url(configuration, "/diff"), params={"from": 1, "to": 3}, headers=admin)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json-patch+json"
    operations = response.json()
    first = client.get(url(configuration, "/revisions/1"), headers=admin).json()["config"]
    third = client.get(url(configuration, "/revisions/3"), headers=admin).json()["config"]
    assert jsonpatch.apply_patch(first, operations) == third
    assert {"op": "remove", "path": "/debug"} in operations
    assert {"op": "add", "path": "/tls", "value": {"on": True}} in operations

    backwards = client.get(url(configuration, "/diff"), params={"from": 3, "to": 1}, headers=admin).json()
    assert jsonpatch.apply_patch(third, backwards) == first
    assert client.get(url(configuration, "/diff"), params={"from": 2, "to": 2}, headers=admin).json() == []


def test_diff_errors(client, admin, configuration):
    assert client.get(url(configuration, "/diff"), params={"from": 1, "to": 7}, headers=admin).status_code == 404
    assert client.get(url(configuration, "/diff"), params={"from": 0, "to": 1}, headers=admin).status_code == 422
    assert client.get(url(configuration, "/diff"), params={"from": 1}, headers=admin).status_code == 422
    missing = client.get(f"{API}/configurations/{new_id()}/diff", params={"from": 1, "to": 1}, headers=admin)
    assert missing.status_code == 404


def test_rollback_makes_a_new_revision_and_numbers_never_repeat(client, admin, configuration):
    response = client.post(url(configuration, "/rollback"), json={"revision": 1}, headers=admin)
    assert response.status_code == 200
    rolled = response.json()
    assert rolled["revision"] == 4
    assert rolled["config"] == {"port": 1, "hosts": ["a"], "debug": True}
    assert response.headers["ETag"] == f'"{configuration["id"]}.4"'
    fourth = client.get(url(configuration, "/revisions/4"), headers=admin).json()
    assert fourth["message"] == "Rollback to revision 1"

    # Rolling back to the current JSON still records the decision.
    again = client.post(url(configuration, "/rollback"), json={"revision": 4, "message": "pin"}, headers=admin)
    assert again.json()["revision"] == 5
    client.put(url(configuration), json={"config": {"port": 6}}, headers=admin)
    client.post(url(configuration, "/rollback"), json={"revision": 3}, headers=admin)
    revisions = client.get(url(configuration, "/revisions"), headers=admin).json()["items"]
    assert [r["revision"] for r in revisions] == [7, 6, 5, 4, 3, 2, 1]
    assert revisions[0]["config"] == revisions[4]["config"]


def test_each_revision_keeps_the_schema_and_comments_in_force_with_it(client, admin, configuration):
    schema = {"type": "object", "required": ["port"]}
    client.patch(url(configuration), json={"schema": schema, "comments": "typed"}, headers=admin)  # revision 4
    client.patch(url(configuration), json={"comments": "retyped"}, headers=admin)  # revision 5
    states = {
        n: client.get(url(configuration, f"/revisions/{n}"), headers=admin).json() for n in (1, 3, 4, 5)
    }
    assert [(states[n]["schema"], states[n]["comments"]) for n in (1, 3, 4, 5)] == [
        (None, None), (None, None), (schema, "typed"), (schema, "retyped"),
    ]
    listed = client.get(url(configuration, "/revisions"), params={"limit": 1}, headers=admin).json()["items"]
    assert (listed[0]["schema"], listed[0]["comments"]) == (schema, "retyped")

    # A rollback restores the JSON only: the schema and comments in force stay, and the new
    # revision records them.
    rolled = client.post(url(configuration, "/rollback"), json={"revision": 1}, headers=admin).json()
    assert (rolled["config"], rolled["schema"], rolled["comments"]) == (states[1]["config"], schema, "retyped")
    sixth = client.get(url(configuration, "/revisions/6"), headers=admin).json()
    assert (sixth["config"], sixth["schema"], sixth["comments"]) == (states[1]["config"], schema, "retyped")


def test_rollback_errors_change_nothing(client, admin, configuration):
    target = url(configuration, "/rollback")
    stale = client.post(target, json={"revision": 1}, headers=admin | {"If-Match": f'"{configuration["id"]}.2"'})
    assert stale.status_code == 412
    unknown = client.post(target, json={"revision": 42}, headers=admin)
    assert unknown.status_code == 404 and "no revision 42" in unknown.json()["detail"]
    assert client.post(target, json={"revision": 0}, headers=admin).status_code == 422
    assert client.post(target, json={}, headers=admin).status_code == 422
    missing = client.post(f"{API}/configurations/{new_id()}/rollback", json={"revision": 1}, headers=admin)
    assert missing.status_code == 404

    # The current schema applies to the JSON being restored.
    schema = {"type": "object", "required": ["tls"]}
    assert client.patch(url(configuration), json={"schema": schema}, headers=admin).status_code == 200
    refused = client.post(target, json={"revision": 1}, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"path": "", "message": "'tls' is a required property"}]

    current = client.get(url(configuration), headers=admin).json()
    assert current["revision"] == 4 and current["config"]["port"] == 3
    ok = client.post(target, json={"revision": 1}, headers=admin | {"If-Match": f'"{configuration["id"]}.4"'})
    assert ok.status_code == 422  # still breaks the schema: If-Match passing does not skip validation


def race(base_url: str, headers: dict, method: str, path: str, bodies: list[dict], if_match: str | None):
    """Send the requests at the same moment from separate threads; return their status codes."""
    import httpx

    start = threading.Barrier(len(bodies))
    statuses: list[int] = []
    lock = threading.Lock()

    def send(body: dict) -> None:
        extra = {"If-Match": if_match} if if_match else {}
        with httpx.Client(base_url=base_url, headers=headers | extra, timeout=30) as http:
            start.wait()
            response = http.request(method, path, json=body)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_concurrent_writers_with_the_same_etag_exactly_one_wins(client, admin, make_token, live_server):
    server = live_server(workers=2)
    app = create_application(client, admin, "billing")
    created = create_configuration(client, admin, app["id"], "main", {"writer": None})
    writer = bearer(make_token("service"))
    path = f"/api/v1/configurations/{created['id']}"
    etag = f'"{created["id"]}.1"'

    statuses = race(server.base_url, writer, "PUT", path, [{"config": {"writer": i}} for i in range(8)], etag)
    assert sorted(statuses) == [200] + [412] * 7

    merge = race(server.base_url, writer | {"Content-Type": "application/merge-patch+json"}, "PATCH", path,
                 [{"merged": i} for i in range(6)], f'"{created["id"]}.2"')
    assert sorted(merge) == [200] + [412] * 5

    unconditional = race(server.base_url, writer, "PUT", path, [{"config": {"writer": i}} for i in range(8)], None)
    assert unconditional == [200] * 8

    revisions = client.get(f"{API}/configurations/{created['id']}/revisions", headers=admin).json()["items"]
    assert [r["revision"] for r in revisions] == list(range(11, 0, -1))
    current = client.get(f"{API}/configurations/{created['id']}", headers=admin).json()
    assert current["revision"] == 11 and current["config"] == revisions[0]["config"]
