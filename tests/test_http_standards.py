"""HTTP as the standards write it, table by table: conditional requests (RFC 9110 §13) on every
conditional route, HEAD on every GET route (RFC 9110 §9.3.2), bearer challenges (RFC 6750
§3.1), Accept-Patch (RFC 5789 §2.2), case-insensitive ULIDs in paths, OpenAPI operation ids,
and the end of an event stream whose application is deleted.

One database and one app serve the whole module; every case makes the resources it changes.
"""

from __future__ import annotations

import json

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from svc.api.app import create_app
from svc.config import Settings
from svc.ids import new_id
from svc.services.auth import Principal
from svc.services.container import Services
from tests.conftest import Cluster, bearer, on_app_loop
from tests.github_standin import TOKEN as GITHUB_TOKEN
from tests.github_standin import StandIn, serve

API = "/api/v1"
OPERATOR = Principal.operator()


@dataclass
class World:
    client: TestClient
    admin: dict[str, str]
    user: dict[str, str]  # a user token's headers, for /me
    user_id: str

    @property
    def services(self) -> Services:
        return self.client.app.state.services

    def application(self) -> dict[str, Any]:
        return asdict(self.services.applications.create(OPERATOR, name=f"app-{new_id().lower()}"))

    def configuration(self) -> dict[str, Any]:
        """A configuration at revision 2 of a fresh application."""
        application_id = self.application()["id"]
        created = on_app_loop(self.client, lambda: self.services.configurations.create(
            OPERATOR, application_id, name="main", config={"v": 1}
        ))
        return asdict(on_app_loop(self.client, lambda: self.services.configurations.update(
            OPERATOR, created.id, {"config": {"v": 2}})))

    def document(self, user_id: str | None = None) -> tuple[str, list[str]]:
        """A claude.md URL (of a fresh user by default) with two more versions; their shas, oldest first."""
        if user_id is None:
            tag = new_id().lower()
            user_id = self.services.users.create(OPERATOR, email=f"{tag}@example.com", username=tag).id
        saves = [
            self.services.claude_md.save(OPERATOR, user_id, content=f"v{n}\n", message=None, expected=None)
            for n in (1, 2)
        ]
        return f"{API}/users/{user_id}/claude-md", [saved.commit_sha for saved in saves]


