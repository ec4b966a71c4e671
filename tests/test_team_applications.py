"""Applications that belong to a team: members read them and their configurations, owners and
admins write them; service tokens and resolve keep their phase-1 rights."""

from __future__ import annotations

from tests.claude_md_helpers import API, assert_problem, person  # noqa: F401 (fixtures)
from tests.conftest import bearer
from tests.team_helpers import crew  # noqa: F401 (fixtures)


def test_owners_and_admins_write_the_team_applications_members_read_them(client, admin, crew, make_token):
    # An owner creates an application of the team; a member may not, nor may an outsider.
    body = {"name": "billing", "team_id": crew.team["id"]}
    assert_problem(client.post(f"{API}/applications", json=body, headers=crew.member.headers), 403)
    assert_problem(client.post(f"{API}/applications", json=body, headers=crew.outsider.headers), 403)
    assert_problem(client.post(f"{API}/applications", json={"name": "mine"}, headers=crew.owner.headers), 403)
    created = client.post(f"{API}/applications", json=body, headers=crew.owner.headers)
    assert created.status_code == 201, created.text
    application = created.json()
    assert application["team_id"] == crew.team["id"]
    url = f"{API}/applications/{application['id']}"

    # Admins and service tokens: as before. Another, team-less application stays out of users' sight.
    other = client.post(f"{API}/applications", json={"name": "other"}, headers=admin).json()
    assert other["team_id"] is None
    service = bearer(make_token("service"))
    assert client.get(url, headers=service).status_code == 200

    configuration = client.post(
        f"{url}/configurations", json={"name": "main", "config": {"port": 1}}, headers=crew.admin.headers
    )
    assert configuration.status_code == 201, configuration.text
    configuration_url = f"{API}/configurations/{configuration.json()['id']}"

    # Members read the application, its configurations and their history; they write nothing.
    assert client.get(url, headers=crew.member.headers).json()["name"] == "billing"
    listed = client.get(f"{API}/applications", headers=crew.member.headers).json()["items"]
    assert [a["id"] for a in listed] == [application["id"]]
    assert client.get(f"{url}/configurations", headers=crew.member.headers).status_code == 200
    assert client.get(configuration_url, headers=crew.member.headers).json()["config"] == {"port": 1}
    assert client.get(f"{configuration_url}/revisions", headers=crew.member.headers).status_code == 200
    assert_problem(client.put(configuration_url, json={"config": {"port": 2}}, headers=crew.member.headers), 403)
    assert_problem(client.patch(url, json={"comments": "x"}, headers=crew.member.headers), 403)
    assert_problem(client.delete(url, headers=crew.member.headers), 403)
    # Outsiders reach nothing of it; nobody's user token reaches a team-less application.
    assert_problem(client.get(url, headers=crew.outsider.headers), 403)
    assert client.get(f"{API}/applications", headers=crew.outsider.headers).json()["items"] == []
    assert_problem(client.get(f"{API}/applications/{other['id']}", headers=crew.owner.headers), 403)

    # Owners and admins write; resolve stays for admin and service tokens.
    updated = client.put(configuration_url, json={"config": {"port": 2}}, headers=crew.admin.headers)
    assert updated.status_code == 200, updated.text
    assert client.patch(url, json={"comments": "ours"}, headers=crew.owner.headers).json()["comments"] == "ours"
    assert client.get(f"{API}/resolve/billing/main", headers=service).json() == {"port": 2}
    assert_problem(client.get(f"{API}/resolve/billing/main", headers=crew.owner.headers), 403)


def test_moving_an_application_between_teams(client, admin, crew, person):
    application = client.post(f"{API}/applications", json={"name": "billing"}, headers=admin).json()
    url = f"{API}/applications/{application['id']}"
    # Admins give an application to a team; a team that does not exist is 422.
    assert_problem(client.patch(url, json={"team_id": "01JCZ5J7Q9T1V0G6W8E2X4Y6ZA"}, headers=admin), 422, "team")
    assert client.patch(url, json={"team_id": crew.team["id"]}, headers=admin).json()["team_id"] == crew.team["id"]
    # An owner of the team moves it to another team only if an owner or admin there too.
    elsewhere = client.post(f"{API}/teams", json={"name": "elsewhere"}, headers=crew.outsider.headers).json()
    assert_problem(client.patch(url, json={"team_id": elsewhere["id"]}, headers=crew.owner.headers), 403)
    client.put(f"{API}/teams/{elsewhere['id']}/members/{crew.owner.id}", json={"role": "admin"},
               headers=crew.outsider.headers)
    moved = client.patch(url, json={"team_id": elsewhere["id"]}, headers=crew.owner.headers)
    assert moved.status_code == 200 and moved.json()["team_id"] == elsewhere["id"]
    assert_problem(client.get(url, headers=crew.member.headers), 403)
    # Taking it out of its team leaves it to admin and service tokens; so does deleting the team.
    assert client.patch(url, json={"team_id": None}, headers=crew.outsider.headers).json()["team_id"] is None
    assert_problem(client.get(url, headers=crew.outsider.headers), 403)
    assert client.patch(url, json={"team_id": elsewhere["id"]}, headers=admin).status_code == 200
    assert client.delete(f"{API}/teams/{elsewhere['id']}", headers=crew.outsider.headers).status_code == 204
    assert client.get(url, headers=admin).json()["team_id"] is None
    assert_problem(client.get(url, headers=crew.owner.headers), 403)
    [event] = client.get(f"{API}/audit", params={"resource_id": elsewhere["id"], "limit": 1}, headers=admin).json()["items"]
    assert event["detail"]["applications"] == [{"id": application["id"], "name": "billing"}]
