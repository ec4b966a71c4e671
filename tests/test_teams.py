"""Teams and members through the API: who may change what, the last owner, deletion."""

from __future__ import annotations

import threading

import pytest

from tests.claude_md_helpers import API, assert_problem, git, person, save, svc_cli  # noqa: F401 (fixtures)
from tests.team_helpers import add_member, crew  # noqa: F401 (fixtures)


def test_a_user_creates_a_team_and_becomes_its_owner(client, person):
    ada = person("ada")
    response = client.post(f"{API}/teams", json={"name": "core", "description": "the core team"}, headers=ada.headers)
    assert response.status_code == 201, response.text
    team = response.json()
    assert set(team) == {"id", "name", "display_name", "description", "created_at", "updated_at"}
    assert response.headers["Location"].endswith(f"/teams/{team['id']}")
    [member] = client.get(f"{API}/teams/{team['id']}/members", headers=ada.headers).json()["items"]
    assert (member["user_id"], member["username"], member["role"], member["added_by"]) == (ada.id, "ada", "owner", "ada")
    assert [t["id"] for t in client.get(f"{API}/me/teams", headers=ada.headers).json()["items"]] == [team["id"]]
    assert_problem(client.post(f"{API}/teams", json={"name": "core"}, headers=ada.headers), 409, "already taken")


def test_lists_show_a_user_only_its_teams_and_admins_all(client, admin, crew):
    other = client.post(f"{API}/teams", json={"name": "other"}, headers=crew.outsider.headers).json()
    assert [t["id"] for t in client.get(f"{API}/teams", headers=crew.member.headers).json()["items"]] == [
        crew.team["id"]
    ]
    everything = {t["id"] for t in client.get(f"{API}/teams", headers=admin).json()["items"]}
    assert everything == {crew.team["id"], other["id"]}
    assert_problem(client.get(crew.url, headers=crew.outsider.headers), 404, "not found")


def test_roles_decide_who_changes_members(client, crew, person):
    newcomer = person("neo")
    members = f"{crew.url}/members"
    # A member may not add anyone; an admin adds members and admins but not owners.
    assert_problem(client.put(f"{members}/{newcomer.id}", json={"role": "member"}, headers=crew.member.headers), 403)
    assert_problem(client.put(f"{members}/{newcomer.id}", json={"role": "owner"}, headers=crew.admin.headers), 403)
    assert add_member(client, crew.admin.headers, crew.team["id"], newcomer.id, "admin")["role"] == "admin"
    assert_problem(client.delete(f"{members}/{crew.owner.id}", headers=crew.admin.headers), 403, "owner")
    # The owner makes the newcomer an owner; only owners rename or delete the team.
    assert add_member(client, crew.owner.headers, crew.team["id"], newcomer.id, "owner")["added_by"] == "olga"
    assert_problem(client.patch(crew.url, json={"name": "x"}, headers=crew.admin.headers), 403)
    renamed = client.patch(crew.url, json={"name": "platform-2", "description": "d"}, headers=newcomer.headers)
    assert renamed.status_code == 200 and renamed.json()["name"] == "platform-2"
    # Outsiders find nothing; bad input changes nothing.
    assert_problem(client.put(f"{members}/{newcomer.id}", json={"role": "member"}, headers=crew.outsider.headers), 404)
    assert_problem(client.put(f"{members}/{newcomer.id}", json={"role": "boss"}, headers=crew.owner.headers), 422)
    assert_problem(
        client.put(f"{members}/01JCZ5J7Q9T1V0G6W8E2X4Y6ZA", json={"role": "member"}, headers=crew.owner.headers),
        404, "user",
    )
    roles = {m["username"]: m["role"] for m in client.get(members, headers=crew.member.headers).json()["items"]}
    assert roles == {"olga": "owner", "adam": "admin", "mia": "member", "neo": "owner"}


