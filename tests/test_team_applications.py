"""Applications that belong to a team: members read them and their configurations, owners and
admins write them; service tokens and resolve keep their phase-1 rights."""

from __future__ import annotations

import re

from svc.ids import new_id
from tests.claude_md_helpers import API, assert_problem, person  # noqa: F401 (fixtures)
from tests.conftest import bearer
from tests.team_helpers import add_member, crew  # noqa: F401 (fixtures)


def test_owners_and_admins_write_the_team_applications_members_read_them(client, admin, crew, make_token):
    # An owner creates an application of the team; a member may not, nor may an outsider.
    body = {"name": "billing", "team_id": crew.team["id"]}
    assert_problem(client.post(f"{API}/applications", json=body, headers=crew.member.headers), 403)
    assert_problem(client.post(f"{API}/applications", json=body, headers=crew.outsider.headers), 422, "names no team")
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
    # Outsiders find nothing of it; nobody's user token finds a team-less application.
    assert_problem(client.get(url, headers=crew.outsider.headers), 404)
    assert client.get(f"{API}/applications", headers=crew.outsider.headers).json()["items"] == []
    assert_problem(client.get(f"{API}/applications/{other['id']}", headers=crew.owner.headers), 404)

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
    # An owner of the team moves it to another team only if an owner or admin there too; a team
    # the caller is not in is answered as one that does not exist.
    elsewhere = client.post(f"{API}/teams", json={"name": "elsewhere"}, headers=crew.outsider.headers).json()
    assert_problem(client.patch(url, json={"team_id": elsewhere["id"]}, headers=crew.owner.headers), 422, "no team")
    client.put(f"{API}/teams/{elsewhere['id']}/members/{crew.owner.id}", json={"role": "admin"},
               headers=crew.outsider.headers)
    moved = client.patch(url, json={"team_id": elsewhere["id"]}, headers=crew.owner.headers)
    assert moved.status_code == 200 and moved.json()["team_id"] == elsewhere["id"]
    assert_problem(client.get(url, headers=crew.member.headers), 404)
    # Taking it out of its team leaves it to admin and service tokens; so does deleting the team.
    assert client.patch(url, json={"team_id": None}, headers=crew.outsider.headers).json()["team_id"] is None
    assert_problem(client.get(url, headers=crew.outsider.headers), 404)
    assert client.patch(url, json={"team_id": elsewhere["id"]}, headers=admin).status_code == 200
    assert client.delete(f"{API}/teams/{elsewhere['id']}", headers=crew.outsider.headers).status_code == 204
    assert client.get(url, headers=admin).json()["team_id"] is None
    assert_problem(client.get(url, headers=crew.owner.headers), 404)
    [event] = client.get(f"{API}/audit", params={"resource_id": elsewhere["id"], "limit": 1}, headers=admin).json()["items"]
    assert event["detail"]["applications"] == [{"id": application["id"], "name": "billing"}]


