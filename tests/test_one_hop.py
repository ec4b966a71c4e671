"""One thread hop at most per request, on every route (issue 15): a route that does blocking work
hops once, explicitly, for its service call, and builds its answer on the event loop.

Every route of the app has a row below: a request that succeeds on fresh resources (or, for a
route that refuses by design, the request it refuses with its one status). The test
counts the calls into anyio's worker threads (what FastAPI, Starlette and `off_loop` all end up
in) while each request runs, and fails for a route without a row, so a new route is covered
the day it is added. A JSON answer must also be exactly what the route's documented
`response_model` writes for it: the bytes a client got when FastAPI serialised it.

One database and one app serve the module (test_http_standards' `world`); every row makes the
resources it changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from anyio._backends._asyncio import AsyncIOBackend
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import TypeAdapter

from svc.ids import new_id
from svc.services.auth import Authenticator, Principal
from tests.conftest import bearer
from tests.github_standin import TOKEN as GITHUB_TOKEN
from tests.test_http_standards import World, world  # noqa: F401 (the module's app and callers: a fixture)

API = "/api/v1"
OPERATOR = Principal.operator()
TOOL_NAME = "get_weather"


def _tool(description: str, name: str = TOOL_NAME) -> str:
    return json.dumps({"name": name, "description": description, "input_schema": {"type": "object"}})


@dataclass
class Request:
    """One request that the route answers with 2xx (or 3xx), or with `refusal` when it refuses by design."""

    url: str
    headers: dict[str, str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    refusal: int | None = None


def new_user(world: World) -> str:
    tag = new_id().lower()
    return world.services.users.create(OPERATOR, email=f"{tag}@example.com", username=tag).id


def new_team(world: World) -> str:
    return world.services.teams.create(OPERATOR, name=f"team-{new_id().lower()}", owner_id=world.user_id).id


def new_item(world: World, owner_id: str | None = None) -> str:
    """A catalog tool of a fresh user (or of `owner_id`, named afresh)."""
    name = TOOL_NAME if owner_id is None else f"tool_{new_id().lower()}"
    return world.services.catalog.create(
        OPERATOR, type="tool", name=name, owner={"user_id": owner_id or new_user(world)}, description="d",
        tags=[], content=_tool("v0", name),
    ).id


# --- the documents, mounted once per kind of owner ---------------------------------------------

@dataclass
class Document:
    """A document with two saved versions (shas oldest first) and one open proposal by `headers`."""

    url: str
    headers: dict[str, str]
    shas: list[str]
    proposal_id: str
    text: Callable[[str], str]
    upload: tuple[str, str]  # file name, media type


def _document(world: World, mount: str) -> Document:
    """A fresh document of the mount (`/users/{user_id}/claude-md`, …) with versions and a proposal."""
    if mount == APPLICATION_DOCUMENT:
        owner = world.services.application_documents.create(
            OPERATOR, world.application()["id"], fields={"title": "Plan", "type": "plan"}, content="v0\n",
            message=None,
        ).id
        documents, headers, url = world.services.application_documents.documents, world.admin, mount.format(
            document_id=owner
        )
    elif mount == f"{API}/me/claude-md":
        user_id = new_user(world)
        headers = bearer(world.services.tokens.create(OPERATOR, name="me", role="user", user_id=user_id).secret)
        documents, owner, url = world.services.claude_md, user_id, mount
    elif "{item_id}" in mount:
        owner = new_item(world)
        documents, headers, url = world.services.catalog.documents["tool"], world.admin, mount.format(item_id=owner)
    elif "{team_id}" in mount:
        owner = new_team(world)
        documents, headers, url = world.services.team_claude_md, world.admin, mount.format(team_id=owner)
    else:
        owner = new_user(world)
        documents, headers, url = world.services.claude_md, world.admin, mount.format(user_id=owner)
    text = _tool if "{item_id}" in mount else (lambda words: f"{words}\n")
    shas = [documents.save(OPERATOR, owner, content=text(f"v{n}"), message=None, expected=None).commit_sha
            for n in (1, 2)]
    proposed = world.client.post(f"{url}/proposals", json={"content": text("proposed"), "message": "m"}, headers=headers)
    assert proposed.status_code == 201, proposed.text
    upload = ("tool.json", "application/json") if "{item_id}" in mount else ("notes.md", "text/markdown")
    return Document(url, headers, shas, proposed.json()["id"], text, upload)


APPLICATION_DOCUMENT = f"{API}/documents/{{document_id}}"
DOCUMENT_MOUNTS = [
    f"{API}/users/{{user_id}}/claude-md",
    f"{API}/me/claude-md",
    f"{API}/teams/{{team_id}}/claude-md",
    f"{API}/catalog/{{item_id}}/document",
    APPLICATION_DOCUMENT,
]

DocumentRow = Callable[[Document], tuple[str, dict[str, Any]]]
DOCUMENT_ROUTES: dict[tuple[str, str], DocumentRow] = {
    ("GET", ""): lambda d: ("", {}),
    ("PUT", ""): lambda d: ("", {"json": {"content": d.text("saved")}}),
    ("GET", "/history"): lambda d: ("/history", {}),
    ("GET", "/versions/{sha}"): lambda d: (f"/versions/{d.shas[0]}", {}),
    ("GET", "/diff"): lambda d: ("/diff", {"params": {"from": d.shas[0], "to": d.shas[1]}}),
    ("POST", "/rollback/{sha}"): lambda d: (f"/rollback/{d.shas[0]}", {}),
    ("POST", "/import"): lambda d: (
        "/import", {"files": {"file": (d.upload[0], d.text("imported").encode(), d.upload[1])}}
    ),
    ("POST", "/proposals"): lambda d: ("/proposals", {"json": {"content": d.text("other"), "message": "m"}}),
    ("GET", "/proposals"): lambda d: ("/proposals", {}),
    ("GET", "/proposals/{proposal_id}"): lambda d: (f"/proposals/{d.proposal_id}", {}),
    ("POST", "/proposals/{proposal_id}/accept"): lambda d: (f"/proposals/{d.proposal_id}/accept", {}),
    ("POST", "/proposals/{proposal_id}/reject"): lambda d: (f"/proposals/{d.proposal_id}/reject", {}),
    ("DELETE", "/proposals/{proposal_id}"): lambda d: (f"/proposals/{d.proposal_id}", {}),
}


# An application document has its own root routes: PATCH (metadata, content) and DELETE, no PUT.
APPLICATION_DOCUMENT_ROUTES: dict[tuple[str, str], DocumentRow] = {
    **{key: row for key, row in DOCUMENT_ROUTES.items() if key != ("PUT", "")},
    ("PATCH", ""): lambda d: ("", {"json": {"title": "Saved", "content": d.text("saved")}}),
    ("DELETE", ""): lambda d: ("", {}),
}


def _document_routes(mount: str) -> dict[tuple[str, str], DocumentRow]:
    return APPLICATION_DOCUMENT_ROUTES if mount == APPLICATION_DOCUMENT else DOCUMENT_ROUTES


def _document_row(mount: str, suffix: DocumentRow) -> Callable[[World], Request]:
    def row(world: World) -> Request:
        document = _document(world, mount)
        path, kwargs = suffix(document)
        return Request(document.url + path, document.headers, kwargs)

    return row


# --- every other route ------------------------------------------------------------------------

def _admin(url: str, **kwargs: Any) -> Callable[[World], Request]:
    return lambda world: Request(url, world.admin, kwargs)


def _configuration_row(suffix: str = "", **kwargs: Any) -> Callable[[World], Request]:
    return lambda w: Request(f"{API}/configurations/{w.configuration()['id']}{suffix}", w.admin, kwargs)


def _application_row(suffix: str = "", **kwargs: Any) -> Callable[[World], Request]:
    return lambda w: Request(f"{API}/applications/{w.application()['id']}{suffix}", w.admin, kwargs)


def _team_member(w: World) -> Request:
    team_id = new_team(w)
    w.services.teams.put_member(OPERATOR, team_id, member := new_user(w), role="member")
    return Request(f"{API}/teams/{team_id}/members/{member}", w.admin)


def _installed(w: World) -> Request:
    url = f"{API}/catalog/{new_item(w, w.user_id)}/install"
    assert w.client.post(url, headers=w.user).status_code == 200
    return Request(url, w.user)


def _resolve(w: World) -> Request:
    configuration = w.configuration()
    application = w.services.applications.get(OPERATOR, configuration["application_id"])
    return Request(f"{API}/resolve/{application.name}/{configuration['name']}", w.admin)


def _token(w: World) -> Request:
    return Request(f"{API}/tokens/{w.services.tokens.create(OPERATOR, name='t', role='service').token.id}", w.admin)


def _work_item(suffix: str = "", **kwargs: Any) -> Callable[[World], Request]:
    def row(w: World) -> Request:
        item = w.services.work_items.create(OPERATOR, w.application()["id"], {"title": "Fix it", "type": "fix"})
        return Request(f"{API}/work-items/{item.id}{suffix}", w.admin, kwargs)

    return row


def _repository(**kwargs: Any) -> Callable[[World], Request]:
    def row(w: World) -> Request:
        repository = w.services.source_repositories.create(
            OPERATOR, w.application()["id"], {"name": "svc", "full_name": "octocat/svc"}
        )
        return Request(f"{API}/repositories/{repository.id}", w.admin, kwargs)

    return row


def _github(request: Request) -> Request:
    return Request(request.url, {**request.headers, "X-GitHub-Token": GITHUB_TOKEN}, request.kwargs)


def _marketplace(kind: str, suffix: str, **kwargs: Any) -> Callable[[World], Request]:
    """A request to the git marketplace of a fresh team or user (`kind`), as git sends it."""

    def row(w: World) -> Request:
        if kind == "teams":
            name = w.services.teams.get(OPERATOR, new_team(w)).name
        else:
            name = w.services.users.get(OPERATOR, new_user(w)).username
        return Request(f"/git/{kind}/{name}.git{suffix}", w.admin, kwargs)

    return row


def _marketplace_push(kind: str) -> Callable[[World], Request]:
    """A push: the route refuses every one (403), a marketplace being read-only."""

    def row(w: World) -> Request:
        request = _marketplace(kind, "/git-receive-pack", content=b"0000")(w)
        return Request(request.url, request.headers, request.kwargs, refusal=403)

    return row


# A protocol v2 `ls-refs` command in pkt-lines, then a flush: the smallest fetch request.
LS_REFS = {
    "content": b"0014command=ls-refs\n0000",
    "headers": {"Git-Protocol": "version=2", "Content-Type": "application/x-git-upload-pack-request"},
}

ROUTES: dict[tuple[str, str], Callable[[World], Request]] = {
    ("GET", "/openapi.json"): _admin("/openapi.json"),
    ("GET", "/docs"): _admin("/docs"),
    ("GET", "/docs/oauth2-redirect"): _admin("/docs/oauth2-redirect"),
    ("GET", "/redoc"): _admin("/redoc"),
    ("GET", "/health"): _admin("/health"),
    ("GET", "/ready"): _admin("/ready"),
    ("GET", "/metrics"): _admin("/metrics"),
    ("GET", f"{API}/resolve/{{application_name}}/{{configuration_name}}"): _resolve,
    ("GET", f"{API}/applications/{{application_id}}/events"): _application_row("/events", stream=True),
    ("POST", f"{API}/applications/{{application_id}}/configurations"): _application_row(
        "/configurations", json={"name": "c", "config": {"a": 1}}
    ),
    ("GET", f"{API}/applications/{{application_id}}/configurations"): _application_row("/configurations"),
    ("GET", f"{API}/configurations/{{configuration_id}}"): _configuration_row(),
    ("PUT", f"{API}/configurations/{{configuration_id}}"): _configuration_row(json={"config": {"v": 3}}),
    ("PATCH", f"{API}/configurations/{{configuration_id}}"): _configuration_row(
        content=b'{"w": 1}', headers={"Content-Type": "application/merge-patch+json"}
    ),
    ("DELETE", f"{API}/configurations/{{configuration_id}}"): _configuration_row(),
    ("GET", f"{API}/configurations/{{configuration_id}}/revisions"): _configuration_row("/revisions"),
    ("GET", f"{API}/configurations/{{configuration_id}}/revisions/{{revision}}"): _configuration_row("/revisions/1"),
    ("GET", f"{API}/configurations/{{configuration_id}}/diff"): _configuration_row(
        "/diff", params={"from": 1, "to": 2}
    ),
    ("POST", f"{API}/configurations/{{configuration_id}}/rollback"): _configuration_row(
        "/rollback", json={"revision": 1}
    ),
    ("POST", f"{API}/applications"): lambda w: Request(f"{API}/applications", w.admin, {
        "json": {"name": f"app-{new_id().lower()}", "comments": "é"}
    }),
    ("GET", f"{API}/applications"): _admin(f"{API}/applications"),
    ("GET", f"{API}/applications/{{application_id}}"): _application_row(),
    ("PATCH", f"{API}/applications/{{application_id}}"): _application_row(json={"comments": "c"}),
    ("DELETE", f"{API}/applications/{{application_id}}"): _application_row(),
    ("POST", f"{API}/users"): lambda w: Request(f"{API}/users", w.admin, {
        "json": {"email": f"{(tag := new_id().lower())}@example.com", "username": tag}
    }),
    ("GET", f"{API}/users"): _admin(f"{API}/users"),
    ("GET", f"{API}/users/{{user_id}}"): lambda w: Request(f"{API}/users/{new_user(w)}", w.admin),
    ("PATCH", f"{API}/users/{{user_id}}"): lambda w: Request(f"{API}/users/{new_user(w)}", w.admin, {
        "json": {"display_name": "Ada"}
    }),
    ("DELETE", f"{API}/users/{{user_id}}"): lambda w: Request(f"{API}/users/{new_user(w)}", w.admin),
    ("GET", f"{API}/me"): lambda w: Request(f"{API}/me", w.user),
    ("POST", f"{API}/teams"): lambda w: Request(f"{API}/teams", w.admin, {
        "json": {"name": f"team-{new_id().lower()}", "owner_id": w.user_id}
    }),
    ("GET", f"{API}/teams"): _admin(f"{API}/teams"),
    ("GET", f"{API}/me/teams"): lambda w: Request(f"{API}/me/teams", w.user),
    ("GET", f"{API}/teams/{{team_id}}"): lambda w: Request(f"{API}/teams/{new_team(w)}", w.admin),
    ("PATCH", f"{API}/teams/{{team_id}}"): lambda w: Request(f"{API}/teams/{new_team(w)}", w.admin, {
        "json": {"description": "d"}
    }),
    ("DELETE", f"{API}/teams/{{team_id}}"): lambda w: Request(f"{API}/teams/{new_team(w)}", w.admin),
    ("GET", f"{API}/teams/{{team_id}}/members"): lambda w: Request(f"{API}/teams/{new_team(w)}/members", w.admin),
    ("PUT", f"{API}/teams/{{team_id}}/members/{{user_id}}"): lambda w: Request(
        f"{API}/teams/{new_team(w)}/members/{new_user(w)}", w.admin, {"json": {"role": "member"}}
    ),
    ("DELETE", f"{API}/teams/{{team_id}}/members/{{user_id}}"): _team_member,
    ("POST", f"{API}/catalog"): lambda w: Request(f"{API}/catalog", w.admin, {"json": {
        "type": "tool", "name": TOOL_NAME, "owner": {"user_id": new_user(w)}, "content": _tool("d"),
    }}),
    ("GET", f"{API}/catalog"): _admin(f"{API}/catalog", params={"q": "weather"}),
    ("GET", f"{API}/catalog/{{item_id}}"): lambda w: Request(f"{API}/catalog/{new_item(w)}", w.admin),
    ("PATCH", f"{API}/catalog/{{item_id}}"): lambda w: Request(f"{API}/catalog/{new_item(w)}", w.admin, {
        "json": {"tags": ["x"]}
    }),
    ("DELETE", f"{API}/catalog/{{item_id}}"): lambda w: Request(f"{API}/catalog/{new_item(w)}", w.admin),
    ("POST", f"{API}/catalog/{{item_id}}/releases"): lambda w: Request(f"{API}/catalog/{new_item(w)}/releases", w.admin, {
        "json": {"version": "1.0.0", "notes": "n"}
    }),
    ("GET", f"{API}/catalog/{{item_id}}/releases"): lambda w: Request(f"{API}/catalog/{new_item(w)}/releases", w.admin),
    ("GET", f"{API}/catalog/{{item_id}}/content"): lambda w: Request(f"{API}/catalog/{new_item(w)}/content", w.admin),
    ("POST", f"{API}/catalog/{{item_id}}/install"): lambda w: Request(
        f"{API}/catalog/{new_item(w, w.user_id)}/install", w.user
    ),
    ("DELETE", f"{API}/catalog/{{item_id}}/install"): _installed,
    ("GET", f"{API}/me/installs"): lambda w: Request(f"{API}/me/installs", w.user),
    ("GET", f"{API}/me/bundle"): lambda w: Request(f"{API}/me/bundle", w.user),
    ("POST", f"{API}/tokens"): _admin(f"{API}/tokens", json={"name": "ci", "role": "service"}),
    ("GET", f"{API}/tokens"): _admin(f"{API}/tokens"),
    ("DELETE", f"{API}/tokens/{{token_id}}"): _token,
    ("GET", f"{API}/audit"): _admin(f"{API}/audit"),
    ("POST", f"{API}/applications/{{application_id}}/documents"): _application_row(
        "/documents", json={"title": "Blueprint", "type": "blueprint", "content": "# b\n"}
    ),
    ("GET", f"{API}/applications/{{application_id}}/documents"): _application_row("/documents"),
    ("POST", f"{API}/applications/{{application_id}}/work-items"): _application_row(
        "/work-items", json={"title": "Add it", "type": "feature"}
    ),
    ("GET", f"{API}/applications/{{application_id}}/work-items"): _application_row("/work-items"),
    ("GET", f"{API}/work-items/{{work_item_id}}"): _work_item(),
    ("PATCH", f"{API}/work-items/{{work_item_id}}"): _work_item(json={"priority": "high"}),
    ("POST", f"{API}/work-items/{{work_item_id}}/status"): _work_item("/status", json={"status": "in_progress"}),
    ("DELETE", f"{API}/work-items/{{work_item_id}}"): _work_item(),
    ("POST", f"{API}/applications/{{application_id}}/repositories"): _application_row(
        "/repositories", json={"name": "svc", "full_name": "octocat/svc"}
    ),
    ("GET", f"{API}/applications/{{application_id}}/repositories"): _application_row("/repositories"),
    ("POST", f"{API}/applications/{{application_id}}/repositories/import"): lambda w: _github(_application_row(
        "/repositories/import", json={"full_names": ["octocat/Hello-World-0001"]}
    )(w)),
    ("GET", f"{API}/repositories/{{repository_id}}"): _repository(),
    ("PATCH", f"{API}/repositories/{{repository_id}}"): _repository(json={"stars_count": 1}),
    ("DELETE", f"{API}/repositories/{{repository_id}}"): _repository(),
    ("GET", f"{API}/github/repos"): lambda w: _github(Request(f"{API}/github/repos", w.admin)),
    **{
        route: row
        for kind in ("teams", "users")
        for route, row in {
            ("GET", f"/git/{kind}/{{name}}.git/info/refs"): _marketplace(
                kind, "/info/refs", params={"service": "git-upload-pack"}
            ),
            ("POST", f"/git/{kind}/{{name}}.git/git-upload-pack"): _marketplace(kind, "/git-upload-pack", **LS_REFS),
            ("POST", f"/git/{kind}/{{name}}.git/git-receive-pack"): _marketplace_push(kind),
        }.items()
    },
    **{
        (method, mount + suffix): _document_row(mount, row)
        for mount in DOCUMENT_MOUNTS
        for (method, suffix), row in _document_routes(mount).items()
    },
}


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A counter of the calls into anyio's worker threads (one element; reset it to count afresh).

    Not counted: the look-up of a token that is not in the token cache. That is the cache's
    miss, not the route's: any token change (one the rows make) empties the cache through a
    NOTIFY that arrives when it arrives, and the next request of each token then looks it up."""
    counted = [0]
    original = AsyncIOBackend.run_sync_in_worker_thread

    async def counting(cls: type, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(func, "__func__", None) is not Authenticator.authenticate_hash:
            counted[0] += 1
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(AsyncIOBackend, "run_sync_in_worker_thread", classmethod(counting))
    return counted


def _routes(world: World) -> dict[tuple[str, str], APIRoute | None]:
    """(method, path template) of every route the app serves, HEAD aside (it is GET's handler)."""
    return {
        (method, context.path): context.route if isinstance(context.route, APIRoute) else None
        for context in iter_route_contexts(world.client.app.routes)
        for method in context.methods or ()
        if method != "HEAD" and context.path
    }


def test_every_route_has_a_row(world: World):
    assert sorted(set(_routes(world)) - set(ROUTES)) == [], "add a row to ROUTES for each new route"
    assert sorted(set(ROUTES) - set(_routes(world))) == []


def _send(world: World, method: str, request: Request) -> tuple[int, str, bytes]:
    kwargs = dict(request.kwargs)
    headers = {**request.headers, **kwargs.pop("headers", {})}
    if kwargs.pop("stream", False):  # an event stream: its status line and headers are the answer
        with world.client.stream(method, request.url, headers=headers, **kwargs) as response:
            return response.status_code, response.headers.get("content-type", ""), b""
    response = world.client.request(method, request.url, headers=headers, **kwargs)
    return response.status_code, response.headers.get("content-type", ""), response.content


def test_every_route_hops_at_most_once(world: World, hops: list[int]):
    routes = _routes(world)
    answered, hopped, reshaped = [], [], []
    for (method, path), row in ROUTES.items():
        request = row(world)
        for sent in (method, "HEAD") if method == "GET" else (method,):
            hops[0] = 0
            status, content_type, content = _send(world, sent, request)
            if not (200 <= status < 400 if request.refusal is None else status == request.refusal):
                answered.append(f"{sent} {path}: {status} {content[:200]!r}")
            if hops[0] > 1:
                hopped.append(f"{sent} {path}: {hops[0]} hops")
            route = routes[(method, path)]
            if sent != "HEAD" and route is not None and route.response_model is not None and content_type == (
                "application/json"
            ) and status != 204:
                adapter = TypeAdapter(route.response_model)
                if adapter.dump_json(adapter.validate_json(content)) != content:
                    reshaped.append(f"{sent} {path}: {content[:200]!r}")
    assert answered == []
    assert hopped == []
    assert reshaped == [], "a body differs from what its response_model writes"


def test_the_counter_sees_the_one_hop_of_a_read_and_none_of_a_probe(world: World, hops: list[int]):
    user_id = new_user(world)
    hops[0] = 0
    assert world.client.get(f"{API}/users/{user_id}", headers=world.admin).status_code == 200
    assert hops[0] == 1
    hops[0] = 0
    assert world.client.get("/health").status_code == 200
    assert hops[0] == 0
