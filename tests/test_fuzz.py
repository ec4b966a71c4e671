"""API fuzzing: schemathesis against the service's own OpenAPI document.

Every operation gets generated requests, valid and invalid, sent in-process (ASGI) with a
token that may call it. Every response must be no 5xx and conform to the document: a
documented status code, content type, body schema and headers, invalid requests refused
with a 4xx, valid ones not refused for their shape. Generated ids mostly name real,
seeded resources, so generated bodies reach the services instead of stopping at a 404.

Default run: schemathesis' coverage phase, the same cases on every run: for every parameter
and body field its boundary values and each way to violate its schema, missing and malformed
headers, unspecified methods. The long run adds the schema's examples and `SVC_FUZZ_EXAMPLES`
generated examples per operation, explored afresh on every run:

    SVC_FUZZ_EXAMPLES=500 uv run pytest tests/test_fuzz.py

(Hypothesis' generation costs a fixed price per operation and mode however few examples it
makes: 5 examples a run, derandomized and so always the same ones, cost a fifth of the
default run's CPU for a tenth of its requests.)
"""

from __future__ import annotations

import functools
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import load_all_checks
from schemathesis.pytest.lazy import get_all_tests, run_subtest

from svc.api.app import create_app
from svc.api.schemas import NAME_PATTERN
from svc.config import Settings
from svc.ids import ULID_PATTERN, new_id
from svc.services import tokens as token_service
from svc.services.auth import Principal, new_secret
from svc.services.container import Services
from tests.claude_md_helpers import API, create_user, save
from tests.configuration_helpers import create_application, create_configuration
from tests.conftest import Cluster, bearer, on_app_loop
from tests.github_standin import StandIn, serve

EXAMPLES = int(os.environ.get("SVC_FUZZ_EXAMPLES", "0"))
STREAM_SECONDS = 0.3  # an event stream never ends: what it sent by then is checked
SHA_PATTERN = r"[0-9a-fA-F]{7,40}"

# The tokens' secrets, chosen at import: the module fixture creates the tokens, and the
# schema's authentication sends them.
ADMIN_SECRET = new_secret()
USER_SECRET = new_secret()

# Statuses that answer a *valid* request for reasons its schema cannot describe: a stale
# If-Match (a generated ETag is never current) everywhere, and per operation the rules that
# span fields or live in the data.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "412"]
SEMANTIC_REJECTIONS = {
    # a token's role decides which of user_id / application_id it may carry
    "POST /api/v1/tokens": ["422"],
    # a configuration's own JSON Schema, and JSON that jsonb cannot store (NUL)
    "POST /api/v1/applications/{application_id}/configurations": ["422"],
    "PUT /api/v1/configurations/{configuration_id}": ["422"],
    "PATCH /api/v1/configurations/{configuration_id}": ["422"],
    "POST /api/v1/configurations/{configuration_id}/rollback": ["422"],
    # text that must parse: `contains` as a JSON object, Last-Event-ID as a resume position
    "GET /api/v1/applications/{application_id}/configurations": ["400"],
    "GET /api/v1/applications/{application_id}/events": ["400"],
    # an upload must be a .md file
    "POST /api/v1/users/{user_id}/claude-md/import": ["415"],
    "POST /api/v1/me/claude-md/import": ["415"],
    "POST /api/v1/teams/{team_id}/claude-md/import": ["415"],
    # an admin token, which belongs to no user, must name a new team's owner
    "POST /api/v1/teams": ["422"],
    # a team_id in the body that names no team
    "POST /api/v1/applications": ["422"],
    "PATCH /api/v1/applications/{application_id}": ["422"],
    # catalog content must be a valid SKILL.md / server.json / tool (400 unparseable, 422
    # invalid), an upload a file of the type's suffix, a release version semver
    "POST /api/v1/catalog": ["400", "422"],
    "PUT /api/v1/catalog/{item_id}/document": ["400", "422"],
    "POST /api/v1/catalog/{item_id}/document/proposals": ["400", "422"],
    "POST /api/v1/catalog/{item_id}/document/import": ["400", "415", "422"],
    "POST /api/v1/catalog/{item_id}/releases": ["422"],
    # a repository_id that names no repository of the application; a malformed list cursor
    "POST /api/v1/applications/{application_id}/documents": ["422"],
    "GET /api/v1/applications/{application_id}/documents": ["422"],
    "PATCH /api/v1/documents/{document_id}": ["422"],
    "POST /api/v1/documents/{document_id}/import": ["415"],
    "POST /api/v1/applications/{application_id}/work-items": ["422"],
    "PATCH /api/v1/work-items/{work_item_id}": ["422"],
    # the coverage phase's maximum-length full names and URLs ignore their `pattern`
    "POST /api/v1/applications/{application_id}/repositories": ["422"],
    "PATCH /api/v1/repositories/{repository_id}": ["422"],
    # no X-GitHub-Token (400); names GitHub does not list for the token (422)
    "GET /api/v1/github/repos": ["400"],
    "POST /api/v1/applications/{application_id}/repositories/import": ["400", "422"],
    # schemathesis' coverage phase sends maximum-length emails that ignore the email `pattern`
    "POST /api/v1/users": ["422"],
    "PATCH /api/v1/users/{user_id}": ["422"],
}

