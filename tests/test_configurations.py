"""Configurations: create, read, list with containment, replace, merge-patch, delete, schemas, access."""

from __future__ import annotations

import psycopg2
import pytest

from svc.db import jsonb
from svc.ids import new_id
from svc.repositories import configurations as configuration_sql
from tests.conftest import bearer
from tests.configuration_helpers import API, create_application, create_configuration, query, user_token

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}

SCHEMA = {
    "type": "object",
    "properties": {
        "port": {"type": "integer", "minimum": 1},
        "db": {"type": "object", "properties": {"host": {"type": "string"}}, "required": ["host"]},
    },
    "required": ["port"],
}


@pytest.fixture
def app(client, admin):
    return create_application(client, admin, "billing")


def url(configuration: dict, suffix: str = "") -> str:
    return f"{API}/configurations/{configuration['id']}{suffix}"


def etag_of(configuration: dict) -> str:
    return f'"{configuration["id"]}.{configuration["revision"]}"'


def revision_numbers(client, headers, configuration) -> list[int]:
    return [r["revision"] for r in client.get(url(configuration, "/revisions"), headers=headers).json()["items"]]


# --- create ----------------------------------------------------------------------------------


def test_create_returns_the_configuration_with_its_etag(client, admin, app):
    body = {"name": "main", "config": {"db": {"host": "x"}, "port": 80}, "comments": "prod", "message": "first"}
    response = client.post(f"{API}/applications/{app['id']}/configurations", json=body, headers=admin)
    assert response.status_code == 201
    created = response.json()
    assert set(created) == {
        "id", "application_id", "name", "comments", "config", "schema", "secret_paths", "revision", "created_at",
        "updated_at",
    }
    assert created["application_id"] == app["id"]
    assert created["config"] == body["config"]
    assert created["schema"] is None and created["revision"] == 1 and created["comments"] == "prod"
    assert response.headers["ETag"] == etag_of(created)
    assert response.headers["Location"].endswith(url(created))

    first = client.get(url(created, "/revisions/1"), headers=admin).json()
    assert first["config"] == body["config"] and first["message"] == "first" and first["author"] == "test-admin"


def test_names_are_unique_per_application(client, admin, app):
    other = create_application(client, admin, "other")
    create_configuration(client, admin, app["id"], "main")
    create_configuration(client, admin, other["id"], "main")
    response = client.post(
        f"{API}/applications/{app['id']}/configurations", json={"name": "main", "config": {}}, headers=admin
    )
    assert response.status_code == 409
    assert "configuration name 'main' is already taken" in response.json()["detail"]


INVALID_CREATES = [
    {"name": "main", "config": [1, 2]},
    {"name": "main", "config": "text"},
    {"name": "main", "config": None},
    {"name": "main"},
    {"name": "bad name", "config": {}},
    {"name": "main", "config": {}, "comments": "x" * 1025},
    {"name": "main", "config": {}, "message": "x" * 1025},
    {"name": "main", "config": {}, "schema": "not an object"},
    {"name": "main", "config": {}, "extra": 1},
    {"name": "main", "config": {"text": "nul \u0000 inside"}},
    {"name": "main", "config": {"list": [1, ["nul \u0000 inside"]]}},
    {"name": "main", "config": {}, "schema": {"description": "nul \u0000 inside"}},
]


