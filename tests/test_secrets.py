"""Token secrets: shown once, in the answer that creates them, and nowhere else: not in the
service's log (access log on, DEBUG), not in error bodies, not in the audit trail, metrics or
git history. What PostgreSQL stores instead, the hash, does not authenticate."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from svc.api.app import create_app
from tests.claude_md_helpers import API, create_user, git, sql
from tests.conftest import bearer


def _use_and_misuse(http, admin: dict[str, str], secrets: list[str]) -> list[str]:
    """Requests that carry the secrets, rightly and wrongly; the answers' texts."""
    ops, reader, laptop = secrets
    calls = [
        ("GET", f"{API}/tokens", bearer(ops)),
        ("GET", f"{API}/tokens", bearer(reader)),  # 403
        ("POST", f"{API}/applications", bearer(reader)),  # 403: read-only
        ("PUT", f"{API}/me/claude-md", bearer(laptop)),  # a commit authored by the token's user
        ("GET", f"{API}/me", bearer(laptop)),
        ("GET", f"{API}/tokens", {"Authorization": f"Bearer {ops}x"}),  # unknown: 401
        ("GET", f"{API}/tokens", {"Authorization": f"Token {ops}"}),  # wrong scheme: 401
        ("GET", f"{API}/tokens", {"Authorization": ops}),  # no scheme: 401
        ("DELETE", f"{API}/tokens/{ops}", admin),  # the secret where the id belongs: 422
        ("GET", f"{API}/tokens/{ops}", admin),  # 405
        ("GET", "/metrics", admin),
    ]
    return [http.request(method, path, headers=headers, json={"content": "# notes\n"}).text
            for method, path, headers in calls]


@pytest.fixture
def logging_client(settings) -> Iterator[TestClient]:
    """The app in-process with its access log on, at DEBUG (made before the test's log capture)."""
    with TestClient(create_app(settings.model_copy(update={"access_log": True, "log_level": "DEBUG"}))) as client:
        yield client


def test_tokens_never_reach_logs_error_bodies_audit_metrics_or_git(client, logging_client, admin, live_server,
                                                                  settings, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    user = create_user(client, admin, "ada")
    created = [
        client.post(f"{API}/tokens", json=body, headers=admin).json()
        for body in [
            {"name": "ops", "role": "admin"},
            {"name": "reader", "role": "service", "read_only": True},
            {"name": "laptop", "role": "user", "user_id": user["id"]},
        ]
    ]
    secrets = [token["token"] for token in created]
    server = live_server(workers=1, SVC_ACCESS_LOG="true", SVC_LOG_LEVEL="DEBUG", PYTHONUNBUFFERED="1")
    answers = _use_and_misuse(logging_client, admin, secrets)  # in-process: its log is in caplog
    with server.client(timeout=30) as http:
        answers += _use_and_misuse(http, admin, secrets)
        http.delete(f"{API}/tokens/{created[0]['id']}", headers=admin)
        revoked = http.get(f"{API}/tokens", headers=bearer(secrets[0]))
        assert revoked.status_code == 401
        answers.append(revoked.text)
    server.process.terminate()
    server.process.wait(10)
    log = (tmp_path / f"uvicorn-{server.base_url.rsplit(':', 1)[1]}.log").read_text()
    assert f"GET {API}/tokens 401" in log  # the access log was on
    service_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("svc", "uvicorn")))
    assert f"GET {API}/tokens 401" in service_log

    hashes = [row[0] for row in sql(settings, "SELECT token_hash FROM api_tokens")]
    stored = sql(settings, "SELECT actor_name, detail::text FROM audit_events") + sql(
        settings, "SELECT author, message FROM document_versions"
    )
    places = {
        "server log": log,
        "in-process log": service_log,
        "answers": "\n".join(answers),
        "database": str(stored),
        "git": git(settings, "log", "--all", "--format=%an %ae %cn %ce %B"),
    }
    secrets.append(admin["Authorization"].split()[1])
    leaks = [(place, secret[:8]) for place, text in places.items() for secret in secrets + hashes if secret in text]
    assert leaks == []


def test_a_stored_hash_does_not_authenticate(client, admin, make_token, settings):
    make_token("service", name="reader", read_only=True)
    revoked = client.post(f"{API}/tokens", json={"name": "old", "role": "admin"}, headers=admin).json()
    client.delete(f"{API}/tokens/{revoked['id']}", headers=admin)
    hashes = [row[0] for row in sql(settings, "SELECT token_hash FROM api_tokens")]
    assert len(hashes) == 3
    for token_hash in hashes:
        for presented in (token_hash, f"svc_{token_hash}", token_hash.upper()):
            response = client.get(f"{API}/applications", headers=bearer(presented))
            assert response.status_code == 401, presented
