"""Secrets inside configurations (SPEC "Secrets inside configurations"): encrypted at rest in every
row, masked in every read, in clear only for who may reveal, rotated without loss, and a clear 503
naming the key id when a value cannot be opened."""

from __future__ import annotations

import argparse
import logging
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from svc.api.app import create_app
from svc.api.routes.delivery import _sse
from svc.cli import cmd_secrets
from svc.config import Settings
from svc.crypto import KeyRing, new_key_entry
from svc.db import Database
from svc.services.auth import Principal
from svc.services.delivery import Position, StreamedChange
from svc.services.secret_store import rotate
from tests.claude_md_helpers import sql
from tests.configuration_helpers import API, create_application, create_configuration
from tests.conftest import bearer

MASK = "<secret>"
KEY_A = new_key_entry("a")
KEY_B = new_key_entry("b")
OPERATOR = Principal.operator()


def keyed(settings: Settings, keys: str) -> Settings:
    return settings.model_copy(update={"secret_keys": SecretStr(keys)})


@dataclass
class World:
    client: TestClient
    admin: dict[str, str]
    app: dict
    other_app: dict
    config: dict  # created with a secret at /db/password
    password: str

    def url(self, suffix: str = "") -> str:
        return f"{API}/configurations/{self.config['id']}{suffix}"

    def token(self, role: str = "service", **scope) -> dict[str, str]:
        services = self.client.app.state.services
        return bearer(services.tokens.create(OPERATOR, name=f"t-{role}", role=role, **scope).secret)


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    with TestClient(create_app(keyed(settings, KEY_A))) as client:
        services = client.app.state.services
        admin = bearer(services.tokens.create(OPERATOR, name="admin", role="admin").secret)
        app = create_application(client, admin, "billing")
        other = create_application(client, admin, "shipping")
        password = "hunter2-" + secrets.token_hex(6)
        config = create_configuration(
            client, admin, app["id"], "db",
            config={"db": {"host": "pg.internal", "password": password}, "pool": 5},
            secret_paths=["/db/password"],
        )
        yield World(client, admin, app, other, config, password)


def clear_copies(settings: Settings, text: str) -> list[str]:
    """Tables whose rows hold `text` anywhere."""
    tables = ["configurations", "configuration_revisions", "configuration_events", "audit_events"]
    found = "SELECT count(*) FROM {} x WHERE x::text LIKE %s"
    return [t for t in tables if sql(settings, found.format(t), (f"%{text}%",))[0][0]]


def pg_dump(settings: Settings) -> str:
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        binary = str(POSTGRES_BIN_PATH / "pg_dump")
    except ImportError:
        binary = shutil.which("pg_dump")
    if binary is None:
        pytest.skip("no pg_dump")
    return subprocess.run(
        [binary, settings.database_url.get_secret_value()], capture_output=True, text=True, check=True
    ).stdout


