"""claude.md documents through the API: save, read, history, versions, diff, rollback, access, ETags."""

from __future__ import annotations

import json

import pytest

from tests.claude_md_helpers import API, ada, assert_problem, document_id, git, person, save  # noqa: F401
from tests.conftest import bearer

MIB = 1024 * 1024
UNKNOWN_USER = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZA"


def test_a_user_without_a_document_reads_empty_content(client, ada):
    response = client.get(f"{API}/me/claude-md", headers=ada.headers)
    assert response.status_code == 200
    assert response.json() == {"content": "", "commit_sha": None, "version": 0, "updated_at": None}
    assert "etag" not in response.headers
    assert client.get(f"{API}/me/claude-md/history", headers=ada.headers).json() == {"versions": [], "next": None}


def test_save_and_read_back_with_etag(client, ada, settings):
    content = "# Rules\n\n- be brief\n- émoji 🎉 ok\n\n"
    saved = client.put(f"{API}/me/claude-md", json={"content": content}, headers=ada.headers)
    assert saved.status_code == 200
    body = saved.json()
    assert (body["content"], body["version"]) == (content, 1)
    assert saved.headers["etag"] == f'"{body["commit_sha"]}"'

    read = client.get(ada.document, headers=ada.headers)
    assert read.json() == body
    assert read.headers["etag"] == saved.headers["etag"]
    not_modified = client.get(ada.document, headers={**ada.headers, "If-None-Match": read.headers["etag"]})
    assert not_modified.status_code == 304 and not_modified.content == b""

    # One commit on the document's own ref, authored by the acting user, holding exactly the bytes.
    log = git(settings, "log", "--format=%an <%ae>|%s", f"refs/docs/{document_id(settings, ada)}")
    assert log == "ada <ada@example.com>|Update claude.md\n"
    assert git(settings, "show", f"{body['commit_sha']}:claude.md") == content


def test_every_save_is_a_new_version_even_with_the_same_content(client, ada):
    first = save(client, ada.document, ada.headers, "same")
    second = save(client, ada.document, ada.headers, "same", message="again")
    assert (first["version"], second["version"]) == (1, 2)
    assert first["commit_sha"] != second["commit_sha"]


def test_admin_saves_for_a_user_as_the_admin_token(client, admin, ada, settings):
    saved = save(client, ada.document, admin, "by the admin", message="Seeded by ops")
    [entry] = client.get(f"{ada.document}/history", headers=ada.headers).json()["versions"]
    assert (entry["author"], entry["message"]) == ("test-admin", "Seeded by ops")
    author = git(settings, "log", "-1", "--format=%an <%ae>", saved["commit_sha"])
    assert author == "test-admin <test-admin@svc.invalid>\n"


def test_stale_if_match_is_412_and_writes_nothing(client, ada, settings):
    first = save(client, ada.document, ada.headers, "one")
    second = save(client, ada.document, ada.headers, "two")
    stale = {**ada.headers, "If-Match": f'"{first["commit_sha"]}"'}
    assert_problem(client.put(ada.document, json={"content": "three"}, headers=stale), 412, "has changed")
    assert_problem(client.post(f"{ada.document}/rollback/{first['commit_sha']}", headers=stale), 412)
    upload = {"file": ("claude.md", b"four", "text/markdown")}
    assert_problem(client.post(f"{ada.document}/import", files=upload, headers=stale), 412)
    assert client.get(ada.document, headers=ada.headers).json()["version"] == 2
    assert git(settings, "rev-list", "--count", second["commit_sha"]) == "2\n"
    assert git(settings, "for-each-ref", "--format=%(objectname)", "refs/docs/") == second["commit_sha"] + "\n"

    current = {**ada.headers, "If-Match": f'"{second["commit_sha"]}"'}
    assert save(client, ada.document, current, "three")["version"] == 3


def test_if_match_on_a_document_without_versions_is_412(client, ada):
    headers = {**ada.headers, "If-Match": '"' + "a" * 40 + '"'}
    assert_problem(client.put(ada.document, json={"content": "x"}, headers=headers), 412, "has none yet")
    assert client.get(ada.document, headers=ada.headers).json()["version"] == 0


def test_history_is_newest_first_and_paginated(client, ada):
    shas = [save(client, ada.document, ada.headers, f"v{i}", message=f"save {i}")["commit_sha"] for i in range(1, 6)]
    first = client.get(f"{ada.document}/history?limit=2", headers=ada.headers).json()
    assert [v["version"] for v in first["versions"]] == [5, 4]
    assert set(first["versions"][0]) == {"version", "commit_sha", "author", "message", "created_at"}
    assert first["versions"][0]["message"] == "save 5"
    second = client.get(f"{ada.document}/history?limit=2&after={first['next']}", headers=ada.headers).json()
    third = client.get(f"{ada.document}/history?limit=2&after={second['next']}", headers=ada.headers).json()
    assert [v["version"] for v in second["versions"] + third["versions"]] == [3, 2, 1]
    assert third["next"] is None
    everything = client.get(f"{ada.document}/history", headers=ada.headers).json()["versions"]
    assert [v["commit_sha"] for v in everything] == shas[::-1]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "after=0", "after=x"])