def team_application(client, headers, team_id: str, name: str = "billing") -> dict:
    response = client.post(f"{API}/applications", json={"name": name, "team_id": team_id}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_team_admin_cannot_take_an_application_out_of_its_team(client, admin, crew):
    """Issue 22: a team admin set `team_id` to null and locked the team's owners out."""
    application = team_application(client, crew.owner.headers, crew.team["id"])
    url = f"{API}/applications/{application['id']}"
    assert_problem(client.patch(url, json={"team_id": None}, headers=crew.admin.headers), 403, "owner")
    assert client.get(url, headers=crew.owner.headers).json()["team_id"] == crew.team["id"]
    assert client.patch(url, json={"comments": "still ours"}, headers=crew.admin.headers).status_code == 200
    assert client.patch(url, json={"team_id": None}, headers=crew.owner.headers).json()["team_id"] is None
    assert client.patch(url, json={"team_id": crew.team["id"]}, headers=admin).status_code == 200
    assert client.patch(url, json={"team_id": None}, headers=admin).json()["team_id"] is None  # a system admin


def test_moving_between_teams_needs_owner_where_it_leaves_and_owner_or_admin_where_it_joins(client, crew, person):
    application = team_application(client, crew.owner.headers, crew.team["id"])
    url = f"{API}/applications/{application['id']}"
    other = client.post(f"{API}/teams", json={"name": "other"}, headers=crew.outsider.headers).json()
    add_member(client, crew.outsider.headers, other["id"], crew.admin.id, "owner")
    add_member(client, crew.outsider.headers, other["id"], crew.owner.id, "member")

    # An admin of the team it leaves, although owner of the one it joins: 403.
    assert_problem(client.patch(url, json={"team_id": other["id"]}, headers=crew.admin.headers), 403, "owner")
    # The owner of the team it leaves, only a member of the one it joins: 403.
    assert_problem(client.patch(url, json={"team_id": other["id"]}, headers=crew.owner.headers), 403, "admin or owner")
    assert client.get(url, headers=crew.member.headers).json()["team_id"] == crew.team["id"]

    add_member(client, crew.outsider.headers, other["id"], crew.owner.id, "admin")
    moved = client.patch(url, json={"team_id": other["id"]}, headers=crew.owner.headers)
    assert moved.status_code == 200 and moved.json()["team_id"] == other["id"]
    assert_problem(client.get(url, headers=crew.member.headers), 404)


def test_a_service_token_cannot_move_a_team_application(client, crew, make_token):
    application = team_application(client, crew.owner.headers, crew.team["id"])
    url = f"{API}/applications/{application['id']}"
    service = bearer(make_token("service"))
    assert_problem(client.patch(url, json={"team_id": None}, headers=service), 403)
    assert client.get(url, headers=crew.member.headers).json()["team_id"] == crew.team["id"]


def test_outsiders_get_the_same_404_for_every_team_resource_whether_it_exists_or_not(client, crew):
    """Issue 22: an outsider got 403 for a team application's configuration (existence showed)."""
    application = team_application(client, crew.owner.headers, crew.team["id"])
    created = client.post(
        f"{API}/applications/{application['id']}/configurations",
        json={"name": "main", "config": {"port": 1}}, headers=crew.owner.headers,
    ).json()
    client.put(f"{API}/configurations/{created['id']}", json={"config": {"port": 2}}, headers=crew.owner.headers)

    def requests(application_id: str, configuration_id: str) -> list[tuple[str, str, dict]]:
        application_url = f"{API}/applications/{application_id}"
        configuration_url = f"{API}/configurations/{configuration_id}"
        return [
            ("GET", application_url, {}),
            ("PATCH", application_url, {"json": {"comments": "x"}}),
            ("PATCH", application_url, {"json": {"team_id": None}}),
            ("DELETE", application_url, {}),
            ("GET", f"{application_url}/configurations", {}),
            ("POST", f"{application_url}/configurations", {"json": {"name": "other", "config": {}}}),
            ("GET", configuration_url, {}),
            ("PUT", configuration_url, {"json": {"config": {"port": 3}}}),
            ("PATCH", configuration_url, {"json": {"comments": "x"}}),
            ("DELETE", configuration_url, {}),
            ("GET", f"{configuration_url}/revisions", {}),
            ("GET", f"{configuration_url}/revisions/1", {}),
            ("GET", f"{configuration_url}/diff", {"params": {"from": 1, "to": 2}}),
            ("POST", f"{configuration_url}/rollback", {"json": {"revision": 1}}),
        ]

    def answers(application_id: str, configuration_id: str) -> list[tuple[int, str]]:
        found = []
        for method, url, kwargs in requests(application_id, configuration_id):
            response = client.request(method, url, headers=crew.outsider.headers, **kwargs)
            body = response.json()
            found.append((response.status_code, re.sub(r"[0-9A-Z]{26}", "<id>", f"{body['title']}: {body['detail']}")))
        return found

    existing = answers(application["id"], created["id"])
    assert all(status == 404 for status, _ in existing), existing
    assert existing == answers(new_id(), new_id())
    assert client.get(f"{API}/configurations/{created['id']}", headers=crew.owner.headers).json()["revision"] == 2