@pytest.fixture(scope="module")
def world(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    database = cluster.create_database()
    github = serve(StandIn())
    settings = Settings(
        _env_file=None,
        database_url=cluster.url(database),
        data_dir=tmp_path_factory.mktemp("http-standards") / "data",
        pool_min_size=1,
        pool_max_size=8,
        access_log=False,
        sse_keepalive_seconds=0.2,
        github_api_url=f"http://127.0.0.1:{github.server_address[1]}",
    )
    with TestClient(create_app(settings)) as client:
        services: Services = client.app.state.services
        admin = bearer(services.tokens.create(OPERATOR, name="admin", role="admin").secret)
        user_id = services.users.create(OPERATOR, email="ada@example.com", username="ada").id
        user = bearer(services.tokens.create(OPERATOR, name="ada", role="user", user_id=user_id).secret)
        yield World(client, admin, user, user_id)
    github.shutdown()
    github.server_close()
    cluster.drop_database(database)


# --- conditional requests ---------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One conditional request on fresh resources: what to send, the current ETag, and how to
    read the ETag again (to see that a refused write changed nothing)."""

    method: str
    url: str
    kwargs: dict[str, Any]
    etag: str
    current: Callable[[], str | None]


def _configuration(world: World, method: str, suffix: str = "", **kwargs: Any) -> Target:
    configuration = world.configuration()
    url = f"{API}/configurations/{configuration['id']}"

    def current() -> str | None:
        return world.client.get(url, headers=world.admin).headers.get("etag")

    return Target(method, url + suffix, kwargs, f'"{configuration["id"]}.2"', current)


def _document(world: World, method: str, suffix: Callable[[list[str]], str] = lambda shas: "", **kwargs) -> Target:
    url, shas = world.document()

    def current() -> str | None:
        return world.client.get(url, headers=world.admin).headers.get("etag")

    return Target(method, url + suffix(shas), kwargs, f'"{shas[1]}"', current)


def _resolve(world: World, method: str, *, cached: bool) -> Target:
    configuration = world.configuration()
    application = asdict(world.services.applications.get(OPERATOR, configuration["application_id"]))
    url = f"{API}/resolve/{application['name']}/main"
    if cached:  # served by the resolve cache from then on
        assert world.client.get(url, headers=world.admin).status_code == 200
    return Target(method, url, {}, f'"{configuration["id"]}.2"', lambda: None)


MERGE_PATCH = {"content": b'{"v": 3}', "headers": {"Content-Type": "application/merge-patch+json"}}
UPLOAD = {"files": {"file": ("CLAUDE.md", b"# imported\n", "text/markdown")}}

READS: dict[str, Callable[[World, str], Target]] = {
    "configuration": lambda world, method: _configuration(world, method),
    "claude.md": lambda world, method: _document(world, method),
    "claude.md version": lambda world, method: _document(world, method, lambda shas: f"/versions/{shas[1]}"),
    "resolve": lambda world, method: _resolve(world, method, cached=False),
    "resolve (cached)": lambda world, method: _resolve(world, method, cached=True),
}
WRITES: dict[str, tuple[Callable[[World], Target], int]] = {
    "configuration PUT": (lambda world: _configuration(world, "PUT", json={"config": {"v": 3}}), 200),
    "configuration PATCH": (lambda world: _configuration(world, "PATCH", **MERGE_PATCH), 200),
    "configuration DELETE": (lambda world: _configuration(world, "DELETE"), 204),
    "configuration rollback": (
        lambda world: _configuration(world, "POST", "/rollback", json={"revision": 1}), 200
    ),
    "claude.md PUT": (lambda world: _document(world, "PUT", json={"content": "v3\n"}), 200),
    "claude.md rollback": (lambda world: _document(world, "POST", lambda shas: f"/rollback/{shas[0]}"), 200),
    "claude.md import": (lambda world: _document(world, "POST", lambda shas: "/import", **UPLOAD), 200),
}

# (If-Match, If-None-Match) built from the current ETag E → the answer, by RFC 9110 §13.1.1,
# §13.1.2 and §13.2.2. "ok" is the route's success; a failed If-None-Match is 304 on a read.
PASS, NOT_MODIFIED, FAILED = "ok", 304, 412
CASES: list[tuple[str, Callable[[str], dict[str, str]], object, object]] = [
    # name, headers, on a read, on a write
    ("If-Match: E", lambda e: {"If-Match": e}, PASS, PASS),
    ("If-Match: W/E (weak never matches)", lambda e: {"If-Match": f"W/{e}"}, FAILED, FAILED),
    ("If-Match: other", lambda e: {"If-Match": '"other.1"'}, FAILED, FAILED),
    ("If-Match: other, E", lambda e: {"If-Match": f'"other.1", {e}'}, PASS, PASS),
    ("If-Match: W/E, other", lambda e: {"If-Match": f'W/{e},"other.1"'}, FAILED, FAILED),
    ("If-Match: *", lambda e: {"If-Match": "*"}, PASS, PASS),
    ("If-None-Match: E", lambda e: {"If-None-Match": e}, NOT_MODIFIED, FAILED),
    ("If-None-Match: W/E (weak comparison)", lambda e: {"If-None-Match": f"W/{e}"}, NOT_MODIFIED, FAILED),
    ("If-None-Match: other", lambda e: {"If-None-Match": '"other.1"'}, PASS, PASS),
    ("If-None-Match: other, W/E", lambda e: {"If-None-Match": f'"other.1" , W/{e}'}, NOT_MODIFIED, FAILED),
    ("If-None-Match: empty list elements", lambda e: {"If-None-Match": f', "a,b" ,,{e},'}, NOT_MODIFIED, FAILED),
    ("If-None-Match: *", lambda e: {"If-None-Match": "*"}, NOT_MODIFIED, FAILED),
    ("If-Match fails first", lambda e: {"If-Match": '"other.1"', "If-None-Match": e}, FAILED, FAILED),
    ("If-Match: E, If-None-Match: E", lambda e: {"If-Match": e, "If-None-Match": e}, NOT_MODIFIED, FAILED),
    # A field that is not an entity-tag list cannot be evaluated: it never lets the request through.
    ("malformed If-Match (unquoted)", lambda e: {"If-Match": e.strip('"')}, FAILED, FAILED),
    ("malformed If-None-Match (no closing quote)", lambda e: {"If-None-Match": e[:-1]}, FAILED, FAILED),
    ("malformed If-None-Match (a tag and junk)", lambda e: {"If-None-Match": f'"other.1", x'}, FAILED, FAILED),
]


def _send(world: World, target: Target, headers: dict[str, str]):
    kwargs = dict(target.kwargs)
    headers = {**kwargs.pop("headers", {}), **world.admin, **headers}
    return world.client.request(target.method, target.url, headers=headers, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("route", READS)
def test_conditional_reads(world: World, route: str, method: str, case):
    _, headers, expected, _ = case
    target = READS[route](world, method)
    response = _send(world, target, headers(target.etag))
    status = 200 if expected == PASS else expected
    assert response.status_code == status, response.text
    if status in (200, 304):
        assert response.headers["etag"] == target.etag  # RFC 9110 §15.4.5: a 304 carries it too
    if status == 304 or method == "HEAD":
        assert response.content == b""


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("route", WRITES)
def test_conditional_writes(world: World, route: str, case):
    _, headers, _, expected = case
    build, success = WRITES[route]
    target = build(world)
    response = _send(world, target, headers(target.etag))
    status = success if expected == PASS else expected
    assert response.status_code == status, response.text
    if status == 200:
        assert response.headers["etag"] not in (None, target.etag)
    elif status == 204:
        assert target.current() is None
    else:
        assert target.current() == target.etag, "a refused write changed the resource"


def test_if_none_match_star_creates_a_document_only_when_it_has_none(world: World):
    """If-None-Match: * on a PUT means "only if there is no current version" (RFC 9110 §13.1.2)."""
    url = f"{API}/me/claude-md"
    first = world.client.put(url, json={"content": "first\n"}, headers={**world.user, "If-None-Match": "*"})
    assert first.status_code == 200 and first.json()["version"] == 1
    again = world.client.put(url, json={"content": "again\n"}, headers={**world.user, "If-None-Match": "*"})
    assert again.status_code == 412
    assert world.client.get(url, headers=world.user).json()["content"] == "first\n"


def test_if_match_star_on_a_document_without_versions_fails(world: World):
    tag = new_id().lower()
    user = world.services.users.create(OPERATOR, email=f"{tag}@example.com", username=tag)
    empty = f"{API}/users/{user.id}/claude-md"
    assert world.client.put(empty, json={"content": "x"}, headers={**world.admin, "If-Match": "*"}).status_code == 412
    assert world.client.get(empty, headers={**world.admin, "If-None-Match": "*"}).status_code == 200


# --- HEAD on every GET route --------------------------------------------------------------------

def _get_routes(client: TestClient) -> list[str]:
    return sorted(
        {
            context.path
            for context in iter_route_contexts(client.app.routes)
            if "GET" in (context.methods or ()) and context.path
        }
    )


ITEM_NAME = "get_weather"


def _tool(description: str) -> str:
    """A catalog tool definition."""
    return json.dumps({"name": ITEM_NAME, "description": description, "input_schema": {"type": "object"}})


def _concrete(world: World, path: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """A URL, query and caller that a GET of this route template answers with 200."""
    configuration = world.configuration()
    application = asdict(world.services.applications.get(OPERATOR, configuration["application_id"]))
    me = path.startswith(f"{API}/me")
    document, shas = world.document(world.user_id if me else None)
    values = {
        "application_id": application["id"],
        "configuration_id": configuration["id"],
        "revision": "1",
        "user_id": document.split("/")[-2],
        "sha": shas[0],
        "application_name": application["name"],
        "configuration_name": configuration["name"],
        "work_item_id": world.services.work_items.create(
            OPERATOR, application["id"], {"title": "t", "type": "fix"}
        ).id,
        "repository_id": world.services.source_repositories.create(
            OPERATOR, application["id"], {"name": "api", "full_name": "acme/api"}
        ).id,
    }
    if "{team_id}" in path:  # a team of this user, and a proposal on the team's document
        values["team_id"] = world.services.teams.create(
            OPERATOR, name=f"team-{new_id().lower()}", owner_id=world.user_id
        ).id
        documents, owner = world.services.team_claude_md, values["team_id"]
        shas = [documents.save(OPERATOR, owner, content=f"v{n}\n", message=None, expected=None).commit_sha
                for n in (1, 2)]
        values["sha"] = shas[0]
    elif "{document_id}" in path:  # an application's document at version 3
        documents = world.services.application_documents.documents
        owner = values["document_id"] = world.services.application_documents.create(
            OPERATOR, application["id"], fields={"title": "t", "type": "note"}, content="v0\n", message=None
        ).id
        shas = [documents.save(OPERATOR, owner, content=f"v{n}\n", message=None, expected=None).commit_sha
                for n in (1, 2)]
        values["sha"] = shas[0]
    elif "{item_id}" in path:  # a tool of the fresh user's with two more versions
        documents = world.services.catalog.documents["tool"]
        owner = values["item_id"] = world.services.catalog.create(
            OPERATOR, type="tool", name=ITEM_NAME, owner={"user_id": values["user_id"]}, description="d",
            tags=[], content=_tool("v0"),
        ).id
        shas = [documents.save(OPERATOR, owner, content=_tool(f"v{n}"), message=None, expected=None).commit_sha
                for n in (1, 2)]
        values["sha"] = shas[0]
    else:
        documents, owner = world.services.claude_md, values["user_id"]
    if "{proposal_id}" in path:
        proposed = _tool("proposed") if "{item_id}" in path else "proposed\n"
        values["proposal_id"] = documents.propose(OPERATOR, owner, content=proposed, message="m").id
    if path.startswith("/git/"):  # a Claude Code marketplace: a team's, or the fresh user's
        values["name"] = world.services.users.get(OPERATOR, values["user_id"]).username
        if path.startswith("/git/teams/"):
            values["name"] = world.services.teams.create(
                OPERATOR, name=f"team-{new_id().lower()}", owner_id=world.user_id
            ).name
    url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
    query: dict[str, Any] = {}
    if path.endswith("/diff"):
        query = {"from": 1, "to": 2} if "/configurations/" in path else {"from": shas[0], "to": shas[1]}
    if path.endswith("/info/refs"):  # a Claude Code marketplace over git
        query = {"service": "git-upload-pack"}
    if path == f"{API}/github/repos":
        return url, query, {**world.admin, "X-GitHub-Token": GITHUB_TOKEN}
    return url, query, world.user if me else world.admin


# Headers that differ between any two requests, and bodies that change as requests are counted.
PER_REQUEST = {"date", "x-request-id"}
CHANGING_BODY = {"/metrics", "/ready"}


def test_every_get_route_answers_head(world: World):
    missing = []
    routes = _get_routes(world.client)
    for path in routes:
        url, query, headers = _concrete(world, path)
        head = world.client.head(url, params=query, headers=headers)
        if path.endswith("/events"):  # a stream: its status line and headers are the answer
            with world.client.stream("GET", url, params=query, headers=headers) as get:
                pass
        else:
            get = world.client.get(url, params=query, headers=headers)
        volatile = PER_REQUEST | ({"content-length"} if path in CHANGING_BODY else set())
        same = {k: v for k, v in get.headers.items() if k not in volatile}
        if (head.status_code, head.content) != (get.status_code, b"") or same != {
            k: v for k, v in head.headers.items() if k not in volatile
        }:
            missing.append(f"HEAD {path}: {head.status_code} {dict(head.headers)} vs GET {get.status_code}")
        assert get.status_code == 200, f"GET {path}: {get.status_code}"
        if path in CHANGING_BODY:
            assert "content-length" in head.headers
    assert missing == []
    assert f"{API}/applications/{{application_id}}/events" in routes and "/health" in routes


def test_head_is_allowed_but_not_documented(world: World):
    document = world.client.app.openapi()
    assert not [path for path, item in document["paths"].items() if "head" in item]
    refused = world.client.request("POST", "/health")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"


def test_head_of_a_long_poll_answers_at_once(world: World):
    target = _resolve(world, "HEAD", cached=True)
    response = world.client.head(target.url, params={"wait": 60}, headers={**world.admin, "If-None-Match": target.etag})
    assert response.status_code == 304 and response.headers["etag"] == target.etag


# --- RFC 6750 §3.1: bearer challenges -----------------------------------------------------------

def test_www_authenticate(world: World):
    revoked = world.services.tokens.create(OPERATOR, name="revoked", role="admin")
    assert world.client.get(f"{API}/tokens", headers=bearer(revoked.secret)).status_code == 200  # cached
    world.services.tokens.revoke(OPERATOR, revoked.token.id)
    resolve = _resolve(world, "GET", cached=True).url
    invalid = 'Bearer error="invalid_token"'
    callers = {
        "no token": ({}, "Bearer"),
        "another scheme": ({"Authorization": "Basic YWRhOnNlY3JldA=="}, "Bearer"),
        "unknown token": (bearer("svc_" + "x" * 43), invalid),
        "revoked token": (bearer(revoked.secret), invalid),
    }
    wrong = []
    for url in (f"{API}/applications", resolve, "/metrics"):
        for caller, (headers, challenge) in callers.items():
            response = world.client.get(url, headers=headers)
            if (response.status_code, response.headers.get("www-authenticate")) != (401, challenge):
                wrong.append(f"{url} with {caller}: {response.status_code} {response.headers.get('www-authenticate')}")
    assert wrong == []


# --- RFC 5789 §2.2: Accept-Patch on 415 ----------------------------------------------------------

@pytest.mark.parametrize(
    ("resource", "accepted"),
    [
        ("configuration", {"application/merge-patch+json", "application/json"}),
        ("application", {"application/json"}),
        ("user", {"application/json"}),
    ],
)
def test_patch_with_an_unsupported_media_type_names_the_accepted_ones(world: World, resource: str, accepted):
    url = {
        "configuration": lambda: f"{API}/configurations/{world.configuration()['id']}",
        "application": lambda: f"{API}/applications/{world.application()['id']}",
        "user": lambda: f"{API}/users/{world.user_id}",
    }[resource]()
    response = world.client.patch(
        url, content=b"comments: x", headers={**world.admin, "Content-Type": "application/yaml"}
    )
    assert response.status_code == 415
    assert {part.strip() for part in response.headers["accept-patch"].split(",")} == accepted


# --- ids in either case, answered in upper case ---------------------------------------------------

def test_ids_in_paths_are_case_insensitive_and_answered_canonical(world: World):
    client, admin = world.client, world.admin
    application = world.application()["id"]
    created = client.post(
        f"{API}/applications/{application.lower()}/configurations", json={"name": "main", "config": {}}, headers=admin
    )
    assert created.status_code == 201
    configuration = created.json()["id"]
    assert created.json()["application_id"] == application
    assert created.headers["location"].endswith(f"/configurations/{configuration}")
    fetched = client.get(f"{API}/configurations/{configuration.lower()}", headers=admin)
    assert fetched.status_code == 200 and fetched.json()["id"] == configuration
    assert fetched.headers["etag"] == f'"{configuration}.1"'
    updated = client.put(
        f"{API}/configurations/{configuration.lower()}",
        json={"config": {"v": 2}},
        headers={**admin, "If-Match": fetched.headers["etag"]},
    )
    assert updated.status_code == 200 and updated.headers["etag"] == f'"{configuration}.2"'
    assert client.get(f"{API}/users/{world.user_id.lower()}", headers=admin).json()["id"] == world.user_id
    for bad in ("0" * 25, "8" + "0" * 25, "0" * 25 + "u"):  # short, too large, not Crockford
        assert client.get(f"{API}/configurations/{bad}", headers=admin).status_code == 422


# --- OpenAPI operation ids --------------------------------------------------------------------------

def test_operation_ids_are_short_unique_camel_case(world: World):
    operations = {
        f"{method.upper()} {path}": operation["operationId"]
        for path, item in world.client.app.openapi()["paths"].items()
        for method, operation in item.items()
    }
    ids = list(operations.values())
    assert [i for i in ids if not re.fullmatch(r"[a-z][a-zA-Z0-9]{2,31}", i)] == []
    assert len(set(ids)) == len(ids)
    assert operations["POST /api/v1/applications/{application_id}/configurations"] == "createConfiguration"
    assert operations["GET /api/v1/configurations/{configuration_id}"] == "getConfiguration"
    assert operations["GET /api/v1/applications"] == "listApplications"
    assert operations["GET /api/v1/resolve/{application_name}/{configuration_name}"] == "resolveConfiguration"
    assert operations["GET /api/v1/me/claude-md"] == "getClaudeMdForMe"


# --- an event stream ends when its application is deleted ------------------------------------------

def test_event_stream_closes_after_its_application_is_deleted(world: World):
    configuration = world.configuration()
    application_id = configuration["application_id"]
    received: list[str] = []
    ended = threading.Event()
    opened = threading.Event()

    def listen() -> None:
        with world.client.stream("GET", f"{API}/applications/{application_id}/events", headers=world.admin) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                received.append(line)
                if line.startswith(":"):  # a keep-alive: the stream has subscribed
                    opened.set()
        ended.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(10)
    world.services.applications.delete(OPERATOR, application_id)
    assert ended.wait(10), "the stream stayed open after its application was deleted"
    assert "event: deleted" in received  # the configuration's deletion is told before the end
    gone = world.client.get(f"{API}/applications/{application_id}/events", headers=world.admin)
    assert gone.status_code == 404