def test_history_rejects_bad_paging(client, ada, query):
    assert_problem(client.get(f"{ada.document}/history?{query}", headers=ada.headers), 422)


def test_read_a_version_by_full_or_abbreviated_sha(client, ada):
    first = save(client, ada.document, ada.headers, "first\n", message="hello")
    save(client, ada.document, ada.headers, "second\n")
    for sha in (first["commit_sha"], first["commit_sha"][:7], first["commit_sha"].upper()):
        response = client.get(f"{ada.document}/versions/{sha}", headers=ada.headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["content"], body["version"], body["message"], body["author"]) == ("first\n", 1, "hello", "ada")
        assert response.headers["etag"] == f'"{first["commit_sha"]}"'
    cached = {**ada.headers, "If-None-Match": f'"{first["commit_sha"]}"'}
    assert client.get(f"{ada.document}/versions/{first['commit_sha']}", headers=cached).status_code == 304


def test_a_commit_of_another_document_is_404_and_a_malformed_sha_422(client, ada, person):
    bob = person("bob")
    save(client, ada.document, ada.headers, "ada's")
    bobs = save(client, bob.document, bob.headers, "bob's")["commit_sha"]
    # The repository holds bob's commit, but it is not a version of ada's document.
    assert_problem(client.get(f"{ada.document}/versions/{bobs}", headers=ada.headers), 404, "not a version")
    assert_problem(client.get(f"{ada.document}/versions/{'0' * 40}", headers=ada.headers), 404)
    for malformed in ("abc", "g" * 40, "a" * 41):
        assert_problem(client.get(f"{ada.document}/versions/{malformed}", headers=ada.headers), 422)
    assert_problem(client.post(f"{ada.document}/rollback/{bobs}", headers=ada.headers), 404)
    assert_problem(client.post(f"{ada.document}/rollback/xyz", headers=ada.headers), 422)