def test_invalid_create_is_422_and_stores_nothing(client, admin, app):
    for body in INVALID_CREATES:
        response = client.post(f"{API}/applications/{app['id']}/configurations", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    # A lone surrogate: valid JSON text, but no UTF-8 can hold it.
    surrogate = client.post(
        f"{API}/applications/{app['id']}/configurations",
        content=b'{"name": "main", "config": {"\\ud800": 1}}',
        headers=admin | {"Content-Type": "application/json"},
    )
    assert surrogate.status_code == 422
    assert client.get(f"{API}/applications/{app['id']}/configurations", headers=admin).json()["items"] == []


def test_malformed_json_body_is_400(client, admin, app):
    response = client.post(
        f"{API}/applications/{app['id']}/configurations",
        content=b'{"name": "main", "config": {',
        headers=admin | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400


def test_create_in_a_missing_application_is_404(client, admin):
    response = client.post(
        f"{API}/applications/{new_id()}/configurations", json={"name": "main", "config": {}}, headers=admin
    )
    assert response.status_code == 404


def test_invalid_schema_is_refused(client, admin, app):
    body = {"name": "main", "config": {}, "schema": {"type": "no-such-type", "minimum": "one"}}
    response = client.post(f"{API}/applications/{app['id']}/configurations", json=body, headers=admin)
    assert response.status_code == 422
    assert "not a valid JSON Schema" in response.json()["detail"]
    assert response.json()["errors"][0]["path"]


def test_schemas_that_cannot_be_applied_refuse_every_write(client, admin, app):
    """Remote references are never fetched, and a schema that refers to itself forever is caught."""
    for schema, reason in [
        ({"$ref": "https://example.com/schema.json"}, "cannot be resolved"),
        ({"$ref": "#"}, "refers to itself"),
    ]:
        body = {"name": "main", "config": {}, "schema": schema}
        response = client.post(f"{API}/applications/{app['id']}/configurations", json=body, headers=admin)
        assert response.status_code == 422
        assert reason in response.json()["errors"][0]["message"]


def test_create_must_satisfy_its_schema(client, admin, app):
    body = {"name": "main", "config": {"port": 0, "db": {}}, "schema": SCHEMA}
    response = client.post(f"{API}/applications/{app['id']}/configurations", json=body, headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"path": "/db", "message": "'host' is a required property"},
        {"path": "/port", "message": "0 is less than the minimum of 1"},
    ]
    good = create_configuration(client, admin, app["id"], "main", {"port": 1}, schema=SCHEMA)
    assert good["schema"] == SCHEMA


# --- read ------------------------------------------------------------------------------------


def test_get_answers_if_none_match_with_304(client, admin, app):
    created = create_configuration(client, admin, app["id"])
    fetched = client.get(url(created), headers=admin)
    assert fetched.status_code == 200 and fetched.json() == created
    assert fetched.headers["ETag"] == etag_of(created)

    cached = client.get(url(created), headers=admin | {"If-None-Match": fetched.headers["ETag"]})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["ETag"] == fetched.headers["ETag"]

    either = client.get(url(created), headers=admin | {"If-None-Match": f'"stale", W/{fetched.headers["ETag"]}'})
    assert either.status_code == 304

    client.put(url(created), json={"config": {"feature": False}}, headers=admin)
    changed = client.get(url(created), headers=admin | {"If-None-Match": fetched.headers["ETag"]})
    assert changed.status_code == 200 and changed.json()["revision"] == 2


def test_get_missing_or_malformed(client, admin):
    assert client.get(f"{API}/configurations/{new_id()}", headers=admin).status_code == 404
    assert client.get(f"{API}/configurations/nope", headers=admin).status_code == 422


# --- list and containment ---------------------------------------------------------------------


def test_list_pages_through_every_configuration_once(client, admin, app):
    other = create_application(client, admin, "other")
    create_configuration(client, admin, other["id"], "elsewhere")
    names = [f"c{i:02d}" for i in range(12)]
    for name in names:
        create_configuration(client, admin, app["id"], name)
    seen, after = [], None
    while True:
        params = {"limit": 5} | ({"after": after} if after else {})
        page = client.get(f"{API}/applications/{app['id']}/configurations", params=params, headers=admin).json()
        seen.extend(c["name"] for c in page["items"])
        after = page["next"]
        if after is None:
            break
    assert sorted(seen) == names and len(seen) == len(names)


def test_list_of_a_missing_application_is_404(client, admin):
    assert client.get(f"{API}/applications/{new_id()}/configurations", headers=admin).status_code == 404


def test_contains_matches_nested_json(client, admin, app):
    create_configuration(client, admin, app["id"], "a", {"feature": {"beta": True, "level": 2}, "tags": ["x", "y"]})
    create_configuration(client, admin, app["id"], "b", {"feature": {"beta": False}, "tags": ["y"]})
    create_configuration(client, admin, app["id"], "c", {"feature": {"beta": True}, "region": "eu"})

    def names(contains: str, **params) -> list[str]:
        response = client.get(
            f"{API}/applications/{app['id']}/configurations", params={"contains": contains} | params, headers=admin
        )
        assert response.status_code == 200, response.text
        return [c["name"] for c in response.json()["items"]]

    assert names('{"feature": {"beta": true}}') == ["a", "c"]
    assert names('{"feature": {"beta": true, "level": 2}}') == ["a"]
    assert names('{"tags": ["y"]}') == ["a", "b"]
    assert names('{"feature": {"beta": "true"}}') == []
    assert names("{}") == ["a", "b", "c"]
    first = client.get(
        f"{API}/applications/{app['id']}/configurations",
        params={"contains": '{"feature": {"beta": true}}', "limit": 1},
        headers=admin,
    ).json()
    assert [c["name"] for c in first["items"]] == ["a"]
    assert names('{"feature": {"beta": true}}', after=first["next"]) == ["c"]


def test_bad_contains_filter_is_400(client, admin, app):
    for contains in ["{not json", "[1]", "true", '{"a": "\\u0000"}']:
        response = client.get(
            f"{API}/applications/{app['id']}/configurations", params={"contains": contains}, headers=admin
        )
        assert response.status_code == 400, contains
        assert "contains" in response.json()["detail"]


def test_containment_query_uses_the_gin_index(client, admin, app, database_url):
    rows = [(new_id(), app["id"], f"c{n}", n, n % 50) for n in range(3000)]
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO configurations (id, application_id, name, config, revision)"
                " VALUES (%s, %s, %s, jsonb_build_object('n', %s, 'group', %s), 1)",
                rows,
            )
            cur.execute("ANALYZE configurations")
            params = {"application_id": app["id"], "limit": 51, "after": None, "contains": jsonb({"n": 7})}
            cur.execute("EXPLAIN " + configuration_sql.LIST, params)
            plan = "\n".join(line for (line,) in cur.fetchall())
    finally:
        conn.close()
    assert "configurations_config_idx" in plan, plan


