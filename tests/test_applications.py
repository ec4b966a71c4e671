"""Applications: CRUD, names, pagination, prefix search, access rules, cascade delete."""

from __future__ import annotations


from svc.ids import new_id
from tests.conftest import bearer
from tests.configuration_helpers import (
    API,
    Listener,
    create_application,
    create_configuration,
    query,
    user_token,
)


def test_create_then_read(client, admin):
    response = client.post(f"{API}/applications", json={"name": "billing", "comments": "money"}, headers=admin)
    assert response.status_code == 201
    created = response.json()
    assert set(created) == {
        "id", "name", "comments", "team_id", "description", "icon", "color", "created_at", "updated_at"
    }
    assert created["name"] == "billing" and created["comments"] == "money"
    assert response.headers["Location"].endswith(f"/api/v1/applications/{created['id']}")

    fetched = client.get(f"{API}/applications/{created['id']}", headers=admin)
    assert fetched.status_code == 200
    assert fetched.json() == created


def test_comments_are_optional(client, admin):
    assert create_application(client, admin, "svc.v2_beta-1")["comments"] is None


def test_taken_name_is_409_naming_it(client, admin):
    create_application(client, admin, "billing")
    response = client.post(f"{API}/applications", json={"name": "billing"}, headers=admin)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "application name 'billing' is already taken"


INVALID_CREATES = [
    {"name": ""},
    {"name": "a" * 257},
    {"name": "has space"},
    {"name": "slash/y"},
    {"name": "ünïcode"},
    {"name": "ok\n"},
    {"name": "ok", "comments": "x" * 1025},
    {"name": "ok", "colour": "red"},
    {},
]


def test_invalid_body_is_422_and_stores_nothing(client, admin):
    for body in INVALID_CREATES:
        response = client.post(f"{API}/applications", json=body, headers=admin)
        assert response.status_code == 422, body
    assert client.get(f"{API}/applications", headers=admin).json()["items"] == []


def test_text_postgresql_cannot_hold_is_422_not_500(client, admin):
    json_headers = admin | {"Content-Type": "application/json"}
    surrogate = client.post(
        f"{API}/applications", content=b'{"name": "a", "comments": "\\ud800"}', headers=json_headers
    )
    assert surrogate.status_code == 422
    nul = client.post(f"{API}/applications", json={"name": "a", "comments": "nul\u0000"}, headers=admin)
    assert nul.status_code == 422
    for params in ({"name_prefix": "a\x00"}, {"after": "\x00"}):
        assert client.get(f"{API}/applications", params=params, headers=admin).status_code == 422


def test_longest_name_and_comments_are_accepted(client, admin):
    created = create_application(client, admin, "a" * 256, comments="c" * 1024)
    assert len(created["name"]) == 256


def test_unknown_and_malformed_ids(client, admin):
    missing = client.get(f"{API}/applications/{new_id()}", headers=admin)
    assert missing.status_code == 404
    assert "not found" in missing.json()["detail"]
    assert client.get(f"{API}/applications/not-a-ulid", headers=admin).status_code == 422
    assert client.patch(f"{API}/applications/{new_id()}", json={"comments": "x"}, headers=admin).status_code == 404
    assert client.delete(f"{API}/applications/{new_id()}", headers=admin).status_code == 404


def test_patch_changes_only_the_fields_sent(client, admin):
    app = create_application(client, admin, "billing", comments="money")
    renamed = client.patch(f"{API}/applications/{app['id']}", json={"name": "invoicing"}, headers=admin)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "invoicing" and renamed.json()["comments"] == "money"
    assert renamed.json()["updated_at"] > app["updated_at"]

    cleared = client.patch(f"{API}/applications/{app['id']}", json={"comments": None}, headers=admin)
    assert cleared.json()["name"] == "invoicing" and cleared.json()["comments"] is None

    unchanged = client.patch(f"{API}/applications/{app['id']}", json={}, headers=admin)
    assert unchanged.status_code == 200
    assert unchanged.json() == cleared.json()


def test_patch_refuses_null_name_bad_name_and_taken_name(client, admin):
    create_application(client, admin, "taken")
    app = create_application(client, admin, "billing")
    url = f"{API}/applications/{app['id']}"
    assert client.patch(url, json={"name": None}, headers=admin).status_code == 422
    assert client.patch(url, json={"name": "bad name"}, headers=admin).status_code == 422
    conflict = client.patch(url, json={"name": "taken"}, headers=admin)
    assert conflict.status_code == 409
    assert conflict.json()["detail"] == "application name 'taken' is already taken"
    assert client.get(url, headers=admin).json()["name"] == "billing"


