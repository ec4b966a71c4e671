"""Who may call what: every route of the OpenAPI document × every kind of caller.

Each cell sends a valid request on resources made for that cell, so an allowed cell really
succeeds (its 2xx) and a refused one is refused for who is calling, not for what was sent;
a read changes nothing, so a GET row's cells share one request where it would be the same.
A route without a row fails the test: adding a route means deciding who may call it.
The rows run in groups, a test each, which pytest-xdist spreads over its workers.

"This" application and user own the resources of a row; `scoped` is a service token limited
to another application, `user` is this user and `other_user` another one. `team_owner`,
`team_admin` and `team_member` hold those roles in "this" team (made fresh for each request);
`user` and `other_user` belong to no team. Where a row does not name the team callers, they
are users like any other, and `other_user` stands for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from svc.config import Settings
from svc.crypto import new_key_entry
from svc.ids import new_id
from svc.services.auth import Principal
from tests.claude_md_helpers import API, PROBLEM
from tests.conftest import bearer, on_app_loop

TEAM_CALLERS = ("team_owner", "team_admin", "team_member")
CALLERS = ("none", "revoked", "admin", "service", "scoped", "read_only", "user", "other_user", *TEAM_CALLERS)
OK = "ok"  # the row's success status

# Who may do what, for the callers that hold a live token; no token or a revoked one is 401.
ADMIN_ONLY = {"admin": OK, "service": 403, "scoped": 403, "read_only": 403, "user": 403, "other_user": 403}
# Applications: for team callers, "this" application belongs to their team; other users find none.
APPLICATION_READ = {
    "admin": OK, "service": OK, "scoped": 404, "read_only": OK, "user": 404, "other_user": 404,
    **{c: OK for c in TEAM_CALLERS},
}
APPLICATION_WRITE = {**APPLICATION_READ, "read_only": 403, "team_member": 403}
# An application's documents, work items and repositories: who cannot read the application finds none.
PRODUCT_READ = {**APPLICATION_READ, "user": 404, "other_user": 404}
PRODUCT_WRITE = {**PRODUCT_READ, "read_only": 403, "team_member": 403}
PRODUCT_PROPOSE = {**PRODUCT_READ, "read_only": 403}
# Resolve and event streams stay for admin and service tokens (users: refused for who they are).
RESOLVE = {**APPLICATION_READ, "user": 403, "other_user": 403, **{c: 403 for c in TEAM_CALLERS}}
# This user's document (and user record) by id: another user's looks missing.
OWN_BY_ID = {"admin": OK, "service": 403, "scoped": 403, "read_only": 403, "user": OK, "other_user": 404}
# /me: every user reaches their own; admin and service tokens belong to no user.
ME = {"admin": 403, "service": 403, "scoped": 403, "read_only": 403, "user": OK, "other_user": OK}
PUBLIC = {caller: OK for caller in CALLERS}
PUBLIC_WITH_TOKEN = {caller: OK for caller in CALLERS if caller not in ("none", "revoked")}
# Teams: service tokens see none; users outside the team find nothing.
NO_SERVICE = {"service": 403, "scoped": 403, "read_only": 403}
ANY_USER = {"admin": OK, **NO_SERVICE, "user": OK, "other_user": OK, **{c: OK for c in TEAM_CALLERS}}
TEAM_READ = {"admin": OK, **NO_SERVICE, "user": 404, "other_user": 404, **{c: OK for c in TEAM_CALLERS}}
TEAM_WRITE = {**TEAM_READ, "team_member": 403}
TEAM_OWNER = {**TEAM_WRITE, "team_admin": 403}


@dataclass
class Callers:
    headers: dict[str, dict[str, str]]  # caller → its request headers
    users: dict[str, str]  # user caller → the user its token belongs to


@dataclass
class Cell:
    """Makes the resources one cell's request needs, fresh, through the services."""

    client: TestClient
    callers: Callers
    caller: str
    operator: Principal = field(default_factory=Principal.operator)

    @property
    def users(self) -> dict[str, str]:
        return self.callers.users

    @property
    def services(self):
        return self.client.app.state.services

    def application(self) -> dict[str, Any]:
        """A fresh application; of a fresh team for the team callers."""
        team_id = self.team() if self.caller in TEAM_CALLERS else None
        return asdict(
            self.services.applications.create(self.operator, name=f"app-{new_id().lower()}", team_id=team_id)
        )

    def configuration(self) -> dict[str, Any]:
        """A configuration at revision 2 of a fresh application."""
        application = self.application()
        created = on_app_loop(self.client, lambda: self.services.configurations.create(
            self.operator, application["id"], name="main", config={"port": 1}
        ))
        return asdict(on_app_loop(self.client, lambda: self.services.configurations.update(
            self.operator, created.id, {"config": {"port": 2}})))

    def secret_configuration(self) -> dict[str, Any]:
        """A configuration of a fresh application whose revision 2 made `/password` secret."""
        application = self.application()
        created = on_app_loop(self.client, lambda: self.services.configurations.create(
            self.operator, application["id"], name="main", config={"port": 1}
        ))
        return asdict(on_app_loop(self.client, lambda: self.services.configurations.update(
            self.operator, created.id, {"config": {"port": 1, "password": "pw"}, "secret_paths": ["/password"]})))

    def named_configuration(self) -> tuple[str, str]:
        """The names of a fresh configuration, already in the resolve cache (served by it)."""
        configuration = self.configuration()
        application = self.services.applications.get(self.operator, configuration["application_id"])
        names = (application.name, configuration["name"])
        self.client.get(f"{API}/resolve/{names[0]}/{names[1]}", headers=self.callers.headers["admin"])
        return names

    @property
    def owner(self) -> str:
        """The user whose document a /me request reaches (this user for callers without one)."""
        return self.users.get(self.caller, self.users["user"])

    def team(self) -> str:
        """A fresh team with the team callers in their roles."""
        teams = self.services.teams
        team = teams.create(self.operator, name=f"team-{new_id().lower()}", owner_id=self.users["team_owner"])
        teams.put_member(self.operator, team.id, self.users["team_admin"], role="admin")
        teams.put_member(self.operator, team.id, self.users["team_member"], role="member")
        return team.id

    def item(self) -> str:
        """A fresh team's catalog item (a tool)."""
        team = self.team()
        return self.services.catalog.create(
            self.operator, type="tool", name="get_weather", owner={"team_id": team}, description="d", tags=[],
            content=tool_json("v0"),
        ).id

    def product_document(self) -> str:
        """A fresh application's document, at version 1."""
        return self.services.application_documents.create(
            self.operator, self.application()["id"], fields={"title": "t", "type": "note"}, content="v0", message=None
        ).id

    def work_item(self) -> str:
        return self.services.work_items.create(self.operator, self.application()["id"], {"title": "t", "type": "fix"}).id

    def repository(self) -> str:
        application_id = self.application()["id"]
        fields = {"name": "api", "full_name": "acme/api"}
        return self.services.source_repositories.create(self.operator, application_id, fields).id

    def user(self) -> str:
        tag = new_id().lower()
        return self.services.users.create(self.operator, email=f"{tag}@example.com", username=tag).id

    def token(self) -> str:
        return self.services.tokens.create(self.operator, name="spare", role="service").token.id