# --- replace (PUT) --------------------------------------------------------------------------


def test_put_replaces_the_json_and_keeps_unsent_metadata(client, admin, app):
    created = create_configuration(client, admin, app["id"], "main", {"port": 1, "old": True}, comments="keep",
                                   schema=SCHEMA)
    response = client.put(url(created), json={"config": {"port": 2}, "message": "bump"}, headers=admin)
    assert response.status_code == 200
    updated = response.json()
    assert updated["config"] == {"port": 2}
    assert updated["revision"] == 2 and updated["comments"] == "keep" and updated["schema"] == SCHEMA
    assert response.headers["ETag"] == etag_of(updated)
    assert updated["updated_at"] > created["updated_at"]
    assert client.get(url(created, "/revisions/2"), headers=admin).json()["message"] == "bump"

    cleared = client.put(url(created), json={"config": {"port": 2}, "comments": None, "schema": None}, headers=admin)
    assert cleared.json()["comments"] is None and cleared.json()["schema"] is None
    assert cleared.json()["revision"] == 3


def test_put_that_changes_nothing_makes_no_revision(client, admin, app):
    created = create_configuration(client, admin, app["id"], "main", {"a": 1, "b": [1, 2]})
    same = client.put(url(created), json={"config": {"b": [1, 2], "a": 1}}, headers=admin)
    assert same.status_code == 200 and same.json()["revision"] == 1
    assert same.headers["ETag"] == etag_of(created)
    # JSON, not Python, equality: 1 and true are different values.
    changed = client.put(url(created), json={"config": {"b": [1, 2], "a": True}}, headers=admin)
    assert changed.json()["revision"] == 2 and changed.json()["config"]["a"] is True


def test_put_with_if_match(client, admin, app):
    created = create_configuration(client, admin, app["id"])
    ok = client.put(url(created), json={"config": {"v": 2}}, headers=admin | {"If-Match": etag_of(created)})
    assert ok.status_code == 200 and ok.json()["revision"] == 2

    stale = client.put(url(created), json={"config": {"v": 3}}, headers=admin | {"If-Match": etag_of(created)})
    assert stale.status_code == 412
    assert "stale" in stale.json()["detail"]
    assert client.get(url(created), headers=admin).json()["config"] == {"v": 2}
    assert revision_numbers(client, admin, created) == [2, 1]

    star = client.put(url(created), json={"config": {"v": 4}}, headers=admin | {"If-Match": "*"})
    assert star.status_code == 200 and star.json()["revision"] == 3