def test_secrets_are_masked_in_every_read_kept_on_write_and_never_stored_in_clear(world, settings, caplog):
    caplog.set_level(logging.DEBUG)
    client, admin, password = world.client, world.admin, world.password
    assert world.config["config"] == {"db": {"host": "pg.internal", "password": MASK}, "pool": 5}
    assert world.config["secret_paths"] == ["/db/password"]

    # A read-modify-write by a caller who cannot reveal: the mask written back keeps the value.
    read = client.get(world.url(), headers=admin).json()
    put = client.put(world.url(), json={"config": read["config"] | {"pool": 6}}, headers=admin)
    assert put.status_code == 200 and put.json()["config"]["db"]["password"] == MASK
    merged = client.patch(world.url(), content=b'{"pool": 7}', headers=admin | {
        "Content-Type": "application/merge-patch+json"})
    assert merged.status_code == 200 and merged.json()["revision"] == 3
    revealed = client.get(world.url(), params={"reveal": "true"}, headers=admin).json()
    assert revealed["config"]["db"]["password"] == password

    # A new secret value, then back: diff says which path changed, with the mask as its value.
    rotated_password = password + "-new"
    client.patch(world.url(), content=orjson.dumps({"db": {"password": rotated_password}}),
                 headers=admin | {"Content-Type": "application/merge-patch+json"})
    assert client.get(world.url("/diff"), params={"from": 3, "to": 4}, headers=admin).json() == [
        {"op": "replace", "path": "/db/password", "value": MASK}
    ]
    assert client.get(world.url("/diff"), params={"from": 2, "to": 3}, headers=admin).json() == [
        {"op": "replace", "path": "/pool", "value": 7}
    ]
    rolled = client.post(world.url("/rollback"), json={"revision": 1}, headers=admin)
    assert rolled.status_code == 200 and rolled.json()["config"]["db"]["password"] == MASK
    assert client.get(world.url(), params={"reveal": "true"}, headers=admin).json()["config"]["db"][
        "password"] == password

    listed = client.get(f"{API}/applications/{world.app['id']}/configurations", headers=admin).json()["items"]
    revisions = client.get(world.url("/revisions"), headers=admin).json()["items"]
    one = client.get(world.url("/revisions/4"), headers=admin).json()
    resolved = client.get(f"{API}/resolve/billing/db", headers=admin)
    assert {r["config"]["db"]["password"] for r in listed + revisions + [one]} == {MASK}
    assert all(r["secret_paths"] == ["/db/password"] for r in revisions)
    assert resolved.json()["db"]["password"] == MASK
    for probe in ({"db": {"password": password}}, {"db": {"password": MASK}}):
        found = client.get(f"{API}/applications/{world.app['id']}/configurations",
                           params={"contains": orjson.dumps(probe).decode()}, headers=admin)
        assert found.json()["items"] == [], probe

    # The JSON Schema checks the clear value, and its message never quotes it.
    leaked = "leak-" + secrets.token_hex(4)
    bad = client.put(world.url(), json={
        "config": {"db": {"host": "h", "pin": leaked}, "pool": 1},
        "secret_paths": ["/db/pin"],
        "schema": {"properties": {"db": {"properties": {"pin": {"type": "integer"}}}}},
    }, headers=admin)
    assert bad.status_code == 422 and leaked not in bad.text and "/db/pin" in bad.text
    missing = client.put(world.url(), json={"config": {"a": 1}, "secret_paths": ["/db/password", "/b"]},
                         headers=admin)
    assert missing.status_code == 422
    assert {e["path"] for e in missing.json()["errors"]} == {"/db/password", "/b"}
    unkept = client.put(world.url(), json={"config": {"db": {"password": MASK}}, "secret_paths": []},
                        headers=admin)
    assert unkept.status_code == 422  # the mask would be stored as text and the secret lost

    # Nowhere in clear: not in any row, the log, or a dump of the whole database.
    dump = pg_dump(settings)
    log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("svc", "uvicorn")))
    for value in (password, rotated_password, leaked):
        assert clear_copies(settings, value) == []
        assert value not in dump and value not in log
    assert "svc-secret:v1:a:" in dump  # the dump holds the sealed form


def test_who_sees_secret_values(world, settings):
    client, url, password = world.client, world.url(), world.password
    reveal_service = world.token(reveal_secrets=True)
    scoped_reveal_elsewhere = world.token(reveal_secrets=True, application_id=world.other_app["id"])
    scoped_reveal_here = world.token(reveal_secrets=True, application_id=world.app["id"])
    plain_service = world.token()
    user_id = client.app.state.services.users.create(OPERATOR, email="ada@example.com", username="ada").id
    user = world.token("user", user_id=user_id)

    def password_of(headers, **params):
        response = client.get(url, params=params, headers=headers)
        resolved = client.get(f"{API}/resolve/billing/db", params=params, headers=headers)
        assert response.status_code == resolved.status_code
        if response.status_code != 200:
            return response.status_code
        assert response.headers["ETag"] == resolved.headers["ETag"]
        assert response.json()["config"]["db"]["password"] == resolved.json()["db"]["password"]
        return response.json()["config"]["db"]["password"]

    assert password_of(world.admin) == MASK
    assert password_of(world.admin, reveal="true") == password
    assert password_of(reveal_service) == password
    assert password_of(scoped_reveal_here) == password
    assert password_of(scoped_reveal_elsewhere) == 404
    assert password_of(plain_service) == MASK
    assert password_of(plain_service, reveal="true") == 403
    # A user token finds no application outside its teams (404); resolve is not for users, and
    # ?reveal=true is refused before anything is looked up (403 both: nothing learnt either way).
    assert client.get(url, headers=user).status_code == 404
    assert client.get(f"{API}/resolve/billing/db", headers=user).status_code == 403
    assert password_of(user, reveal="true") == 403

    # Each admin reveal is audited: who, which configuration, which revision.
    reveals = sql(settings, "SELECT actor_name, resource_id, detail->>'revision' FROM audit_events "
                            "WHERE action = 'configuration.reveal'")
    assert reveals == [("admin", world.config["id"], "1")] * 2

    # A revealed body is another representation of the same revision: its own ETag (RFC 9110 §8.8.3).
    masked_tag = client.get(url, headers=plain_service).headers["ETag"]
    revealed_tag = client.get(url, headers=reveal_service).headers["ETag"]
    assert masked_tag == f'"{world.config["id"]}.1"' and revealed_tag == f'"{world.config["id"]}.1.r"'
    for path in (url, f"{API}/resolve/billing/db"):
        assert client.get(path, headers=reveal_service | {"If-None-Match": revealed_tag}).status_code == 304
        assert client.get(path, headers=reveal_service | {"If-None-Match": masked_tag}).status_code == 200
        assert client.get(path, headers=plain_service | {"If-None-Match": revealed_tag}).status_code == 200
    # Either tag names the revision a write must be based on.
    def patch_pool(pool: int, if_match: str) -> int:
        return client.patch(url, content=orjson.dumps({"pool": pool}), headers=world.admin | {
            "If-Match": if_match, "Content-Type": "application/merge-patch+json"}).status_code

    assert patch_pool(9, revealed_tag) == 200
    assert patch_pool(10, f'"{world.config["id"]}.2"') == 200
    assert patch_pool(11, revealed_tag) == 412

    # Long-poll answers a change with the caller's representation.
    for headers, expected in ((plain_service, MASK), (reveal_service, password)):
        polled = client.get(f"{API}/resolve/billing/db", params={"wait": 5},
                            headers=headers | {"If-None-Match": masked_tag})
        assert polled.status_code == 200 and polled.json()["db"]["password"] == expected

    # Only service tokens carry reveal_secrets: an admin asks per read, audited.
    for role in ("admin", "user"):
        body = {"name": "x", "role": role, "reveal_secrets": True} | ({"user_id": user_id} if role == "user" else {})
        assert client.post(f"{API}/tokens", json=body, headers=world.admin).status_code == 422