def test_pagination_visits_every_application_once(client, admin):
    names = {f"app-{i:02d}" for i in range(23)}
    for name in sorted(names):
        create_application(client, admin, name)
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 5} | ({"after": after} if after else {})
        page = client.get(f"{API}/applications", params=params, headers=admin).json()
        seen.extend(item["name"] for item in page["items"])
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert pages == 5
    assert len(seen) == len(names) and set(seen) == names


def test_limit_out_of_range_is_422(client, admin):
    for limit in (0, 101):
        assert client.get(f"{API}/applications", params={"limit": limit}, headers=admin).status_code == 422


def test_name_prefix_takes_like_metacharacters_literally(client, admin):
    for name in ["a_b", "axb", "a_bc", "ab", "a.b", "b_a"]:
        create_application(client, admin, name)

    def names(prefix: str) -> list[str]:
        response = client.get(f"{API}/applications", params={"name_prefix": prefix}, headers=admin)
        assert response.status_code == 200
        return sorted(item["name"] for item in response.json()["items"])

    assert names("a_") == ["a_b", "a_bc"]
    assert names("a") == ["a.b", "a_b", "a_bc", "ab", "axb"]
    assert names("%") == []
    assert names("a%") == []
    assert names("\\") == []
    assert names("a.") == ["a.b"]


def test_name_prefix_pages(client, admin):
    for i in range(5):
        create_application(client, admin, f"team_{i}")
        create_application(client, admin, f"teamx{i}")
    first = client.get(f"{API}/applications", params={"name_prefix": "team_", "limit": 3}, headers=admin).json()
    second = client.get(
        f"{API}/applications", params={"name_prefix": "team_", "limit": 3, "after": first["next"]}, headers=admin
    ).json()
    assert second["next"] is None
    assert sorted(i["name"] for i in first["items"] + second["items"]) == [f"team_{i}" for i in range(5)]


def test_writes_are_audited(client, admin):
    app = create_application(client, admin, "billing")
    client.patch(f"{API}/applications/{app['id']}", json={"comments": "hello"}, headers=admin)
    client.delete(f"{API}/applications/{app['id']}", headers=admin)
    events = client.get(
        f"{API}/audit", params={"resource_type": "application", "resource_id": app["id"]}, headers=admin
    ).json()["items"]
    assert [e["action"] for e in events] == ["application.delete", "application.update", "application.create"]
    assert events[1]["detail"] == {"before": {"comments": None}, "after": {"comments": "hello"}}
    assert events[0]["detail"]["name"] == "billing"


def test_delete_cascades_to_configurations_revisions_and_scoped_tokens(client, admin, make_token, database_url):
    app = create_application(client, admin, "billing")
    other = create_application(client, admin, "other")
    first = create_configuration(client, admin, app["id"], "first", {"a": 1})
    second = create_configuration(client, admin, app["id"], "second", {"b": 1})
    kept = create_configuration(client, admin, other["id"], "kept", {"c": 1})
    client.put(f"{API}/configurations/{first['id']}", json={"config": {"a": 2}}, headers=admin)
    scoped = bearer(make_token("service", application_id=app["id"]))
    assert client.get(f"{API}/applications/{app['id']}", headers=scoped).status_code == 200

    listener = Listener(database_url)
    try:
        response = client.delete(f"{API}/applications/{app['id']}", headers=admin)
        assert response.status_code == 204
        announced = [listener.next(), listener.next()]
    finally:
        listener.close()

    assert client.get(f"{API}/applications/{app['id']}", headers=admin).status_code == 404
    for configuration in (first, second):
        assert client.get(f"{API}/configurations/{configuration['id']}", headers=admin).status_code == 404
    assert client.get(f"{API}/configurations/{kept['id']}", headers=admin).status_code == 200
    assert query(database_url, "SELECT count(*) FROM configuration_revisions WHERE configuration_id IN (%s, %s)",
                 (first["id"], second["id"])) == [(0,)]
    assert client.get(f"{API}/applications", headers=scoped).status_code == 401

    assert sorted((e["configuration_name"], e["revision"], e["kind"]) for e in announced) == [
        ("first", 2, "deleted"),
        ("second", 1, "deleted"),
    ]
    assert {e["application_name"] for e in announced} == {"billing"}
    events = query(
        database_url,
        "SELECT name, revision, kind FROM configuration_events WHERE application_id = %s AND kind = 'deleted'"
        " ORDER BY name",
        (app["id"],),
    )
    assert events == [("first", 2, "deleted"), ("second", 1, "deleted")]

    audit = client.get(f"{API}/audit", params={"resource_id": app["id"]}, headers=admin).json()["items"][0]
    assert audit["action"] == "application.delete"
    assert sorted((c["name"], c["before_revision"]) for c in audit["detail"]["configurations"]) == [
        ("first", 2),
        ("second", 1),
    ]


