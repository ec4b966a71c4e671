"""Who may call what: every route of the OpenAPI document × every kind of caller.

Each cell sends a valid request on resources made for that cell, so an allowed cell really
succeeds (its 2xx) and a refused one is refused for who is calling, not for what was sent.
A route without a row fails the test: adding a route means deciding who may call it.

"This" application and user own the resources of a row; `scoped` is a service token limited
to another application, `user` is this user and `other_user` another one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from svc.ids import new_id
from svc.services.auth import Principal
from tests.claude_md_helpers import API, PROBLEM
from tests.conftest import bearer

CALLERS = ("none", "revoked", "admin", "service", "scoped", "read_only", "user", "other_user")
OK = "ok"  # the row's success status

# Who may do what, for the callers that hold a live token; no token or a revoked one is 401.
ADMIN_ONLY = {"admin": OK, "service": 403, "scoped": 403, "read_only": 403, "user": 403, "other_user": 403}
APPLICATION_READ = {"admin": OK, "service": OK, "scoped": 404, "read_only": OK, "user": 403, "other_user": 403}
APPLICATION_WRITE = {**APPLICATION_READ, "read_only": 403}
# This user's document (and user record) by id: another user's looks missing.
OWN_BY_ID = {"admin": OK, "service": 403, "scoped": 403, "read_only": 403, "user": OK, "other_user": 404}
# /me: every user reaches their own; admin and service tokens belong to no user.
ME = {"admin": 403, "service": 403, "scoped": 403, "read_only": 403, "user": OK, "other_user": OK}
PUBLIC = {caller: OK for caller in CALLERS}


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
        return asdict(self.services.applications.create(self.operator, name=f"app-{new_id().lower()}"))

    def configuration(self) -> dict[str, Any]:
        """A configuration at revision 2 of a fresh application."""
        application = self.application()
        created = self.services.configurations.create(
            self.operator, application["id"], name="main", config={"port": 1}
        )
        return asdict(self.services.configurations.update(self.operator, created.id, {"config": {"port": 2}}))

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

    def versions(self, user_id: str | None = None) -> list[str]:
        """Two new versions of a user's document; their commit shas."""
        return [
            self.services.claude_md.save(
                self.operator, user_id or self.users["user"], content=f"v{n}", message=None, expected=None
            )["commit_sha"]
            for n in (1, 2)
        ]

    def user(self) -> str:
        tag = new_id().lower()
        return self.services.users.create(self.operator, email=f"{tag}@example.com", username=tag).id

    def token(self) -> str:
        return self.services.tokens.create(self.operator, name="spare", role="service").token.id


Request = tuple[str, str, dict[str, Any]]
Row = tuple[Callable[[Cell], Request], dict[str, Any], int]


def _configuration_url(cell: Cell, suffix: str = "") -> str:
    return f"{API}/configurations/{cell.configuration()['id']}{suffix}"


def _document(cell: Cell, suffix: str = "", *, me: bool = False) -> str:
    return f"{API}/me/claude-md{suffix}" if me else f"{API}/users/{cell.users['user']}/claude-md{suffix}"


def _document_routes(me: bool, expected: dict[str, Any]) -> dict[str, Row]:
    """The claude.md routes, by user id or under /me (whose owner is the caller)."""
    prefix = f"{API}/me/claude-md" if me else f"{API}/users/{{user_id}}/claude-md"

    def owner(cell: Cell) -> str:
        return cell.owner if me else cell.users["user"]

    def url(cell: Cell, suffix: str = "") -> str:
        return _document(cell, suffix, me=me)

    def rollback(cell: Cell) -> Request:
        first, _ = cell.versions(owner(cell))
        return "POST", url(cell, f"/rollback/{first}"), {}

    def diff(cell: Cell) -> Request:
        first, second = cell.versions(owner(cell))
        return "GET", url(cell, "/diff"), {"params": {"from": first, "to": second}}

    upload = {"files": {"file": ("CLAUDE.md", b"# imported\n", "text/markdown")}}
    return {
        f"GET {prefix}": (lambda cell: ("GET", url(cell), {}), expected, 200),
        f"PUT {prefix}": (lambda cell: ("PUT", url(cell), {"json": {"content": "# mine\n"}}), expected, 200),
        f"GET {prefix}/history": (lambda cell: ("GET", url(cell, "/history"), {}), expected, 200),
        f"GET {prefix}/versions/{{sha}}": (
            lambda cell: ("GET", url(cell, f"/versions/{cell.versions(owner(cell))[0]}"), {}), expected, 200
        ),
        f"GET {prefix}/diff": (diff, expected, 200),
        f"POST {prefix}/rollback/{{sha}}": (rollback, expected, 200),
        f"POST {prefix}/import": (lambda cell: ("POST", url(cell, "/import"), upload), expected, 200),
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
        lambda cell: ("POST", f"{API}/applications", {"json": {"name": f"new-{new_id().lower()}"}}),
        {**APPLICATION_WRITE, "scoped": 403},
        201,
    ),
    "GET /api/v1/applications": (
        lambda cell: ("GET", f"{API}/applications", {}), {**APPLICATION_READ, "scoped": OK}, 200
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
        lambda cell: ("STREAM", f"{API}/applications/{cell.application()['id']}/events", {}), APPLICATION_READ, 200
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
        lambda cell: ("GET", f"{API}/resolve/{'/'.join(cell.named_configuration())}", {}), APPLICATION_READ, 200
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
    **_document_routes(me=False, expected=OWN_BY_ID),
    **_document_routes(me=True, expected=ME),
}


@pytest.fixture
def callers(client: TestClient, services, admin: dict[str, str], make_token) -> Callers:
    operator = Principal.operator()
    other_application = services.applications.create(operator, name="elsewhere").id
    user, other_user = (
        services.users.create(operator, email=f"{name}@example.com", username=name).id for name in ("ada", "bob")
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
        },
        users={"user": user, "other_user": other_user},
    )


def _send(client: TestClient, request: Request, headers: dict[str, str]):
    method, url, kwargs = request
    headers = {**kwargs.pop("headers", {}), **headers}
    if method == "STREAM":  # an event stream never ends: its status line is the answer
        with client.stream("GET", url, headers=headers, **kwargs) as response:
            return response
    return client.request(method, url, headers=headers, **kwargs)


def test_every_route_has_a_row(client: TestClient):
    documented = {f"{method.upper()} {path}" for path, item in client.app.openapi()["paths"].items() for method in item}
    assert sorted(documented - set(ROWS)) == [], "routes without a row in the access matrix"
    assert sorted(set(ROWS) - documented) == [], "rows for routes that no longer exist"


def test_access_matrix(client: TestClient, callers: Callers):
    mismatches = []
    for route, (build, allowed, success) in ROWS.items():
        for caller in CALLERS:
            expected = allowed.get(caller, 401)
            expected = success if expected == OK else expected
            response = _send(client, build(Cell(client, callers, caller)), callers.headers[caller])
            problem = response.status_code < 400 or response.headers.get("content-type") == PROBLEM
            if response.status_code != expected or not problem:
                mismatches.append(f"{route} as {caller}: {response.status_code}, expected {expected}")
    assert mismatches == []
    print(f"\naccess matrix: {len(ROWS)} routes × {len(CALLERS)} callers = {len(ROWS) * len(CALLERS)} cells")