def test_each_rendering_is_cached_apart_served_alike_and_dropped_by_a_change(world, settings):
    """The read cache holds the masked and the clear body of a configuration apart (by id and by
    names): a warm read (answered before routing) equals the cold one, an admin's reveal is audited
    on every read, warm or not, and a change drops every rendering at once."""
    client, password = world.client, world.password
    reveal_service, plain_service = world.token(reveal_secrets=True), world.token()
    paths = (world.url(), f"{API}/resolve/billing/db")

    def reads(headers, **params):
        answers = [client.get(path, params=params, headers=headers) for path in paths for _ in range(2)]
        for cold, warm in (answers[:2], answers[2:]):
            assert cold.status_code == warm.status_code == 200
            assert (cold.content, cold.headers["ETag"]) == (warm.content, warm.headers["ETag"])
        by_id, by_name = answers[0], answers[2]
        assert by_id.json()["config"]["db"]["password"] == by_name.json()["db"]["password"]
        return by_id.json()["config"]["db"]["password"], by_id.headers["ETag"]

    assert reads(plain_service) == (MASK, f'"{world.config["id"]}.1"')
    assert reads(reveal_service) == (password, f'"{world.config["id"]}.1.r"')
    assert reads(world.admin, reveal="true") == (password, f'"{world.config["id"]}.1.r"')
    reveals = sql(settings, "SELECT count(*) FROM audit_events WHERE action = 'configuration.reveal'")
    assert reveals == [(4,)]  # two by id, two by names

    changed = world.config["config"] | {"db": {"host": "pg.internal", "password": "new-" + password}}
    assert client.put(world.url(), json={"config": changed}, headers=world.admin).status_code == 200
    assert reads(plain_service) == (MASK, f'"{world.config["id"]}.2"')
    assert reads(reveal_service) == ("new-" + password, f'"{world.config["id"]}.2.r"')


def test_change_events_carry_no_values(world):
    """SSE events (and the NOTIFY payloads behind them) name the change, never the JSON."""
    client, services = world.client, world.client.app.state.services
    client.patch(world.url(), content=b'{"db": {"password": "changed-value"}}',
                 headers=world.admin | {"Content-Type": "application/merge-patch+json"})
    reader = Principal(token_id=None, name="reader", role="service")

    async def replay() -> list[bytes]:
        stream = await services.delivery.open_stream(reader, world.app["id"], Position(0), keepalive=0.05)
        received = []
        async for event in stream:
            if not isinstance(event, StreamedChange):  # a keep-alive: the replay is done
                break
            received.append(_sse(event))
        return received

    events = client.portal.call(replay)
    assert [e.split(b"\n")[1] for e in events] == [b"event: created", b"event: updated"]
    assert not any(world.password.encode() in e or b"changed-value" in e for e in events)