CONFIG = schemathesis.Config.from_dict({
    "phases": {phase: {"enabled": EXAMPLES > 0} for phase in ("examples", "fuzzing")},
    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
    # Unknown query parameters are ignored, as HTTP APIs commonly do.
    "generation": {"allow-extra-parameters": False},
    "operations": [
        {"include-name": name, "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + extra}}}
        for name, extra in SEMANTIC_REJECTIONS.items()
    ],
})


class _Forward:
    """The ASGI app schemathesis calls: it forwards to the app of the running module, whose
    database exists only once the module's fixture has made it. Schemathesis starts and
    stops the app's lifespan around each operation's test."""

    app: FastAPI | None = None

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


FUZZED = _Forward()
ANSWERED: Counter[int] = Counter()  # responses by status, for the figures
# The operations are fuzzed in groups, by tag, each one test that builds its operations'
# hypothesis tests when it runs: built at collection (`schema.parametrize()`), every
# pytest-xdist worker made every operation's coverage cases first (~20 s each). The groups
# spread over the workers. (schemathesis' own lazy loader needs pytest < 9.)
TAGS = ("applications", "audit", "catalog", "claude.md", "configurations", "delivery", "health", "marketplaces",
        "products", "teams", "tokens", "users")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The service's OpenAPI document, which depends on no database."""
    return create_app(Settings(_env_file=None)).openapi()


class _Tokens:
    """Authenticate with a token that may call the operation: the /me routes need a user's."""

    def get(self, case, context) -> str:
        return USER_SECRET if case.path.startswith(f"{API}/me") else ADMIN_SECRET

    def set(self, case, secret: str, context) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def fuzzed_schema(target: Target) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)
    loaded.app = FUZZED
    loaded.auth(refresh_interval=None)(_Tokens)
    return loaded


@dataclass
class Target:
    """The seeded resources that generated path values are pointed at."""

    services: Services
    client: TestClient  # whose event loop the asynchronous services run on
    application_id: str
    configuration_id: str
    user_id: str
    sha: str
    resolve: dict[str, str]
    team_id: str
    proposal_ids: dict[str, str]  # the document's mount ("users", "me", "teams", "catalog") → an open proposal on it
    item_id: str
    document_id: str
    work_item_id: str
    repository_id: str