def test_diff_between_non_adjacent_versions(client, ada):
    v1 = save(client, ada.document, ada.headers, "alpha\nbeta\ngamma\n")["commit_sha"]
    save(client, ada.document, ada.headers, "alpha\nBETA\ngamma\n")
    v3 = save(client, ada.document, ada.headers, "alpha\nBETA\ngamma\ndelta")["commit_sha"]
    response = client.get(f"{ada.document}/diff?from={v1}&to={v3[:10]}", headers=ada.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/x-diff; charset=utf-8"
    assert response.text == (
        f"--- a/claude.md\tversion 1 ({v1[:7]})\n"
        f"+++ b/claude.md\tversion 3 ({v3[:7]})\n"
        "@@ -1,3 +1,4 @@\n"
        " alpha\n"
        "-beta\n"
        "+BETA\n"
        " gamma\n"
        "+delta\n"
        "\\ No newline at end of file\n"
    )
    backwards = client.get(f"{ada.document}/diff?from={v3}&to={v1}", headers=ada.headers).text
    assert "-BETA\n+beta\n" in backwards
    assert client.get(f"{ada.document}/diff?from={v1}&to={v1}", headers=ada.headers).text == ""


def test_diff_errors(client, ada, person):
    v1 = save(client, ada.document, ada.headers, "a")["commit_sha"]
    bob = person("bob")
    bobs = save(client, bob.document, bob.headers, "b")["commit_sha"]
    assert_problem(client.get(f"{ada.document}/diff?from={v1}&to={bobs}", headers=ada.headers), 404)
    assert_problem(client.get(f"{ada.document}/diff?from={v1}&to=nothex", headers=ada.headers), 422)
    assert_problem(client.get(f"{ada.document}/diff?from={v1}", headers=ada.headers), 422)


def test_rollback_saves_the_old_content_as_a_new_version(client, ada, settings):
    v1 = save(client, ada.document, ada.headers, "original\n")
    save(client, ada.document, ada.headers, "changed\n")
    response = client.post(f"{ada.document}/rollback/{v1['commit_sha'][:8]}", headers=ada.headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["content"], body["version"]) == ("original\n", 3)
    assert response.headers["etag"] == f'"{body["commit_sha"]}"'
    latest = client.get(f"{ada.document}/history?limit=1", headers=ada.headers).json()["versions"][0]
    assert latest["message"] == f"Rollback to version {v1['commit_sha'][:7]}"
    assert git(settings, "log", "-1", "--format=%s", body["commit_sha"]) == latest["message"] + "\n"
    assert git(settings, "log", "-1", "--format=%P", body["commit_sha"]).strip() != v1["commit_sha"]


def test_content_size_limit(client, ada):
    assert save(client, ada.document, ada.headers, "a" * MIB)["version"] == 1
    assert save(client, ada.document, ada.headers, "é" * (MIB // 2))["version"] == 2
    too_big = client.put(ada.document, json={"content": "a" * (MIB + 1)}, headers=ada.headers)
    assert_problem(too_big, 413, "limit is 1048576 bytes")
    assert client.get(ada.document, headers=ada.headers).json()["version"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"content": 5},
        {"content": "x", "message": ""},
        {"content": "x", "message": "m" * 1025},
        {"content": "x", "message": "nul\u0000"},
        {"content": "x", "extra": True},
        {"content": "lone \ud800 surrogate"},
        {"content": "x", "message": "lone \udfff"},
    ],
)
def test_invalid_save_bodies_are_422(client, ada, body):
    raw = json.dumps(body)  # ASCII with escapes, so lone surrogates reach the service
    response = client.put(ada.document, content=raw, headers={**ada.headers, "content-type": "application/json"})
    assert_problem(response, 422)
    assert client.get(ada.document, headers=ada.headers).json()["version"] == 0


def test_malformed_json_is_400(client, ada):
    response = client.put(ada.document, content=b"{", headers={**ada.headers, "content-type": "application/json"})
    assert_problem(response, 400)


def test_another_users_document_looks_missing(client, ada, person):
    bob = person("bob")
    v1 = save(client, bob.document, bob.headers, "bob's secret")["commit_sha"]
    for method, path, kwargs in _every_route(bob.document, v1):
        response = client.request(method, path, headers=ada.headers, **kwargs)
        assert_problem(response, 404, "not found")
    assert client.get(bob.document, headers=bob.headers).json()["content"] == "bob's secret"
    assert client.get(bob.document, headers=bob.headers).json()["version"] == 1


def test_service_tokens_are_forbidden_and_admins_reach_everything(client, admin, ada, make_token):
    v1 = save(client, ada.document, ada.headers, "ada's")["commit_sha"]
    service = bearer(make_token("service"))
    for method, path, kwargs in _every_route(ada.document, v1):
        assert_problem(client.request(method, path, headers=service, **kwargs), 403)
        assert client.request(method, path, headers=admin, **kwargs).status_code == 200, path


def test_me_routes_need_a_user_token(client, admin):
    for method, path, kwargs in _every_route(f"{API}/me/claude-md", "a" * 40):
        assert_problem(client.request(method, path, headers=admin, **kwargs), 403, "/me is for user tokens")


def test_unknown_user_is_404_for_admins(client, admin):
    url = f"{API}/users/{UNKNOWN_USER}/claude-md"
    assert_problem(client.get(url, headers=admin), 404, f"user {UNKNOWN_USER} not found")
    assert_problem(client.put(url, json={"content": "x"}, headers=admin), 404)
    assert_problem(client.get(f"{url}/history", headers=admin), 404)
    assert_problem(client.get(f"{API}/users/not-a-ulid/claude-md", headers=admin), 422)


def test_read_only_user_token_reads_but_cannot_write(client, person):
    reader = person("ada", read_only=True)
    assert client.get(reader.document, headers=reader.headers).status_code == 200
    assert_problem(client.put(reader.document, json={"content": "x"}, headers=reader.headers), 403, "read-only")


def test_saves_are_audited(client, admin, ada, settings):
    saved = save(client, ada.document, ada.headers, "x", message="why")
    url = f"{API}/audit?resource_type=claude_md_document&resource_id={document_id(settings, ada)}"
    [event] = client.get(url, headers=admin).json()["items"]
    assert event["action"] == "claude_md.save"
    assert event["detail"] == {
        "user_id": ada.id, "version": 1, "commit_sha": saved["commit_sha"], "size_bytes": 1, "message": "why"
    }


def test_openapi_lists_both_route_families(client):
    paths = client.get("/openapi.json").json()["paths"]
    for prefix in ("/api/v1/users/{user_id}/claude-md", "/api/v1/me/claude-md"):
        for suffix in ("", "/history", "/versions/{sha}", "/diff", "/rollback/{sha}", "/import"):
            assert prefix + suffix in paths
    assert {"412", "413"} <= set(paths["/api/v1/me/claude-md"]["put"]["responses"])
    assert "415" in paths["/api/v1/me/claude-md/import"]["post"]["responses"]


def _every_route(document: str, sha: str) -> list[tuple[str, str, dict]]:
    return [
        ("GET", document, {}),
        ("PUT", document, {"json": {"content": "x"}}),
        ("GET", f"{document}/history", {}),
        ("GET", f"{document}/versions/{sha}", {}),
        ("GET", f"{document}/diff?from={sha}&to={sha}", {}),
        ("POST", f"{document}/rollback/{sha}", {}),
        ("POST", f"{document}/import", {"files": {"file": ("claude.md", b"imported", "text/markdown")}}),
    ]

