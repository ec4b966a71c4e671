"""A property-based security suite (issue 22, item 8): random sequences of operations by random
callers, with the security promises checked after every step.

Operations: create a configuration, PUT, merge PATCH, metadata PATCH (with `secret_paths` and
`schema`), rollback, diff, revisions, GET, resolve, long-poll, SSE, token create and revoke, team
membership changes. Callers: an admin; service tokens scoped or not, with or without
`reveal_secrets`, read-only; a team's owner, admin and member; an outsider; tokens minted on the way.

After each step:
- no response (status, headers, body, stream) to a caller without the reveal right, and no log
  line at all, holds a secret value the suite ever sent (a distinctive `S3CR3T…` string: the value
  at a secret path, the member names of a secret object, the items of a secret array);
- no row of any table holds one in clear (every user table, as text);
- a local listener, which schemas `$ref` at random, has had no connection;
- every answer agrees with `svc.services.policy`: denied where its rules deny (the same 403 or
  404), never 403/404 where they allow; a revoked token is 401; nothing is 5xx.

One database serves every example; each example makes its own team, users, applications and
tokens, so every check is about what the suite stored. A secret stays protected until a caller
holding the reveal right declassifies it (drops its path, or rolls back to before it); a caller
without that right making one readable fails the run.

`SVC_LONG_TESTS=1` runs more and longer sequences.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg2
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from hypothesis import HealthCheck, Phase, event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from svc.api.app import create_app
from svc.config import Settings
from svc.crypto import new_key_entry
from svc.errors import Forbidden, NotFound, ServiceError, Unprocessable
from svc.services import policy
from svc.services.auth import Principal
from svc.services.policy import Action, ApplicationResource, MembershipChange, TeamResource
from svc.repositories.configurations import RevisionRepository
from svc.services.secret_values import MASK, decrypt_at, mask_at, parse_pointer, resolve, uncovered
from tests.conftest import bearer, on_app_loop
from tests.test_schema_engine import Listener, listener  # noqa: F401 (fixture)

API = "/api/v1"
OPERATOR = Principal.operator()
MERGE = {"Content-Type": "application/merge-patch+json"}
LONG = os.environ.get("SVC_LONG_TESTS") == "1"

# Every text the suite writes into a configuration: secrets, and plain values that may become secret.
TRACKED = re.compile(r"(?:S3CR3T[A-Z]*|PLAIN|MEMBER)-[0-9a-f]{12,}")
_serial = itertools.count()


def _distinct(prefix: str) -> str:
    return f"{prefix}-{next(_serial):04x}{os.urandom(4).hex()}"


# --- the configuration every write sends: secrets wherever its secret paths say ------------------

# A configuration's shape; "$key" stands for a member name chosen per write.
TEMPLATE: dict[str, Any] = {
    "plain": "text",
    "port": 8080,
    "db": {"host": "db.local", "password": "text"},
    "token": "text",
    "keys": ["text", "text"],
    "nested": {"$key": "text", "inner": ["text", "text"]},
}
CANDIDATE_PATHS = ("/db/password", "/db", "/token", "/keys", "/keys/1", "/nested", "/nested/inner")


def _outermost(paths: set[str]) -> list[str]:
    """The paths without those inside another (a secret object is secret as a whole)."""
    return sorted(p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths))


def _covered(pointer: str, paths: list[str]) -> bool:
    return any(pointer == p or pointer.startswith(p + "/") for p in paths)


def make_config(paths: list[str], sent: set[str], masked: list[str] = ()) -> dict[str, Any]:
    """TEMPLATE with a fresh secret (noted in `sent`) at and below each secret path, plain text
    elsewhere; MASK at each pointer of `masked` (where it keeps, or where it must be refused)."""

    def fill(node: Any, pointer: str) -> Any:
        if pointer in masked:
            return MASK
        secret = _covered(pointer, paths)
        if isinstance(node, dict):
            filled = {}
            for key, child in node.items():
                if key == "$key":
                    key = _distinct("S3CR3TK" if secret else "MEMBER")
                    if secret:
                        sent.add(key)
                filled[key] = fill(child, f"{pointer}/{key}")
            return filled
        if isinstance(node, list):
            return [fill(child, f"{pointer}/{index}") for index, child in enumerate(node)]
        if isinstance(node, str):
            if secret:
                value = _distinct("S3CR3T")
                sent.add(value)
                return value
            return _distinct("PLAIN")
        return node

    return fill(TEMPLATE, "")


def schemas(port: int) -> list[Any]:
    """Schemas a write may send: harmless, failing on a secret (messages must show none of it),
    oracles over secrets, and references the closed engine must refuse without fetching."""
    remote = f"http://127.0.0.1:{port}"
    return [
        None,
        {"type": "object"},
        {"type": "object", "properties": {"token": {"type": "integer"}}},
        {"type": "object", "properties": {"token": {"pattern": "^S3CR3T-0"}}},
        {"type": "object", "properties": {"token": {"const": "guess"}}},
        {"type": "object", "properties": {"db": {"type": "string"}}},
        {"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "integer"}}}},
        {"type": "object", "properties": {"nested": {"type": "object", "additionalProperties": False,
                                                     "properties": {"inner": {}}}}},
        {"type": "object", "properties": {"plain": {"type": "string", "pattern": "^(a+)+$"}}},
        {"$defs": {"p": {"type": "integer"}}, "properties": {"port": {"$ref": "#/$defs/p"}}},
        {"$ref": f"{remote}/schema.json"},
        {"type": "object", "properties": {"port": {"$ref": f"{remote}/port.json"}}},
        {"type": "object", "properties": {"db": {"$ref": "file:///etc/passwd"}}},
    ]


# --- the world of one example ------------------------------------------------------------------


@dataclass
class Caller:
    name: str
    headers: dict[str, str]
    principal: Principal
    live: bool = True


@dataclass
class App:
    id: str
    name: str
    team_id: str | None


@dataclass
class Config:
    id: str
    name: str
    app: App


@dataclass
class Shared:
    """What every example of one run shares: the app, the database, the listener, the log."""

    client: TestClient
    database_url: str
    listener: Listener
    caplog: pytest.LogCaptureFixture
    schemas: list[Any]
    tables: list[str] = field(default_factory=list)
    logs_seen: int = 0


STATUS = {Forbidden: 403, NotFound: 404, Unprocessable: 422}


def _status_of(denial: ServiceError | None) -> int | None:
    return None if denial is None else STATUS[type(denial)]


class SecurityMachine(RuleBasedStateMachine):
    shared: Shared  # set by the test before the run

    def __init__(self) -> None:
        super().__init__()
        self.client = self.shared.client
        self.services = self.client.app.state.services
        self.callers: dict[str, Caller] = {}
        self.roles: dict[str, str | None] = {}  # user id → role in the team
        self.users: dict[str, str] = {}  # caller name → user id
        self.apps: dict[str, App] = {}
        self.configs: list[Config] = []
        self.minted = itertools.count()
        # Every check looks for this example's secrets only: what an earlier example left behind
        # (a leak it found, while shrinking) does not fail this one.
        self.sent: set[str] = set()  # every secret sent, and every value at a path made secret
        self.declassified: set[str] = set()  # made clear by a caller holding the reveal right

    @property
    def protected(self) -> set[str]:
        return self.sent - self.declassified

    # --- setup --------------------------------------------------------------------------

    @initialize()
    def world(self) -> None:
        services, tag = self.services, _distinct("x")
        for name in ("owner", "team_admin", "member", "outsider"):
            user = services.users.create(OPERATOR, email=f"{name}-{tag}@example.com", username=f"{name}-{tag}")
            self.users[name] = user.id
        team = services.teams.create(OPERATOR, name=f"team-{tag}", owner_id=self.users["owner"])
        services.teams.put_member(OPERATOR, team.id, self.users["team_admin"], role="admin")
        services.teams.put_member(OPERATOR, team.id, self.users["member"], role="member")
        self.team_id = team.id
        self.roles = {self.users["owner"]: "owner", self.users["team_admin"]: "admin",
                      self.users["member"]: "member", self.users["outsider"]: None}
        for key, team_id in (("team", team.id), ("solo", None)):
            made = services.applications.create(OPERATOR, name=f"{key}-{tag}", team_id=team_id)
            self.apps[key] = App(made.id, made.name, team_id)
        team_app, solo_app = self.apps["team"].id, self.apps["solo"].id
        tokens = {
            "admin": {"role": "admin"},
            "service": {"role": "service"},
            "service_reveal": {"role": "service", "reveal_secrets": True},
            "scoped_team": {"role": "service", "application_id": team_app},
            "scoped_team_reveal": {"role": "service", "application_id": team_app, "reveal_secrets": True},
            "scoped_solo": {"role": "service", "application_id": solo_app},
            "read_only": {"role": "service", "read_only": True},
            **{name: {"role": "user", "user_id": user_id} for name, user_id in self.users.items()},
        }
        for name, scope in tokens.items():
            created = services.tokens.create(OPERATOR, name=f"{name}-{tag}", **scope)
            self.callers[name] = Caller(name, bearer(created.secret), Principal.of_token(created.token))
        for app in self.apps.values():
            self._store(app, ["/db/password", "/nested"])

    def _store(self, app: App, paths: list[str]) -> None:
        """A configuration made by the operator (setup, not a step)."""
        name = _distinct("conf")
        made = on_app_loop(self.client, lambda: self.services.configurations.create(
            OPERATOR, app.id, name=name, config=make_config(paths, self.sent), secret_paths=paths
        ))
        self.configs.append(Config(made.id, name, app))

    # --- what the policy says ---------------------------------------------------------------

    def _team(self, caller: Caller, app: App) -> TeamResource | None:
        if app.team_id is None:
            return None
        return TeamResource(app.team_id, self.roles.get(caller.principal.user_id))

    def _denial(self, caller: Caller, action: Action, resource: Any) -> int | None:
        return _status_of(policy.RULES[action](caller.principal, resource))

    def _on_app(self, caller: Caller, action: Action, app: App) -> int | None:
        return self._denial(caller, action, ApplicationResource(app.id, self._team(caller, app)))

    def _may_reveal(self, caller: Caller, app: App) -> bool:
        """Whether the caller holds the reveal right for the application (policy's DECLASSIFY rule)."""
        return self._denial(caller, Action.DECLASSIFY, ApplicationResource(app.id)) is None

    def _reveal_denial(self, caller: Caller, reveal: bool) -> int | None:
        """`policy.reveals_secrets`: asking for ?reveal=true without being an admin (or a reveal token) is 403."""
        if reveal and not caller.principal.reveal_secrets:
            return self._denial(caller, Action.REVEAL_SECRETS, policy.SYSTEM)
        return None

    def _truth(self, config: Config):
        """The configuration as stored, in clear (the operator's read)."""
        return on_app_loop(self.client, lambda: self.services.configurations.get(OPERATOR, config.id, reveal=True))[0]

    def _revision_in_clear(self, config: Config, number: int) -> Any:
        """A revision's config as stored, in clear."""
        with self.services.db.transaction() as tx:
            stored = RevisionRepository(tx).get(config.id, number)
        return decrypt_at(stored.config, stored.secret_paths, self.services.configurations.keyring, config.id)

    def _dropped(self, caller: Caller, config: Config, clear: Any, before: list[str], after: list[str]) -> frozenset[str]:
        """The secrets in `clear` at the paths of `before` that `after` drops, when the caller holds the
        reveal right: a declassification it asked for may be refused naming them (a schema message)."""
        if not self._may_reveal(caller, config.app):
            return frozenset()
        return frozenset(
            text for path in uncovered(before, after)
            for text in TRACKED.findall(orjson.dumps(resolve(clear, parse_pointer(path))).decode())
        )

    # --- checking an answer -------------------------------------------------------------------

    def _check(self, what: str, caller: Caller, response, expected: int | None, *, sees_secrets: bool = False,
               text: str | None = None, may_show: frozenset[str] = frozenset()) -> None:
        """The answer's status against the policy, and its whole text against the secrets (but for
        `may_show`: what a refused declassification by a caller holding the reveal right may name)."""
        status = response.status_code
        event(f"{what.split(' ')[0]}: {'revoked ' if not caller.live else ''}{status}")
        assert status < 500, f"{what} as {caller.name}: {status} {response.text[:500]}"
        if not caller.live:
            assert status == 401, f"{what} as {caller.name} (revoked): {status}"
        elif expected is not None:
            assert status == expected, f"{what} as {caller.name}: {status}, the policy says {expected}: {response.text[:300]}"
        else:
            assert status not in (401, 403, 404), f"{what} as {caller.name}: {status}, the policy allows it: {response.text[:300]}"
        if not sees_secrets:
            seen = "\n".join([str(status), *(f"{k}: {v}" for k, v in response.headers.items()),
                              response.text if text is None else text])
            leaked = set(TRACKED.findall(seen)) & self.protected - may_show
            assert not leaked, f"{what} as {caller.name} was shown secrets it may not see: {leaked}"

    def _after_write(self, caller: Caller, config: Config, response, before: list[str]) -> None:
        """After a write (before its answer is checked, which shows what it declassified): the values
        at paths it made secret are secrets from now on, in every earlier revision too; a secret made
        readable is declassified when the caller holds the reveal right, else a failure."""
        if not 200 <= response.status_code < 300:
            return
        truth = self._truth(config)
        newly_secret = uncovered(truth.secret_paths, before)
        for number in range(1, truth.revision + 1) if newly_secret else ():
            clear = self._revision_in_clear(config, number)
            # default: a path that this earlier revision lacks (resolve's "missing" marker) holds nothing
            self.sent |= {text for path in newly_secret for text in TRACKED.findall(
                orjson.dumps(resolve(clear, parse_pointer(path)), default=lambda missing: None).decode())}
        readable = set(TRACKED.findall(orjson.dumps(mask_at(truth.config, truth.secret_paths)).decode()))
        if self._may_reveal(caller, config.app):
            self.declassified |= readable
        else:
            made_clear = readable & self.protected
            assert not made_clear, f"{caller.name}, without the reveal right, made secrets readable: {made_clear}"

    # --- strategies ------------------------------------------------------------------------------

    def _draw_caller(self, data) -> Caller:
        return self.callers[data.draw(st.sampled_from(sorted(self.callers)), label="caller")]

    def _draw_config(self, data) -> Config:
        return data.draw(st.sampled_from(self.configs), label="configuration")

    def _draw_paths(self, data) -> list[str]:
        return _outermost(data.draw(st.sets(st.sampled_from(CANDIDATE_PATHS), max_size=3), label="secret_paths"))

    def _draw_schema(self, data) -> Any:
        return data.draw(st.sampled_from(self.shared.schemas), label="schema")

    # --- rules: a few, each choosing among kindred operations (in each example hypothesis turns
    # some rules off: with few rules, every example still writes, reads and delivers) -------------

    @rule(data=st.data())
    def write(self, data) -> None:
        operation = data.draw(st.sampled_from(["create", "merge", "rollback"]), label="write")
        {"create": self._create, "merge": self._merge, "rollback": self._rollback}[operation](data)

    @rule(data=st.data())
    def change_secret_paths_or_schema(self, data) -> None:
        """The writes that may declassify or probe: a rule of their own, so that they come up often."""
        operation = data.draw(st.sampled_from(["PUT", "metadata"]), label="write")
        {"PUT": self._put, "metadata": self._metadata}[operation](data)

    @rule(data=st.data())
    def deliver(self, data) -> None:
        operation = data.draw(st.sampled_from(["resolve", "long-poll", "SSE"]), label="delivery")
        {"resolve": self._resolve, "long-poll": self._long_poll, "SSE": self._stream}[operation](data)

    @rule(data=st.data())
    def manage_tokens(self, data) -> None:
        operation = data.draw(st.sampled_from(["create", "revoke"]), label="token")
        {"create": self._create_token, "revoke": self._revoke_token}[operation](data)

    # --- configurations ----------------------------------------------------------------------

    def _create(self, data) -> None:
        caller = self._draw_caller(data)
        app = data.draw(st.sampled_from(sorted(self.apps.values(), key=lambda a: a.id)), label="application")
        paths = self._draw_paths(data)
        body: dict[str, Any] = {"name": _distinct("conf"), "config": make_config(paths, self.sent),
                                "secret_paths": paths}
        if data.draw(st.booleans(), label="with schema"):
            body["schema"] = self._draw_schema(data)
        response = self.client.post(f"{API}/applications/{app.id}/configurations", json=body, headers=caller.headers)
        if response.status_code == 201:
            self.configs.append(Config(response.json()["id"], body["name"], app))
            self._after_write(caller, self.configs[-1], response, [])
        self._check("create", caller, response, self._on_app(caller, Action.WRITE_APPLICATION, app))

    def _write_denial(self, caller: Caller, config: Config, *, paths: list[str] | None, schema: Any = ...) -> int | None:
        """PUT and PATCH: write the application; drop a secret path → DECLASSIFY; change the schema
        over secrets → CHANGE_SECRET_SCHEMA (in the service's order)."""
        denial = self._on_app(caller, Action.WRITE_APPLICATION, config.app)
        if denial is not None:
            return denial
        current = self._truth(config)
        resource = ApplicationResource(config.app.id)
        if uncovered(current.secret_paths, current.secret_paths if paths is None else paths):
            denial = self._denial(caller, Action.DECLASSIFY, resource)
        if denial is None and current.secret_paths and schema is not ... and orjson.dumps(schema) != orjson.dumps(
            current.schema
        ):
            denial = self._denial(caller, Action.CHANGE_SECRET_SCHEMA, resource)
        return denial

    def _put(self, data) -> None:
        caller, config = self._draw_caller(data), self._draw_config(data)
        current = self._truth(config)
        send_paths = data.draw(st.integers(0, 3), label="send secret_paths") > 0
        paths = self._draw_paths(data) if send_paths else list(current.secret_paths)
        masks = data.draw(st.sampled_from(["none", "keep", "stray", "moved"]), label="masks")
        masked = {
            "none": [],
            "keep": [p for p in current.secret_paths if p in paths],
            "stray": ["/plain"],
            "moved": ["/keys/0"] if "/keys/1" in paths else [],
        }[masks]
        body: dict[str, Any] = {"config": make_config(paths, self.sent, masked)}
        if send_paths:
            body["secret_paths"] = paths
        schema = ...
        if data.draw(st.booleans(), label="send schema"):
            body["schema"] = schema = self._draw_schema(data)
        expected = self._write_denial(caller, config, paths=paths if send_paths else None, schema=schema)
        dropped = self._dropped(caller, config, current.config, current.secret_paths, paths)
        response = self.client.put(f"{API}/configurations/{config.id}", json=body, headers=caller.headers)
        self._after_write(caller, config, response, current.secret_paths)
        self._check("PUT", caller, response, expected, may_show=dropped)

    def _merge(self, data) -> None:
        caller, config = self._draw_caller(data), self._draw_config(data)
        paths = list(self._truth(config).secret_paths)
        fresh = make_config(paths, self.sent)
        member = data.draw(st.sampled_from(["token", "db", "keys", "plain", "port"]), label="member")
        patch = {member: fresh[member]}
        if data.draw(st.booleans(), label="delete one"):
            patch[data.draw(st.sampled_from(["token", "plain", "nested"]), label="deleted")] = None
        expected = self._write_denial(caller, config, paths=None)
        response = self.client.patch(f"{API}/configurations/{config.id}", content=orjson.dumps(patch),
                                     headers={**caller.headers, **MERGE})
        self._after_write(caller, config, response, paths)
        self._check("merge PATCH", caller, response, expected)

    def _metadata(self, data) -> None:
        caller, config = self._draw_caller(data), self._draw_config(data)
        body: dict[str, Any] = {"comments": _distinct("note")}
        paths = schema = ...
        if data.draw(st.integers(0, 3), label="send secret_paths") > 0:
            body["secret_paths"] = paths = self._draw_paths(data)
        if data.draw(st.booleans(), label="send schema"):
            body["schema"] = schema = self._draw_schema(data)
        expected = self._write_denial(caller, config, paths=None if paths is ... else paths, schema=schema)
        current = self._truth(config)
        dropped = self._dropped(caller, config, current.config, current.secret_paths,
                                current.secret_paths if paths is ... else paths)
        response = self.client.patch(f"{API}/configurations/{config.id}", json=body, headers=caller.headers)
        self._after_write(caller, config, response, current.secret_paths)
        self._check("metadata PATCH", caller, response, expected, may_show=dropped)

    def _rollback(self, data) -> None:
        caller, config = self._draw_caller(data), self._draw_config(data)
        current = self._truth(config)
        number = data.draw(st.integers(1, current.revision), label="revision")
        old = on_app_loop(self.client, lambda: self.services.configurations.revision(OPERATOR, config.id, number))
        expected = self._on_app(caller, Action.WRITE_APPLICATION, config.app)
        resource = ApplicationResource(config.app.id)
        if expected is None and old.secret_paths and current.schema is not None and (
            orjson.dumps(old.schema) != orjson.dumps(current.schema)
        ):
            expected = self._denial(caller, Action.CHANGE_SECRET_SCHEMA, resource)
        if expected is None and uncovered(current.secret_paths, old.secret_paths):
            expected = self._denial(caller, Action.DECLASSIFY, resource)
        dropped = self._dropped(caller, config, self._revision_in_clear(config, number), current.secret_paths,
                                old.secret_paths)
        response = self.client.post(f"{API}/configurations/{config.id}/rollback", json={"revision": number},
                                    headers=caller.headers)
        self._after_write(caller, config, response, current.secret_paths)
        self._check(f"rollback to {number}", caller, response, expected, may_show=dropped)

    # --- reads ---------------------------------------------------------------------------------

    @rule(data=st.data())
    def read(self, data) -> None:
        caller, config = self._draw_caller(data), self._draw_config(data)
        revision = self._truth(config).revision
        reveal = data.draw(st.booleans(), label="reveal")
        kind = data.draw(st.sampled_from(["get", "revisions", "revision", "diff"]), label="read")
        url = f"{API}/configurations/{config.id}"
        numbers = st.integers(1, revision)
        request = {
            "get": (url, {"reveal": "true"} if reveal else {}),
            "revisions": (f"{url}/revisions", {}),
            "revision": (f"{url}/revisions/{data.draw(numbers, label='n')}", {}),
            "diff": (f"{url}/diff", {"from": data.draw(numbers, label="from"), "to": data.draw(numbers, label="to")}),
        }[kind]
        reveals = kind == "get" and reveal
        expected = self._reveal_denial(caller, reveals) or self._on_app(caller, Action.READ_APPLICATION, config.app)
        response = self.client.get(request[0], params=request[1], headers=caller.headers)
        sees = kind == "get" and self._sees_in_clear(caller, reveals)
        self._check(kind, caller, response, expected, sees_secrets=sees)

    def _resolve_denial(self, caller: Caller, config: Config, reveal: bool) -> int | None:
        return self._reveal_denial(caller, reveal) or self._on_app(caller, Action.RESOLVE, config.app)

    def _sees_in_clear(self, caller: Caller, reveal: bool) -> bool:
        """Whether a read of the current configuration shows its secrets (`policy.reveals_secrets`)."""
        return caller.principal.reveal_secrets or (reveal and caller.principal.is_admin)

    def _resolve(self, data) -> None:
        caller, config = self._draw_caller(data), self._draw_config(data)
        reveal = data.draw(st.booleans(), label="reveal")
        response = self.client.get(f"{API}/resolve/{config.app.name}/{config.name}",
                                   params={"reveal": "true"} if reveal else {}, headers=caller.headers)
        self._check("resolve", caller, response, self._resolve_denial(caller, config, reveal),
                    sees_secrets=self._sees_in_clear(caller, reveal))

    def _long_poll(self, data) -> None:
        """A long-poll with the current ETag, answered by a change the operator makes meanwhile (a
        new secret value, which the answer must mask for a caller without the reveal right)."""
        caller, config = self._draw_caller(data), self._draw_config(data)
        reveal = data.draw(st.booleans(), label="reveal")
        url, params = f"{API}/resolve/{config.app.name}/{config.name}", {"reveal": "true"} if reveal else {}
        expected = self._resolve_denial(caller, config, reveal)
        sees = self._sees_in_clear(caller, reveal)
        first = self.client.get(url, params=params, headers=caller.headers)
        self._check("resolve before a long-poll", caller, first, expected, sees_secrets=sees)
        etag = first.headers.get("etag", '"none"') if first.status_code == 200 else '"none"'
        answers: list[Any] = []
        waiter = threading.Thread(target=lambda: answers.append(self.client.get(
            url, params={**params, "wait": 10}, headers={**caller.headers, "If-None-Match": etag})))
        waiter.start()
        if first.status_code == 200:
            self._change_meanwhile(config)
        waiter.join(30)
        assert answers, f"a long-poll as {caller.name} never answered"
        self._check("long-poll", caller, answers[0], expected, sees_secrets=sees)

    def _change_meanwhile(self, config: Config) -> None:
        """The operator's change while a long-poll waits: a new secret value where there is a secret
        path (the answer must mask it), else (or when the schema refuses it) new comments."""
        truth = self._truth(config)
        if truth.secret_paths:
            top = truth.secret_paths[0].split("/")[1]
            patch = {top: make_config(list(truth.secret_paths), self.sent)[top]}
            try:
                on_app_loop(self.client, lambda: self.services.configurations.merge(OPERATOR, config.id, patch))
                return
            except Unprocessable:
                pass
        on_app_loop(self.client, lambda: self.services.configurations.update(
            OPERATOR, config.id, {"comments": _distinct("note")}))

    def _stream(self, data) -> None:
        """The SSE stream replayed from its start, read until its first keep-alive."""
        caller = self._draw_caller(data)
        app = data.draw(st.sampled_from(sorted(self.apps.values(), key=lambda a: a.id)), label="application")
        expected = self._denial(caller, Action.RESOLVE, ApplicationResource(app.id, self._team(caller, app)))
        lines: list[str] = []
        with self.client.stream("GET", f"{API}/applications/{app.id}/events",
                                headers={**caller.headers, "Last-Event-ID": "0"}) as response:
            if response.status_code == 200:
                for line in response.iter_lines():
                    lines.append(line)
                    if line.startswith(":") or len(lines) > 500:
                        break
            else:
                response.read()
        self._check("SSE", caller, response, expected, text="\n".join(lines) if lines else None)

    # --- tokens and memberships ------------------------------------------------------------------

    def _create_token(self, data) -> None:
        caller = self._draw_caller(data)
        body: dict[str, Any] = {"name": _distinct("minted"), "role": "service",
                                "reveal_secrets": data.draw(st.booleans(), label="reveal_secrets"),
                                "read_only": data.draw(st.booleans(), label="read_only")}
        scope = data.draw(st.sampled_from([None, *sorted(self.apps)]), label="scope")
        if scope is not None:
            body["application_id"] = self.apps[scope].id
        response = self.client.post(f"{API}/tokens", json=body, headers=caller.headers)
        self._check("token create", caller, response, self._denial(caller, Action.MANAGE_TOKENS, policy.SYSTEM))
        if response.status_code == 201:
            made = response.json()
            principal = Principal(token_id=made["id"], name=made["name"], role="service",
                                  application_id=made["application_id"], read_only=made["read_only"],
                                  reveal_secrets=made["reveal_secrets"])
            name = f"minted{next(self.minted)}"
            self.callers[name] = Caller(name, bearer(made["token"]), principal)

    def _revoke_token(self, data) -> None:
        caller = self._draw_caller(data)
        target = self.callers[data.draw(st.sampled_from(sorted(set(self.callers) - {"admin"})), label="revoked")]
        response = self.client.delete(f"{API}/tokens/{target.principal.token_id}", headers=caller.headers)
        self._check("token revoke", caller, response, self._denial(caller, Action.MANAGE_TOKENS, policy.SYSTEM))
        if response.status_code == 200:
            target.live = False

    @rule(data=st.data())
    def change_membership(self, data) -> None:
        caller = self._draw_caller(data)
        user = data.draw(st.sampled_from(sorted(self.users)), label="member")
        user_id = self.users[user]
        role = data.draw(st.sampled_from([None, "owner", "admin", "member"]), label="role")
        mine = TeamResource(self.team_id, self.roles.get(caller.principal.user_id))
        current = self.roles[user_id]
        expected = self._denial(caller, Action.READ_TEAM, mine)
        if expected is None:
            roles = frozenset(r for r in (current, role) if r is not None)
            expected = self._denial(caller, Action.CHANGE_MEMBERSHIP, MembershipChange(mine, roles))
        url = f"{API}/teams/{self.team_id}/members/{user_id}"
        if role is None:
            response = self.client.delete(url, headers=caller.headers)
            if expected is None and current is None:
                expected = 404  # not a member: nothing to remove
        else:
            response = self.client.put(url, json={"role": role}, headers=caller.headers)
        self._check(f"membership {user} → {role}", caller, response, expected)
        if 200 <= response.status_code < 300:
            self.roles[user_id] = role

    # --- invariants -----------------------------------------------------------------------------------

    @invariant()
    def no_secret_in_any_log_line(self) -> None:
        records = self.shared.caplog.records
        for record in records[self.shared.logs_seen:]:
            line = logging.Formatter().format(record)
            leaked = set(TRACKED.findall(line)) & self.protected
            assert not leaked, f"a log line holds secrets {leaked}: {line[:300]}"
        self.shared.logs_seen = len(records)

    @invariant()
    def no_secret_in_clear_in_any_row(self) -> None:
        found = set(TRACKED.findall(_every_row(self.shared.database_url, self.shared.tables)))
        leaked = found & self.protected
        assert not leaked, f"rows hold secrets in clear: {leaked}"

    @invariant()
    def the_service_fetched_nothing(self) -> None:
        assert self.shared.listener.connections == 0, "the service connected to the listener a schema names"


def _every_row(database_url: str, tables: list[str]) -> str:
    """Every row of every user table as text, in one statement."""
    union = " UNION ALL ".join(f'SELECT string_agg(t::text, E\'\\n\') FROM "{name}" t' for name in tables)
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(union)
            return "\n".join(text for (text,) in cur.fetchall() if text)
    finally:
        conn.close()


def _user_tables(database_url: str) -> list[str]:
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
            return [name for (name,) in cur.fetchall()]
    finally:
        conn.close()


@pytest.fixture
def security_client(settings: Settings) -> Iterator[TestClient]:
    """The app with a secret key, its access log on (its lines are checked too) and quick keep-alives
    (a stream is read until its first one)."""
    logged = settings.model_copy(update={
        "access_log": True, "sse_keepalive_seconds": 0.05, "secret_keys": SecretStr(new_key_entry("k1")),
    })
    with TestClient(create_app(logged)) as client:
        yield client


def test_random_operations_by_random_callers_keep_every_security_promise(
    security_client: TestClient, database_url: str, listener: Listener, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    shared = Shared(security_client, database_url, listener, caplog, schemas(listener.port))
    shared.tables = _user_tables(database_url)
    SecurityMachine.shared = shared
    run_state_machine_as_test(
        SecurityMachine,
        settings=settings(
            max_examples=60 if LONG else 12,
            stateful_step_count=40 if LONG else 20,
            deadline=None,
            database=None,
            # Shrinking a long failing sequence takes minutes: the normal run reports it as found.
            phases=list(Phase) if LONG else [Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