@pytest.fixture(scope="module")
def target(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One database for every operation, seeded through a second app over it, which also
    makes the resources that single requests delete."""
    database = cluster.create_database()
    github = serve(StandIn())  # generated tokens are refused by it: GitHub's 401 is our 403
    config = Settings(
        _env_file=None,
        database_url=cluster.url(database),
        data_dir=tmp_path_factory.mktemp("fuzz"),
        pool_min_size=1,
        access_log=False,
        github_api_url=f"http://127.0.0.1:{github.server_address[1]}",
    )
    with TestClient(create_app(config)) as client:
        services: Services = client.app.state.services
        admin = bearer(_token(services, ADMIN_SECRET, role="admin"))
        application = create_application(client, admin, "fuzzed")
        configuration = create_configuration(client, admin, application["id"], "main", {"port": 1})
        create_configuration(client, admin, create_application(client, admin, "resolved")["id"], "main", {"port": 1})
        user = create_user(client, admin, "ada")
        _token(services, USER_SECRET, role="user", user_id=user["id"])
        saved = save(client, f"{API}/users/{user['id']}/claude-md", admin, "# one\n")
        team = services.teams.create(Principal.operator(), name="fuzzed", owner_id=user["id"])
        item = _catalog_item(services, user["id"], "fuzzed_tool")
        document = _product_document(services, application["id"])
        proposals = {
            mount: documents.propose(Principal.operator(), owner, content=content, message="fuzz").id
            for mount, documents, owner, content in (
                ("users", services.claude_md, user["id"], "# two\n"),
                ("me", services.claude_md, user["id"], "# two\n"),
                ("teams", services.team_claude_md, team.id, "# two\n"),
                ("catalog", services.catalog.documents["tool"], item, _tool("fuzzed_tool", "proposed")),
                ("documents", services.application_documents.documents, document, "# proposed\n"),
            )
        }
        FUZZED.app = create_app(config)
        yield Target(
            services=services,
            client=client,
            application_id=application["id"],
            configuration_id=configuration["id"],
            user_id=user["id"],
            sha=saved["commit_sha"],
            resolve={"application_name": "resolved", "configuration_name": "main"},
            team_id=team.id,
            proposal_ids=proposals,
            item_id=item,
            document_id=document,
            work_item_id=services.work_items.create(
                Principal.operator(), application["id"], {"title": "fuzzed", "type": "fix"}
            ).id,
            repository_id=_repository(services, application["id"]),
        )
    FUZZED.app = None
    github.shutdown()
    github.server_close()
    cluster.drop_database(database)
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(ANSWERED.items()))
    print(f"\nfuzz: {sum(ANSWERED.values())} requests, {EXAMPLES} generated examples per operation; {statuses}")


def _token(services: Services, secret: str, **fields: Any) -> str:
    """Create a token through the service, with a secret chosen in advance."""
    with mock.patch.object(token_service, "new_secret", return_value=secret):
        return services.tokens.create(Principal.operator(), name=f"fuzz-{fields['role']}", **fields).secret


def _point_at_real_resources(case, target: Target) -> None:
    """Swap most well-formed generated ids, names and shas for real ones. A stable quarter keep
    their value (a missing resource: 404), and malformed ones stay (422)."""
    deleting = case.method.upper() == "DELETE"
    for params in (case.path_parameters or {}, case.query or {}):
        for name, value in list(params.items()):
            if not isinstance(value, str) or zlib.crc32(value.encode()) % 4 == 0:
                continue
            if name in target.resolve and re.fullmatch(NAME_PATTERN, value):
                params[name] = target.resolve[name]
            elif "claude-md" in case.path and name in ("sha", "from", "to") and re.fullmatch(SHA_PATTERN, value):
                params[name] = target.sha
            elif name == "proposal_id" and re.fullmatch(ULID_PATTERN, value):
                params[name] = target.proposal_ids[case.path.split("/")[3]]  # the mount: users, me, teams
            elif name.endswith("_id") and re.fullmatch(ULID_PATTERN, value):
                params[name] = _fresh(name, target) if deleting or name == "token_id" else _seeded(name, target)


def _tool(name: str, description: str) -> str:
    return json.dumps({"name": name, "description": description, "input_schema": {"type": "object"}})


def _catalog_item(services: Services, user_id: str, name: str | None = None) -> str:
    """A tool of the user's (by default a fresh name)."""
    name = name or f"tool_{new_id().lower()}"
    return services.catalog.create(
        Principal.operator(), type="tool", name=name, owner={"user_id": user_id}, description="d", tags=[],
        content=_tool(name, "d"),
    ).id


def _product_document(services: Services, application_id: str) -> str:
    return services.application_documents.create(
        Principal.operator(), application_id, fields={"title": "fuzzed", "type": "note"}, content="# one\n",
        message=None,
    ).id


def _repository(services: Services, application_id: str) -> str:
    fields = {"name": "fuzzed", "full_name": "acme/fuzzed"}
    return services.source_repositories.create(Principal.operator(), application_id, fields).id


def _seeded(name: str, target: Target) -> str:
    return {
        "application_id": target.application_id,
        "configuration_id": target.configuration_id,
        "user_id": target.user_id,
        "team_id": target.team_id,
        "item_id": target.item_id,
        "document_id": target.document_id,
        "work_item_id": target.work_item_id,
        "repository_id": target.repository_id,
    }[name]


def _fresh(name: str, target: Target) -> str:
    """A resource made for this one request, which may delete (or revoke) it."""
    services, operator, tag = target.services, Principal.operator(), new_id().lower()
    if name == "application_id":
        return services.applications.create(operator, name=f"doomed-{tag}").id
    if name == "configuration_id":
        return on_app_loop(target.client, lambda: services.configurations.create(
            operator, target.application_id, name=f"doomed-{tag}", config={}
        )).id
    if name == "user_id":
        return services.users.create(operator, email=f"{tag}@example.com", username=f"doomed-{tag}").id
    if name == "team_id":
        return services.teams.create(operator, name=f"doomed-{tag}", owner_id=target.user_id).id
    if name == "token_id":
        return services.tokens.create(operator, name=f"doomed-{tag}", role="service").token.id
    if name == "item_id":
        return _catalog_item(services, target.user_id)
    if name == "document_id":
        return _product_document(services, target.application_id)
    if name == "work_item_id":
        return services.work_items.create(operator, target.application_id, {"title": tag, "type": "fix"}).id
    if name == "repository_id":
        return _repository(services, target.application_id)
    raise AssertionError(f"no fresh resource for the path parameter {name}")


FUZZ_SETTINGS = hypothesis_settings(
    max_examples=max(EXAMPLES, 1),  # hypothesis' minimum; unused while the fuzzing phase is off
    deadline=None,
    derandomize=EXAMPLES == 0,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _conforms_to_the_openapi_document(case, target: Target) -> None:
    _point_at_real_resources(case, target)
    timeout = STREAM_SECONDS if case.path.endswith("/events") else None
    ANSWERED[case.call_and_validate(timeout=timeout).status_code] += 1


@pytest.mark.parametrize("tag", TAGS)
def test_api_conforms_to_its_openapi_document(tag: str, fuzzed_schema, target: Target, subtests) -> None:
    """Each operation of the group, one subtest each: its coverage cases and generated examples."""
    load_all_checks()
    # `exclude`: an `include` filter would be or-ed with the ones the configuration's per-operation rules add
    group = fuzzed_schema.exclude(func=lambda context: tag not in (context.operation.tags or ()))
    operations = get_all_tests(schema=group, test_func=_conforms_to_the_openapi_document, settings=FUZZ_SETTINGS,
                               given_kwargs=None)
    fuzzed = 0
    for built in operations:
        operation, test = built.ok()  # a malformed definition raises its InvalidSchema here
        run_subtest(operation, {"target": target}, test, subtests)
        fuzzed += 1
    assert fuzzed > 0


def test_every_operation_is_fuzzed_once():
    """Each operation has one tag, of a fuzz group (and the document lists no tag twice)."""
    tags = {
        f"{method.upper()} {path}": operation.get("tags", [])
        for path, operations in openapi_document()["paths"].items()
        for method, operation in operations.items()
    }
    assert {name: found for name, found in tags.items() if len(found) != 1 or found[0] not in TAGS} == {}


PUBLIC_PATHS = {"/health", "/ready", "/metrics"}


def test_openapi_documents_every_error_an_operation_can_answer():
    """So that conformance means something: the statuses every operation of its kind can
    answer are documented, and every error only as problem+json."""
    gaps = []
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            needed = set() if path in PUBLIC_PATHS else {"401", "403", "422", "503"}
            body = operation.get("requestBody", {}).get("content", {})
            if body:
                needed |= {"400", "413", "422"} | ({"415"} if "application/json" in body else set())
            if any(parameter["in"] == "path" for parameter in operation.get("parameters", [])):
                needed |= {"404", "422"}
            errors = {status: r for status, r in operation["responses"].items() if status[0] in "45"}
            not_problems = [s for s, r in errors.items() if set(r.get("content", {})) != {"application/problem+json"}]
            if needed - documented or not_problems:
                gaps.append((method.upper(), path, sorted(needed - documented), not_problems))
    assert gaps == []