def test_the_last_owner_cannot_be_removed_or_demoted(client, crew):
    members = f"{crew.url}/members"
    assert_problem(client.delete(f"{members}/{crew.owner.id}", headers=crew.owner.headers), 409, "last owner")
    assert_problem(
        client.put(f"{members}/{crew.owner.id}", json={"role": "admin"}, headers=crew.owner.headers), 409, "last owner"
    )
    add_member(client, crew.owner.headers, crew.team["id"], crew.admin.id, "owner")
    assert client.delete(f"{members}/{crew.owner.id}", headers=crew.owner.headers).status_code == 204
    assert_problem(client.get(crew.url, headers=crew.owner.headers), 404)


def test_the_last_owner_of_a_team_cannot_be_deleted(client, admin, crew):
    assert_problem(client.delete(f"{API}/users/{crew.owner.id}", headers=admin), 409, "platform")
    add_member(client, crew.owner.headers, crew.team["id"], crew.admin.id, "owner")
    assert client.delete(f"{API}/users/{crew.owner.id}", headers=admin).status_code == 204
    owners = [m["username"] for m in client.get(f"{crew.url}/members", headers=crew.admin.headers).json()["items"]
              if m["role"] == "owner"]
    assert owners == ["adam"]


@pytest.mark.parametrize("target", ["each other", "themselves"])
def test_two_owners_demoting_at_once_never_leave_the_team_without_an_owner(client, crew, target):
    """Each membership change locks the team row, then counts owners: the second change sees
    the first (demoted, it may no longer change owners: 403; or it is the last owner: 409)."""
    people = {crew.owner.id: crew.owner, crew.admin.id: crew.admin}
    members = f"{crew.url}/members"

    def owners() -> list[str]:
        listed = client.get(members, headers=crew.member.headers).json()["items"]
        return [m["user_id"] for m in listed if m["role"] == "owner"]

    for _ in range(4):
        add_member(client, crew.owner.headers, crew.team["id"], crew.admin.id, "owner")
        barrier = threading.Barrier(2)
        statuses = []

        def demote(by, whom, barrier=barrier, statuses=statuses):
            barrier.wait()
            response = client.put(f"{members}/{whom.id}", json={"role": "member"}, headers=by.headers)
            statuses.append(response.status_code)

        pairs = (
            [(crew.owner, crew.admin), (crew.admin, crew.owner)]
            if target == "each other"
            else [(crew.owner, crew.owner), (crew.admin, crew.admin)]
        )
        threads = [threading.Thread(target=demote, args=pair) for pair in pairs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == ([200, 403] if target == "each other" else [200, 409])
        [remaining] = owners()
        if remaining != crew.owner.id:  # put the original owner back for the next round
            add_member(client, people[remaining].headers, crew.team["id"], crew.owner.id, "owner")


def test_deleting_a_team_keeps_its_document_history_under_refs_deleted(client, admin, settings, crew):
    document = f"{crew.url}/claude-md"
    first = save(client, document, crew.owner.headers, "# team\n")
    second = save(client, document, crew.admin.headers, "# team, v2\n")
    assert_problem(client.delete(crew.url, headers=crew.admin.headers), 403)
    assert client.delete(crew.url, headers=crew.owner.headers).status_code == 204
    assert_problem(client.get(document, headers=admin), 404, "team")
    [event] = client.get(f"{API}/audit", params={"resource_id": crew.team["id"]}, headers=admin).json()["items"][:1]
    assert event["action"] == "team.delete"
    [retired] = event["detail"]["documents"]
    assert retired["history_ref"] == f"refs/deleted/{retired['document_id']}"
    assert git(settings, "log", "--format=%H", retired["history_ref"]).split() == [
        second["commit_sha"], first["commit_sha"]
    ]
    assert f"refs/docs/{retired['document_id']}" not in git(settings, "for-each-ref")


def test_svc_team_create_prints_only_the_id(client, admin, svc_cli, person):  # noqa: F811
    ada = person("ada")
    result = svc_cli("team", "create", "--name", "ops", "--owner", "user:ada")
    assert result.code == 0, result.stderr
    team_id = result.stdout.strip()
    assert result.stdout == team_id + "\n" and len(team_id) == 26
    assert client.get(f"{API}/teams/{team_id}", headers=ada.headers).json()["name"] == "ops"
    assert svc_cli("team", "create", "--name", "ops", "--owner", "user:ada").code != 0