Request = tuple[str, str, dict[str, Any]]
Row = tuple[Callable[[Cell], Request], dict[str, Any], int]


def _configuration_url(cell: Cell, suffix: str = "") -> str:
    return f"{API}/configurations/{cell.configuration()['id']}{suffix}"


def tool_json(description: str) -> str:
    return json.dumps({"name": "get_weather", "description": description, "input_schema": {"type": "object"}})


@dataclass(frozen=True)
class Mount:
    """Where a document's routes are mounted: the OpenAPI prefix, and for a cell the URL of a
    fresh document, its service and its owner id (for saving versions as the operator);
    `content` makes a valid document of this mount that says `text`."""

    prefix: str
    target: Callable[[Cell], tuple[str, Any, str]]
    content: Callable[[str], str] = lambda text: text
    upload_name: str = "CLAUDE.md"


USER_MOUNT = Mount(
    f"{API}/users/{{user_id}}/claude-md",
    lambda cell: (f"{API}/users/{cell.users['user']}/claude-md", cell.services.claude_md, cell.users["user"]),
)
ME_MOUNT = Mount(
    f"{API}/me/claude-md", lambda cell: (f"{API}/me/claude-md", cell.services.claude_md, cell.owner)
)
TEAM_MOUNT = Mount(
    f"{API}/teams/{{team_id}}/claude-md",
    lambda cell: (f"{API}/teams/{(team := cell.team())}/claude-md", cell.services.team_claude_md, team),
)
CATALOG_MOUNT = Mount(
    f"{API}/catalog/{{item_id}}/document",
    lambda cell: (f"{API}/catalog/{(item := cell.item())}/document", cell.services.catalog.documents["tool"], item),
    content=tool_json,
    upload_name="tool.json",
)

PRODUCT_DOCUMENT_MOUNT = Mount(
    f"{API}/documents/{{document_id}}",
    lambda cell: (
        f"{API}/documents/{(document := cell.product_document())}", cell.services.application_documents.documents,
        document,
    ),
    upload_name="notes.md",
)


