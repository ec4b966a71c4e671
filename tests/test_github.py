"""Listing and importing GitHub repositories against a local stand-in that answers as GitHub's
published REST API description says; a contract test holds the client and the stand-in to that
description (tests/data/github)."""

from __future__ import annotations

import logging

import jsonschema
import pytest

from svc.config import Settings
from tests.claude_md_helpers import API, assert_problem, person  # noqa: F401 (fixtures)
from tests.github_standin import DESCRIPTION, TOKEN, StandIn, repository, serve
from tests.team_helpers import crew  # noqa: F401 (fixtures)

GITHUB = {"X-GitHub-Token": TOKEN}
OPERATION = DESCRIPTION["paths"]["/user/repos"]["get"]


@pytest.fixture
def stand_in():
    stand_in = StandIn()
    server = serve(stand_in)
    yield stand_in
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(database_url: str, tmp_path, stand_in: StandIn) -> Settings:
    return Settings(
        _env_file=None, database_url=database_url, data_dir=tmp_path / "data", pool_min_size=1, pool_max_size=8,
        github_api_url=stand_in.url, github_timeout=0.5,
    )


@pytest.fixture
def product(client, crew) -> dict:
    response = client.post(
        f"{API}/applications", json={"name": "billing", "team_id": crew.team["id"]}, headers=crew.owner.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_listing_reads_every_page_and_asks_again_conditionally(client, crew, stand_in, caplog):
    caplog.set_level(logging.DEBUG)
    stand_in.repositories = [repository(n) for n in range(1, 251)]
    headers = {**crew.member.headers, **GITHUB}
    first = client.get(f"{API}/github/repos", headers=headers)
    assert first.status_code == 200, first.text
    assert [r["full_name"] for r in first.json()["items"]] == [r["full_name"] for r in stand_in.repositories]
    assert first.json()["next"] is None
    assert [r.query["page"] for r in stand_in.requests[1:]] == [["2"], ["3"]]
    one = first.json()["items"][0]
    assert one == {
        "github_id": 1296270, "name": "Hello-World-0001", "full_name": "octocat/Hello-World-0001",
        "description": "This your first repo!", "url": "https://github.com/octocat/Hello-World-0001",
        "default_branch": "master", "is_private": False, "language": "Python", "stars_count": 81, "forks_count": 9,
    }

    # Again: every page is asked for with its ETag, GitHub answers 304 (free of rate limit).
    del stand_in.requests[:]
    again = client.get(f"{API}/github/repos", headers=headers)
    assert again.json() == first.json()
    assert len(stand_in.requests) == 3 and all(r.headers.get("If-None-Match") for r in stand_in.requests)

    # The token is never echoed or logged.
    assert TOKEN not in first.text and TOKEN not in str(first.headers) and TOKEN not in caplog.text


def test_import_is_idempotent_by_github_id_and_refreshes_metadata(client, admin, crew, product, stand_in):
    url = f"{API}/applications/{product['id']}/repositories"
    lead = {**crew.admin.headers, **GITHUB}
    # A repository added by hand is adopted by the import of the same full name.
    hand = client.post(url, json={"name": "Hello-World-0002", "full_name": "octocat/Hello-World-0002"}, headers=lead)
    names = ["octocat/Hello-World-0001", "OCTOCAT/hello-world-0002", "octocat/Hello-World-0003"]
    imported = client.post(f"{url}/import", json={"full_names": names}, headers=lead)
    assert imported.status_code == 200, imported.text
    assert imported.json()["changed"] == 3
    rows = client.get(url, headers=crew.member.headers).json()["items"]
    assert sorted(r["full_name"] for r in rows) == [f"octocat/Hello-World-000{n}" for n in (1, 2, 3)]
    assert hand.json()["id"] in {r["id"] for r in rows}
    assert {r["github_id"] for r in rows} == {1296270, 1296271, 1296272}

    again = client.post(f"{url}/import", json={"full_names": names}, headers=lead)
    assert again.json()["changed"] == 0 and len(client.get(url, headers=lead).json()["items"]) == 3

    stand_in.repositories[0] = {**stand_in.repositories[0], "stargazers_count": 5000, "description": "renamed"}
    refreshed = client.post(f"{url}/import", json={"full_names": names}, headers=lead).json()
    assert refreshed["changed"] == 1
    first = next(r for r in refreshed["items"] if r["github_id"] == 1296270)
    assert (first["stars_count"], first["description"], first["revision"]) == (5000, "renamed", 2)

    unknown = client.post(f"{url}/import", json={"full_names": ["octocat/nope"]}, headers=lead)
    assert_problem(unknown, 422, "octocat/nope")
    assert len(client.get(url, headers=lead).json()["items"]) == 3
    [event, *_] = [
        e for e in client.get(f"{API}/audit", params={"resource_id": product["id"]}, headers=admin).json()["items"]
        if e["action"] == "repository.import"
    ]
    assert TOKEN not in str(event)


def test_callers_who_may_not_import_are_refused_before_github_is_asked(client, admin, make_token, crew, product, stand_in):
    url = f"{API}/applications/{product['id']}/repositories/import"
    body = {"full_names": ["octocat/Hello-World-0001"]}
    assert_problem(client.post(url, json=body, headers={**crew.member.headers, **GITHUB}), 403)
    assert_problem(client.post(url, json=body, headers={**crew.outsider.headers, **GITHUB}), 404)
    assert stand_in.requests == []


@pytest.mark.parametrize(
    ("mode", "token", "status", "detail", "retry_after"),
    [
        ("ok", None, 400, "X-GitHub-Token", None),
        ("ok", "ghp_wrong", 403, "GitHub refused the token in X-GitHub-Token (401: Bad credentials)", None),
        ("rate_limited", TOKEN, 503, "GitHub's rate limit", range(100, 121)),
        ("too_many", TOKEN, 503, "GitHub's rate limit", range(30, 31)),
        ("server_error", TOKEN, 502, "GitHub answered 502", None),
        ("slow", TOKEN, 502, "GitHub did not answer within 0.5 s", None),
        ("bad_payload", TOKEN, 502, "not shaped as its API describes", None),
    ],
)
def test_githubs_refusals_become_clear_problems(
    client, crew, product, stand_in, mode, token, status, detail, retry_after
):
    stand_in.mode, stand_in.delay = mode, 1.5
    headers = {**crew.owner.headers, **({"X-GitHub-Token": token} if token else {})}
    for response in (
        client.get(f"{API}/github/repos", headers=headers),
        client.post(
            f"{API}/applications/{product['id']}/repositories/import",
            json={"full_names": ["octocat/Hello-World-0001"]}, headers=headers,
        ),
    ):
        body = assert_problem(response, status, detail)
        assert token is None or token not in body["detail"]
        if retry_after is not None:
            assert int(response.headers["Retry-After"]) in retry_after
    assert client.get(f"{API}/applications/{product['id']}/repositories", headers=crew.owner.headers).json()["items"] == []


def test_github_unreachable_is_502(client, crew, stand_in, settings):
    client.app.state.services.github.base_url = "http://127.0.0.1:9"  # nothing listens on the discard port
    assert_problem(client.get(f"{API}/github/repos", headers={**crew.owner.headers, **GITHUB}), 502, "could not be reached")


# --- the contract -----------------------------------------------------------------------------


def _schema(schema: dict) -> dict:
    """A schema of the description, with its references resolvable (they point into the document)."""
    return {**schema, "components": DESCRIPTION["components"]}


def _parameters() -> dict[str, dict]:
    declared = {}
    for parameter in OPERATION["parameters"]:
        if "$ref" in parameter:
            parameter = DESCRIPTION["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        declared[parameter["name"]] = parameter
    return declared


def test_the_client_and_the_stand_in_keep_to_githubs_description(client, crew, stand_in):
    """Requests: the operation's path and method, declared query parameters with valid values,
    GitHub's media type and API version. Responses: every page validates against the operation's
    200 schema, and the client needs no property the description does not require."""
    stand_in.repositories = [repository(n) for n in range(1, 206)]
    assert client.get(f"{API}/github/repos", headers={**crew.owner.headers, **GITHUB}).status_code == 200
    client.get(f"{API}/github/repos", headers={**crew.owner.headers, **GITHUB})  # conditional requests too
    declared = _parameters()
    assert len(stand_in.requests) == 6
    for request in stand_in.requests:
        assert (request.method, request.path) == ("GET", "/user/repos")
        for name, [value] in request.query.items():
            assert name in declared, f"{name} is not a parameter of {OPERATION['operationId']}"
            schema = declared[name]["schema"]
            jsonschema.validate(int(value) if schema["type"] == "integer" else value, schema)
        assert request.headers["Accept"] == "application/vnd.github+json"
        assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"  # the description's version
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"

    ok = OPERATION["responses"]["200"]
    validator = jsonschema.Draft202012Validator(_schema(ok["content"]["application/json"]["schema"]))
    for page in (stand_in.page({"per_page": ["100"], "page": [str(n)]})[0] for n in (1, 2, 3)):
        validator.validate(page)
    assert "Link" in ok["headers"]

    # Only what the description requires: the client reads such a minimal page.
    required = DESCRIPTION["components"]["schemas"]["repository"]["required"]
    stand_in.repositories = [{k: v for k, v in repository(n).items() if k in required} for n in (1, 2)]
    validator.validate(stand_in.repositories)
    listed = client.get(f"{API}/github/repos", headers={**crew.owner.headers, **GITHUB})
    assert [r["full_name"] for r in listed.json()["items"]] == ["octocat/Hello-World-0001", "octocat/Hello-World-0002"]
    # GitHub's errors are basic-error objects, whose message the client reports.
    for status in ("401", "403"):
        ref = OPERATION["responses"][status]["$ref"].rsplit("/", 1)[1]
        error = DESCRIPTION["components"]["responses"][ref]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator(_schema(error)).validate({"message": "Bad credentials"})
