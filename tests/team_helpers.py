"""Helpers shared by the team, proposal and access-matrix tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.claude_md_helpers import API, Person


@dataclass
class Crew:
    """A team and one person in each role, plus an outsider."""

    team: dict
    owner: Person
    admin: Person
    member: Person
    outsider: Person

    @property
    def url(self) -> str:
        return f"{API}/teams/{self.team['id']}"


def add_member(client: TestClient, by: dict[str, str], team_id: str, user_id: str, role: str) -> dict:
    response = client.put(f"{API}/teams/{team_id}/members/{user_id}", json={"role": role}, headers=by)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def crew(client: TestClient, person: Callable[..., Person]) -> Crew:
    owner, admin, member, outsider = (person(name) for name in ("olga", "adam", "mia", "otto"))
    response = client.post(f"{API}/teams", json={"name": "platform", "display_name": "Platform"}, headers=owner.headers)
    assert response.status_code == 201, response.text
    team = response.json()
    add_member(client, owner.headers, team["id"], admin.id, "admin")
    add_member(client, admin.headers, team["id"], member.id, "member")
    return Crew(team, owner, admin, member, outsider)