def _document_routes(mount: Mount, read: dict[str, Any], write: dict[str, Any], propose: dict[str, Any]) -> dict[str, Row]:
    """The routes of one document mount: reading, writing, proposing (and withdrawing one's own)."""
    prefix = mount.prefix

    def versions(cell: Cell) -> tuple[str, list[str]]:
        url, documents, owner = mount.target(cell)
        shas = [
            documents.save(cell.operator, owner, content=mount.content(f"v{n}"), message=None, expected=None).commit_sha
            for n in (1, 2)
        ]
        return url, shas

    def proposal(cell: Cell, *, by_caller: bool = False) -> tuple[str, str]:
        """A fresh open proposal: made by the caller where it may propose, else by the operator."""
        url, documents, owner = mount.target(cell)
        if by_caller:
            made = cell.client.post(
                f"{url}/proposals", json={"content": mount.content("p"), "message": "m"},
                headers=cell.callers.headers[cell.caller],
            )
            if made.status_code == 201:
                return url, made.json()["id"]
        return url, documents.propose(cell.operator, owner, content=mount.content("p"), message="m").id

    def url(cell: Cell, suffix: str = "") -> str:
        return mount.target(cell)[0] + suffix

    def rollback(cell: Cell) -> Request:
        document, (first, _) = versions(cell)
        return "POST", f"{document}/rollback/{first}", {}

    def diff(cell: Cell) -> Request:
        document, (first, second) = versions(cell)
        return "GET", f"{document}/diff", {"params": {"from": first, "to": second}}

    def version(cell: Cell) -> Request:
        document, (first, _) = versions(cell)
        return "GET", f"{document}/versions/{first}", {}

    def on_proposal(method: str, suffix: str = "", by_caller: bool = False, **kwargs: Any) -> Callable[[Cell], Request]:
        def build(cell: Cell) -> Request:
            document, proposal_id = proposal(cell, by_caller=by_caller)
            return method, f"{document}/proposals/{proposal_id}{suffix}", kwargs

        return build

    upload = {"files": {"file": (mount.upload_name, mount.content("# imported\n").encode(), "text/plain")}}
    new_proposal = {"json": {"content": mount.content("# better\n"), "message": "why"}}
    return {
        f"GET {prefix}": (lambda cell: ("GET", url(cell), {}), read, 200),
        f"PUT {prefix}": (lambda cell: ("PUT", url(cell), {"json": {"content": mount.content("# mine\n")}}), write, 200),
        f"GET {prefix}/history": (lambda cell: ("GET", url(cell, "/history"), {}), read, 200),
        f"GET {prefix}/versions/{{sha}}": (version, read, 200),
        f"GET {prefix}/diff": (diff, read, 200),
        f"POST {prefix}/rollback/{{sha}}": (rollback, write, 200),
        f"POST {prefix}/import": (lambda cell: ("POST", url(cell, "/import"), upload), write, 200),
        f"POST {prefix}/proposals": (lambda cell: ("POST", url(cell, "/proposals"), new_proposal), propose, 201),
        f"GET {prefix}/proposals": (lambda cell: ("GET", url(cell, "/proposals"), {}), read, 200),
        f"GET {prefix}/proposals/{{proposal_id}}": (on_proposal("GET"), read, 200),
        f"POST {prefix}/proposals/{{proposal_id}}/accept": (on_proposal("POST", "/accept"), write, 200),
        f"POST {prefix}/proposals/{{proposal_id}}/reject": (
            on_proposal("POST", "/reject", json={"reason": "no"}), write, 200
        ),
        f"DELETE {prefix}/proposals/{{proposal_id}}": (on_proposal("DELETE", by_caller=True), propose, 200),
    }


def _team_url(cell: Cell, suffix: str = "") -> str:
    return f"{API}/teams/{cell.team()}{suffix}"


def _member_url(cell: Cell) -> str:
    """A fresh team and a user who is a plain member of it."""
    team = cell.team()
    user = cell.user()
    cell.services.teams.put_member(cell.operator, team, user, role="member")
    return f"{API}/teams/{team}/members/{user}"


def _new_application(cell: Cell) -> Request:
    body = {"name": f"new-{new_id().lower()}"}
    if cell.caller in TEAM_CALLERS:
        body["team_id"] = cell.team()  # a user token creates applications only for a team
    return "POST", f"{API}/applications", {"json": body}


def _new_team(cell: Cell) -> Request:
    body = {"name": f"t-{new_id().lower()}"}
    if cell.caller == "admin":
        body["owner_id"] = cell.users["user"]  # an admin token belongs to no user: it names the owner
    return "POST", f"{API}/teams", {"json": body}


TEAM_ROWS: dict[str, Row] = {
    f"POST {API}/teams": (_new_team, ANY_USER, 201),
    f"GET {API}/teams": (lambda cell: ("GET", f"{API}/teams", {}), ANY_USER, 200),
    f"GET {API}/me/teams": (lambda cell: ("GET", f"{API}/me/teams", {}), {**ANY_USER, "admin": 403}, 200),
    f"GET {API}/teams/{{team_id}}": (lambda cell: ("GET", _team_url(cell), {}), TEAM_READ, 200),
    f"PATCH {API}/teams/{{team_id}}": (
        lambda cell: ("PATCH", _team_url(cell), {"json": {"description": "d"}}), TEAM_OWNER, 200
    ),
    f"DELETE {API}/teams/{{team_id}}": (lambda cell: ("DELETE", _team_url(cell), {}), TEAM_OWNER, 204),
    f"GET {API}/teams/{{team_id}}/members": (lambda cell: ("GET", _team_url(cell, "/members"), {}), TEAM_READ, 200),
    f"PUT {API}/teams/{{team_id}}/members/{{user_id}}": (
        lambda cell: ("PUT", _member_url(cell), {"json": {"role": "admin"}}), TEAM_WRITE, 200
    ),
    f"DELETE {API}/teams/{{team_id}}/members/{{user_id}}": (
        lambda cell: ("DELETE", _member_url(cell), {}), TEAM_WRITE, 204
    ),
}