def test_put_must_satisfy_the_schema(client, admin, app):
    created = create_configuration(client, admin, app["id"], "main", {"port": 1}, schema=SCHEMA)
    response = client.put(url(created), json={"config": {"port": "eighty", "db": {"host": 1}}}, headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"path": "/db/host", "message": "1 is not of type 'string'"},
        {"path": "/port", "message": "'eighty' is not of type 'integer'"},
    ]
    assert client.get(url(created), headers=admin).json()["revision"] == 1

    # A new schema applies to the JSON sent with it.
    loose = client.put(url(created), json={"config": {"port": "eighty"}, "schema": {"type": "object"}}, headers=admin)
    assert loose.status_code == 200
    invalid = client.put(url(created), json={"config": {}, "schema": {"type": 5}}, headers=admin)
    assert invalid.status_code == 422 and "not a valid JSON Schema" in invalid.json()["detail"]


def test_put_missing_configuration_is_404(client, admin):
    assert client.put(f"{API}/configurations/{new_id()}", json={"config": {}}, headers=admin).status_code == 404


def test_put_refuses_a_non_object(client, admin, app):
    created = create_configuration(client, admin, app["id"])
    assert client.put(url(created), json={"config": [1]}, headers=admin).status_code == 422


class TestSizeLimit:
    @pytest.fixture
    def settings(self, settings):
        settings.max_config_bytes = 64
        return settings

    def test_json_over_the_limit_is_413_on_every_write(self, client, admin):
        app = create_application(client, admin, "billing")
        big = {"text": "x" * 100}
        response = client.post(
            f"{API}/applications/{app['id']}/configurations", json={"name": "main", "config": big}, headers=admin
        )
        assert response.status_code == 413
        assert "limit is 64 bytes" in response.json()["detail"]

        created = create_configuration(client, admin, app["id"], "main", {"text": "small"})
        assert client.put(url(created), json={"config": big}, headers=admin).status_code == 413
        assert client.patch(url(created), json=big, headers=admin | MERGE_PATCH).status_code == 413
        assert client.get(url(created), headers=admin).json()["revision"] == 1


# --- merge patch and metadata patch ----------------------------------------------------------


