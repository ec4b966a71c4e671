"""Helpers shared by the user, claude.md, content store and verify tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2
import pytest
from fastapi.testclient import TestClient

from svc import cli
from svc.config import Settings, get_settings
from tests.conftest import MakeToken, bearer

API = "/api/v1"
PROBLEM = "application/problem+json"


def assert_problem(response, status: int, detail_part: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert detail_part in body["detail"], body["detail"]
    return body


def create_user(client: TestClient, admin: dict[str, str], username: str = "ada", **fields: str) -> dict:
    body = {"email": f"{username}@example.com", "username": username, **fields}
    response = client.post(f"{API}/users", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


@dataclass
class Person:
    """A user with a token of its own."""

    id: str
    username: str
    headers: dict[str, str]

    @property
    def document(self) -> str:
        return f"{API}/users/{self.id}/claude-md"


@pytest.fixture
def person(client: TestClient, admin: dict[str, str], make_token: MakeToken) -> Callable[..., Person]:
    def make(username: str = "ada", **token_options: object) -> Person:
        user = create_user(client, admin, username)
        secret = make_token("user", name=f"{username}-laptop", user_id=user["id"], **token_options)
        return Person(user["id"], username, bearer(secret))

    return make


@pytest.fixture
def ada(person: Callable[..., Person]) -> Person:
    return person("ada")


def save(client: TestClient, url: str, headers: dict[str, str], content: str, **fields: str) -> dict:
    response = client.put(url, json={"content": content, **fields}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def git(settings: Settings, *args: str) -> str:
    """Run git on the service's repository, as an operator would."""
    result = subprocess.run(
        ["git", "--git-dir", str(settings.git_path), *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def sql(settings: Settings, statement: str, params: tuple = ()) -> list[tuple]:
    return rows(settings.database_url.get_secret_value(), statement, params)


def rows(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on its own connection and commit; its rows, if it returns any."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def document_id(settings: Settings, person: Person) -> str:
    return sql(settings, "SELECT id FROM documents WHERE owner_user_id = %s", (person.id,))[0][0]


def ref_path(settings: Settings, person: Person):
    """The loose ref file of a person's document (refs are never packed in this repository)."""
    return settings.git_path / "refs" / "docs" / document_id(settings, person)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def svc_cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> Callable[..., CliResult]:
    """Run a `svc` command in-process against this test's database and data directory."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url.get_secret_value())
    monkeypatch.setenv("SVC_DATA_DIR", str(settings.data_dir))

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        get_settings.cache_clear()
        try:
            code = cli.main(list(argv))
        finally:
            get_settings.cache_clear()
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