def _item_url(cell: Cell, suffix: str = "") -> str:
    return f"{API}/catalog/{cell.item()}{suffix}"


def _new_item(cell: Cell) -> Request:
    body = {"type": "tool", "name": "get_weather", "owner": {"team_id": cell.team()}, "content": tool_json("d")}
    return "POST", f"{API}/catalog", {"json": body}


# A team's catalog items: as its document. Installing is a user's own act (admin tokens have none).
USER_OF_TEAM_READ = {**TEAM_READ, "admin": 403}
CATALOG_ROWS: dict[str, Row] = {
    f"POST {API}/catalog": (_new_item, TEAM_WRITE, 201),
    f"GET {API}/catalog": (lambda cell: ("GET", f"{API}/catalog", {"params": {"q": "weather"}}), ANY_USER, 200),
    f"GET {API}/catalog/{{item_id}}": (lambda cell: ("GET", _item_url(cell), {}), TEAM_READ, 200),
    f"PATCH {API}/catalog/{{item_id}}": (
        lambda cell: ("PATCH", _item_url(cell), {"json": {"status": "deprecated"}}), TEAM_WRITE, 200
    ),
    f"DELETE {API}/catalog/{{item_id}}": (lambda cell: ("DELETE", _item_url(cell), {}), TEAM_WRITE, 204),
    f"POST {API}/catalog/{{item_id}}/releases": (
        lambda cell: ("POST", _item_url(cell, "/releases"), {"json": {"version": "1.0.0"}}), TEAM_WRITE, 201
    ),
    f"GET {API}/catalog/{{item_id}}/releases": (lambda cell: ("GET", _item_url(cell, "/releases"), {}), TEAM_READ, 200),
    f"GET {API}/catalog/{{item_id}}/content": (lambda cell: ("GET", _item_url(cell, "/content"), {}), TEAM_READ, 200),
    f"POST {API}/catalog/{{item_id}}/install": (
        lambda cell: ("POST", _item_url(cell, "/install"), {}), USER_OF_TEAM_READ, 200
    ),
    f"DELETE {API}/catalog/{{item_id}}/install": (
        lambda cell: ("DELETE", _item_url(cell, "/install"), {}), USER_OF_TEAM_READ, 200
    ),
    f"GET {API}/me/installs": (lambda cell: ("GET", f"{API}/me/installs", {}), {**ANY_USER, "admin": 403}, 200),
    f"GET {API}/me/bundle": (lambda cell: ("GET", f"{API}/me/bundle", {}), {**ANY_USER, "admin": 403}, 200),
    **_document_routes(CATALOG_MOUNT, read=TEAM_READ, write=TEAM_WRITE, propose=TEAM_READ),
}


def _application_url(cell: Cell, suffix: str) -> str:
    return f"{API}/applications/{cell.application()['id']}{suffix}"


