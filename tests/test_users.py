"""Users: admins manage them; a user reads itself and may rename its display name."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from tests.claude_md_helpers import API, ada, assert_problem, create_user, git, person, save, sql, svc_cli  # noqa: F401
from tests.conftest import bearer


def test_admin_creates_and_reads_a_user(client, admin):
    response = client.post(
        f"{API}/users", json={"email": "Ada@Example.com", "username": "ada.l", "display_name": "Ada"}, headers=admin
    )
    assert response.status_code == 201
    user = response.json()
    assert set(user) == {"id", "email", "username", "display_name", "created_at", "updated_at"}
    assert (user["email"], user["username"], user["display_name"]) == ("Ada@Example.com", "ada.l", "Ada")
    assert response.headers["location"].endswith(f"/api/v1/users/{user['id']}")
    assert client.get(f"{API}/users/{user['id']}", headers=admin).json() == user


def test_email_is_unique_regardless_of_case_and_username_is_unique(client, admin):
    create_user(client, admin, "ada", email="ada@example.com")
    taken_email = client.post(f"{API}/users", json={"email": "ADA@example.COM", "username": "other"}, headers=admin)
    assert_problem(taken_email, 409, "email 'ADA@example.COM' is already taken")
    taken_name = client.post(f"{API}/users", json={"email": "b@example.com", "username": "ada"}, headers=admin)
    assert_problem(taken_name, 409, "username 'ada' is already taken")
    assert len(client.get(f"{API}/users", headers=admin).json()["items"]) == 1


def test_invalid_fields_are_422_and_change_nothing(client, admin):
    for body in (
        {"email": "not-an-email", "username": "ada"},
        {"email": "a@b.c", "username": "has space"},
        {"email": "a@b.c", "username": ""},
        {"email": "a@b.c", "username": "x" * 257},
        {"email": "a <a@b.c>", "username": "ada"},
        {"email": "a@b.c", "username": "ada", "display_name": "x" * 257},
        {"email": "a@b.c", "username": "ada", "display_name": "\ud800"},
        {"email": "a@b.c", "username": "ada", "extra": 1},
        {"username": "ada"},
    ):
        raw = json.dumps(body)  # ASCII with escapes, so a lone surrogate reaches the service
        response = client.post(f"{API}/users", content=raw, headers={**admin, "content-type": "application/json"})
        assert_problem(response, 422)
    assert client.get(f"{API}/users", headers=admin).json()["items"] == []


def test_username_of_256_characters_is_accepted(client, admin):
    create_user(client, admin, "u" * 256)


def test_list_is_keyset_paginated(client, admin):
    ids = [create_user(client, admin, f"user{i}")["id"] for i in range(5)]
    first = client.get(f"{API}/users?limit=2", headers=admin).json()
    second = client.get(f"{API}/users?limit=2&after={first['next']}", headers=admin).json()
    third = client.get(f"{API}/users?limit=2&after={second['next']}", headers=admin).json()
    assert [u["id"] for u in first["items"] + second["items"] + third["items"]] == sorted(ids)
    assert third["next"] is None


def test_admin_updates_fields_and_null_display_name_clears_it(client, admin):
    user = create_user(client, admin, "ada", display_name="Ada")
    url = f"{API}/users/{user['id']}"
    changed = client.patch(url, json={"email": "ada@lovelace.org", "username": "lovelace"}, headers=admin).json()
    assert (changed["email"], changed["username"], changed["display_name"]) == ("ada@lovelace.org", "lovelace", "Ada")
    assert changed["updated_at"] > user["updated_at"]
    assert client.patch(url, json={"display_name": None}, headers=admin).json()["display_name"] is None
    assert_problem(client.patch(url, json={"email": None}, headers=admin), 422)


def test_update_to_a_taken_name_is_409(client, admin):
    create_user(client, admin, "ada")
    bob = create_user(client, admin, "bob")
    url = f"{API}/users/{bob['id']}"
    assert_problem(client.patch(url, json={"username": "ada"}, headers=admin), 409, "username 'ada' is already taken")
    assert_problem(client.patch(url, json={"email": "Ada@example.com"}, headers=admin), 409, "is already taken")
    assert client.get(url, headers=admin).json()["username"] == "bob"


def test_missing_user_is_404_and_malformed_id_422(client, admin):
    missing = f"{API}/users/01JCZ5J7Q9T1V0G6W8E2X4Y6ZA"
    assert_problem(client.get(missing, headers=admin), 404, "not found")
    assert_problem(client.patch(missing, json={"display_name": "x"}, headers=admin), 404)
    assert_problem(client.delete(missing, headers=admin), 404)
    assert_problem(client.get(f"{API}/users/nope", headers=admin), 422)


def test_a_user_reads_itself_and_nobody_else(client, admin, person):
    ada, bob = person("ada"), person("bob")
    assert client.get(f"{API}/me", headers=ada.headers).json()["username"] == "ada"
    assert client.get(f"{API}/users/{ada.id}", headers=ada.headers).json()["id"] == ada.id
    assert_problem(client.get(f"{API}/users/{bob.id}", headers=ada.headers), 404)
    assert_problem(client.get(f"{API}/users", headers=ada.headers), 403)
    assert_problem(client.post(f"{API}/users", json={"email": "c@d.e", "username": "c"}, headers=ada.headers), 403)
    assert_problem(client.delete(f"{API}/users/{ada.id}", headers=ada.headers), 403)


def test_a_user_may_change_only_its_own_display_name(client, ada, person):
    bob = person("bob")
    own = f"{API}/users/{ada.id}"
    renamed = client.patch(own, json={"display_name": "Countess"}, headers=ada.headers)
    assert renamed.json()["display_name"] == "Countess"
    assert_problem(client.patch(own, json={"username": "queen"}, headers=ada.headers), 403, "only an admin")
    assert_problem(client.patch(f"{API}/users/{bob.id}", json={"display_name": "x"}, headers=ada.headers), 404)


def test_me_is_for_user_tokens(client, admin, make_token):
    assert_problem(client.get(f"{API}/me", headers=admin), 403, "/me is for user tokens")
    service = bearer(make_token("service"))
    assert_problem(client.get(f"{API}/me", headers=service), 403)
    assert_problem(client.get(f"{API}/users", headers=service), 403)


def test_deleting_a_user_removes_tokens_and_metadata_but_keeps_git_history(client, admin, ada, settings):
    first = save(client, ada.document, ada.headers, "first\n")
    second = save(client, ada.document, ada.headers, "second\n")
    response = client.delete(f"{API}/users/{ada.id}", headers=admin)
    assert response.status_code == 204
    assert_problem(client.get(f"{API}/users/{ada.id}", headers=admin), 404)
    assert_problem(client.get(f"{API}/me", headers=ada.headers), 401)  # the token went with the user
    assert_problem(client.get(ada.document, headers=admin), 404)

    [event] = client.get(f"{API}/audit?resource_type=user&resource_id={ada.id}&limit=1", headers=admin).json()["items"]
    assert event["action"] == "user.delete"
    history_ref = event["detail"]["history_ref"]
    assert history_ref == f"refs/deleted/{event['detail']['document_id']}"
    # How an operator recovers the history (README, "claude.md documents").
    assert git(settings, "log", "--format=%H", history_ref).split() == [second["commit_sha"], first["commit_sha"]]
    assert git(settings, "show", f"{first['commit_sha']}:claude.md") == "first\n"
    assert git(settings, "for-each-ref", "refs/docs/") == ""


def test_deleting_a_user_without_a_document(client, admin):
    user = create_user(client, admin, "ada")
    assert client.delete(f"{API}/users/{user['id']}", headers=admin).status_code == 204


def test_user_changes_are_audited(client, admin):
    user = create_user(client, admin, "ada")
    client.patch(f"{API}/users/{user['id']}", json={"display_name": "Ada"}, headers=admin)
    events = client.get(f"{API}/audit?resource_type=user&resource_id={user['id']}", headers=admin).json()["items"]
    assert [e["action"] for e in events] == ["user.update", "user.create"]


def test_cli_creates_a_user_and_prints_only_its_id(client, admin, svc_cli):
    result = svc_cli("user", "create", "--email", "ada@example.com", "--username", "ada", "--display-name", "Ada")
    assert result.code == 0
    user_id = result.stdout.strip()
    assert result.stdout == user_id + "\n"
    assert "created user ada" in result.stderr
    assert client.get(f"{API}/users/{user_id}", headers=admin).json()["display_name"] == "Ada"

    token = svc_cli("token", "create", "--role", "user", "--name", "ada-laptop", "--user", user_id)
    assert client.get(f"{API}/me", headers=bearer(token.stdout.strip())).json()["id"] == user_id

    again = svc_cli("user", "create", "--email", "ADA@example.com", "--username", "ada2")
    assert (again.code, again.stdout) == (1, "")
    assert "email 'ADA@example.com' is already taken" in again.stderr
    invalid = svc_cli("user", "create", "--email", "x@y.z", "--username", "no spaces")
    assert invalid.code == 1 and "username" in invalid.stderr


def test_deleting_a_user_waits_for_a_save_in_flight_and_keeps_it(client, admin, ada, settings):
    first = save(client, ada.document, ada.headers, "first\n")
    sql(settings, """
        CREATE FUNCTION test_slow_save() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$;
        CREATE TRIGGER test_slow_save BEFORE INSERT ON document_versions
            FOR EACH ROW EXECUTE FUNCTION test_slow_save();
    """)
    with ThreadPoolExecutor(1) as pool:
        saving = pool.submit(client.put, ada.document, json={"content": "second\n"}, headers=ada.headers)
        deadline = time.monotonic() + 10
        while git(settings, "for-each-ref", "--format=%(objectname)", "refs/docs/").strip() == first["commit_sha"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # The save has moved the ref and is about to record its version: the deletion waits for it.
        deleted = client.delete(f"{API}/users/{ada.id}", headers=admin)
        saved = saving.result()
    assert (saved.status_code, deleted.status_code) == (200, 204)
    [event] = client.get(f"{API}/audit?resource_type=user&resource_id={ada.id}&limit=1", headers=admin).json()["items"]
    assert event["detail"]["head_sha"] == saved.json()["commit_sha"]
    history = git(settings, "log", "--format=%H", event["detail"]["history_ref"]).split()
    assert history == [saved.json()["commit_sha"], first["commit_sha"]]


def test_me_for_a_token_of_no_user_says_which_kind_of_token_it_is(client, admin, make_token):
    for headers, kind in ((admin, "an admin token"), (bearer(make_token("service")), "a service token")):
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 403
        assert f"this is {kind}, which belongs to no user" in response.json()["detail"]
