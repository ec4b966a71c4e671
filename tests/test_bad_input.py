"""Bad input across the whole API: each request gets its precise 4xx as problem+json, and the
database and the git repository are exactly as they were.

Sweeps built from the OpenAPI document reach every route (malformed JSON, wrong media types,
bytes that are not UTF-8 on every JSON body; malformed ids in every id parameter); a table
adds names and filters that are dangerous elsewhere. The per-resource test files cover each
resource's own validation rules; this file does not repeat them.
"""

from __future__ import annotations

import json
import select
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from svc.ids import new_id
from tests.claude_md_helpers import API, PROBLEM, create_user, git, save, sql
from tests.configuration_helpers import create_application, create_configuration

INJECTION = "'; DROP TABLE applications; --"
METACHARACTERS = [INJECTION, "%", "_", "\\", "a%_\\'\"", "$1", "%(name)s"]
BAD_IDS = ["not-a-ulid", "0" * 25, "I" * 26, "0" * 27, INJECTION]
BAD_NAMES = ["a/b", ".", "..", "a\u0000b", "x" * 257, "a b", INJECTION, "%", ""]


@pytest.fixture
def world(client, admin, settings) -> dict[str, str]:
    """One resource of every kind, for the path parameters of every route."""
    application = create_application(client, admin, "billing")
    configuration = create_configuration(client, admin, application["id"], "main", {"port": 1})
    user = create_user(client, admin, "ada")
    saved = save(client, f"{API}/users/{user['id']}/claude-md", admin, "# ada\n")
    token = client.post(f"{API}/tokens", json={"name": "spare", "role": "service"}, headers=admin).json()
    team = client.post(f"{API}/teams", json={"name": "core", "owner_id": user["id"]}, headers=admin).json()
    proposal = client.post(
        f"{API}/users/{user['id']}/claude-md/proposals", json={"content": "# ada!\n", "message": "x"}, headers=admin
    ).json()
    tool = {"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}
    item = client.post(f"{API}/catalog", headers=admin, json={
        "type": "tool", "name": "get_weather", "owner": {"team_id": team["id"]}, "content": json.dumps(tool),
    }).json()
    product = f"{API}/applications/{application['id']}"
    document = client.post(f"{product}/documents", headers=admin, json={
        "title": "Plan", "type": "plan", "content": "# plan\n",
    }).json()
    work_item = client.post(f"{product}/work-items", headers=admin, json={"title": "Fix", "type": "fix"}).json()
    repository = client.post(f"{product}/repositories", headers=admin, json={
        "name": "billing", "full_name": "acme/billing", "url": "https://github.com/acme/billing",
    }).json()
    return {
        "name": "core",  # a marketplace's team (/git/teams/{name}.git); no JSON body there
        "document_id": document["id"],
        "work_item_id": work_item["id"],
        "repository_id": repository["id"],
        "item_id": item["id"],
        "team_id": team["id"],
        "proposal_id": proposal["id"],
        "application_id": application["id"],
        "configuration_id": configuration["id"],
        "user_id": user["id"],
        "token_id": token["id"],
        "sha": saved["commit_sha"],
        "revision": "1",
        "application_name": "billing",
        "configuration_name": "main",
    }


def _state(settings) -> dict[str, Any]:
    """Everything a request could have changed: the rows of every table and every git ref."""
    tables = [row[0] for row in sql(settings, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    rows = {table: sql(settings, f'SELECT * FROM "{table}" ORDER BY 1') for table in tables}
    # Reading refreshes last_used_at of the token that reads: not a change anybody made.
    rows["api_tokens"] = [row[:7] for row in sql(settings, "SELECT * FROM api_tokens ORDER BY 1")]
    return {"rows": rows, "refs": git(settings, "for-each-ref")}


def _operations(client) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, operation)
        for path, operations in client.app.openapi()["paths"].items()
        for method, operation in operations.items()
    ]


def _sweeps(client, world: dict[str, str]) -> list[tuple[str, str, dict, int, str]]:
    """(method, url, request options, status, a part of the detail) for every route it applies to."""
    cases = []
    for method, path, operation in _operations(client):
        url = path.format(**world)
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            for body, status, detail in [
                (b'{"oops', 400, "not valid JSON"),
                (b'{"name": "\xff\xfe"}', 400, "body"),
                (b"[1, 2", 400, "not valid JSON"),
            ]:
                cases.append((method, url, {"content": body, "headers": {"Content-Type": "application/json"}},
                              status, detail))
            for media_type, named in [("text/plain", "text/plain"), ("application/xml", "application/xml"),
                                      # what `curl -d` sends without -H: the detail says what to add
                                      ("application/x-www-form-urlencoded", "-H 'Content-Type: application/json'")]:
                cases.append((method, url, {"content": b"{}", "headers": {"Content-Type": media_type}},
                              415, named))
        body = {"json": {}} if operation.get("requestBody") else {}  # so that only the id is wrong
        for name in (p["name"] for p in operation.get("parameters", []) if p["in"] == "path"):
            if name.endswith("_id"):
                for bad in BAD_IDS:
                    cases.append((method, path.format(**(world | {name: bad})), body, 422, name))
    return cases


def _table(world: dict[str, str]) -> list[tuple[str, str, dict, int, str]]:
    application, configuration, user = world["application_id"], world["configuration_id"], world["user_id"]
    cases = []
    for name in BAD_NAMES:
        cases += [
            ("POST", f"{API}/applications", {"json": {"name": name}}, 422, "name"),
            ("PATCH", f"{API}/applications/{application}", {"json": {"name": name}}, 422, "name"),
            ("POST", f"{API}/applications/{application}/configurations",
             {"json": {"name": name, "config": {}}}, 422, "name"),
            ("POST", f"{API}/users", {"json": {"email": "eve@example.com", "username": name}}, 422, "username"),
        ]
    cases += [
        # In a URL path: a slash makes another path, dot-segments vanish, the rest break the rule.
        ("GET", f"{API}/resolve/a%2Fb/main", {}, 404, "no route"),
        ("GET", f"{API}/resolve/billing/{'x' * 257}", {}, 422, "configuration_name"),
        ("GET", f"{API}/resolve/bil%00ling/main", {}, 422, "application_name"),
        ("GET", f"{API}/resolve/{INJECTION}/main", {}, 422, "application_name"),
        # Filters: NUL never reaches SQL, JSON must be a JSON object, times must be RFC 3339.
        ("GET", f"{API}/audit", {"params": {"resource_type": "a\x00b"}}, 422, "resource_type"),
        ("GET", f"{API}/audit", {"params": {"resource_id": "a\x00b"}}, 422, "resource_id"),
        ("GET", f"{API}/audit", {"params": {"until": "0.5"}}, 422, "RFC 3339"),
        ("GET", f"{API}/audit", {"params": {"since": "2024-05-01T12:00:00"}}, 422, "timezone"),
        ("GET", f"{API}/audit", {"params": {"actor": INJECTION}}, 422, "actor"),
        ("GET", f"{API}/tokens", {"params": {"after": "\x00"}}, 422, "after"),
        ("GET", f"{API}/applications/{application}/configurations", {"params": {"contains": INJECTION}}, 400,
         "contains"),
        ("GET", f"{API}/applications/{application}/configurations", {"params": {"contains": '"%"'}}, 400,
         "JSON object"),
        ("GET", f"{API}/configurations/{configuration}/diff", {"params": {"from": "1", "to": INJECTION}}, 422, "to"),
        ("GET", f"{API}/users/{user}/claude-md/diff", {"params": {"from": INJECTION, "to": world["sha"]}}, 422,
         "from"),
        ("GET", f"{API}/users/{user}/claude-md/versions/{'g' * 40}", {}, 422, "sha"),
        # A merge patch that is not an object is refused before a stale If-Match is looked at.
        ("PATCH", f"{API}/configurations/{configuration}",
         {"content": b"[]", "headers": {"Content-Type": "application/merge-patch+json", "If-Match": '"stale"'}},
         422, "must be a JSON object"),
        # An upload that is not UTF-8, and one that is not Markdown.
        ("POST", f"{API}/users/{user}/claude-md/import",
         {"files": {"file": ("notes.md", "café".encode("latin-1"), "text/markdown")}}, 400, "not UTF-8"),
        ("POST", f"{API}/users/{user}/claude-md/import",
         {"files": {"file": ("notes.md", b"# x", "text/markdown; charset=latin-1")}}, 415, "UTF-8"),
        # Catalog: a query is text without NUL (any other text is a query), an owner is one id,
        # a release is a semantic version, a cursor is one this search returned.
        ("GET", f"{API}/catalog", {"params": {"q": "a\x00b"}}, 422, "q"),
        ("GET", f"{API}/catalog", {"params": {"after": "AAAA"}}, 422, "after"),
        ("POST", f"{API}/catalog", {"json": {"type": "tool", "name": "x", "owner": {"user_id": world["user_id"], "team_id": world["team_id"]}, "content": "{}"}}, 422, "owner"),
        ("POST", f"{API}/catalog", {"json": {"type": "tool", "name": "get_time", "owner": {"team_id": world["team_id"]},
                                             "content": '{"name": "get_time",'}}, 400, "JSON"),
        ("POST", f"{API}/catalog/{world['item_id']}/releases", {"json": {"version": "1.0"}}, 422, "semantic version"),
        ("POST", f"{API}/catalog/{world['item_id']}/document/import",
         {"files": {"file": ("tool.json", b'{"name": "\xff"}', "application/json")}}, 400, "not UTF-8"),
        # A method the path does not serve: 405 naming every method it does.
        ("PUT", f"{API}/tokens", {}, 405, "allowed: GET, HEAD, POST"),
    ]
    return cases


def test_bad_requests_get_their_precise_4xx_and_change_nothing(client, admin, settings, world):
    cases = _sweeps(client, world) + _table(world)
    before = _state(settings)
    print(f"\nbad input: {len(cases)} requests")
    wrong = []
    for method, url, options, status, detail in cases:
        options = dict(options)
        headers = {**admin, **options.pop("headers", {})}
        response = client.request(method, url, headers=headers, **options)
        body = response.json() if response.headers.get("content-type") == PROBLEM else {}
        if response.status_code != status or detail not in body.get("detail", ""):
            wrong.append(f"{method} {url[:80]} {options}: {response.status_code} {body.get('detail', response.text)}")
    assert wrong == [], "\n".join(wrong)
    assert _state(settings) == before
    assert len(cases) > 200  # the sweeps found the routes in the document


def test_405_lists_every_method_of_the_path(client, admin):
    response = client.request("PUT", f"{API}/tokens", headers=admin)
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert client.request("POST", f"{API}/tokens/{new_id()}", headers=admin).headers["allow"] == "DELETE"


def test_sql_metacharacters_are_stored_and_matched_as_plain_text(client, admin, settings, world):
    """In free text they are data, kept byte for byte; in filters they match literally."""
    user = world["user_id"]
    for text in METACHARACTERS:
        application = client.post(f"{API}/applications", json={"name": f"a{new_id()}", "comments": text},
                                  headers=admin).json()
        assert application["comments"] == text
        created = client.post(f"{API}/applications/{application['id']}/configurations", headers=admin, json={
            "name": "main", "comments": text, "message": text, "config": {text: text, "list": [text]},
        }).json()
        assert (created["comments"], created["config"]) == (text, {text: text, "list": [text]})
        found = client.get(f"{API}/applications/{application['id']}/configurations", headers=admin,
                           params={"contains": json.dumps({"list": [text]})})
        assert [item["id"] for item in found.json()["items"]] == [created["id"]]
        patched = client.patch(f"{API}/users/{user}", json={"display_name": text}, headers=admin).json()
        assert patched["display_name"] == text
        saved = save(client, f"{API}/users/{user}/claude-md", admin, text, message=text)
        assert saved["content"] == text
        token = client.post(f"{API}/tokens", json={"name": text, "role": "service"}, headers=admin).json()
        assert token["name"] == text
        assert client.get(f"{API}/applications", params={"name_prefix": text}, headers=admin).json()["items"] == []
        assert client.get(f"{API}/applications", params={"after": text}, headers=admin).status_code == 200
        audited = client.get(f"{API}/audit", params={"resource_id": text}, headers=admin)
        assert audited.json()["items"] == []
    history = client.get(f"{API}/users/{user}/claude-md/history?limit=100", headers=admin).json()["versions"]
    assert [v["message"] for v in history][: len(METACHARACTERS)] == METACHARACTERS[::-1]
    assert sql(settings, "SELECT count(*) FROM applications")[0][0] == len(METACHARACTERS) + 1  # all still there


# --- oversized bodies over a real socket -------------------------------------------------------

LIMIT = 64 * 1024


def _connect(base_url: str) -> socket.socket:
    parts = urlsplit(base_url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _head(token: str, extra: str) -> bytes:
    return (
        f"POST {API}/applications HTTP/1.1\r\nHost: svc\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_oversized_bodies_are_refused_without_being_read(client, admin, served_app, settings):
    server = served_app(max_request_bytes=LIMIT)
    token = admin["Authorization"].split()[1]

    # A Content-Length over the limit is answered at once, before any of the body is sent.
    with _connect(server.base_url) as sock:
        sock.sendall(_head(token, f"Content-Length: {1024 ** 3}\r\n"))
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"application/problem+json" in answer

    # Without Content-Length, the streamed bytes are counted: the server answers 413 and stops
    # reading long before the client is done (it would send 256 MiB).
    sent, answer = 0, b""
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    with _connect(server.base_url) as sock:
        sock.sendall(_head(token, "Transfer-Encoding: chunked\r\n"))
        while sent < 256 * 1024 * 1024:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                answer = _answer(sock)
                break
            assert writable, "the server neither read nor answered"
            try:
                sent += sock.send(chunk)
            except OSError:  # it answered and closed: read the answer
                answer = _answer(sock)
                break
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert sent < 32 * 1024 * 1024, f"{sent} bytes were taken before the answer"
    assert sql(settings, "SELECT count(*) FROM applications")[0][0] == 0
    print(f"\nbody limit {LIMIT} bytes: a chunked body was refused after {sent} bytes had been sent")