_product_document_rows = _document_routes(
    PRODUCT_DOCUMENT_MOUNT, read=PRODUCT_READ, write=PRODUCT_WRITE, propose=PRODUCT_PROPOSE
)
del _product_document_rows[f"PUT {API}/documents/{{document_id}}"]  # PATCH changes it, with its metadata
# Past the policy, the request has no X-GitHub-Token: that, not the caller, is what is refused.
NO_GITHUB_TOKEN = 400
PRODUCT_ROWS: dict[str, Row] = {
    **_product_document_rows,
    f"POST {API}/applications/{{application_id}}/documents": (
        lambda cell: ("POST", _application_url(cell, "/documents"), {"json": {"title": "t", "type": "plan", "content": ""}}),
        PRODUCT_WRITE, 201,
    ),
    f"GET {API}/applications/{{application_id}}/documents": (
        lambda cell: ("GET", _application_url(cell, "/documents"), {}), PRODUCT_READ, 200
    ),
    f"PATCH {API}/documents/{{document_id}}": (
        lambda cell: ("PATCH", f"{API}/documents/{cell.product_document()}", {"json": {"is_pinned": True}}),
        PRODUCT_WRITE, 200,
    ),
    f"DELETE {API}/documents/{{document_id}}": (
        lambda cell: ("DELETE", f"{API}/documents/{cell.product_document()}", {}), PRODUCT_WRITE, 204
    ),
    f"POST {API}/applications/{{application_id}}/work-items": (
        lambda cell: ("POST", _application_url(cell, "/work-items"), {"json": {"title": "t", "type": "fix"}}),
        PRODUCT_WRITE, 201,
    ),
    f"GET {API}/applications/{{application_id}}/work-items": (
        lambda cell: ("GET", _application_url(cell, "/work-items"), {}), PRODUCT_READ, 200
    ),
    f"GET {API}/work-items/{{work_item_id}}": (
        lambda cell: ("GET", f"{API}/work-items/{cell.work_item()}", {}), PRODUCT_READ, 200
    ),
    f"PATCH {API}/work-items/{{work_item_id}}": (
        lambda cell: ("PATCH", f"{API}/work-items/{cell.work_item()}", {"json": {"priority": "low"}}), PRODUCT_WRITE, 200
    ),
    f"POST {API}/work-items/{{work_item_id}}/status": (
        lambda cell: ("POST", f"{API}/work-items/{cell.work_item()}/status", {"json": {"status": "in_progress"}}),
        PRODUCT_WRITE, 200,
    ),
    f"DELETE {API}/work-items/{{work_item_id}}": (
        lambda cell: ("DELETE", f"{API}/work-items/{cell.work_item()}", {}), PRODUCT_WRITE, 204
    ),
    f"POST {API}/applications/{{application_id}}/repositories": (
        lambda cell: ("POST", _application_url(cell, "/repositories"), {"json": {"name": "w", "full_name": "a/w"}}),
        PRODUCT_WRITE, 201,
    ),
    f"GET {API}/applications/{{application_id}}/repositories": (
        lambda cell: ("GET", _application_url(cell, "/repositories"), {}), PRODUCT_READ, 200
    ),
    f"POST {API}/applications/{{application_id}}/repositories/import": (
        lambda cell: ("POST", _application_url(cell, "/repositories/import"), {"json": {"full_names": ["a/w"]}}),
        PRODUCT_WRITE, NO_GITHUB_TOKEN,
    ),
    f"GET {API}/repositories/{{repository_id}}": (
        lambda cell: ("GET", f"{API}/repositories/{cell.repository()}", {}), PRODUCT_READ, 200
    ),
    f"PATCH {API}/repositories/{{repository_id}}": (
        lambda cell: ("PATCH", f"{API}/repositories/{cell.repository()}", {"json": {"language": "Go"}}),
        PRODUCT_WRITE, 200,
    ),
    f"DELETE {API}/repositories/{{repository_id}}": (
        lambda cell: ("DELETE", f"{API}/repositories/{cell.repository()}", {}), PRODUCT_WRITE, 204
    ),
    f"GET {API}/github/repos": (lambda cell: ("GET", f"{API}/github/repos", {}), PUBLIC_WITH_TOKEN, NO_GITHUB_TOKEN),
}