def test_rotation_interrupted_then_rerun_leaves_only_the_new_key(world, settings):
    client, admin = world.client, world.admin
    for pool in range(2, 5):
        client.patch(world.url(), content=orjson.dumps({"pool": pool}),
                     headers=admin | {"Content-Type": "application/merge-patch+json"})
    create_configuration(client, admin, world.other_app["id"], "api",
                         config={"token": "tok-" + world.password}, secret_paths=["/token"])
    sealed_under = "SELECT count(*) FROM {} WHERE config::text LIKE %s"

    def count(table: str, key_id: str) -> int:
        return sql(settings, sealed_under.format(table), (f"%svc-secret:v1:{key_id}:%",))[0][0]

    rotated = keyed(settings, f"{KEY_B},{KEY_A}")
    with TestClient(create_app(rotated)) as both:  # a new first key: old values still open
        rolled = both.post(world.url("/rollback"), json={"revision": 1}, headers=admin)
        assert rolled.status_code == 200 and rolled.json()["revision"] == 5
        assert count("configurations", "b") == 1 and count("configuration_revisions", "a") == 5
    db = Database(settings.database_url.get_secret_value(), min_size=0, max_size=1)
    try:
        rotate(db, KeyRing.parse(f"{KEY_B},{KEY_A}"), batch_size=1, max_batches=2)  # stopped after two rows
    finally:
        db.close()
    assert count("configurations", "a") == 0 and count("configuration_revisions", "a") == 5
    assert cmd_secrets(argparse.Namespace(batch_size=1), rotated) == 0  # the rerun finishes it
    assert cmd_secrets(argparse.Namespace(batch_size=1), rotated) == 0  # and again changes nothing
    assert [count(t, "a") for t in ("configurations", "configuration_revisions")] == [0, 0]
    assert count("configuration_revisions", "b") == 6

    with TestClient(create_app(keyed(settings, KEY_B))) as only_b:  # the old key is gone
        assert only_b.get("/ready").json()["unreadable_secret_keys"] == {}
        assert only_b.get(world.url(), params={"reveal": "true"}, headers=admin).json()["config"]["db"][
            "password"] == world.password
        rolled = only_b.post(world.url("/rollback"), json={"revision": 4}, headers=admin)
        assert rolled.status_code == 200
        assert only_b.get(world.url("/diff"), params={"from": 1, "to": 6}, headers=admin).status_code == 200


def test_a_value_that_cannot_be_opened_is_a_503_naming_the_key(world, settings):
    client, admin = world.client, world.admin
    other = create_configuration(client, admin, world.app["id"], "copy",
                                 config={"db": {"password": "other"}}, secret_paths=["/db/password"])
    # A sealed value moved to another configuration fails authentication (its id is associated data).
    sql(settings, "UPDATE configurations SET config = jsonb_set(config, '{db,password}', "
                  "(SELECT config #> '{db,password}' FROM configurations WHERE id = %s)) WHERE id = %s",
        (other["id"], world.config["id"]))
    client.app.state.services.delivery.cache.clear()
    tampered = client.get(world.url(), params={"reveal": "true"}, headers=admin)
    assert tampered.status_code == 503 and "'a'" in tampered.json()["detail"]
    assert client.get(f"{API}/resolve/billing/db", params={"reveal": "true"}, headers=admin).status_code == 503
    elsewhere = world.token(reveal_secrets=True, application_id=world.other_app["id"])
    for path in (world.url(), f"{API}/resolve/billing/db"):
        assert client.get(path, headers=elsewhere).status_code == 404  # not a 503 that tells it exists
    assert client.get(world.url(), headers=admin).json()["config"]["db"]["password"] == MASK  # masking needs no key
    written = client.patch(world.url(), content=b'{"pool": 1}',
                           headers=admin | {"Content-Type": "application/merge-patch+json"})
    assert written.status_code == 503  # never a wrong value kept

    with TestClient(create_app(keyed(settings, KEY_B))) as without_a:
        missing = without_a.get(f"{API}/configurations/{other['id']}", params={"reveal": "true"}, headers=admin)
        assert missing.status_code == 503 and "'a'" in missing.json()["detail"]
        assert "retry-after" not in missing.headers  # a missing key needs an operator, not a retry
        ready = without_a.get("/ready").json()
        assert ready["checks"]["secret_keys"] is False and list(ready["unreadable_secret_keys"]) == ["a"]