def test_merge_patch_follows_rfc_7396(client, admin, app):
    created = create_configuration(
        client, admin, app["id"], "main", {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}
    )
    response = client.patch(
        url(created),
        params={"message": "tweak"},
        json={"a": "z", "c": {"f": None, "h": {"i": 1}}, "list": [3], "new": None},
        headers=admin | MERGE_PATCH | {"If-Match": etag_of(created)},
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["config"] == {"a": "z", "c": {"d": "e", "h": {"i": 1}}, "list": [3]}
    assert patched["revision"] == 2 and response.headers["ETag"] == etag_of(patched)
    assert client.get(url(created, "/revisions/2"), headers=admin).json()["message"] == "tweak"

    no_op = client.patch(url(created), json={"missing": None}, headers=admin | MERGE_PATCH)
    assert no_op.json()["revision"] == 2

    too_deep = {}
    for _ in range(300):
        too_deep = {"a": too_deep}
    deep = client.patch(url(created), json=too_deep, headers=admin | MERGE_PATCH)
    assert deep.status_code == 422 and "merge patch cannot be applied" in deep.json()["detail"]


def test_merge_patch_errors(client, admin, app):
    created = create_configuration(client, admin, app["id"], "main", {"port": 1}, schema=SCHEMA)
    target = url(created)

    assert client.patch(target, json=[1], headers=admin | MERGE_PATCH).status_code == 422
    violation = client.patch(target, json={"port": None}, headers=admin | MERGE_PATCH)
    assert violation.status_code == 422
    assert violation.json()["errors"] == [{"path": "", "message": "'port' is a required property"}]
    bad_json = client.patch(target, content=b"{oops", headers=admin | MERGE_PATCH)
    assert bad_json.status_code == 400
    wrong_type = client.patch(target, content=b"port=2", headers=admin | {"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    assert "application/merge-patch+json" in wrong_type.json()["detail"]
    no_type = client.patch(target, content=b"{}", headers=admin)
    assert no_type.status_code == 415
    stale = client.patch(target, json={"port": 5}, headers=admin | MERGE_PATCH | {"If-Match": '"other.1"'})
    assert stale.status_code == 412
    missing = client.patch(f"{API}/configurations/{new_id()}", json={"a": 1}, headers=admin | MERGE_PATCH)
    assert missing.status_code == 404

    assert client.get(target, headers=admin).json()["config"] == {"port": 1}
    assert revision_numbers(client, admin, created) == [1]


def test_json_patch_changes_metadata_and_checks_a_new_schema(client, admin, app):
    created = create_configuration(client, admin, app["id"], "main", {"port": 0})
    target = url(created)

    refused = client.patch(target, json={"schema": SCHEMA}, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"path": "/port", "message": "0 is less than the minimum of 1"}]

    client.put(target, json={"config": {"port": 8}}, headers=admin)
    response = client.patch(target, json={"schema": SCHEMA, "comments": "typed", "message": "add schema"},
                            headers=admin)
    assert response.status_code == 200
    patched = response.json()
    assert patched["schema"] == SCHEMA and patched["comments"] == "typed" and patched["config"] == {"port": 8}
    # Metadata changes make a revision too, so the ETag (and If-Match) cover them.
    assert patched["revision"] == 3
    assert client.get(url(created, "/revisions/3"), headers=admin).json()["message"] == "add schema"

    comments_only = client.patch(target, json={"comments": "still typed"}, headers=admin).json()
    assert comments_only["schema"] == SCHEMA and comments_only["revision"] == 4

    invalid = client.patch(target, json={"schema": {"type": "nope"}}, headers=admin)
    assert invalid.status_code == 422
    not_metadata = client.patch(target, json={"config": {"port": 9}}, headers=admin)
    assert not_metadata.status_code == 422
    assert client.patch(target, json=[1], headers=admin).status_code == 422

    removed = client.patch(target, json={"schema": None}, headers=admin).json()
    assert removed["schema"] is None
    assert client.put(target, json={"config": {"port": "any"}}, headers=admin).status_code == 200


# --- delete ----------------------------------------------------------------------------------


def test_delete_with_and_without_if_match(client, admin, app, database_url):
    created = create_configuration(client, admin, app["id"])
    client.put(url(created), json={"config": {"v": 2}}, headers=admin)

    stale = client.delete(url(created), headers=admin | {"If-Match": etag_of(created)})
    assert stale.status_code == 412
    assert client.get(url(created), headers=admin).status_code == 200

    assert client.delete(url(created), headers=admin | {"If-Match": f'"{created["id"]}.2"'}).status_code == 204
    assert client.get(url(created), headers=admin).status_code == 404
    assert client.get(url(created, "/revisions"), headers=admin).status_code == 404
    assert query(database_url, "SELECT count(*) FROM configuration_revisions WHERE configuration_id = %s",
                 (created["id"],)) == [(0,)]
    assert client.delete(url(created), headers=admin).status_code == 404

    again = create_configuration(client, admin, app["id"])
    assert again["name"] == created["name"] and again["revision"] == 1


# --- access ----------------------------------------------------------------------------------


def test_scoped_token_reaches_only_its_applications_configurations(client, admin, make_token):
    mine = create_application(client, admin, "mine")
    theirs = create_application(client, admin, "theirs")
    own = create_configuration(client, admin, mine["id"], "own")
    foreign = create_configuration(client, admin, theirs["id"], "foreign")
    scoped = bearer(make_token("service", application_id=mine["id"]))

    assert client.get(url(own), headers=scoped).status_code == 200
    assert client.put(url(own), json={"config": {"x": 1}}, headers=scoped).status_code == 200
    made = client.post(f"{API}/applications/{mine['id']}/configurations", json={"name": "new", "config": {}},
                       headers=scoped)
    assert made.status_code == 201

    hidden = [
        client.get(url(foreign), headers=scoped),
        client.put(url(foreign), json={"config": {}}, headers=scoped),
        client.patch(url(foreign), json={"a": 1}, headers=scoped | MERGE_PATCH),
        client.delete(url(foreign), headers=scoped),
        client.get(url(foreign, "/revisions"), headers=scoped),
        client.get(url(foreign, "/revisions/1"), headers=scoped),
        client.get(url(foreign, "/diff"), params={"from": 1, "to": 1}, headers=scoped),
        client.post(url(foreign, "/rollback"), json={"revision": 1}, headers=scoped),
        client.get(f"{API}/applications/{theirs['id']}/configurations", headers=scoped),
        client.post(f"{API}/applications/{theirs['id']}/configurations", json={"name": "x", "config": {}},
                    headers=scoped),
    ]
    assert [r.status_code for r in hidden] == [404] * len(hidden)
    assert hidden[0].json()["detail"] == f"configuration {foreign['id']} not found"
    assert client.get(url(foreign), headers=admin).json()["revision"] == 1


def test_read_only_token_cannot_write(client, admin, make_token, app):
    created = create_configuration(client, admin, app["id"])
    reader = bearer(make_token("service", read_only=True))
    assert client.get(url(created), headers=reader).status_code == 200
    assert client.get(url(created, "/revisions"), headers=reader).status_code == 200
    writes = [
        client.post(f"{API}/applications/{app['id']}/configurations", json={"name": "x", "config": {}},
                    headers=reader),
        client.put(url(created), json={"config": {}}, headers=reader),
        client.patch(url(created), json={"a": 1}, headers=reader | MERGE_PATCH),
        client.post(url(created, "/rollback"), json={"revision": 1}, headers=reader),
        client.delete(url(created), headers=reader),
    ]
    assert [r.status_code for r in writes] == [403] * len(writes)
    assert client.get(url(created), headers=admin).json()["revision"] == 1


def test_user_token_finds_nothing_outside_its_teams(client, admin, make_token, database_url, app):
    created = create_configuration(client, admin, app["id"])
    user = user_token(make_token, database_url)
    responses = [
        client.get(f"{API}/applications/{app['id']}/configurations", headers=user),
        client.post(f"{API}/applications/{app['id']}/configurations", json={"name": "x", "config": {}},
                    headers=user),
        client.get(url(created), headers=user),
        client.put(url(created), json={"config": {}}, headers=user),
        client.patch(url(created), json={"a": 1}, headers=user | MERGE_PATCH),
        client.delete(url(created), headers=user),
        client.get(url(created, "/revisions"), headers=user),
        client.get(url(created, "/revisions/1"), headers=user),
        client.get(url(created, "/diff"), params={"from": 1, "to": 1}, headers=user),
        client.post(url(created, "/rollback"), json={"revision": 1}, headers=user),
    ]
    assert [r.status_code for r in responses] == [404] * len(responses)  # outside its teams: as if missing


def test_no_token_is_401(client, admin, app):
    created = create_configuration(client, admin, app["id"])
    assert client.get(url(created)).status_code == 401
    assert client.put(url(created), json={"config": {}}).status_code == 401
    assert client.get(f"{API}/applications/{app['id']}/configurations").status_code == 401


def test_responses_built_directly_are_what_the_documented_models_serialise(client, admin):
    """Reads answer with bytes built by orjson from the rows; they must be exactly what the
    `response_model` of each route would have written (the OpenAPI document describes those)."""
    from pydantic import TypeAdapter

    from svc.services.pagination import Page
    from svc.services.applications import Application
    from svc.services.configurations import Configuration, Revision

    app_id = client.post("/api/v1/applications", headers=admin, json={"name": "bytes"}).json()["id"]
    created = client.post(f"/api/v1/applications/{app_id}/configurations", headers=admin, json={
        "name": "c", "config": {"f": 1.5e-7, "big": 1e20, "u": "é\u2028", "n": None, "l": [0.1, -0.0]},
        "comments": "ü", "schema": {"type": "object"}}).json()
    base = f"/api/v1/configurations/{created['id']}"
    for path, model in [(base, Configuration), (f"{base}/revisions", Page[Revision]),
                        (f"{base}/revisions/1", Revision), (f"/api/v1/applications/{app_id}/configurations",
                                                            Page[Configuration]),
                        (f"/api/v1/applications/{app_id}", Application), ("/api/v1/applications", Page[Application])]:
        response = client.get(path, headers=admin)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json", path
        adapter = TypeAdapter(model)
        assert response.content == adapter.dump_json(adapter.validate_json(response.content)), path
