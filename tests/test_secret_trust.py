"""Secrets are a one-way door for anyone without the reveal right (issue 22, item 1): regression
tests for what an outsider found with real requests. Adding secret paths is open to every writer;
dropping or moving one, rolling back to before one, or changing the schema over secret values
needs the reveal right (an admin, or a service token created with `reveal_secrets`); no schema
message shows a secret; the mask stands only at a secret path; a value made secret is sealed in
every earlier revision."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from svc.api.app import create_app
from svc.config import Settings
from svc.crypto import new_key_entry
from svc.services.auth import Principal
from tests.claude_md_helpers import PROBLEM, sql
from tests.configuration_helpers import API, create_application, create_configuration
from tests.conftest import bearer

MASK = "<secret>"
OPERATOR = Principal.operator()
MERGE = {"Content-Type": "application/merge-patch+json"}


def token(length: int = 8) -> str:
    return secrets.token_hex(length)


@dataclass
class Trust:
    client: TestClient
    settings: Settings
    admin: dict[str, str]
    writer: dict[str, str]  # a service token limited to the application, without reveal_secrets
    revealer: dict[str, str]  # a service token limited to the application, created with reveal_secrets
    application: dict[str, Any]
    clear: dict[str, Any]  # the configuration's JSON in clear
    configuration: dict[str, Any]  # created with PATHS secret

    PATHS = ["/db/password", "/creds", "/tokens/1"]

    @property
    def services(self):
        return self.client.app.state.services

    def url(self, suffix: str = "", configuration: dict[str, Any] | None = None) -> str:
        return f"{API}/configurations/{(configuration or self.configuration)['id']}{suffix}"

    def service_token(self, **scope: Any) -> dict[str, str]:
        return bearer(self.services.tokens.create(OPERATOR, name="t", role="service", **scope).secret)

    def secret_values(self) -> list[str]:
        creds = self.clear["creds"]
        return [self.clear["db"]["password"], creds["user-name"], creds["pass-word"], self.clear["tokens"][1],
                "user-name", "pass-word"]

    def state(self, configuration: dict[str, Any] | None = None) -> tuple[Any, ...]:
        """What the database holds of the configuration: its row, revisions and audit trail."""
        configuration_id = (configuration or self.configuration)["id"]
        return (
            sql(self.settings, "SELECT revision, config::text, schema::text, secret_paths::text "
                "FROM configurations WHERE id = %s", (configuration_id,)),
            sql(self.settings, "SELECT revision, config::text, secret_paths::text FROM configuration_revisions "
                "WHERE configuration_id = %s ORDER BY revision", (configuration_id,)),
            sql(self.settings, "SELECT count(*) FROM audit_events WHERE resource_id = %s", (configuration_id,)),
        )

    def clear_copies(self, *values: str) -> list[str]:
        """The tables with a row holding any of `values` in clear."""
        found = []
        for table in ("configurations", "configuration_revisions", "configuration_events", "audit_events"):
            for value in values:
                if sql(self.settings, f"SELECT count(*) FROM {table} x WHERE x::text LIKE %s", (f"%{value}%",))[0][0]:
                    found.append(f"{table}: {value}")
        return found

    def revealed(self, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.get(self.url(configuration=configuration), params={"reveal": "true"},
                                   headers=self.admin)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def trust(settings: Settings) -> Iterator[Trust]:
    keyed = settings.model_copy(update={"secret_keys": SecretStr(new_key_entry("a"))})
    with TestClient(create_app(keyed)) as client:
        services = client.app.state.services
        admin = bearer(services.tokens.create(OPERATOR, name="admin", role="admin").secret)
        application = create_application(client, admin, "billing")
        scope = {"application_id": application["id"]}
        writer = bearer(services.tokens.create(OPERATOR, name="deployer", role="service", **scope).secret)
        revealer = bearer(services.tokens.create(
            OPERATOR, name="vault", role="service", reveal_secrets=True, **scope).secret)
        clear = {
            "db": {"host": "pg.internal", "password": "pw-" + token()},
            "creds": {"user-name": "INNER-" + token(), "pass-word": "INNER-" + token()},
            "tokens": ["public", "tok-" + token()],
            "pool": 5,
        }
        configuration = create_configuration(client, admin, application["id"], "main", config=clear,
                                              secret_paths=Trust.PATHS)
        yield Trust(client, keyed, admin, writer, revealer, application, clear, configuration)


def assert_refused(response, status: int = 403) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return response.json()


# --- declassification -----------------------------------------------------------------------


def test_a_writer_without_the_reveal_right_cannot_drop_or_move_a_secret_path(trust):
    """Found: `PATCH {"secret_paths": []}` by a scoped service token returned every secret in clear
    and left them unencrypted in both tables; moving a path did the same for the dropped one."""
    before = trust.state()
    masked = trust.configuration["config"]
    attempts = [
        ("PATCH", {"json": {"secret_paths": []}}),
        ("PATCH", {"json": {"secret_paths": ["/db/host", "/creds", "/tokens/1"]}}),  # moves /db/password
        ("PATCH", {"json": {"secret_paths": ["/db/password", "/creds/pass-word", "/tokens/1"]}}),  # narrows /creds
        ("PUT", {"json": {"config": masked | {"pool": 6}, "secret_paths": ["/db/password", "/creds"]}}),
        ("PUT", {"json": {"config": {"pool": 6}, "secret_paths": []}}),  # dropped with its values
    ]
    for method, body in attempts:
        problem = assert_refused(trust.client.request(method, trust.url(), headers=trust.writer, **body))
        assert "reveal_secrets" in problem["detail"], problem
    assert trust.state() == before  # nothing written, nothing audited
    assert trust.client.get(trust.url(), headers=trust.writer).json()["config"] == masked
    assert trust.clear_copies(*trust.secret_values()) == []


def test_team_owners_and_admins_cannot_declassify_a_team_application(trust):
    services = trust.services
    owner, team_admin = (services.users.create(OPERATOR, email=f"{n}@example.com", username=n).id
                         for n in ("owner", "teamadmin"))
    team = services.teams.create(OPERATOR, name="payments", owner_id=owner)
    services.teams.put_member(OPERATOR, team.id, team_admin, role="admin")
    application = create_application(trust.client, trust.admin, "team-app", team_id=team.id)
    configuration = create_configuration(trust.client, trust.admin, application["id"], "main",
                                         config=trust.clear, secret_paths=Trust.PATHS)
    before = trust.state(configuration)
    for user_id in (owner, team_admin):
        headers = bearer(services.tokens.create(OPERATOR, name="u", role="user", user_id=user_id).secret)
        url = trust.url(configuration=configuration)
        assert trust.client.patch(url, json={"comments": "theirs to write"}, headers=headers).status_code == 200
        before = trust.state(configuration)
        assert_refused(trust.client.patch(url, json={"secret_paths": []}, headers=headers))
        assert_refused(trust.client.patch(url, json={"secret_paths": ["/db/host", "/creds", "/tokens/1"]},
                                          headers=headers))
        assert trust.state(configuration) == before
    assert trust.clear_copies(*trust.secret_values()) == []


def test_adding_a_secret_path_is_open_to_every_writer(trust):
    added = trust.client.patch(trust.url(), json={"secret_paths": [*Trust.PATHS, "/db/host"]}, headers=trust.writer)
    assert added.status_code == 200, added.text
    assert added.json()["config"]["db"] == {"host": MASK, "password": MASK}
    # A path inside an object made secret as a whole stays secret: not a declassification.
    whole = trust.client.patch(trust.url(), json={"secret_paths": ["/db", "/creds", "/tokens/1"]},
                               headers=trust.writer)
    assert whole.status_code == 200 and whole.json()["config"]["db"] == MASK
    assert trust.clear_copies("pg.internal", *trust.secret_values()) == []


def test_the_reveal_right_declassifies_and_the_audit_names_paths_and_caller(trust):
    for headers, caller, dropped in ((trust.revealer, "vault", "/db/password"), (trust.admin, "admin", "/creds")):
        paths = trust.client.get(trust.url(), headers=headers).json()["secret_paths"]
        response = trust.client.patch(trust.url(), json={"secret_paths": [p for p in paths if p != dropped]},
                                      headers=headers)
        assert response.status_code == 200, response.text
        revision = response.json()["revision"]
        assert sql(trust.settings, "SELECT actor_name, detail->'secret_paths', (detail->>'after_revision')::int "
                   "FROM audit_events WHERE resource_id = %s AND action = 'configuration.declassify' "
                   "ORDER BY id DESC LIMIT 1", (trust.configuration["id"],)) == [(caller, [dropped], revision)]
    config = trust.client.get(trust.url(), headers=trust.writer).json()["config"]
    assert config["db"]["password"] == trust.clear["db"]["password"] and config["creds"] == trust.clear["creds"]
    assert config["tokens"] == ["public", MASK]


def test_a_reveal_token_of_another_application_cannot_declassify(trust):
    elsewhere = create_application(trust.client, trust.admin, "shipping")
    unscoped_writer = trust.service_token()
    reveal_elsewhere = trust.service_token(reveal_secrets=True, application_id=elsewhere["id"])
    assert_refused(trust.client.patch(trust.url(), json={"secret_paths": []}, headers=unscoped_writer))
    assert_refused(trust.client.patch(trust.url(), json={"secret_paths": []}, headers=reveal_elsewhere), 404)


def test_a_rollback_to_a_revision_without_todays_secret_path_is_a_declassification(trust):
    password = "late-" + token()
    created = create_configuration(trust.client, trust.admin, trust.application["id"], "late", config={"a": 1})
    url = trust.url(configuration=created)
    made_secret = trust.client.put(url, json={"config": {"a": 1, "db": {"password": password}},
                                              "secret_paths": ["/db/password"]}, headers=trust.writer)
    assert made_secret.status_code == 200, made_secret.text
    before = trust.state(created)
    assert_refused(trust.client.post(f"{url}/rollback", json={"revision": 1}, headers=trust.writer))
    assert trust.state(created) == before
    rolled = trust.client.post(f"{url}/rollback", json={"revision": 1}, headers=trust.revealer)
    assert rolled.status_code == 200 and rolled.json()["secret_paths"] == []
    assert sql(trust.settings, "SELECT actor_name, detail->'secret_paths' FROM audit_events "
               "WHERE resource_id = %s AND action = 'configuration.declassify'", (created["id"],)) == [
        ("vault", ["/db/password"])]
    # A rollback to a revision that keeps its secret paths is any writer's.
    assert trust.client.post(f"{url}/rollback", json={"revision": 2}, headers=trust.writer).status_code == 200
    assert trust.clear_copies(password) == []


# --- schemas as oracles ---------------------------------------------------------------------


def probes(guess: str) -> list[dict[str, Any]]:
    """Schemas that would tell a right guess of the password from a wrong one; the last ones, with
    `"required": ["__never__"]`, would fail either way and so write and audit nothing."""
    at_password = [{"const": guess}, {"enum": [guess]}, {"pattern": f"^{guess}$"}, {"not": {"const": guess}}]
    return [
        {"properties": {"db": {"properties": {"password": check}}}} | extra
        for check in at_password
        for extra in ({}, {"required": ["__never__"]})
    ]


def test_no_schema_is_an_oracle_for_a_writer_without_the_reveal_right(trust):
    """Found: `const`, `enum` or `pattern` on a secret path answered a right guess differently from a
    wrong one, and with `"required": ["__never__"]` the probe wrote and audited nothing."""
    before = trust.state()
    right, wrong = trust.clear["db"]["password"], "pw-" + token()
    for schema_of in (right, wrong):
        for schema in probes(schema_of):
            answers = [
                trust.client.patch(trust.url(), json={"schema": schema}, headers=trust.writer),
                trust.client.put(trust.url(), json={"config": trust.configuration["config"], "schema": schema},
                                 headers=trust.writer),
            ]
            for answer in answers:
                assert_refused(answer)
                assert answer.json()["detail"] == answers[0].json()["detail"]
                assert right not in answer.text
    assert trust.state() == before
    # Who may reveal may change the schema; a writer may not even remove it, but may write under it.
    schema = {"properties": {"pool": {"type": "integer"}}}
    assert trust.client.patch(trust.url(), json={"schema": schema}, headers=trust.revealer).status_code == 200
    assert_refused(trust.client.patch(trust.url(), json={"schema": None}, headers=trust.writer))
    put = trust.client.put(trust.url(), json={"config": trust.configuration["config"] | {"pool": 7}},
                           headers=trust.writer)
    assert put.status_code == 200, put.text


def test_a_rollback_never_checks_old_secrets_against_a_schema_they_were_not_stored_under(trust):
    """With a schema set after the secrets were stored (by who may), a writer's rollback would
    test the old secret values against it: that needs the reveal right too."""
    assert trust.client.patch(trust.url(), json={"schema": {"type": "object"}}, headers=trust.admin).status_code == 200
    before = trust.state()
    assert_refused(trust.client.post(trust.url("/rollback"), json={"revision": 1}, headers=trust.writer))
    assert trust.state() == before
    assert trust.client.post(trust.url("/rollback"), json={"revision": 1}, headers=trust.revealer).status_code == 200


# --- schema messages ------------------------------------------------------------------------


def breaking_schema() -> dict[str, Any]:
    """A schema that every secret of the Trust configuration breaks, at, inside and above its path."""
    return {
        "properties": {
            "db": {"type": "array"},  # above /db/password: the message quotes the whole object
            "creds": {"additionalProperties": False, "properties": {"user-name": {"type": "integer"}},
                      "minProperties": 5},
            "tokens": {"items": {"type": "integer"}, "uniqueItems": True, "maxItems": 1},
        },
        "not": {"required": ["pool"]},  # at the root: the message quotes the whole document
    }


def test_schema_messages_never_show_a_secret_value_or_the_keys_of_a_secret_object(trust, caplog):
    """Found: messages quoted values inside a secret object or array (`'INNER-…' is not of type
    'integer'`) and named its keys (`('pw', 'user' were unexpected)`)."""
    caplog.set_level(logging.DEBUG)
    plain = create_configuration(trust.client, trust.admin, trust.application["id"], "plain", config={"pool": 1})
    body = {"config": trust.clear, "secret_paths": Trust.PATHS, "schema": breaking_schema()}
    answers = [
        trust.client.put(trust.url(configuration=plain), json=body, headers=trust.writer),
        trust.client.post(f"{API}/applications/{trust.application['id']}/configurations",
                          json=body | {"name": "another"}, headers=trust.writer),
    ]
    for answer in answers:
        problem = assert_refused(answer, 422)
        for value in trust.secret_values():
            assert value not in answer.text, (value, problem)
        paths = [e["path"] for e in problem["errors"]]
        assert {"/creds", "/tokens/1", "/tokens/0"} <= set(paths), problem
        assert all(not p.startswith("/creds/") for p in paths)  # a deeper path would name a member
        assert "" in paths and "/db" in paths  # the violations above secrets stay, their messages masked
    log = "\n".join(record.getMessage() for record in caplog.records)
    assert not [value for value in trust.secret_values() if value in log]


def test_a_message_above_a_secret_keeps_what_is_not_secret(trust):
    plain = create_configuration(trust.client, trust.admin, trust.application["id"], "plain", config={"pool": 1})
    config = {"db": {"host": "pg.internal", "password": "pw-" + token()}}
    answer = trust.client.put(trust.url(configuration=plain), json={
        "config": config, "secret_paths": ["/db/password"],
        "schema": {"properties": {"db": {"type": "array"}}},
    }, headers=trust.writer)
    problem = assert_refused(answer, 422)
    assert problem["errors"] == [{"path": "/db", "message": "{'host': 'pg.internal', 'password': '<secret>'} "
                                                             "is not of type 'array'"}]


# --- the mask -------------------------------------------------------------------------------


def test_the_mask_at_a_path_that_is_not_secret_is_422_naming_the_path(trust):
    """Found: a literal "<secret>" at a path that is not secret was stored as text."""
    before = trust.state()
    masked = trust.configuration["config"]
    for config in (masked | {"pool": MASK}, masked | {"db": {"host": MASK, "password": MASK}},
                   masked | {"creds": {"user-name": MASK, "pass-word": "x"}}):
        problem = assert_refused(trust.client.put(trust.url(), json={"config": config}, headers=trust.writer), 422)
        assert len(problem["errors"]) == 1 and problem["errors"][0]["path"] in problem["detail"]
        assert problem["errors"][0]["path"] in {"/pool", "/db/host", "/creds/user-name"}
    merged = trust.client.patch(trust.url(), content=orjson.dumps({"pool": MASK}), headers=trust.writer | MERGE)
    assert assert_refused(merged, 422)["errors"][0]["path"] == "/pool"
    created = trust.client.post(f"{API}/applications/{trust.application['id']}/configurations",
                                json={"name": "masked", "config": {"a": MASK}}, headers=trust.writer)
    assert assert_refused(created, 422)["errors"][0]["path"] == "/a"
    assert trust.state() == before


def test_a_mask_moved_to_another_array_index_never_seals_the_wrong_value(trust):
    """Found: `["<secret>", "public"]` for a secret at /tokens/1 sealed "public" and lost the secret."""
    before = trust.state()
    moved = trust.configuration["config"] | {"tokens": [MASK, "public"]}
    problem = assert_refused(trust.client.put(trust.url(), json={"config": moved}, headers=trust.writer), 422)
    assert [e["path"] for e in problem["errors"]] == ["/tokens/0"]
    assert trust.state() == before
    assert trust.revealed()["config"]["tokens"] == trust.clear["tokens"]
    # At its own index the mask keeps the secret.
    kept = trust.configuration["config"] | {"tokens": ["changed", MASK]}
    assert trust.client.put(trust.url(), json={"config": kept}, headers=trust.writer).status_code == 200
    assert trust.revealed()["config"]["tokens"] == ["changed", trust.clear["tokens"][1]]


# --- sealing the past -----------------------------------------------------------------------


def test_a_value_made_secret_is_sealed_in_every_earlier_revision(trust):
    first, second, key = "pw1-" + token(), "pw2-" + token(), "key-" + token()
    created = create_configuration(trust.client, trust.admin, trust.application["id"], "history",
                                   config={"db": {"password": first}, "api": {"key": key, "region": "eu"}})
    url = trust.url(configuration=created)
    put = trust.client.put(url, json={"config": {"db": {"password": second}, "api": {"key": key, "region": "eu"}}},
                           headers=trust.writer)
    assert put.status_code == 200
    assert trust.clear_copies(first, second, key) != []  # not secret yet: clear, as written

    sealed = trust.client.patch(url, json={"secret_paths": ["/db/password", "/api/key"]}, headers=trust.writer)
    assert sealed.status_code == 200, sealed.text
    assert trust.clear_copies(first, second, key) == []  # SQL over both tables: no clear copy anywhere
    revisions = trust.client.get(f"{url}/revisions", headers=trust.writer).json()["items"]
    assert [(r["revision"], r["secret_paths"], r["config"]["db"]["password"]) for r in revisions] == [
        (3, ["/db/password", "/api/key"], MASK), (2, ["/db/password", "/api/key"], MASK),
        (1, ["/db/password", "/api/key"], MASK),
    ]
    # An object made secret as a whole takes in the secrets inside it, in every revision.
    whole = trust.client.patch(url, json={"secret_paths": ["/db/password", "/api"]}, headers=trust.writer)
    assert whole.status_code == 200, whole.text
    assert trust.clear_copies(first, second, key, '"region"') == []
    stored = sql(trust.settings, "SELECT DISTINCT secret_paths::text FROM configuration_revisions "
                 "WHERE configuration_id = %s", (created["id"],))
    assert stored == [('["/db/password", "/api"]',)]
    # Every earlier value still opens: a rollback brings it back, sealed, for who may reveal.
    assert trust.client.post(f"{url}/rollback", json={"revision": 1}, headers=trust.writer).status_code == 200
    assert trust.revealed(created)["config"] == {"db": {"password": first}, "api": {"key": key, "region": "eu"}}
    assert trust.client.get(f"{url}/diff", params={"from": 1, "to": 2}, headers=trust.writer).json() == [
        {"op": "replace", "path": "/db/password", "value": MASK}]
