"""Tokens, roles, revocation, audit, and problem+json on every error."""

from __future__ import annotations

import logging

import psycopg2

from tests.conftest import bearer

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, detail_part: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    assert detail_part in body["detail"]
    return body


def test_no_token_is_401_with_www_authenticate(client):
    response = client.get("/api/v1/tokens")
    assert_problem(response, 401, "missing bearer token")
    assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_token_and_wrong_scheme_are_401(client):
    assert_problem(client.get("/api/v1/tokens", headers=bearer("svc_nope")), 401, "unknown or has been revoked")
    assert_problem(client.get("/api/v1/tokens", headers={"Authorization": "Basic YTpi"}), 401)


def test_token_lifecycle_create_list_revoke(client, admin):
    created = client.post("/api/v1/tokens", headers=admin, json={"name": "billing-reader", "role": "service",
                                                                 "read_only": True})
    assert created.status_code == 201
    body = created.json()
    secret = body["token"]
    assert secret.startswith("svc_") and body["read_only"] is True and body["revoked_at"] is None

    listed = client.get("/api/v1/tokens", headers=admin).json()
    assert {t["name"] for t in listed["items"]} == {"test-admin", "billing-reader"}
    assert all("token" not in t and "token_hash" not in t for t in listed["items"])

    # The new service token authenticates, but is not allowed to manage tokens.
    assert_problem(client.get("/api/v1/tokens", headers=bearer(secret)), 403, "admin")

    revoked = client.delete(f"/api/v1/tokens/{body['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    # Revocation takes effect on the very next request.
    assert_problem(client.get("/api/v1/tokens", headers=bearer(secret)), 401, "revoked")


def test_revoking_unknown_token_is_404_and_bad_id_is_422(client, admin):
    assert_problem(client.delete("/api/v1/tokens/01ARZ3NDEKTSV4RRFFQ69G5FAV", headers=admin), 404)
    assert_problem(client.delete("/api/v1/tokens/not-a-ulid", headers=admin), 422)


def test_invalid_token_requests_are_refused_and_change_nothing(client, admin):
    cases = [
        ({"name": "", "role": "admin"}, 422),
        ({"name": "x", "role": "root"}, 422),
        ({"name": "x", "role": "user"}, 422),  # a user token needs user_id
        ({"name": "x", "role": "admin", "application_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, 422),
        ({"name": "x", "role": "service", "application_id": "'; DROP TABLE api_tokens; --"}, 422),
    ]
    for body, status in cases:
        assert_problem(client.post("/api/v1/tokens", headers=admin, json=body), status)
    malformed = client.post("/api/v1/tokens", headers={**admin, "Content-Type": "application/json"}, content=b"{bad")
    assert_problem(malformed, 400, "not valid JSON")
    # Ids that name nothing: the foreign keys refuse them, as 422 naming the field.
    for field, role, detail in [
        ("application_id", "service", "application_id does not name an existing application"),
        ("user_id", "user", "user_id does not name an existing user"),
    ]:
        body = {"name": "x", "role": role, field: "01ARZ3NDEKTSV4RRFFQ69G5FAV"}
        assert_problem(client.post("/api/v1/tokens", headers=admin, json=body), 422, detail)
    assert len(client.get("/api/v1/tokens", headers=admin).json()["items"]) == 1


def test_token_list_is_keyset_paginated(client, admin, make_token):
    for n in range(5):
        make_token("service", name=f"svc-{n}")
    seen, after = [], None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = client.get("/api/v1/tokens", headers=admin, params=params).json()
        seen += [t["id"] for t in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == 6 and len(set(seen)) == 6 and seen == sorted(seen)


def test_hash_of_a_token_does_not_authenticate(client, admin, database_url):
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT token_hash FROM api_tokens")
        stored = cur.fetchone()[0]
    conn.close()
    assert_problem(client.get("/api/v1/tokens", headers=bearer(stored)), 401)


def test_token_creation_and_revocation_are_audited_without_secrets(client, admin):
    secret = client.post("/api/v1/tokens", headers=admin, json={"name": "ci", "role": "admin"}).json()
    client.delete(f"/api/v1/tokens/{secret['id']}", headers=admin)
    events = client.get("/api/v1/audit", headers=admin, params={"resource_type": "token",
                                                                 "resource_id": secret["id"]}).json()["items"]
    assert [e["action"] for e in events] == ["token.revoke", "token.create"]
    assert events[0]["actor_name"] == "test-admin" and events[0]["request_id"]
    assert secret["token"] not in str(events)

    by_actor = client.get("/api/v1/audit", headers=admin, params={"actor": events[0]["actor_token_id"]}).json()
    assert {e["action"] for e in by_actor["items"]} == {"token.create", "token.revoke"}
    future = client.get("/api/v1/audit", headers=admin, params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future["items"] == []
    assert_problem(client.get("/api/v1/audit", headers=bearer(secret["token"])), 401)


def test_audit_is_admin_only(client, make_token):
    assert_problem(client.get("/api/v1/audit", headers=bearer(make_token("service"))), 403)


def test_tokens_never_reach_the_logs(client, admin, caplog):
    caplog.set_level(logging.DEBUG)
    created = client.post("/api/v1/tokens", headers=admin, json={"name": "logged", "role": "admin"}).json()
    client.get("/api/v1/tokens", headers=bearer(created["token"]))
    client.get("/api/v1/tokens", headers=bearer("svc_wrong-secret"))
    assert created["token"] not in caplog.text
    assert admin["Authorization"].split()[1] not in caplog.text
    assert "svc_wrong-secret" not in caplog.text


def test_request_id_is_echoed_or_generated(client):
    echoed = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert len(generated.headers["x-request-id"]) == 26


def test_unknown_route_and_method_are_problem_json(client, admin):
    assert_problem(client.get("/api/v1/nothing-here", headers=admin), 404, "no route")
    assert_problem(client.put("/health"), 405)


def test_oversized_body_is_413_before_it_is_read(client, admin, settings):
    too_big = b"x" * (settings.max_request_bytes + 1)
    response = client.post("/api/v1/tokens", headers={**admin, "Content-Type": "application/json"}, content=too_big)
    assert_problem(response, 413, "larger than the limit")

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(settings.max_request_bytes // 65536 + 2):
            yield b" " * 65536

    streamed = client.post("/api/v1/tokens", headers={**admin, "Content-Type": "application/json"}, content=chunks())
    assert_problem(streamed, 413, "larger than the limit")


def test_health_and_ready_need_no_token(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ok" and ready["pool"]["max_size"] == 8
