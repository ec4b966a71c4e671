"""The closed schema engine (issue 22): a user's JSON Schema reaches nothing outside itself, its
patterns run on RE2, and one document's validation has a bounded cost. Through the API on real
PostgreSQL, for configurations and for the catalog's tool definitions."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from svc.json_documents import check_schema, violations
from svc.json_schema import MAX_SCHEMA_DEPTH, MAX_VALIDATION_STEPS
from tests.configuration_helpers import API, create_application, create_configuration, query
from tests.team_helpers import crew  # noqa: F401 (fixture)
from tests.claude_md_helpers import person  # noqa: F401 (fixture crew uses)

LONG = os.environ.get("SVC_LONG_TESTS") == "1"


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection made to it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.sendall(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"LEAKED": true}')
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    running = Listener()
    yield running
    running.close()


@pytest.fixture
def app(client, admin):
    return create_application(client, admin, "billing")


def post_configuration(client, admin, app, schema, config=None):
    body = {"name": "main", "config": {} if config is None else config, "schema": schema}
    return client.post(f"{API}/applications/{app['id']}/configurations", json=body, headers=admin)


def stored_configurations(database_url) -> int:
    return query(database_url, "SELECT count(*) FROM configurations")[0][0]


# --- no $ref is retrieved ------------------------------------------------------------------


def test_a_ref_to_an_http_listener_is_refused_and_the_listener_hears_nothing(
    client, admin, app, listener, database_url
):
    reference = f"http://127.0.0.1:{listener.port}/x.json"
    for schema in (
        {"$ref": reference},
        {"type": "object", "properties": {"port": {"$ref": reference}}},
        {"$defs": {"remote": {"$ref": reference}}, "type": "object"},  # never used, still refused
    ):
        response = post_configuration(client, admin, app, schema, {"port": 1})
        assert response.status_code == 422, response.text
        body = response.json()
        assert reference in body["detail"] and "never retrieved" in body["detail"]
        assert body["errors"][0]["path"].endswith("/$ref")
        assert "LEAKED" not in response.text
    assert stored_configurations(database_url) == 0
    assert listener.connections == 0


def test_a_schema_patch_with_a_remote_ref_is_refused_before_anything_is_stored(client, admin, app, listener):
    created = create_configuration(client, admin, app["id"], "main", {"port": 1})
    reference = f"https://127.0.0.1:{listener.port}/x.json"
    response = client.patch(
        f"{API}/configurations/{created['id']}", json={"schema": {"$ref": reference}}, headers=admin
    )
    assert response.status_code == 422 and reference in response.json()["detail"]
    assert client.get(f"{API}/configurations/{created['id']}", headers=admin).json()["revision"] == 1
    assert listener.connections == 0


def test_a_file_ref_is_refused_without_reading_the_file(client, admin, app, database_url):
    response = post_configuration(client, admin, app, {"$ref": "file:///etc/passwd"})
    assert response.status_code == 422
    assert "'file:///etc/passwd'" in response.json()["detail"]
    assert "root:" not in response.text
    assert stored_configurations(database_url) == 0


def test_refs_inside_the_schema_and_to_a_bundled_meta_schema_still_work(client, admin, app):
    schema = {
        "$id": "https://schemas.example/config",
        "type": "object",
        "properties": {
            "port": {"$ref": "#/$defs/port"},
            "limits": {"$ref": "https://schemas.example/limits"},  # an embedded resource, by its $id
            "nested_schema": {"$ref": "https://json-schema.org/draft/2020-12/schema"},
        },
        "$defs": {
            "port": {"type": "integer", "minimum": 1},
            "limits": {"$id": "https://schemas.example/limits", "type": "object"},
        },
    }
    refused = post_configuration(client, admin, app, schema, {"port": 0, "limits": [], "nested_schema": {"type": 5}})
    assert refused.status_code == 422
    assert {error["path"] for error in refused.json()["errors"]} == {"/port", "/limits", "/nested_schema/type"}
    assert post_configuration(client, admin, app, schema, {"port": 1, "limits": {}}).status_code == 201


def test_a_ref_to_nowhere_inside_the_schema_is_refused_naming_it(client, admin, app):
    response = post_configuration(client, admin, app, {"$ref": "#/$defs/missing"})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"path": "/$ref", "message": response.json()["errors"][0]["message"]}
    ] and "'#/$defs/missing'" in response.json()["detail"]


def test_a_tool_input_schema_with_a_remote_ref_is_refused(client, crew, listener):  # noqa: F811
    reference = f"http://127.0.0.1:{listener.port}/args.json"
    tool = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "$ref": reference}}
    body = {
        "type": "tool", "name": "get_weather", "owner": {"team_id": crew.team["id"]},
        "description": "Weather", "content": json.dumps(tool),
    }
    response = client.post(f"{API}/catalog", json=body, headers=crew.admin.headers)
    assert response.status_code == 422
    assert any(reference in error["message"] for error in response.json()["errors"])
    assert listener.connections == 0


# --- patterns on RE2 -------------------------------------------------------------------------


def test_a_catastrophic_pattern_answers_correctly(client, admin, app):
    """`^(a+)+$` against a's and a '!' is exponential on a backtracking engine; RE2 answers at once."""
    schema = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}
    started = time.monotonic()
    refused = post_configuration(client, admin, app, schema, {"name": "a" * 40 + "!"})
    elapsed = time.monotonic() - started
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["path"] == "/name"
    assert "does not match '^(a+)+$'" in refused.json()["errors"][0]["message"]
    if LONG:  # a backtracking engine takes minutes at 40 a's
        assert elapsed < 5
    assert post_configuration(client, admin, app, schema, {"name": "a" * 40}).status_code == 201


