"""Catalog content validators (svc.validators): pure functions, no database.

Each rule has a passing and a failing case; the rules come from the Agent Skills
specification, the MCP registry's server schema, the Claude tool definition and semver.org
2.0.0, and the example content under tests/data/catalog must pass.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from jsonschema.validators import Draft7Validator

from svc import catalog_types
from svc.errors import BadRequest, Unprocessable
from svc.validators.mcp import SERVER_SCHEMA
from svc.validators.semver import SemVer, latest_release, parse_semver
from svc.json_documents import parse_json
from svc.validators.violations import walk

CATALOG = Path(__file__).parent / "data" / "catalog"


def skill(front_matter: str, body: str = "# Body\n") -> str:
    return f"---\n{front_matter}\n---\n{body}"


VALID_FRONT = "name: pdf-tools\ndescription: Fills PDF forms. Use when the user mentions PDFs."


def skill_violations(front_matter: str, name: str = "pdf-tools") -> list[tuple[str, str]]:
    return [(v.path, v.message) for v in catalog_types.validate("skill", name, skill(front_matter))]


def assert_one(found: list[tuple[str, str]], path: str, words: str) -> None:
    assert any(p == path and words in m for p, m in found), found


# --- the shipped examples ---------------------------------------------------------------


@pytest.mark.parametrize("directory", ["code-review", "release-notes", "postgres-migrations"])
def test_example_skills_pass(directory: str) -> None:
    content = (CATALOG / directory / "SKILL.md").read_text(encoding="utf-8")
    assert catalog_types.validate("skill", directory, content) == []


@pytest.mark.parametrize("directory", ["local-weather", "remote-weather"])
def test_example_mcp_servers_pass(directory: str) -> None:
    content = (CATALOG / directory / "server.json").read_text(encoding="utf-8")
    assert catalog_types.validate("mcp", f"io.github.user/{directory}", content) == []


def test_example_tool_passes() -> None:
    content = (CATALOG / "tools" / "get_weather.json").read_text(encoding="utf-8")
    catalog_types.check("tool", "get_weather", content)


# --- skill: the file's shape -------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        skill(VALID_FRONT, body=""),  # the body may be empty
        skill(VALID_FRONT).replace("\n", "\r\n"),  # CRLF line endings
        "---\n" + VALID_FRONT + "\n---",  # closing line at the very end, no newline
    ],
    ids=["empty-body", "crlf", "no-final-newline"],
)
def test_skill_shapes_that_pass(content: str) -> None:
    assert catalog_types.validate("skill", "pdf-tools", content) == []


@pytest.mark.parametrize(
    ("content", "path", "words"),
    [
        ("# Just Markdown\n", "/front-matter", "starts with a line '---'"),
        (" ---\n" + VALID_FRONT + "\n---\n", "/front-matter", "starts with a line '---'"),
        ("\ufeff---\n" + VALID_FRONT + "\n---\n", "", "byte order mark"),
        ("---\n" + VALID_FRONT + "\n", "/front-matter", "not closed"),
        (skill("- name\n- description"), "/front-matter", "must be a YAML mapping, not a list"),
        (skill("just a sentence"), "/front-matter", "not a string"),
        ("---\n---\nbody", "/front-matter", "not empty (null)"),
        (skill("name: [unclosed"), "/front-matter", "line 3, column 1: the front matter is not valid YAML"),
        (skill(VALID_FRONT + "\nmetadata:\n\tauthor: me"), "/front-matter", "line 5, column 1: a tab is used for"),
        (skill(VALID_FRONT + "\nname: other"), "/front-matter", "line 4, column 1: the front matter is not valid YAML: "
         "the key 'name' appears twice"),
        (skill("<<: {name: pdf-tools}\ndescription: d"), "/front-matter", "merge keys (<<) are not allowed"),
        (skill(VALID_FRONT + "\nlicense: &l MIT"), "/front-matter", "anchors and aliases"),
        (skill(VALID_FRONT + "\nlicense: a\x07b"), "/front-matter", "line 4, column 11: the front matter contains the "
         "character U+0007"),
        (skill(VALID_FRONT + "\nlicense: !!python/object:os.system ls"), "/front-matter", "not valid YAML"),
        (skill(VALID_FRONT + "\nlicense: 2024-13-01"), "/front-matter", "line 4, column 10: the front matter is not "
         "valid YAML: '2024-13-01' cannot be read as timestamp; put it in quotes"),
        (skill(VALID_FRONT + "\nlicense: !!int 1" + "0" * 5000), "/front-matter", "cannot be read as int"),
        (skill(VALID_FRONT + "\nlicense: !!int ''"), "/front-matter", "'' cannot be read as int"),
        (skill(VALID_FRONT + "\nmetadata: !!map [a]"), "/front-matter", "expected a mapping node, but found sequence"),
        (skill("a: " + "[" * 5000), "/front-matter", "nests too deeply"),
        (skill(VALID_FRONT, body="text\x00more"), "", "line 5, column 5: the content contains the NUL character"),
    ],
    ids=[
        "no-front-matter", "indented-opening", "bom", "unclosed", "list", "scalar", "empty",
        "yaml-syntax", "tab-indent", "duplicate-key", "merge-key", "anchor", "control-character", "python-tag",
        "bad-date", "huge-int", "empty-int", "map-of-a-list", "deep",
        "nul-in-body",
    ],
)
def test_skill_shapes_that_fail(content: str, path: str, words: str) -> None:
    found = [(v.path, v.message) for v in catalog_types.validate("skill", "pdf-tools", content)]
    assert_one(found, path, words)


def test_a_yaml_alias_bomb_is_refused_before_it_expands() -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, current in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{current}: &{current} [" + ",".join([f"*{previous}"] * 9) + "]")
    found = skill_violations("\n".join(levels))
    assert found == [("/front-matter", "line 2, column 4: the front matter is not valid YAML: "
                      "anchors and aliases (& and *) are not allowed in front matter")]


# --- skill: the front-matter fields ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "front_matter"),
    [
        ("a" * 64, "name: " + "a" * 64 + "\ndescription: d"),
        ("pdf-2-text", "name: pdf-2-text\ndescription: d"),
        ("pdf-tools", "name: pdf-tools\ndescription: " + "x" * 1024),
        ("pdf-tools", "name: pdf-tools\ndescription: 'yes'"),
        ("pdf-tools", VALID_FRONT + "\nlicense: Proprietary. LICENSE.txt has complete terms"),
        ("pdf-tools", VALID_FRONT + "\ncompatibility: " + "c" * 500),
        ("pdf-tools", VALID_FRONT + '\nmetadata:\n  author: example-org\n  version: "1.0"'),
        ("pdf-tools", VALID_FRONT + "\nmetadata: {}"),
        ("pdf-tools", VALID_FRONT + "\nallowed-tools: Bash(git:*) Bash(jq:*) Read"),
    ],
    ids=[
        "name-64", "name-digits", "description-1024", "quoted-yes", "license", "compatibility-500",
        "metadata", "metadata-empty", "allowed-tools",
    ],
)
def test_front_matter_that_passes(name: str, front_matter: str) -> None:
    assert skill_violations(front_matter, name) == []


@pytest.mark.parametrize(
    ("front_matter", "path", "words"),
    [
        ("description: d", "/front-matter/name", "name is required"),
        ("name: 123\ndescription: d", "/front-matter/name", "must be a string, not a number (123); put it in quotes"),
        ("name: " + "a" * 65 + "\ndescription: d", "/front-matter/name", "1-64 characters; it has 65"),
        ("name: ''\ndescription: d", "/front-matter/name", "1-64 characters; it has 0"),
        ("name: PDF-Tools\ndescription: d", "/front-matter/name", "digits and hyphens; it contains 'D', 'F', 'P', 'T'"),
        ("name: pdf_tools\ndescription: d", "/front-matter/name", "it contains '_'"),
        ("name: pdféx\ndescription: d", "/front-matter/name", "it contains 'é'"),
        ("name: -pdf\ndescription: d", "/front-matter/name", "must not start or end with a hyphen"),
        ("name: pdf-\ndescription: d", "/front-matter/name", "must not start or end with a hyphen"),
        ("name: pdf--tools\ndescription: d", "/front-matter/name", "two hyphens in a row"),
        ("name: word-tools\ndescription: d", "/front-matter/name", "is 'word-tools' but the item is named 'pdf-tools'"),
        ("name: pdf-tools", "/front-matter/description", "description is required"),
        ("name: pdf-tools\ndescription: yes", "/front-matter/description", "not a boolean (true)"),
        ("name: pdf-tools\ndescription: 2024-01-01", "/front-matter/description", "not a date (2024-01-01)"),
        ("name: pdf-tools\ndescription:", "/front-matter/description", "not empty (null)"),
        ("name: pdf-tools\ndescription: '  '", "/front-matter/description", "must not be empty"),
        ("name: pdf-tools\ndescription: " + "x" * 1025, "/front-matter/description", "at most 1024 characters"),
        ('name: pdf-tools\ndescription: "a\\0b"', "/front-matter/description", "NUL character"),
        ('name: pdf-tools\ndescription: "a\\ud800b"', "/front-matter/description", "U+D800, a lone surrogate"),
        ('name: pdf-tools\ndescription: d\nmetadata: {"\\0": v}', "/front-matter/metadata/\x00", "NUL character"),
        (VALID_FRONT + "\nlicense: 3", "/front-matter/license", "must be a string, not a number (3)"),
        (VALID_FRONT + "\ncompatibility: " + "c" * 501, "/front-matter/compatibility", "at most 500 characters"),
        (VALID_FRONT + "\ncompatibility: ''", "/front-matter/compatibility", "must not be empty"),
        (VALID_FRONT + "\nmetadata: author", "/front-matter/metadata", "string keys to string values, not a string"),
        (VALID_FRONT + "\nmetadata:\n  version: 1.0", "/front-matter/metadata/version", "not a number (1.0)"),
        (VALID_FRONT + "\nmetadata:\n  limit: .inf", "/front-matter/metadata/limit", "not a number (inf)"),
        (VALID_FRONT + "\nmetadata:\n  ratio: .nan", "/front-matter/metadata/ratio", "not a number (nan)"),
        (VALID_FRONT + "\nmetadata:\n  beta: no", "/front-matter/metadata/beta", "not a boolean (false)"),
        (VALID_FRONT + "\nmetadata:\n  7: seven", "/front-matter/metadata/7", "keys must be strings, not a number (7)"),
        (VALID_FRONT + "\nmetadata:\n  a/b: 1", "/front-matter/metadata/a~1b", "not a number (1)"),
        (VALID_FRONT + "\nallowed-tools: [Read, Grep]", "/front-matter/allowed-tools", "space-separated string"),
        (VALID_FRONT + "\nallowed-tools: 5", "/front-matter/allowed-tools", "must be a string"),
        (VALID_FRONT + "\nversion: 1.0.0", "/front-matter/version", "'version' is not a key of the front matter"),
    ],
    ids=[
        "name-missing", "name-number", "name-65", "name-empty", "name-uppercase", "name-underscore",
        "name-non-ascii", "name-leading-hyphen", "name-trailing-hyphen", "name-double-hyphen",
        "name-not-item", "description-missing", "description-yes", "description-date", "description-null",
        "description-blank", "description-1025", "description-nul-escape", "description-surrogate",
        "key-nul-escape", "license-number",
        "compatibility-501", "compatibility-empty", "metadata-scalar", "metadata-float", "metadata-inf",
        "metadata-nan", "metadata-bool", "metadata-int-key", "metadata-pointer-escape", "allowed-tools-list",
        "allowed-tools-number", "unknown-key",
    ],
)
def test_front_matter_that_fails(front_matter: str, path: str, words: str) -> None:
    assert_one(skill_violations(front_matter), path, words)


def test_every_violation_of_a_skill_is_listed_in_one_422() -> None:
    content = skill("name: Bad--Name\ndescription: yes\nauthor: me\nmetadata:\n  v: 1")
    with pytest.raises(Unprocessable) as caught:
        catalog_types.check("skill", "bad-name", content)
    paths = [e["path"] for e in caught.value.errors]
    assert sorted(set(paths)) == [
        "/front-matter/author", "/front-matter/description", "/front-matter/metadata/v", "/front-matter/name",
    ]
    assert caught.value.detail.startswith("SKILL.md is not valid at '/front-matter/author': ")
    assert f"(and {len(paths) - 1} more, listed in errors)" in caught.value.detail


# --- strict JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.1", 0.1), ("1e300", 1e300), ("-0", 0), ("9007199254740992", 9007199254740992),
        ("1.5E3", 1500.0), ("[1, 2.25]", [1, 2.25]), ('{"a": {"b": null}}', {"a": {"b": None}}),
    ],
)
def test_strict_json_keeps_numbers_a_double_reads_back_the_same(text: str, value: object) -> None:
    parsed = parse_json(text, "x", integers="double")
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ('{"a": NaN}', "/a", "NaN is not a JSON value"),
        ('{"a": [Infinity]}', "/a/0", "Infinity is not a JSON value"),
        ('{"a": -Infinity}', "/a", "-Infinity is not a JSON value"),
        ('{"a": 1e400}', "/a", "too large for a double"),
        ('{"a": 1' + "0" * 400 + "}", "/a", "too large for a double"),
        ('{"a": 1e-400}', "/a", "cannot be held exactly by a double (it would read as 0.0)"),
        ('{"a": 123456789012345678901234567890.5}', "/a", "cannot be held exactly"),
        ('{"a": 9007199254740993}', "/a", "cannot be held exactly"),
        ('{"a/b": {"c": 1, "c": 2}}', "/a~1b/c", "the key 'c' appears more than once"),
    ],
)
def test_strict_json_refuses_what_it_cannot_keep_exactly(text: str, path: str, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_json(text, "server.json", integers="double")
    assert caught.value.errors[0]["path"] == path and words in caught.value.errors[0]["message"]
    assert f"at '{path}'" in caught.value.detail


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "line 1, column 1"),
        ('{"name": "x",}', "line 1, column 14"),
        ('{\n  "a": 1\n} x', "line 3, column 3"),
        ("[" * 100_000, ""),
    ],
)
def test_what_is_not_json_is_a_400_naming_the_position(text: str, where: str) -> None:
    with pytest.raises(BadRequest) as caught:
        catalog_types.validate("mcp", "io.github.user/x", text)
    assert caught.value.detail.startswith("server.json ") and where in caught.value.detail


# --- mcp ---------------------------------------------------------------------------------


NPM_PACKAGE = {"registryType": "npm", "identifier": "weather", "version": "1.0.0", "transport": {"type": "stdio"}}


def server(**changes: object) -> str:
    document = {"name": "io.github.user/weather", "description": "Weather forecasts.", "version": "1.0.0"}
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None})


def test_the_shipped_server_schema_is_a_valid_draft_7_schema_whose_refs_are_all_local() -> None:
    Draft7Validator.check_schema(SERVER_SCHEMA)
    refs = [node for parts, node in walk(SERVER_SCHEMA) if parts and parts[-1] == "$ref"]
    assert refs and all(ref.startswith("#/definitions/") for ref in refs)


@pytest.mark.parametrize(
    ("content", "path", "words"),
    [
        (server(description=None), "", "'description' is a required property"),
        (server(description="d" * 101), "/description", "is too long"),
        (server(name="weather"), "/name", "does not match"),
        (server(name="io.github.user/other"), "/name", "is 'io.github.user/other' but the item is named"),
        (server(packages=[NPM_PACKAGE | {"version": "latest"}]), "/packages/0/version", "should not be valid"),
        (server(remotes=[{"type": "sse", "url": "ftp://example.com"}]), "/remotes/0", "not valid under any"),
        (server(description="a\x00b"), "/description", "NUL character"),
        (server(description="a\ud800b"), "/description", "U+D800, a lone surrogate"),
        (server().replace('"Weather', '"\x00Weather'), "", "line 1, column 52: the content contains the NUL"),
        ("[]", "", "is not of type 'object'"),
    ],
    ids=[
        "no-description", "long-description", "bad-name", "other-name", "latest", "remote-url", "nul-escape",
        "surrogate", "nul", "array",
    ],
)
def test_server_json_that_fails(content: str, path: str, words: str) -> None:
    found = [(v.path, v.message) for v in catalog_types.validate("mcp", "io.github.user/weather", content)]
    assert_one(found, path, words)


def test_a_server_json_that_passes_has_the_items_full_name() -> None:
    assert catalog_types.validate("mcp", "io.github.user/weather", server(packages=[NPM_PACKAGE])) == []
    assert catalog_types.validate("mcp", "io.github.user/Weather", server()) != []


# --- tool --------------------------------------------------------------------------------


def tool(**changes: object) -> str:
    document = {"name": "get_weather", "description": "Current weather.", "input_schema": {"type": "object"}}
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None})


def deep_schema(levels: int) -> dict[str, object]:
    schema: dict[str, object] = {"type": "object"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize(
    ("content", "path", "words"),
    [
        ("[]", "", "a tool definition is a JSON object {name, description, input_schema}, not a list"),
        (tool(inputSchema={}), "/inputSchema", "'inputSchema' is not a key of a tool definition"),
        (tool(name=None), "/name", "name is required"),
        (tool(name="get weather"), "/name", "1-64 letters, digits, '_' or '-'"),
        (tool(name="get_forecast"), "/name", "is 'get_forecast' but the item is named 'get_weather'"),
        (tool(description=None), "/description", "description is required"),
        (tool(description=""), "/description", "must not be empty"),
        (tool(description=5), "/description", "must be a string, not a number (5)"),
        (tool(input_schema=None), "/input_schema", "input_schema is required"),
        (tool(input_schema=True), "/input_schema", "must be a JSON Schema object, not a boolean (true)"),
        (tool(input_schema={"type": "object", "properties": {"a": {"type": "text"}}}),
         "/input_schema/properties/a/type", "is not valid"),
        (tool(input_schema={"type": "object", "required": "a"}), "/input_schema/required", "is not of type 'array'"),
        (tool(input_schema={"type": "array"}), "/input_schema/type", 'must have "type": "object"'),
        (tool(input_schema={"properties": {}}), "/input_schema/type", 'must have "type": "object"'),
        (tool(input_schema=deep_schema(100)), "/input_schema", "nests too deeply to be checked"),
        (tool(input_schema=deep_schema(300)), "/input_schema", "nests too deeply to be checked"),
    ],
    ids=[
        "array", "unknown-key", "no-name", "bad-name", "other-name", "no-description", "empty-description",
        "number-description", "no-schema", "bool-schema", "invalid-schema", "invalid-required", "array-schema",
        "untyped-schema", "deep-schema", "deeper-schema",
    ],
)
def test_tool_definitions_that_fail(content: str, path: str, words: str) -> None:
    found = [(v.path, v.message) for v in catalog_types.validate("tool", "get_weather", content)]
    assert_one(found, path, words)


def test_a_tool_that_is_not_json_is_a_400() -> None:
    with pytest.raises(BadRequest, match="the tool definition is not valid JSON: Expecting value at line 1, column 1"):
        catalog_types.check("tool", "get_weather", "name: get_weather")


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="'agent'"):
        catalog_types.validate("agent", "x", "")


# --- semver ------------------------------------------------------------------------------

# semver.org 2.0.0 §11, the examples as the text gives them.
SPEC_ORDER = [
    "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
    "1.0.0-rc.1", "1.0.0", "2.0.0", "2.1.0", "2.1.1",
]


def test_semver_precedence_follows_the_spec_examples() -> None:
    versions = [parse_semver(v) for v in SPEC_ORDER]
    assert all(a < b and b > a and a <= b and not a >= b for a, b in zip(versions, versions[1:], strict=False))
    shuffled = versions[:]
    random.Random(12).shuffle(shuffled)
    assert [str(v) for v in sorted(shuffled)] == SPEC_ORDER


def test_build_metadata_does_not_count_for_precedence() -> None:
    a, b = parse_semver("1.0.0+a"), parse_semver("1.0.0+b")
    assert not a < b and not b < a and a <= b and a >= b
    assert a != b


@pytest.mark.parametrize(
    "text",
    ["0.0.0", "1.0.0-alpha+001", "1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85", "1.0.0+21AF26D3----117B344092BD",
     "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0-x-y-z.--", "10.20.30"],
)
def test_semver_strings_from_the_spec_parse_and_print_back(text: str) -> None:
    assert str(parse_semver(text)) == text


@pytest.mark.parametrize(
    "text",
    ["1.2", "v1.2.3", "01.2.3", "1.02.3", "1.2.3-01", "1.2.3-", "1.2.3+", "1.2.3-a..b", "1.2.3\n", " 1.2.3",
     "1.2.3-é", "١.2.3", "latest", ""],
)
def test_what_is_not_semver_is_a_422_naming_the_field(text: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        parse_semver(text)
    assert caught.value.errors[0]["path"] == "/version"
    assert caught.value.detail.startswith("version: ")


def test_latest_is_the_highest_version_that_is_not_a_pre_release() -> None:
    assert latest_release(["1.0.0", "1.10.0", "1.9.0", "2.0.0-rc.1", "1.10.0-beta"]) == "1.10.0"
    assert latest_release(["1.0.0+b", "1.0.0+a"]) == latest_release(["1.0.0+a", "1.0.0+b"]) == "1.0.0+b"
    assert latest_release(["1.0.0-alpha", "2.0.0-rc.1"]) is None
    assert latest_release([]) is None
    assert parse_semver("2.0.0-rc.1").is_prerelease and not parse_semver("2.0.0").is_prerelease
    assert SemVer(1, 2, 3, ("rc", "1"), ("b7",)) == parse_semver("1.2.3-rc.1+b7")
