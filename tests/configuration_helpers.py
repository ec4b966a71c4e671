"""Helpers shared by the application and configuration tests."""

from __future__ import annotations

import select
from typing import Any

import orjson
import psycopg2
import psycopg2.extensions
from fastapi.testclient import TestClient

from svc.ids import new_id
from svc.changes import CHANNEL
from tests.conftest import MakeToken, bearer

API = "/api/v1"


def create_application(client: TestClient, headers: dict[str, str], name: str = "billing", **fields: Any) -> dict:
    response = client.post(f"{API}/applications", json={"name": name, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def create_configuration(
    client: TestClient, headers: dict[str, str], application_id: str, name: str = "main", config: Any = None, **fields
) -> dict:
    body = {"name": name, "config": {"feature": True} if config is None else config, **fields}
    response = client.post(f"{API}/applications/{application_id}/configurations", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def user_token(make_token: MakeToken, database_url: str) -> dict[str, str]:
    """Headers of a user token (with a user row when the users table exists)."""
    user_id = new_id()
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('users') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute(
                    "INSERT INTO users (id, email, username) VALUES (%s, %s, %s)",
                    (user_id, f"{user_id.lower()}@example.com", user_id.lower()),
                )
    finally:
        conn.close()
    return bearer(make_token("user", user_id=user_id))


def query(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows straight from PostgreSQL, as an admin with psql would see them."""
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


class Listener:
    """A separate connection LISTENing to the configuration change channel."""

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg2.connect(database_url)
        self.conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with self.conn.cursor() as cur:
            cur.execute(f"LISTEN {CHANNEL}")

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next notification's payload; fails when none comes within `timeout`."""
        while not self.conn.notifies:
            readable, _, _ = select.select([self.conn], [], [], timeout)
            assert readable, "no notification arrived"
            self.conn.poll()
        return orjson.loads(self.conn.notifies.pop(0).payload)

    def close(self) -> None:
        self.conn.close()
