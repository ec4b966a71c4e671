"""The door (`svc.api.door`) answers resolve, GET, PUT and PATCH of one configuration before FastAPI.

Two kinds of test: its contract with the routes it serves is checked (a route that takes an input
the door does not read fails the check, so it cannot drift), and its answers are compared with the
routes' own, request by request.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Body, Cookie, Depends, Header, Query, Response

from svc.api.deps import get_principal
from svc.api.door import Door, DoorContractError, doorway, entrances, reading
from svc.api.operations import API_PREFIX
from svc.api.routes import configurations, delivery
from svc.services.delivery import ById, ByName
from tests.configuration_helpers import create_application, user_token
from tests.configuration_helpers import create_configuration as create_in
from tests.conftest import bearer, on_app_loop
from tests.metrics_helpers import moved, scrape
from tests.test_delivery import RESOLVE_ROUTE, create_configuration
from tests.test_secrets_config import World, sql, world  # noqa: F401 (a configuration with a secret: a fixture)


def the_door(client) -> Door:
    layer = client.app.middleware_stack  # built when the client started the app
    while not isinstance(layer, Door):
        layer = layer.app
    return layer


def test_the_door_serves_each_doorway_where_the_app_mounts_its_route(client):
    """The door's paths and methods are the mounted routes' own (prefix included), not restated."""
    served = {(entrance.mounted.path, method) for entrance in the_door(client).entrances for method in entrance.methods}
    assert served == {
        ("/api/v1/resolve/{application_name}/{configuration_name}", "GET"),
        ("/api/v1/resolve/{application_name}/{configuration_name}", "HEAD"),
        ("/api/v1/configurations/{configuration_id}", "GET"),
        ("/api/v1/configurations/{configuration_id}", "HEAD"),
        ("/api/v1/configurations/{configuration_id}", "PUT"),
        ("/api/v1/configurations/{configuration_id}", "PATCH"),
    }


async def _extra_dependency() -> str:
    return "x"


def _parameter(name: str, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None)


# What a route the door serves may gain (or lose), each of which the door would not read (or would
# read for nothing): the contract check must refuse every one.
CHANGES = {
    "a header": dict(add=_parameter("x_tenant", Annotated[str | None, Header()])),
    "a query parameter": dict(add=_parameter("fields", Annotated[str | None, Query()])),
    "a cookie": dict(add=_parameter("session", Annotated[str | None, Cookie()])),
    "a dependency": dict(add=_parameter("extra", Annotated[str, Depends(_extra_dependency)])),
    "a body": dict(add=_parameter("document", Annotated[dict | None, Body()])),
    "a router dependency": dict(router_dependencies=[Depends(_extra_dependency)]),
    "a path parameter": dict(add=_parameter("part", str), path="/configurations/{configuration_id}/{part}"),
    "no preconditions": dict(remove="expected"),
}


def _mounted_route_of_get(*, add: inspect.Parameter | None = None, remove: str | None = None,
                          router_dependencies=(), path: str = "/configurations/{configuration_id}"):
    """GET /configurations/{id} as the app mounts it, with one input added or removed; its doorway."""
    signature = inspect.signature(configurations.get_configuration, eval_str=True)
    parameters = [p for p in signature.parameters.values() if p.name != remove] + ([add] if add else [])

    async def endpoint(**inputs: Any) -> Response:
        return Response()

    endpoint.__signature__ = signature.replace(parameters=sorted(parameters, key=lambda p: p.kind))
    router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(get_principal), *router_dependencies])
    router.add_api_route(path, endpoint, methods=["GET"])
    door = doorway(router.routes, endpoint, key=lambda configuration_id: ById(configuration_id),
                   answer=reading(configurations._answer), defaults=("reveal",))
    return router.routes, door


def test_the_contract_holds_for_the_route_as_it_is():
    """The check below refuses a changed route, not any route built this way."""
    routes, door = _mounted_route_of_get()
    assert len(entrances(routes, [door])) == 1


@pytest.mark.parametrize("change", CHANGES)
def test_a_route_that_gains_or_loses_an_input_breaks_the_doors_contract(change):
    routes, door = _mounted_route_of_get(**CHANGES[change])
    with pytest.raises(DoorContractError, match="/api/v1/configurations/"):
        entrances(routes, [door])


def test_the_doorways_of_the_app_meet_their_contract():
    """What `Door` checks as the app starts, for every doorway it is given."""
    routes = [*configurations.router.routes, *delivery.router.routes]
    assert len(entrances(routes, [delivery.DOORWAY, *configurations.DOORWAYS])) == 4


def test_an_admins_reveal_is_audited_by_the_read_the_door_calls(world: World, settings):
    """The audit of an admin's read of secret values in clear is in the service's read itself, so
    no caller of it (the door's answer included) can leave it out."""
    services = world.client.app.state.services
    admin = on_app_loop(world.client, lambda: services.authenticator.principal(world.admin["Authorization"][7:]))
    found = on_app_loop(world.client, lambda: services.delivery.read(admin, ByName("billing", "db"), reveal=True))
    assert world.password.encode() in found.body
    reveals = sql(settings, "SELECT actor_name, resource_id FROM audit_events WHERE action = 'configuration.reveal'")
    assert reveals == [("admin", world.config["id"])]



BY_ID_ROUTE = "/api/v1/configurations/{configuration_id}"


def door_cases(client, admin, make_token, database_url, read: str):
    """(method, headers, path, status, answered by the door when warm) for one of the door's reads."""
    app_id, config_id = create_configuration(client, admin, config={"rate": 3})
    _, hidden_id = create_configuration(client, admin, app_name="search")
    if read == "resolve":
        found, hidden, missing = "/api/v1/resolve/billing/limits", "/api/v1/resolve/search/limits", \
            "/api/v1/resolve/billing/nope"
        refused = ["/api/v1/resolve/bill%20ing/limits", "/api/v1/resolve/billing/" + "a" * 257]
        other_spelling = []
    else:
        found, hidden, missing = (f"/api/v1/configurations/{i}" for i in (config_id, hidden_id, "0" * 26))
        refused = ["/api/v1/configurations/not-a-ulid", "/api/v1/configurations/" + "8" * 26]
        other_spelling = [("GET", admin, "/api/v1/configurations/" + config_id.lower(), 200, True)]
    current = client.get(found, headers=admin).headers["etag"]
    scoped = bearer(make_token("service", application_id=app_id))
    return [
        ("GET", admin, found, 200, True),
        ("HEAD", admin, found, 200, True),
        ("GET", {**admin, "If-None-Match": current}, found, 304, True),
        ("GET", {**admin, "If-None-Match": f'W/{current}, "x.1"'}, found, 304, True),
        ("GET", {**admin, "If-None-Match": "*"}, found, 304, True),
        ("GET", {**admin, "If-None-Match": '"other.1"'}, found, 200, True),
        ("GET", {**admin, "If-Match": '"other.1"'}, found, 412, True),
        ("GET", {**admin, "If-None-Match": "junk"}, found, 412, True),
        ("GET", {}, found, 401, False),
        ("GET", bearer("svc_" + "x" * 43), found, 401, False),
        ("GET", {"Authorization": "Basic " + admin["Authorization"][7:]}, found, 401, False),
        # A user token: refused resolve for who it is; finds no configuration outside its teams.
        ("GET", user_token(make_token, database_url), found, 403 if read == "resolve" else 404, True),
        ("GET", scoped, hidden, 404, True),  # hidden from this token
        ("GET", admin, missing, 404, True),
        *[("GET", admin, path, 422, False) for path in refused],
        *other_spelling,
    ]


@pytest.fixture
def passed_on(client) -> list[str]:
    """The paths of the requests the door passed on to FastAPI's routing (it answered the others)."""
    layer = the_door(client)
    routing, paths = layer.app, []

    async def counted(scope, receive, send):
        paths.append(scope["path"])
        await routing(scope, receive, send)

    layer.app = counted
    return paths


def same_answer(route: httpx.Response, door: httpx.Response, **placeholders: tuple[str, str]) -> None:
    """The two answers are the same but for the request id, the date, and the pairs of strings in
    `placeholders` (what each request named: the route's first, the door's second)."""
    ignored = ("x-request-id", "date", *(("content-length",) if placeholders else ()))  # names differ in length

    def normalised(response: httpx.Response, side: int) -> tuple[dict, object]:
        text = response.text
        headers = {k: v for k, v in response.headers.items() if k not in ignored}
        for placeholder, values in placeholders.items():
            text = text.replace(values[side], placeholder)
            headers = {k: v.replace(values[side], placeholder) for k, v in headers.items()}
        if not text or "json" not in response.headers.get("content-type", ""):
            return headers, text
        body = json.loads(text)
        for moment in ("request_id", "created_at", "updated_at"):
            body.pop(moment, None)
        return headers, body

    assert normalised(route, 0) == normalised(door, 1)


@pytest.mark.parametrize("read,route", [("resolve", RESOLVE_ROUTE), ("by id", BY_ID_ROUTE)])
def test_the_cache_door_answers_exactly_as_the_route(client, admin, make_token, database_url, read, route, passed_on):
    """Each request is sent with both caches empty (the route answers) and again with the token
    cached (the door in front of FastAPI answers): status, body, headers and metric labels must
    be the same; the door leaves to the route only refused paths and tokens it does not hold."""
    cases = door_cases(client, admin, make_token, database_url, read)
    services = client.app.state.services
    counted: Counter[tuple[str, int]] = Counter()  # requests per (method, status), under `route`
    before = scrape(client, admin)
    for method, headers, path, status, by_door in cases:
        services.authenticator.cache.clear()
        services.delivery.cache.clear()
        passed_on.clear()
        cold = client.request(method, path, headers=headers)
        warm = client.request(method, path, headers=headers)
        assert len(passed_on) == 2 - by_door, (method, path, headers)
        assert cold.status_code == warm.status_code == status, (method, path, headers, cold.text)
        same_answer(cold, warm)
        counted[method, status] += 2
    after = scrape(client, admin)
    for (method, status), requests in counted.items():
        assert moved(before, after, "svc_http_requests_total", method=method, route=route, status=str(status)) == requests


def oversized(limit: int):
    """A JSON body streamed without Content-Length, just over the limit."""
    yield b'{"config": {"pad": "'
    yield b"x" * limit
    yield b'"}}'


# (what, caller, the configuration's application, path after /configurations/, extra headers,
#  body, status, answered by the door when the token is cached)
PUT_CASES = [
    ("replace", "admin", "billing", "{id}", {}, b'{"config": {"rate": 2}, "message": "up"}', 200, True),
    ("every field", "admin", "billing", "{id}", {},
     b'{"config": {"rate": 2}, "comments": "c", "schema": {"type": "object"}, "secret_paths": []}', 200, True),
    ("If-Match current", "admin", "billing", "{id}", {"If-Match": "{etag}"}, b'{"config": {}}', 200, True),
    ("If-Match stale", "admin", "billing", "{id}", {"If-Match": '"{id}.9"'}, b'{"config": {}}', 412, True),
    ("If-Match malformed", "admin", "billing", "{id}", {"If-Match": "junk"}, b'{"config": {}}', 412, True),
    ("If-None-Match *", "admin", "billing", "{id}", {"If-None-Match": "*"}, b'{"config": {}}', 412, True),
    ("fails its schema", "admin", "billing", "{id}", {},
     b'{"config": {"rate": "x"}, "schema": {"properties": {"rate": {"type": "integer"}}}}', 422, True),
    ("lower-case id", "admin", "billing", "{lower}", {}, b'{"config": {}}', 200, True),
    ("a +json type", "admin", "billing", "{id}", {"Content-Type": "application/merge-patch+json"},
     b'{"config": {}}', 200, True),
    ("unknown id", "admin", "billing", "0" * 26, {}, b'{"config": {}}', 404, True),
    ("out of a scoped token's reach", "scoped", "search", "{id}", {}, b'{"config": {}}', 404, True),
    ("read-only token", "read-only", "billing", "{id}", {}, b'{"config": {}}', 403, True),
    ("over the body limit", "admin", "billing", "{id}", {}, oversized, 413, True),
    ("not JSON", "admin", "billing", "{id}", {}, b'{"config": ', 400, False),
    ("NaN", "admin", "billing", "{id}", {}, b'{"config": {"rate": NaN}}', 400, False),
    ("extra field", "admin", "billing", "{id}", {}, b'{"config": {}, "extra": 1}', 422, False),
    ("config not an object", "admin", "billing", "{id}", {}, b'{"config": [1]}', 422, False),
    ("empty body", "admin", "billing", "{id}", {}, b"", 422, False),
    ("text/plain", "admin", "billing", "{id}", {"Content-Type": "text/plain"}, b'{"config": {}}', 415, False),
    ("no Content-Type", "admin", "billing", "{id}", {"Content-Type": None}, b'{"config": {}}', 415, False),
    ("a query string", "admin", "billing", "{id}?message=q", {}, b'{"config": {}}', 200, False),
    ("not a ULID", "admin", "billing", "not-a-ulid", {}, b'{"config": {}}', 422, False),
    ("unknown token", "unknown", "billing", "{id}", {}, b'{"config": {}}', 401, False),
    ("no token", "nobody", "billing", "{id}", {}, b'{"config": {}}', 401, False),
]

MERGE = {"Content-Type": "application/merge-patch+json"}
PATCH_CASES = [
    ("merge", "admin", "billing", "{id}", MERGE, b'{"rate": 2, "tier": {"name": "gold"}}', 200, True),
    ("merge deleting a key", "admin", "billing", "{id}", MERGE, b'{"rate": null}', 200, True),
    ("merge changing nothing", "admin", "billing", "{id}", MERGE, b'{"rate": 1}', 200, True),
    ("merge with parameters", "admin", "billing", "{id}", {"Content-Type": "Application/Merge-Patch+JSON; x=y"},
     b'{"rate": 3}', 200, True),
    ("merge not an object", "admin", "billing", "{id}", MERGE, b'[1]', 422, True),
    ("metadata", "admin", "billing", "{id}", {}, b'{"comments": "c", "message": "why"}', 200, True),
    ("metadata with a schema", "admin", "billing", "{id}", {},
     b'{"schema": {"properties": {"rate": {"type": "integer"}}}}', 200, True),
    ("metadata the config fails", "admin", "billing", "{id}", {},
     b'{"schema": {"properties": {"rate": {"type": "string"}}}}', 422, True),
    ("If-Match current", "admin", "billing", "{id}", {**MERGE, "If-Match": "{etag}"}, b'{"rate": 2}', 200, True),
    ("If-Match stale", "admin", "billing", "{id}", {**MERGE, "If-Match": '"{id}.9"'}, b'{"rate": 2}', 412, True),
    ("lower-case id", "admin", "billing", "{lower}", MERGE, b'{"rate": 2}', 200, True),
    ("unknown id", "admin", "billing", "0" * 26, MERGE, b'{"rate": 2}', 404, True),
    ("out of a scoped token's reach", "scoped", "search", "{id}", MERGE, b'{"rate": 2}', 404, True),
    ("read-only token", "read-only", "billing", "{id}", MERGE, b'{"rate": 2}', 403, True),
    ("over the body limit", "admin", "billing", "{id}", MERGE, oversized, 413, True),
    ("metadata with config", "admin", "billing", "{id}", {}, b'{"config": {}}', 422, False),
    ("NaN", "admin", "billing", "{id}", MERGE, b'{"rate": NaN}', 400, False),
    ("another +json type", "admin", "billing", "{id}", {"Content-Type": "application/json-patch+json"},
     b'[{"op": "remove", "path": "/rate"}]', 415, False),
    ("text/plain", "admin", "billing", "{id}", {"Content-Type": "text/plain"}, b'{"rate": 2}', 415, False),
    ("a query string", "admin", "billing", "{id}?message=q", MERGE, b'{"rate": 2}', 200, False),
    ("unknown token", "unknown", "billing", "{id}", MERGE, b'{"rate": 2}', 401, False),
]


@pytest.mark.parametrize("method,cases", [("PUT", PUT_CASES), ("PATCH", PATCH_CASES)])
def test_the_door_writes_exactly_as_the_route(client, admin, make_token, passed_on, method, cases):
    """Each PUT or PATCH is sent twice, to two configurations made alike: first with the token cache
    empty (the route answers), then with the caller's token cached (the door answers what it
    takes): status, body, headers and metric labels must be the same, but for the configurations'
    ids and names."""
    applications = {name: create_application(client, admin, name)["id"] for name in ("billing", "search")}
    callers = {
        "admin": admin,
        "scoped": bearer(make_token("service", application_id=applications["billing"])),
        "read-only": bearer(make_token("service", read_only=True)),
        "unknown": bearer("svc_" + "x" * 43),
        "nobody": {},
    }
    services = client.app.state.services
    counted: Counter[int] = Counter()  # requests per status, under the by-id route
    before = scrape(client, admin)
    for number, (what, caller, application, path, extra, body, status, by_door) in enumerate(cases):
        twins = [create_in(client, admin, applications[application], name=f"{side}-{number}", config={"rate": 1},
                           comments="made alike") for side in ("route", "door")]
        answers, passes = [], []
        for twin, cached in zip(twins, (False, True)):
            services.authenticator.cache.clear()
            if cached:  # as any request authenticated by the route leaves it
                client.get("/api/v1/applications", headers=callers[caller])
            values = {"id": twin["id"], "lower": twin["id"].lower(), "etag": f'"{twin["id"]}.1"'}
            headers = {"Content-Type": "application/json", **callers[caller], **extra}  # None: not sent
            headers = {k: v.format(**values) for k, v in headers.items() if v is not None}
            content = body(services.settings.max_request_bytes) if callable(body) else body
            passed_on.clear()
            answers.append(client.request(method, "/api/v1/configurations/" + path.format(**values),
                                          headers=headers, content=content))
            passes.append(len(passed_on))
        route, door = answers
        assert route.status_code == door.status_code == status, (what, route.text, door.text)
        assert passes == [1, 0 if by_door else 1], what
        same_answer(route, door, ID=tuple(t["id"] for t in twins), NAME=tuple(t["name"] for t in twins))
        counted[status] += 2
    after = scrape(client, admin)
    for status, requests in counted.items():
        assert moved(before, after, "svc_http_requests_total", method=method, route=BY_ID_ROUTE,
                     status=str(status)) == requests, status