ROWS: dict[str, Row] = {
    "GET /health": (lambda cell: ("GET", "/health", {}), PUBLIC, 200),
    "GET /ready": (lambda cell: ("GET", "/ready", {}), PUBLIC, 200),
    "GET /metrics": (lambda cell: ("GET", "/metrics", {}), ADMIN_ONLY, 200),
    "POST /api/v1/tokens": (
        lambda cell: ("POST", f"{API}/tokens", {"json": {"name": "new", "role": "service"}}), ADMIN_ONLY, 201
    ),
    "GET /api/v1/tokens": (lambda cell: ("GET", f"{API}/tokens", {}), ADMIN_ONLY, 200),
    "DELETE /api/v1/tokens/{token_id}": (
        lambda cell: ("DELETE", f"{API}/tokens/{cell.token()}", {}), ADMIN_ONLY, 200
    ),
    "GET /api/v1/audit": (lambda cell: ("GET", f"{API}/audit", {}), ADMIN_ONLY, 200),
    # Applications: a token limited to one application cannot make others, and lists only its own.
    "POST /api/v1/applications": (
        _new_application, {**APPLICATION_WRITE, "scoped": 403, "user": 403, "other_user": 403}, 201
    ),
    # Everyone lists: scoped tokens their application, users the applications of their teams.
    "GET /api/v1/applications": (
        lambda cell: ("GET", f"{API}/applications", {}), {**APPLICATION_READ, "scoped": OK, "user": OK, "other_user": OK},
        200,
    ),
    "GET /api/v1/applications/{application_id}": (
        lambda cell: ("GET", f"{API}/applications/{cell.application()['id']}", {}), APPLICATION_READ, 200
    ),
    "PATCH /api/v1/applications/{application_id}": (
        lambda cell: ("PATCH", f"{API}/applications/{cell.application()['id']}", {"json": {"comments": "x"}}),
        APPLICATION_WRITE,
        200,
    ),
    "DELETE /api/v1/applications/{application_id}": (
        lambda cell: ("DELETE", f"{API}/applications/{cell.application()['id']}", {}), APPLICATION_WRITE, 204
    ),
    "POST /api/v1/applications/{application_id}/configurations": (
        lambda cell: (
            "POST",
            f"{API}/applications/{cell.application()['id']}/configurations",
            {"json": {"name": "main", "config": {"port": 1}}},
        ),
        APPLICATION_WRITE,
        201,
    ),
    "GET /api/v1/applications/{application_id}/configurations": (
        lambda cell: ("GET", f"{API}/applications/{cell.application()['id']}/configurations", {}),
        APPLICATION_READ,
        200,
    ),
    "GET /api/v1/applications/{application_id}/events": (
        lambda cell: ("STREAM", f"{API}/applications/{cell.application()['id']}/events", {}), RESOLVE, 200
    ),
    "GET /api/v1/configurations/{configuration_id}": (
        lambda cell: ("GET", _configuration_url(cell), {}), APPLICATION_READ, 200
    ),
    "PUT /api/v1/configurations/{configuration_id}": (
        lambda cell: ("PUT", _configuration_url(cell), {"json": {"config": {"port": 3}}}), APPLICATION_WRITE, 200
    ),
    "PATCH /api/v1/configurations/{configuration_id}": (
        lambda cell: (
            "PATCH",
            _configuration_url(cell),
            {"content": b'{"port": 3}', "headers": {"Content-Type": "application/merge-patch+json"}},
        ),
        APPLICATION_WRITE,
        200,
    ),
    "DELETE /api/v1/configurations/{configuration_id}": (
        lambda cell: ("DELETE", _configuration_url(cell), {}), APPLICATION_WRITE, 204
    ),
    "GET /api/v1/configurations/{configuration_id}/revisions": (
        lambda cell: ("GET", _configuration_url(cell, "/revisions"), {}), APPLICATION_READ, 200
    ),
    "GET /api/v1/configurations/{configuration_id}/revisions/{revision}": (
        lambda cell: ("GET", _configuration_url(cell, "/revisions/1"), {}), APPLICATION_READ, 200
    ),
    "GET /api/v1/configurations/{configuration_id}/diff": (
        lambda cell: ("GET", _configuration_url(cell, "/diff"), {"params": {"from": 1, "to": 2}}),
        APPLICATION_READ,
        200,
    ),
    "POST /api/v1/configurations/{configuration_id}/rollback": (
        lambda cell: ("POST", _configuration_url(cell, "/rollback"), {"json": {"revision": 1}}),
        APPLICATION_WRITE,
        200,
    ),
    "GET /api/v1/resolve/{application_name}/{configuration_name}": (
        lambda cell: ("GET", f"{API}/resolve/{'/'.join(cell.named_configuration())}", {}), RESOLVE, 200
    ),
    # Users: admins manage them; a user reads itself and may change its own display name.
    "POST /api/v1/users": (
        lambda cell: (
            "POST", f"{API}/users", {"json": {"email": f"{(tag := new_id().lower())}@example.com", "username": tag}}
        ),
        ADMIN_ONLY,
        201,
    ),
    "GET /api/v1/users": (lambda cell: ("GET", f"{API}/users", {}), ADMIN_ONLY, 200),
    "GET /api/v1/users/{user_id}": (lambda cell: ("GET", f"{API}/users/{cell.users['user']}", {}), OWN_BY_ID, 200),
    "PATCH /api/v1/users/{user_id}": (
        lambda cell: ("PATCH", f"{API}/users/{cell.users['user']}", {"json": {"display_name": "Ada"}}), OWN_BY_ID, 200
    ),
    "DELETE /api/v1/users/{user_id}": (lambda cell: ("DELETE", f"{API}/users/{cell.user()}", {}), ADMIN_ONLY, 204),
    "GET /api/v1/me": (lambda cell: ("GET", f"{API}/me", {}), ME, 200),
    **_document_routes(USER_MOUNT, read=OWN_BY_ID, write=OWN_BY_ID, propose=OWN_BY_ID),
    **_document_routes(ME_MOUNT, read=ME, write=ME, propose=ME),
    **_document_routes(TEAM_MOUNT, read=TEAM_READ, write=TEAM_WRITE, propose=TEAM_READ),
    **TEAM_ROWS,
    **CATALOG_ROWS,
    **PRODUCT_ROWS,
}

# The groups of rows, a test each: a row is in the group of the longest prefix of its path.
# Their costs are alike; documents, saved in git, cost the most (an application's take two groups).
GROUPS = {
    "operations-and-accounts": (
        "/health", "/ready", "/metrics", f"{API}/tokens", f"{API}/audit", f"{API}/users", f"{API}/me", f"{API}/teams",
    ),
    "applications-and-configurations": (
        f"{API}/applications", f"{API}/configurations", f"{API}/resolve", f"{API}/work-items", f"{API}/repositories",
        f"{API}/github",
    ),
    "application-documents": (PRODUCT_DOCUMENT_MOUNT.prefix,),
    "application-document-proposals": (f"{PRODUCT_DOCUMENT_MOUNT.prefix}/proposals",),
    "user-documents": (USER_MOUNT.prefix, ME_MOUNT.prefix),
    "team-documents": (TEAM_MOUNT.prefix,),
    "catalog": (f"{API}/catalog", f"{API}/me/installs", f"{API}/me/bundle"),
    "catalog-documents": (CATALOG_MOUNT.prefix,),
}


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(f"{prefix}/")


