"""Applications as products: description, icon and colour; documents in git with their history,
diff, rollback and proposals; work items and their transitions; repositories; who may do what;
deleting an application with all of it."""

from __future__ import annotations

import threading

import pytest

from tests.claude_md_helpers import API, assert_problem, git, person  # noqa: F401 (fixtures)
from tests.conftest import bearer
from tests.team_helpers import crew  # noqa: F401 (fixtures)

ALLOWED = {("todo", "in_progress"), ("in_progress", "done"), ("in_progress", "todo"), ("done", "todo")}
STATUSES = ("todo", "in_progress", "done")


@pytest.fixture
def product(client, crew) -> dict:
    """An application of the crew's team, created by its owner."""
    body = {"name": "billing", "team_id": crew.team["id"], "description": "Invoices", "icon": "🧾", "color": "#A1B2C3"}
    response = client.post(f"{API}/applications", json=body, headers=crew.owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


def new_document(client, product, headers, **fields) -> dict:
    body = {"title": "Design", "type": "architecture", "content": "# Design\n", **fields}
    response = client.post(f"{API}/applications/{product['id']}/documents", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def new_item(client, product, headers, **fields) -> dict:
    body = {"title": "Export CSV", "type": "feature", **fields}
    response = client.post(f"{API}/applications/{product['id']}/work-items", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def audit_of(client, admin, resource_id: str) -> list[dict]:
    response = client.get(f"{API}/audit", params={"resource_id": resource_id, "limit": 100}, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_applications_carry_description_icon_and_colour(client, admin, crew, product):
    assert (product["description"], product["icon"], product["color"]) == ("Invoices", "🧾", "#a1b2c3")
    url = f"{API}/applications/{product['id']}"
    changed = client.patch(url, json={"color": "#000000", "description": None}, headers=crew.admin.headers).json()
    assert (changed["description"], changed["icon"], changed["color"]) == (None, "🧾", "#000000")
    assert client.get(f"{API}/applications", headers=crew.member.headers).json()["items"][0]["color"] == "#000000"
    assert_problem(client.patch(url, json={"color": "red"}, headers=crew.admin.headers), 422)
    assert_problem(client.patch(url, json={"icon": ""}, headers=crew.admin.headers), 422)
    assert client.get(url, headers=admin).json()["color"] == "#000000"


def test_documents_keep_their_versions_in_git_with_history_diff_rollback(client, admin, settings, crew, product):
    lead = crew.admin.headers
    first = new_document(client, product, lead, title="Blueprint", type="blueprint", content="v1\n")
    assert first["current_version"]["version"] == 1 and first["content"] == "v1\n"
    url = f"{API}/documents/{first['id']}"

    read = client.get(url, headers=crew.member.headers)
    assert read.headers["ETag"] == f'"{first["current_version"]["commit_sha"]}"'
    assert client.get(url, headers={**lead, "If-None-Match": read.headers["ETag"]}).status_code == 304

    # PATCH: metadata alone makes no version; content does, guarded by If-Match.
    pinned = client.patch(url, json={"is_pinned": True, "title": "The blueprint"}, headers=lead)
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["current_version"]["version"] == 1 and pinned.json()["is_pinned"] is True
    saved = client.patch(
        url, json={"content": "v2\n", "message": "second"}, headers={**lead, "If-Match": read.headers["ETag"]}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["current_version"]["version"] == 2 and saved.json()["content"] == "v2\n"
    assert_problem(client.patch(url, json={"content": "v3\n"}, headers={**lead, "If-Match": read.headers["ETag"]}), 412)
    assert client.get(url, headers=lead).json()["content"] == "v2\n"

    # The routes every document has, mounted from the same code.
    history = client.get(f"{url}/history", headers=crew.member.headers).json()["versions"]
    assert [v["message"] for v in history] == ["second", "Create Blueprint"]
    old, new = history[1]["commit_sha"], history[0]["commit_sha"]
    diff = client.get(f"{url}/diff", params={"from": old, "to": new}, headers=lead)
    assert "-v1\n+v2\n" in diff.text
    assert client.get(f"{url}/versions/{old[:7]}", headers=lead).json()["content"] == "v1\n"
    rolled = client.post(f"{url}/rollback/{old}", headers=lead)
    assert rolled.status_code == 200, rolled.text
    assert client.get(url, headers=lead).json()["content"] == "v1\n"
    assert git(settings, "show", f"refs/docs/{first['id']}:document.md") == "v1\n"

    # Members propose; owners and admins accept.
    proposed = client.post(
        f"{url}/proposals", json={"content": "v1\nmore\n", "message": "add more"}, headers=crew.member.headers
    )
    assert proposed.status_code == 201, proposed.text
    assert_problem(client.post(f"{url}/proposals/{proposed.json()['id']}/accept", headers=crew.member.headers), 403)
    accepted = client.post(f"{url}/proposals/{proposed.json()['id']}/accept", headers=crew.owner.headers)
    assert accepted.status_code == 200, accepted.text
    assert client.get(url, headers=lead).json()["content"] == "v1\nmore\n"
    accepts = [e for e in audit_of(client, admin, proposed.json()["id"]) if e["action"] == "application_document.accept"]
    assert accepts[0]["detail"]["document_id"] == first["id"]


def test_document_lists_put_pinned_first_then_newest_and_filter(client, crew, product):
    lead = crew.owner.headers
    a = new_document(client, product, lead, title="A", type="note")
    b = new_document(client, product, lead, title="B", type="plan", is_pinned=True)
    c = new_document(client, product, lead, title="C", type="note")
    d = new_document(client, product, lead, title="D", type="plan", is_pinned=True)
    url = f"{API}/applications/{product['id']}/documents"
    pages, after = [], None
    while True:
        page = client.get(url, params={"limit": 3, **({"after": after} if after else {})}, headers=lead).json()
        pages.append([item["title"] for item in page["items"]])
        after = page["next"]
        if after is None:
            break
    assert pages == [["D", "B", "C"], ["A"]]
    assert "content" not in client.get(url, headers=lead).json()["items"][0]
    notes = client.get(url, params={"type": "note"}, headers=lead).json()["items"]
    assert [n["id"] for n in notes] == [c["id"], a["id"]]
    pinned = client.get(url, params={"pinned": "true"}, headers=lead).json()["items"]
    assert [n["id"] for n in pinned] == [d["id"], b["id"]]
    assert_problem(client.get(url, params={"type": "memo"}, headers=lead), 422)
    body = {"title": "x", "type": "memo", "content": ""}
    assert_problem(client.post(url, json=body, headers=lead), 422)


def test_deleting_a_document_keeps_its_history_under_the_deleted_namespace(client, admin, settings, crew, product):
    document = new_document(client, product, crew.owner.headers)
    url = f"{API}/documents/{document['id']}"
    assert_problem(client.delete(url, headers={**crew.owner.headers, "If-Match": '"0000000"'}), 412)
    assert client.delete(url, headers=crew.owner.headers).status_code == 204
    assert_problem(client.get(url, headers=crew.owner.headers), 404)
    assert git(settings, "show", f"refs/deleted/{document['id']}:document.md") == "# Design\n"
    [event] = [e for e in audit_of(client, admin, document["id"]) if e["action"] == "application_document.delete"]
    assert event["detail"]["history_ref"] == f"refs/deleted/{document['id']}"


def test_transitions_allowed_and_refused(client, admin, crew, product):
    lead = crew.admin.headers
    for start in STATUSES:
        for target in STATUSES:
            item = new_item(client, product, lead)
            url = f"{API}/work-items/{item['id']}"
            path = {"todo": [], "in_progress": ["in_progress"], "done": ["in_progress", "done"]}[start]
            for step in path:
                assert client.post(f"{url}/status", json={"status": step}, headers=lead).status_code == 200
            response = client.post(f"{url}/status", json={"status": target}, headers=lead)
            if (start, target) in ALLOWED:
                assert response.status_code == 200, (start, target, response.text)
                assert response.json()["status"] == target
            else:
                allowed = " or ".join(t for s, t in sorted(ALLOWED, reverse=True) if s == start)
                body = assert_problem(response, 409, f"is {start}: it may move to")
                assert all(name in body["detail"] for name in allowed.split(" or ")), body["detail"]
                assert client.get(url, headers=lead).json()["status"] == start
    item = new_item(client, product, lead)
    url = f"{API}/work-items/{item['id']}"
    assert_problem(client.post(f"{url}/status", json={"status": "blocked"}, headers=lead), 422)
    # If-Match guards a transition; each one is audited with who made it.
    etag = client.get(url, headers=lead).headers["ETag"]
    assert etag == f'"{item["id"]}.1"'
    moved = client.post(f"{url}/status", json={"status": "in_progress"}, headers={**lead, "If-Match": etag})
    assert moved.status_code == 200 and moved.headers["ETag"] == f'"{item["id"]}.2"'
    stale = client.post(f"{url}/status", json={"status": "done"}, headers={**lead, "If-Match": etag})
    assert_problem(stale, 412)
    [event] = [e for e in audit_of(client, admin, item["id"]) if e["action"] == "work_item.status"]
    assert event["detail"] == {"application_id": product["id"], "from": "todo", "to": "in_progress"}
    assert event["actor_name"] == "adam-laptop" and event["occurred_at"]


def test_two_concurrent_transitions_exactly_one_wins(client, crew, product):
    lead = crew.admin.headers
    for _ in range(5):
        # The same move twice: the second finds the item moved and may not repeat it.
        item = new_item(client, product, lead)
        url = f"{API}/work-items/{item['id']}/status"
        assert sorted(_race(client, [(url, "in_progress", lead), (url, "in_progress", lead)])) == [200, 409]
        # Two different moves from one ETag: exactly one happens.
        etag = {**lead, "If-Match": client.get(f"{API}/work-items/{item['id']}", headers=lead).headers["ETag"]}
        assert sorted(_race(client, [(url, "done", etag), (url, "todo", etag)])) == [200, 412]


def _race(client, calls) -> list[int]:
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = []

    def run(url, status, headers):
        barrier.wait()
        statuses.append(client.post(url, json={"status": status}, headers=headers).status_code)

    threads = [threading.Thread(target=run, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_work_items_list_by_status_and_type_in_pages(client, crew, product):
    lead = crew.owner.headers
    items = [new_item(client, product, lead, type=t) for t in ("feature", "fix", "feature", "refactor")]
    client.post(f"{API}/work-items/{items[2]['id']}/status", json={"status": "in_progress"}, headers=lead)
    url = f"{API}/applications/{product['id']}/work-items"
    todo = client.get(url, params={"status": "todo", "limit": 2}, headers=crew.member.headers).json()
    assert [i["id"] for i in todo["items"]] == [items[0]["id"], items[1]["id"]] and todo["next"]
    rest = client.get(url, params={"status": "todo", "limit": 2, "after": todo["next"]}, headers=lead).json()
    assert [i["id"] for i in rest["items"]] == [items[3]["id"]] and rest["next"] is None
    features = client.get(url, params={"type": "feature"}, headers=lead).json()["items"]
    assert [i["id"] for i in features] == [items[0]["id"], items[2]["id"]]
    updated = client.patch(f"{API}/work-items/{items[0]['id']}", json={"priority": "urgent"}, headers=lead)
    assert updated.json()["priority"] == "urgent" and updated.json()["status"] == "todo"
    assert_problem(client.patch(f"{API}/work-items/{items[0]['id']}", json={"status": "done"}, headers=lead), 422)
    assert client.delete(f"{API}/work-items/{items[1]['id']}", headers=lead).status_code == 204
    assert_problem(client.get(f"{API}/work-items/{items[1]['id']}", headers=lead), 404)


def test_callers_who_must_fail(client, admin, make_token, crew, product):
    document = new_document(client, product, crew.owner.headers)
    item = new_item(client, product, crew.owner.headers)
    repository = client.post(
        f"{API}/applications/{product['id']}/repositories",
        json={"name": "api", "full_name": "acme/api"}, headers=crew.owner.headers,
    ).json()
    other = client.post(f"{API}/applications", json={"name": "other"}, headers=admin).json()
    elsewhere = bearer(make_token("service", application_id=other["id"]))
    read_only = bearer(make_token("service", read_only=True))
    app = f"{API}/applications/{product['id']}"
    reads = [
        f"{app}/documents", f"{app}/work-items", f"{app}/repositories", f"{API}/documents/{document['id']}",
        f"{API}/documents/{document['id']}/history", f"{API}/work-items/{item['id']}",
        f"{API}/repositories/{repository['id']}",
    ]
    writes = [
        ("post", f"{app}/documents", {"title": "t", "type": "note", "content": ""}),
        ("post", f"{app}/work-items", {"title": "t", "type": "fix"}),
        ("post", f"{app}/repositories", {"name": "web", "full_name": "acme/web"}),
        ("patch", f"{API}/documents/{document['id']}", {"title": "t"}),
        ("patch", f"{API}/work-items/{item['id']}", {"title": "t"}),
        ("post", f"{API}/work-items/{item['id']}/status", {"status": "in_progress"}),
        ("patch", f"{API}/repositories/{repository['id']}", {"name": "t"}),
        ("delete", f"{API}/documents/{document['id']}", None),
        ("delete", f"{API}/work-items/{item['id']}", None),
        ("delete", f"{API}/repositories/{repository['id']}", None),
    ]
    for url in reads:
        assert client.get(url, headers=crew.member.headers).status_code == 200, url
        assert client.get(url, headers=read_only).status_code == 200, url
        assert_problem(client.get(url, headers=crew.outsider.headers), 404)
        assert_problem(client.get(url, headers=elsewhere), 404)
    for method, url, body in writes:
        kwargs = {} if body is None else {"json": body}
        assert_problem(client.request(method, url, headers=crew.member.headers, **kwargs), 403)
        assert_problem(client.request(method, url, headers=read_only, **kwargs), 403)
        assert_problem(client.request(method, url, headers=crew.outsider.headers, **kwargs), 404)
        assert_problem(client.request(method, url, headers=elsewhere, **kwargs), 404)
    # Nothing changed.
    assert client.get(f"{API}/documents/{document['id']}", headers=admin).json()["title"] == "Design"
    assert client.get(f"{API}/work-items/{item['id']}", headers=admin).json()["revision"] == 1
    assert len(client.get(f"{app}/repositories", headers=admin).json()["items"]) == 1


def test_repository_ids_must_belong_to_the_application(client, admin, crew, product):
    other = client.post(f"{API}/applications", json={"name": "other"}, headers=admin).json()
    foreign = client.post(
        f"{API}/applications/{other['id']}/repositories", json={"name": "x", "full_name": "acme/x"}, headers=admin
    ).json()
    body = {"title": "t", "type": "fix", "repository_id": foreign["id"]}
    response = client.post(f"{API}/applications/{product['id']}/work-items", json=body, headers=crew.owner.headers)
    assert_problem(response, 422, "names no repository of this application")
    own = client.post(
        f"{API}/applications/{product['id']}/repositories",
        json={"name": "api", "full_name": "acme/api", "github_id": 7}, headers=crew.owner.headers,
    ).json()
    item = new_item(client, product, crew.owner.headers, repository_id=own["id"])
    again = client.post(
        f"{API}/applications/{product['id']}/repositories",
        json={"name": "api2", "full_name": "acme/api2", "github_id": 7}, headers=crew.owner.headers,
    )
    assert_problem(again, 409, "github_id 7")
    # Deleting the repository leaves the work item without one.
    assert client.delete(f"{API}/repositories/{own['id']}", headers=crew.owner.headers).status_code == 204
    assert client.get(f"{API}/work-items/{item['id']}", headers=admin).json()["repository_id"] is None


def test_deleting_an_application_deletes_its_parts_and_keeps_document_history(client, admin, settings, crew, product):
    lead = crew.owner.headers
    document = new_document(client, product, lead)
    proposal = client.post(
        f"{API}/documents/{document['id']}/proposals", json={"content": "x", "message": "m"}, headers=crew.member.headers
    ).json()
    item = new_item(client, product, lead)
    repository = client.post(
        f"{API}/applications/{product['id']}/repositories", json={"name": "api", "full_name": "acme/api"}, headers=lead
    ).json()
    assert client.delete(f"{API}/applications/{product['id']}", headers=lead).status_code == 204
    for url in (f"documents/{document['id']}", f"work-items/{item['id']}", f"repositories/{repository['id']}"):
        assert_problem(client.get(f"{API}/{url}", headers=admin), 404)
    assert git(settings, "show", f"refs/deleted/{document['id']}:document.md") == "# Design\n"
    assert git(settings, "for-each-ref", f"refs/docs/{document['id']}", f"refs/proposals/{proposal['id']}") == ""
    [event] = [e for e in audit_of(client, admin, product["id"]) if e["action"] == "application.delete"]
    assert event["detail"]["documents"][0]["history_ref"] == f"refs/deleted/{document['id']}"
    assert (event["detail"]["work_items"], event["detail"]["repositories"]) == (1, 1)
