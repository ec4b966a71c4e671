"""Proposals on a team's claude.md, end to end: propose, look, accept (authored by the
proposer), stale bases, reject, withdraw, and two accepts racing on one base."""

from __future__ import annotations

import threading

from tests.claude_md_helpers import API, assert_problem, git, person, save  # noqa: F401 (fixtures)
from tests.team_helpers import crew  # noqa: F401 (fixtures)


def propose(client, url: str, who, content: str, message: str = "suggestion") -> dict:
    response = client.post(f"{url}/proposals", json={"content": content, "message": message}, headers=who.headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_proposal_life_cycle(client, admin, settings, crew):
    document = f"{crew.url}/claude-md"
    # Members read the team document but may not write it: they propose.
    assert client.get(document, headers=crew.member.headers).json()["version"] == 0
    assert_problem(client.put(document, json={"content": "x"}, headers=crew.member.headers), 403, "propose")
    assert_problem(client.get(document, headers=crew.outsider.headers), 404, "team")
    v1 = save(client, document, crew.owner.headers, "# Platform\n\n- test everything\n", message="start")
    v2 = save(client, document, crew.admin.headers, "# Platform\n\n- test everything\n- be kind\n")

    proposal = propose(client, document, crew.member, "# Platform\n\n- test everything first\n- be kind\n", "sharper")
    assert set(proposal) == {"id", "status", "base_sha", "commit_sha", "author", "message", "created_at",
                             "decided_by", "decided_at", "reason"}
    assert (proposal["status"], proposal["base_sha"], proposal["author"]) == ("open", v2["commit_sha"], "mia")
    # Its content is a commit on refs/proposals/<id> whose parent is the base.
    assert git(settings, "rev-parse", f"refs/proposals/{proposal['id']}").strip() == proposal["commit_sha"]
    assert git(settings, "rev-parse", f"{proposal['commit_sha']}^").strip() == v2["commit_sha"]
    shown = client.get(f"{document}/proposals/{proposal['id']}", headers=crew.outsider.headers)
    assert_problem(shown, 404)
    shown = client.get(f"{document}/proposals/{proposal['id']}", headers=crew.member.headers).json()
    assert "\n-- test everything\n+- test everything first\n" in shown["diff"]
    assert shown["diff"].startswith("--- a/claude.md")
    listed = client.get(f"{document}/proposals", params={"status": "open"}, headers=crew.member.headers).json()
    assert [p["id"] for p in listed["items"]] == [proposal["id"]] and listed["next"] is None

    # A member may not accept; an admin does, and the new version's author is the proposer.
    accept = f"{document}/proposals/{proposal['id']}/accept"
    assert_problem(client.post(accept, headers=crew.member.headers), 403)
    accepted = client.post(accept, headers=crew.admin.headers)
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["version"] == 3 and body["proposal"]["status"] == "accepted"
    assert body["proposal"]["decided_by"] == "adam"
    assert accepted.headers["ETag"] == f'"{body["commit_sha"]}"'
    [latest] = client.get(f"{document}/history?limit=1", headers=crew.member.headers).json()["versions"]
    assert latest["author"] == "mia" and proposal["id"] in latest["message"] and "adam" in latest["message"]
    log = git(settings, "log", "-1", "--format=%an <%ae>|%cn|%B", body["commit_sha"])
    assert log.startswith("mia <mia@example.com>|svc|sharper")
    assert_problem(client.post(accept, headers=crew.owner.headers), 409, "accepted")

    # A proposal based on an old version: the document moved on, so accepting it is 409
    # naming the current version; it can still be rejected, with a reason.
    old = propose(client, document, crew.member, "# Platform, retold\n", "retell")
    assert old["base_sha"] == body["commit_sha"]
    v4 = save(client, document, crew.owner.headers, "# Platform\n\nnew rules\n")
    stale = client.post(f"{document}/proposals/{old['id']}/accept", headers=crew.owner.headers)
    assert_problem(stale, 409, f"current version is 4 ({v4['commit_sha']})")
    rejected = client.post(f"{document}/proposals/{old['id']}/reject", json={"reason": "out of date"},
                           headers=crew.owner.headers).json()
    assert (rejected["status"], rejected["reason"], rejected["decided_by"]) == ("rejected", "out of date", "olga")
    assert_problem(client.post(f"{document}/proposals/{old['id']}/accept", headers=crew.owner.headers), 409, "rejected")

    # Only its proposer withdraws a proposal; a withdrawn one cannot be accepted.
    mine = propose(client, document, crew.member, "# mine\n")
    assert_problem(client.delete(f"{document}/proposals/{mine['id']}", headers=crew.owner.headers), 403, "proposer")
    withdrawn = client.delete(f"{document}/proposals/{mine['id']}", headers=crew.member.headers).json()
    assert withdrawn["status"] == "withdrawn"
    assert_problem(client.post(f"{document}/proposals/{mine['id']}/accept", headers=crew.owner.headers), 409)

    statuses = [p["status"] for p in client.get(f"{document}/proposals", headers=crew.member.headers).json()["items"]]
    assert statuses == ["accepted", "rejected", "withdrawn"]
    assert [v["version"] for v in client.get(f"{document}/history", headers=crew.member.headers).json()["versions"]] \
        == [4, 3, 2, 1]
    assert v1["version"] == 1
    actions = [e["action"] for e in client.get(f"{API}/audit", params={"resource_type": "document_proposal"},
                                               headers=admin).json()["items"]]
    assert sorted(actions) == sorted(["claude_md.propose"] * 3 + ["claude_md.accept", "claude_md.reject",
                                                                  "claude_md.withdraw"])
    git(settings, "fsck", "--strict", "--no-dangling")


def test_two_accepts_on_one_base_exactly_one_wins(client, crew):
    document = f"{crew.url}/claude-md"
    save(client, document, crew.owner.headers, "# base\n")
    first, second = (propose(client, document, crew.member, f"# take {n}\n") for n in (1, 2))
    barrier = threading.Barrier(2)
    statuses = []

    def accept(proposal, who):
        barrier.wait()
        statuses.append(client.post(f"{document}/proposals/{proposal['id']}/accept", headers=who.headers).status_code)

    threads = [threading.Thread(target=accept, args=pair) for pair in ((first, crew.owner), (second, crew.admin))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409]
    history = client.get(f"{document}/history", headers=crew.member.headers).json()["versions"]
    assert [v["version"] for v in history] == [2, 1]
    open_ones = client.get(f"{document}/proposals", params={"status": "open"}, headers=crew.member.headers).json()
    assert len(open_ones["items"]) == 1


def test_a_user_can_propose_on_their_own_empty_document(client, person, settings):
    ada = person("ada")
    proposal = propose(client, ada.document, ada, "# first\n", "a start")
    assert proposal["base_sha"] is None
    shown = client.get(f"{ada.document}/proposals/{proposal['id']}", headers=ada.headers).json()
    assert "+# first\n" in shown["diff"]
    assert client.get(ada.document, headers=ada.headers).json()["version"] == 0
    accepted = client.post(f"{ada.document}/proposals/{proposal['id']}/accept", headers=ada.headers).json()
    assert (accepted["version"], accepted["content"]) == (1, "# first\n")
    git(settings, "fsck", "--strict", "--no-dangling")