def _group_of(route: str) -> str | None:
    path = route.partition(" ")[2]
    matches = [(len(prefix), group) for group, prefixes in GROUPS.items() for prefix in prefixes if _under(path, prefix)]
    return max(matches, default=(0, None))[1]


def _rows_of(group: str) -> dict[str, Row]:
    return {route: row for route, row in ROWS.items() if _group_of(route) == group}


# Secrets are a one-way door (issue 22): every writer adds secret paths; dropping or moving one,
# rolling back to before one, or changing the schema over secret values is for who may reveal.
# `reveal` is a service token created with reveal_secrets, `reveal_elsewhere` one limited to
# another application; the other callers cannot reveal.
REVEAL_CALLERS = ("reveal", "reveal_elsewhere")
SECRET_WRITE = {**APPLICATION_WRITE, "reveal": OK, "reveal_elsewhere": 404}
REVEAL_RIGHT = {
    **SECRET_WRITE, "service": 403, **{caller: 403 for caller in TEAM_CALLERS},
}


def _secret_configuration_url(cell: Cell, suffix: str = "") -> str:
    return f"{API}/configurations/{cell.secret_configuration()['id']}{suffix}"


SECRET_ROWS: dict[str, Row] = {
    "add a secret path": (
        lambda cell: ("PATCH", _secret_configuration_url(cell), {"json": {"secret_paths": ["/password", "/port"]}}),
        SECRET_WRITE,
        200,
    ),
    "drop a secret path": (
        lambda cell: ("PATCH", _secret_configuration_url(cell), {"json": {"secret_paths": []}}), REVEAL_RIGHT, 200
    ),
    "move a secret path": (
        lambda cell: (
            "PUT", _secret_configuration_url(cell),
            {"json": {"config": {"port": 1, "password": "new"}, "secret_paths": ["/port"]}},
        ),
        REVEAL_RIGHT,
        200,
    ),
    "roll back to before a secret path": (
        lambda cell: ("POST", _secret_configuration_url(cell, "/rollback"), {"json": {"revision": 1}}),
        REVEAL_RIGHT,
        200,
    ),
    "change the schema over secret values": (
        lambda cell: ("PATCH", _secret_configuration_url(cell), {"json": {"schema": {"type": "object"}}}),
        REVEAL_RIGHT,
        200,
    ),
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test database's settings with a key for secret values."""
    return settings.model_copy(update={"secret_keys": SecretStr(new_key_entry("a"))})


@pytest.fixture
def callers(client: TestClient, services, admin: dict[str, str], make_token) -> Callers:
    operator = Principal.operator()
    other_application = services.applications.create(operator, name="elsewhere").id
    user, other_user, *team_users = (
        services.users.create(operator, email=f"{name}@example.com", username=name).id
        for name in ("ada", "bob", *TEAM_CALLERS)
    )
    revoked = services.tokens.create(operator, name="revoked", role="admin")
    assert client.get(f"{API}/tokens", headers=bearer(revoked.secret)).status_code == 200  # cached while live
    assert client.delete(f"{API}/tokens/{revoked.token.id}", headers=admin).status_code == 200
    return Callers(
        headers={
            "none": {},
            "revoked": bearer(revoked.secret),
            "admin": admin,
            "service": bearer(make_token("service")),
            "scoped": bearer(make_token("service", application_id=other_application)),
            "read_only": bearer(make_token("service", read_only=True)),
            "user": bearer(make_token("user", user_id=user)),
            "other_user": bearer(make_token("user", user_id=other_user)),
            **{caller: bearer(make_token("user", user_id=id)) for caller, id in zip(TEAM_CALLERS, team_users)},
        },
        users={"user": user, "other_user": other_user, **dict(zip(TEAM_CALLERS, team_users))},
    )


def _send(client: TestClient, request: Request, headers: dict[str, str]):
    method, url, kwargs = request
    kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}  # a shared request stays as built
    if method == "STREAM":  # an event stream never ends: its status line is the answer
        with client.stream("GET", url, **kwargs) as response:
            return response
    return client.request(method, url, **kwargs)