def test_token_for_a_missing_application_is_refused(client, admin):
    response = client.post(
        f"{API}/tokens", json={"name": "t", "role": "service", "application_id": new_id()}, headers=admin
    )
    assert response.status_code == 422
    assert "application" in response.json()["detail"]


# --- access ----------------------------------------------------------------------------------


def test_without_a_token_everything_is_401(client):
    assert client.get(f"{API}/applications").status_code == 401
    assert client.post(f"{API}/applications", json={"name": "x"}).status_code == 401


def test_user_tokens_may_not_touch_applications_of_no_team_of_theirs(client, admin, make_token, database_url):
    app = create_application(client, admin, "billing")
    user = user_token(make_token, database_url)
    assert client.get(f"{API}/applications", headers=user).json()["items"] == []  # those of its teams: none
    assert client.get(f"{API}/applications/{app['id']}", headers=user).status_code == 404  # as if missing
    assert client.post(f"{API}/applications", json={"name": "x"}, headers=user).status_code == 403
    assert client.patch(f"{API}/applications/{app['id']}", json={"comments": "x"}, headers=user).status_code == 404
    assert client.delete(f"{API}/applications/{app['id']}", headers=user).status_code == 404


def test_service_tokens_manage_applications(client, make_token):
    service = bearer(make_token("service"))
    app = create_application(client, service, "billing")
    assert client.patch(f"{API}/applications/{app['id']}", json={"comments": "x"}, headers=service).status_code == 200
    assert client.delete(f"{API}/applications/{app['id']}", headers=service).status_code == 204


def test_read_only_tokens_read_but_do_not_write(client, admin, make_token):
    app = create_application(client, admin, "billing")
    reader = bearer(make_token("service", read_only=True))
    assert client.get(f"{API}/applications/{app['id']}", headers=reader).status_code == 200
    assert client.get(f"{API}/applications", headers=reader).json()["items"][0]["id"] == app["id"]
    refused = client.post(f"{API}/applications", json={"name": "x"}, headers=reader)
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    assert client.patch(f"{API}/applications/{app['id']}", json={"comments": "x"}, headers=reader).status_code == 403
    assert client.delete(f"{API}/applications/{app['id']}", headers=reader).status_code == 403
    assert client.get(f"{API}/applications/{app['id']}", headers=admin).json() == app


def test_scoped_service_token_sees_only_its_application(client, admin, make_token):
    mine = create_application(client, admin, "mine")
    theirs = create_application(client, admin, "theirs")
    scoped = bearer(make_token("service", application_id=mine["id"]))

    listed = client.get(f"{API}/applications", headers=scoped).json()
    assert [a["id"] for a in listed["items"]] == [mine["id"]]
    assert client.get(f"{API}/applications/{mine['id']}", headers=scoped).status_code == 200

    hidden = client.get(f"{API}/applications/{theirs['id']}", headers=scoped)
    assert hidden.status_code == 404
    assert hidden.json()["detail"] == f"application {theirs['id']} not found"
    assert client.patch(f"{API}/applications/{theirs['id']}", json={"comments": "x"}, headers=scoped).status_code == 404
    assert client.delete(f"{API}/applications/{theirs['id']}", headers=scoped).status_code == 404

    refused = client.post(f"{API}/applications", json={"name": "new"}, headers=scoped)
    assert refused.status_code == 403
    assert client.patch(f"{API}/applications/{mine['id']}", json={"comments": "ok"}, headers=scoped).status_code == 200
