"""Numbers (and keys) in JSON bodies are stored exactly as sent, or refused with 400 naming where they are.

RFC 8259 §6: NaN and Infinity are not JSON numbers; a number's value is the decimal the text
denotes, and implementations commonly hold numbers as IEEE 754 doubles. The service keeps a
number when the value it serves back is the value that was sent (`1e2` comes back as 100.0,
the same number), and refuses it otherwise: never rounds, clamps or nulls it silently.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from svc.api.json_body import JsonBodyRoute, is_json_media_type, takes_json_body
from tests.configuration_helpers import API, create_application, create_configuration

JSON = {"Content-Type": "application/json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}

# Each is kept: the value served back is the value sent.
KEPT = [
    "0", "-0", "-0.0", "0.1", "1.0", "1e2", "1E-2", "-1.5e-7",
    "1.7976931348623157e308",  # the largest double
    "-1.7976931348623157e308",
    "2.2250738585072014e-308",  # the smallest normal double
    "5e-324",  # the smallest subnormal double
    "9007199254740992", "9007199254740993",  # 2^53 and 2^53+1: integers are kept digit for digit
    "9007199254740992.0",
    "-9223372036854775808", "18446744073709551615",  # the ends of the 64-bit ranges
    "1234.5e-1",
]

# Each is refused: NaN/Infinity are not JSON; the rest a double (or a 64-bit integer) cannot hold.
REFUSED = [
    "NaN", "Infinity", "-Infinity",
    "1e400", "-1e400", "1.7976931348623159e308",  # beyond the largest double
    "1e-400", "2e-324",  # below the smallest subnormal: would become 0
    "123456789012345678901234567890.5",  # would lose digits
    "9007199254740993.0",  # 2^53+1 as a fraction: a double makes it 2^53
    "0.30000000000000001",  # a double makes it 0.3
    "18446744073709551616", "-9223372036854775809", "1" + "0" * 400,  # integers beyond 64 bits
]


def decimals(text: str):
    """A JSON text parsed with every number as its exact decimal value."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


@pytest.fixture
def app(client, admin):
    return create_application(client, admin, "billing")


def test_numbers_at_the_edges_of_double_are_stored_exactly(client, admin, app):
    body = "{" + ", ".join(f'"n{i}": {number}' for i, number in enumerate(KEPT)) + "}"
    created = client.post(
        f"{API}/applications/{app['id']}/configurations",
        content=f'{{"name": "edges", "config": {body}}}',
        headers=admin | JSON,
    )
    assert created.status_code == 201, created.text
    sent = decimals(body)
    for served in (
        client.get(f"{API}/configurations/{created.json()['id']}", headers=admin).text,
        client.get(f"{API}/resolve/billing/edges", headers=admin).text,
    ):
        config = decimals(served)
        config = config.get("config", config)
        assert config == sent  # Decimal equality: the same numbers, whatever their spelling


def test_numbers_that_would_change_are_refused_on_every_json_path(client, admin, app):
    configuration = create_configuration(client, admin, app["id"], "main", {"keep": 1})
    target = f"{API}/configurations/{configuration['id']}"
    for number in REFUSED:
        _refused_everywhere(client, admin, app, target, number)
    assert client.get(target, headers=admin).json()["revision"] == 1
    listed = client.get(f"{API}/applications/{app['id']}/configurations", headers=admin).json()["items"]
    assert [c["name"] for c in listed] == ["main"]
    assert [t["name"] for t in client.get(f"{API}/tokens", headers=admin).json()["items"]] == ["test-admin"]
    # RFC 8259 §4: with a name twice in one object, one value would be dropped silently.
    twice = client.put(target, content='{"config": {"a": 1, "a": 2}}', headers=admin | JSON)
    assert twice.status_code == 400 and twice.json()["errors"][0]["path"] == "/config/a"


def _refused_everywhere(client, admin, app, target: str, number: str) -> None:
    attempts = [
        ("POST", f"{API}/applications/{app['id']}/configurations",
         f'{{"name": "new", "config": {{"a": [0, {{"b": {number}}}]}}}}', JSON, "/config/a/1/b"),
        ("PUT", target, f'{{"config": {{"x~y": {number}}}}}', JSON, "/config/x~0y"),
        ("PATCH", target, f'{{"a/b": {number}}}', MERGE_PATCH, "/a~1b"),
        ("PATCH", target, f'{{"schema": {{"maximum": {number}}}}}', JSON, "/schema/maximum"),
        ("POST", f"{target}/rollback", f'{{"revision": {number}}}', JSON, "/revision"),
        ("POST", f"{API}/tokens", f'{{"name": "t", "role": "service", "read_only": {number}}}', JSON, "/read_only"),
    ]
    for method, url, body, headers, pointer in attempts:
        response = client.request(method, url, content=body, headers=admin | headers)
        assert response.status_code == 400, (method, url, response.text)
        problem = response.json()
        assert problem["errors"][0]["path"] == pointer
        assert f"at '{pointer}'" in problem["detail"] and number[:20] in problem["detail"]


def test_contains_filter_is_parsed_by_the_same_rule(client, admin, app):
    response = client.get(
        f"{API}/applications/{app['id']}/configurations", params={"contains": '{"n": 1e400}'}, headers=admin
    )
    detail = response.json()["detail"]
    assert response.status_code == 400 and detail.startswith("contains") and "at '/n'" in detail


def body_routes(app) -> list[APIRoute]:
    """Every route of the app that takes a JSON body parameter, as the app mounts it."""
    routes = [context.original_route for context in iter_route_contexts(app.routes)]
    assert sum(isinstance(route, APIRoute) for route in routes) > 50, "the walk finds the app's routes"
    return [route for route in routes if isinstance(route, APIRoute) and takes_json_body(route)]


def json_body_operations(app) -> list[tuple[str, str, str]]:
    """(method, path, media type) of every operation whose documented request body is JSON: those
    with a body parameter and those that read their body themselves (PATCH of a configuration)."""
    return [
        (method.upper(), path, media_type)
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        for media_type in operation.get("requestBody", {}).get("content", {})
        if is_json_media_type(media_type)
    ]


def test_every_json_body_route_uses_the_strict_parser(client):
    """A route that takes a JSON body but parses it with FastAPI's json.loads would store NaN as null."""
    routes = body_routes(client.app)
    mounted = {(method, route.path) for route in routes for method in route.methods}
    assert {("POST", f"{API}/catalog"), ("PATCH", f"{API}/catalog/{{item_id}}")} <= mounted
    assert [route.path for route in routes if not isinstance(route, JsonBodyRoute)] == []


def test_a_name_twice_in_an_object_is_400_on_every_route_with_a_json_body(client, admin):
    """RFC 8259 §4: with a name twice in one object, one value would be dropped silently; every
    route that reads a JSON body refuses it with 400, naming where (none answers 422 or stores it)."""
    operations = json_body_operations(client.app)
    assert ("POST", "/api/v1/catalog/{item_id}/releases", "application/json") in operations
    assert len(operations) > 20, operations
    for method, path, media_type in operations:
        url = re.sub(r"\{[^}]+\}", "01JCZ5J7Q9T1V0G6W8E2X4Y6ZA", path)
        response = client.request(method, url, content=b'{"a": {"b": 1, "b": 2}}',
                                  headers=admin | {"Content-Type": media_type})
        assert response.status_code == 400, (method, path, media_type, response.text)
        assert response.json()["errors"][0]["path"] == "/a/b", (method, path, response.text)