def test_every_route_has_a_row(client: TestClient):
    """Every route but the marketplaces' git routes (`/git/...`, HTTP Basic as git speaks it) have
    their own callers who must fail in tests/test_marketplace.py."""
    paths = client.app.openapi()["paths"].items()
    documented = {f"{method.upper()} {path}" for path, item in paths if not path.startswith("/git/") for method in item}
    assert len(documented) > 50
    assert sorted(documented - set(ROWS)) == [], "routes without a row in the access matrix"
    assert sorted(set(ROWS) - documented) == [], "rows for routes that no longer exist"
    assert sorted(route for group in GROUPS for route in _rows_of(group)) == sorted(ROWS), "rows in no group"
    print(f"\naccess matrix: {len(ROWS)} routes × up to {len(CALLERS)} callers = {_cells(ROWS)} cells")


def _cells(rows: dict[str, Row]) -> int:
    return sum(len(CALLERS) - sum(c not in allowed for c in TEAM_CALLERS) for _, allowed, _ in rows.values())


def _shared_read_key(route: str, cell: Cell) -> tuple[bool, str | None] | None:
    """For a GET row, what its request depends on of the cell's caller: whether it is a team caller
    (`Cell.application` gives those an application of their team) and, under /me, the user whose
    resources it reaches (`Cell.owner`). The cells that agree on it share one request. None for a
    write, whose cells each build their own."""
    method, _, path = route.partition(" ")
    if method != "GET":
        return None
    return cell.caller in TEAM_CALLERS, cell.owner if _under(path, f"{API}/me") else None


def _mismatches(client: TestClient, callers: Callers, rows: dict[str, Row], names: tuple[str, ...]) -> list[str]:
    """Each cell of `rows` × `names` whose answer is not the row's (or not problem+json)."""
    mismatches = []
    for route, (build, allowed, success) in rows.items():
        reads: dict[tuple[bool, str | None], Request] = {}
        for caller in names:
            if caller in TEAM_CALLERS and caller not in allowed:
                continue
            expected = allowed.get(caller, 401)
            expected = success if expected == OK else expected
            cell = Cell(client, callers, caller)
            key = _shared_read_key(route, cell)
            if key is None:
                request = build(cell)
            elif key not in reads:
                request = reads[key] = build(cell)
            else:
                request = reads[key]
            response = _send(client, request, callers.headers[caller])
            problem = response.status_code < 400 or response.headers.get("content-type") == PROBLEM
            if response.status_code != expected or not problem:
                mismatches.append(f"{route} as {caller}: {response.status_code}, expected {expected}")
    return mismatches


@pytest.mark.parametrize("group", GROUPS)
def test_access_matrix(client: TestClient, callers: Callers, group: str):
    assert _mismatches(client, callers, _rows_of(group), CALLERS) == []


def test_secret_access_matrix(client: TestClient, callers: Callers, make_token):
    """Who may drop secret paths and change the schema over secrets: those who may reveal."""
    elsewhere = client.app.state.services.applications.create(Principal.operator(), name="reveal-elsewhere").id
    callers.headers["reveal"] = bearer(make_token("service", reveal_secrets=True))
    callers.headers["reveal_elsewhere"] = bearer(make_token("service", reveal_secrets=True, application_id=elsewhere))
    assert _mismatches(client, callers, SECRET_ROWS, (*CALLERS, *REVEAL_CALLERS)) == []


# Moving an application between teams (PATCH of its team_id): the caller's role in the team it
# leaves × the role in the team it joins ("none": not a member; None: no team). Only an owner
# where it leaves and an owner or admin where it joins (or no team) moves it.
MOVE_ROLES = ("owner", "admin", "member", "none")
MOVE_STATUS = {
    "owner": {"owner": 200, "admin": 200, "member": 403, "none": 422, None: 200},
    "admin": {"owner": 403, "admin": 403, "member": 403, "none": 403, None: 403},  # leaving needs owner
    "member": {joining: 403 for joining in (*MOVE_ROLES, None)},  # may not write the application
    "none": {joining: 404 for joining in (*MOVE_ROLES, None)},  # does not find it
}


def test_moving_applications_between_teams(client: TestClient, services, make_token):
    operator = Principal.operator()
    founder, mover = (services.users.create(operator, email=f"{n}@example.com", username=n).id for n in ("fay", "max"))
    headers = bearer(make_token("user", user_id=mover))

    def team_with(role: str) -> str:
        team = services.teams.create(operator, name=f"team-{new_id().lower()}", owner_id=founder).id
        if role != "none":
            services.teams.put_member(operator, team, mover, role=role)
        return team

    mismatches = []
    for leaving, expected in MOVE_STATUS.items():
        for joining, status in expected.items():
            application = services.applications.create(operator, name=f"a-{new_id().lower()}", team_id=team_with(leaving))
            target = None if joining is None else team_with(joining)
            response = client.patch(f"{API}/applications/{application.id}", json={"team_id": target}, headers=headers)
            now = services.applications.get(operator, application.id).team_id
            if response.status_code != status or now != (target if status == 200 else application.team_id):
                mismatches.append(f"{leaving} -> {joining}: {response.status_code}, expected {status}")
    assert mismatches == []