@pytest.mark.parametrize(
    ("schema", "path", "pattern"),
    [
        ({"pattern": "(a)\\1"}, "/pattern", "(a)\\1"),
        ({"properties": {"x": {"pattern": "(?=x)x"}}}, "/properties/x/pattern", "(?=x)x"),
        ({"patternProperties": {"(?<!a)b": {}}}, "/patternProperties", "(?<!a)b"),
    ],
    ids=["backreference", "lookahead", "lookbehind-property"],
)
def test_a_pattern_re2_cannot_run_is_refused_naming_it(client, admin, app, database_url, schema, path, pattern):
    response = post_configuration(client, admin, app, schema)
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["path"] == path
    assert f"the pattern {pattern!r} cannot run on the linear-time engine (RE2)" in error["message"]
    assert stored_configurations(database_url) == 0


def test_pattern_properties_run_on_re2_also_for_additional_and_unevaluated_properties():
    evil = "a" * 40 + "!"
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        schema = {"patternProperties": {"^(a+)+$": {"type": "integer"}}, keyword: False}
        check_schema(schema)
        assert violations(schema, {"aaa": 1}) == []
        assert [error["path"] for error in violations(schema, {evil: 1, "aaa": "x"})] == ["", "/aaa"]


def test_the_regex_format_is_checked_by_re2():
    schema = {"type": "string", "format": "regex"}
    check_schema(schema)
    assert violations(schema, "^a+$") == []
    assert violations(schema, "(a)\\1") == [{"path": "", "message": "'(a)\\\\1' is not a 'regex'"}]


# --- bounded cost ----------------------------------------------------------------------------


def exponential_schema(levels: int) -> dict:
    """Each definition applies the next one twice: 2^levels applications at the root."""
    definitions = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(levels)}
    return {"$defs": {**definitions, f"d{levels}": {"type": "object"}}, "$ref": "#/$defs/d0"}


def test_a_schema_that_applies_itself_exponentially_is_stopped_by_the_step_budget(client, admin, app, database_url):
    response = post_configuration(client, admin, app, exponential_schema(40))
    assert response.status_code == 422
    assert f"more than {MAX_VALIDATION_STEPS} steps" in response.json()["errors"][0]["message"]
    assert stored_configurations(database_url) == 0
    assert post_configuration(client, admin, app, exponential_schema(4)).status_code == 201


def test_unique_items_compares_json_values_by_hash():
    schema = {"uniqueItems": True}
    check_schema(schema)
    assert violations(schema, [{"a": 1}, {"a": 1.0}])[0]["message"].endswith("has non-unique elements")
    assert violations(schema, [True, 1, 1.5, "1", None, [1], {"1": 1}]) == []
    assert violations(schema, [[1, {"b": 2, "a": 1}], [1.0, {"a": 1, "b": 2}]]) != []
    assert violations(schema, [{"n": n} for n in range(50_000)]) == []  # quadratic before


def test_a_schema_nested_too_deeply_or_too_large_is_refused(client, admin, app):
    deep: dict = {"type": "object"}
    for _ in range(MAX_SCHEMA_DEPTH):
        deep = {"properties": {"a": deep}}
    response = post_configuration(client, admin, app, deep)
    assert response.status_code == 422 and "nests too deeply" in response.json()["detail"]
    large = {"enum": ["x" * 1000] * 300}
    response = post_configuration(client, admin, app, large)
    assert response.status_code == 422 and "the limit is" in response.json()["detail"]


def test_a_huge_multiple_of_a_tiny_float_is_answered():
    schema = {"multipleOf": 1e-300}
    check_schema(schema)
    assert violations(schema, 1e300) == [{"path": "", "message": "1e+300 is not a multiple of 1e-300"}]
