"""The catalog: items whose content is a validated document, releases, search, installs and
the bundle, through the API on a real PostgreSQL and git."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from tests.claude_md_helpers import API, assert_problem, git, person, sql  # noqa: F401 (fixtures)
from tests.team_helpers import crew  # noqa: F401 (fixtures)

DATA = Path(__file__).parent / "data" / "catalog"
SKILL = (DATA / "code-review" / "SKILL.md").read_text()
SERVER = (DATA / "local-weather" / "server.json").read_text()
TOOL = (DATA / "tools" / "get_weather.json").read_text()
SERVER_NAME = "io.github.user/local-weather"


def create(client, headers, owner, type="skill", name="code-review", content=SKILL, **fields):
    body = {"type": type, "name": name, "owner": owner, "description": "Reviews diffs", "content": content, **fields}
    return client.post(f"{API}/catalog", json=body, headers=headers)


def made(client, headers, owner, **kwargs) -> dict:
    response = create(client, headers, owner, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


def test_smoke(client, crew):
    team = {"team_id": crew.team["id"]}
    item = made(client, crew.admin.headers, team)
    assert item["current_version"]["version"] == 1
    print(item)
    r = client.get(f"{API}/catalog/{item['id']}/document", headers=crew.member.headers)
    assert r.status_code == 200, r.text
    assert r.json()["content"] == SKILL
    r = client.post(f"{API}/catalog/{item['id']}/releases", json={"version": "1.0.0"}, headers=crew.admin.headers)
    assert r.status_code == 201, r.text
    r = client.get(f"{API}/catalog?q=review", headers=crew.member.headers)
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [item["id"]]
    r = client.post(f"{API}/catalog/{item['id']}/install", headers=crew.member.headers)
    assert r.status_code == 200, r.text
    assert r.json()["install_count"] == 1
    r = client.get(f"{API}/me/bundle", headers=crew.member.headers)
    assert r.status_code == 200, r.text
    names = tarfile.open(fileobj=io.BytesIO(r.content)).getnames()
    assert "skills/code-review/SKILL.md" in names
