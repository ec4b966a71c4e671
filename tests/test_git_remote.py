"""Several hosts sharing one git remote (`SVC_GIT_REMOTE`, SPEC "Several hosts"): every save
is pushed by compare-and-swap before the database commits, a host fetches the versions it
lacks, a remote that moved or went away fails the save cleanly, `svc verify` compares all three.

Two real `uvicorn` hosts (separate data directories, one PostgreSQL, one bare remote) save one
document in turn; `SVC_LONG_TESTS=1` makes that 200 saves instead of 16.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from svc.api.app import create_app
from svc.config import Settings
from svc.content import Author, ContentStore, GitRemote, RemoteMoved
from svc.errors import Unavailable
from svc.services.auth import Principal
from tests.claude_md_helpers import (  # noqa: F401
    API,
    ada,
    assert_problem,
    create_user,
    document_id,
    git,
    person,
    save,
    sql,
    svc_cli,
)
from tests.conftest import bearer, free_port
from tests.team_helpers import crew  # noqa: F401 (fixture)
from tests.fault_helpers import LONG
from tests.test_catalog import made
from tests.test_verify import FAIL_AT_COMMIT, REMOVE_FAILURE

TWO_HOST_SAVES = 200 if LONG else 16
CLIENTS_PER_HOST = 4


def run_git(git_dir: Path, *args: str, **kwargs) -> str:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=True, **kwargs
    ).stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    path = tmp_path / "remote.git"
    run_git(path, "init", "--quiet", "--bare")
    return path


@pytest.fixture
def settings(database_url: str, tmp_path: Path, remote: Path) -> Settings:
    """The conftest settings, with the bare remote: host A of this module's tests."""
    return Settings(
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path / "host-a",
        git_remote=str(remote),
        pool_min_size=1,
        pool_max_size=8,
        access_log=False,
    )


@pytest.fixture
def host_b(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    """A second host: the same database and remote, its own data directory."""
    with TestClient(create_app(settings.model_copy(update={"data_dir": tmp_path / "host-b"}))) as client:
        yield client


@pytest.fixture
def remote_cli(svc_cli, monkeypatch, remote):
    monkeypatch.setenv("SVC_GIT_REMOTE", str(remote))
    return svc_cli


def remote_ref(remote: Path, doc_id: str) -> str | None:
    found = run_git(remote, "for-each-ref", "--format=%(objectname)", f"refs/docs/{doc_id}")
    return found or None


def versions_of(client, person) -> list[dict]:
    """Every version, newest first, following the history's pages."""
    found, url = [], f"{person.document}/history?limit=100"
    while url:
        page = client.get(url, headers=person.headers).json()
        found += page["versions"]
        url = page["next"] and f"{person.document}/history?limit=100&after={page['next']}"
    return found


def history(client, person) -> list[tuple[int, str]]:
    return [(v["version"], v["commit_sha"]) for v in versions_of(client, person)]


def test_every_save_is_on_the_remote_before_it_is_acknowledged(client, ada, settings, remote):
    first = save(client, ada.document, ada.headers, "one")
    second = save(client, ada.document, ada.headers, "two")
    doc_id = document_id(settings, ada)
    assert remote_ref(remote, doc_id) == second["commit_sha"]
    assert run_git(remote, "log", "--format=%H", f"refs/docs/{doc_id}").split() == [
        second["commit_sha"],
        first["commit_sha"],
    ]
    assert run_git(remote, "show", f"{second['commit_sha']}:claude.md") == "two"
    run_git(remote, "fsck", "--strict")


def test_a_host_fetches_the_versions_it_lacks_and_saves_on_top_of_them(client, host_b, ada, settings, remote):
    first = save(client, ada.document, ada.headers, "written on A")
    # B has never seen this document: reading fetches the commit from the remote.
    assert host_b.get(ada.document, headers=ada.headers).json()["content"] == "written on A"
    second = save(host_b, ada.document, ada.headers, "written on B")
    assert second["version"] == 2
    # A's local ref is now behind the database head; its next save fetches B's commit and moves on.
    third = save(client, ada.document, ada.headers, "written on A again")
    response = host_b.get(f"{ada.document}/versions/{third['commit_sha']}", headers=ada.headers)
    assert response.json()["content"] == "written on A again"
    expected = [(3, third["commit_sha"]), (2, second["commit_sha"]), (1, first["commit_sha"])]
    assert history(client, ada) == history(host_b, ada) == expected
    doc_id = document_id(settings, ada)
    assert remote_ref(remote, doc_id) == third["commit_sha"]
    for repository in (remote, settings.git_path, settings.data_dir.parent / "host-b" / "content.git"):
        run_git(repository, "fsck", "--strict")
    diff = host_b.get(
        f"{ada.document}/diff?from={first['commit_sha']}&to={third['commit_sha']}", headers=ada.headers
    )
    assert "+written on A again" in diff.text


@pytest.mark.parametrize("move", ["commit by hand", "delete"])
def test_a_remote_ref_moved_outside_the_service_refuses_the_save(client, ada, settings, remote, remote_cli, move):
    first = save(client, ada.document, ada.headers, "one")
    doc_id = document_id(settings, ada)
    ref = f"refs/docs/{doc_id}"
    if move == "delete":
        run_git(remote, "update-ref", "-d", ref)
        moved_to = None
    else:
        tree = run_git(remote, "rev-parse", f"{first['commit_sha']}^{{tree}}")
        moved_to = run_git(remote, "commit-tree", tree, "-p", first["commit_sha"], "-m", "by hand")
        run_git(remote, "update-ref", ref, moved_to)

    body = assert_problem(client.put(ada.document, json={"content": "two"}, headers=ada.headers), 409, "remote")
    assert "svc verify" in body["detail"]
    assert history(client, ada) == [(1, first["commit_sha"])]  # nothing recorded
    assert git(settings, "rev-parse", ref).strip() == first["commit_sha"]
    assert remote_ref(remote, doc_id) == moved_to  # and nothing overwritten

    found = remote_cli("verify")
    assert found.code == 1 and "remote_" in found.stdout
    assert remote_cli("verify", "--repair").code == 0
    assert remote_ref(remote, doc_id) == first["commit_sha"]
    assert save(client, ada.document, ada.headers, "two")["version"] == 2


def test_a_save_that_died_between_push_and_commit_is_moved_on(client, ada, settings, remote, services):
    first = save(client, ada.document, ada.headers, "one")
    doc_id = document_id(settings, ada)
    # What a host killed after its push and before its COMMIT leaves on the remote.
    lost = services.content.save(doc_id, b"lost", parent=first["commit_sha"], author=Author("a", "a@x"), message="x")
    assert remote_ref(remote, doc_id) == lost
    second = save(client, ada.document, ada.headers, "two")
    assert remote_ref(remote, doc_id) == second["commit_sha"]
    assert run_git(remote, "rev-parse", f"{second['commit_sha']}^") == first["commit_sha"]


def test_a_save_whose_commit_fails_moves_the_remote_ref_back(client, ada, settings, remote):
    first = save(client, ada.document, ada.headers, "one")
    sql(settings, FAIL_AT_COMMIT.format(action="RAISE EXCEPTION 'injected failure at commit'"))
    assert client.put(ada.document, json={"content": "two"}, headers=ada.headers).status_code == 500
    sql(settings, REMOVE_FAILURE)
    assert remote_ref(remote, document_id(settings, ada)) == first["commit_sha"]
    assert history(client, ada) == [(1, first["commit_sha"])]


def test_deleting_a_user_keeps_the_history_on_the_remote_too(client, host_b, admin, ada, settings, remote):
    head = save(client, ada.document, ada.headers, "one")["commit_sha"]
    doc_id = document_id(settings, ada)
    # Deleted through the host that never saw the document.
    assert host_b.delete(f"{API}/users/{ada.id}", headers=admin).status_code == 204
    assert remote_ref(remote, doc_id) is None
    assert run_git(remote, "rev-parse", f"refs/deleted/{doc_id}") == head


def test_a_remote_that_goes_away_fails_saves_with_503_until_it_is_back(client, ada, settings, remote):
    first = save(client, ada.document, ada.headers, "one")
    away = remote.with_name("remote-away.git")
    remote.rename(away)
    refused = client.put(ada.document, json={"content": "two"}, headers=ada.headers)
    assert_problem(refused, 503, "remote")
    assert refused.headers["retry-after"] == "1"  # RFC 9110 §10.2.3: try again shortly
    assert history(client, ada) == [(1, first["commit_sha"])]
    assert git(settings, "rev-parse", f"refs/docs/{document_id(settings, ada)}").strip() == first["commit_sha"]
    assert client.get(ada.document, headers=ada.headers).json()["content"] == "one"  # reads stay local
    away.rename(remote)
    second = save(client, ada.document, ada.headers, "two")
    assert second["version"] == 2
    assert remote_ref(remote, document_id(settings, ada)) == second["commit_sha"]


def test_verify_repairs_both_a_host_that_lacks_versions_and_a_remote_that_lacks_them(
    client, host_b, ada, settings, remote, remote_cli, monkeypatch, tmp_path
):
    save(client, ada.document, ada.headers, "one")
    head = save(client, ada.document, ada.headers, "two")["commit_sha"]
    doc_id = document_id(settings, ada)

    # Host B's repository has none of it: verify there reports it, --repair fetches it.
    monkeypatch.setenv("SVC_DATA_DIR", str(tmp_path / "host-b"))
    found = remote_cli("verify")
    assert found.code == 1
    assert "missing_content" in found.stdout and "--repair` fetches it" in found.stdout
    repaired = remote_cli("verify", "--repair")
    assert repaired.code == 0, repaired.stdout
    assert run_git(tmp_path / "host-b" / "content.git", "rev-parse", f"refs/docs/{doc_id}") == head
    assert remote_cli("verify").code == 0

    # The remote loses everything (restored from an empty backup): --repair pushes it back.
    monkeypatch.setenv("SVC_DATA_DIR", str(settings.data_dir))
    subprocess.run(["rm", "-rf", str(remote)], check=True)
    run_git(remote, "init", "--quiet", "--bare")
    found = remote_cli("verify")
    assert found.code == 1 and "remote_missing_ref" in found.stdout
    assert remote_cli("verify", "--repair").code == 0
    assert remote_ref(remote, doc_id) == head
    run_git(remote, "fsck", "--strict")
    assert remote_cli("verify").code == 0


def test_remote_credentials_never_appear_in_problems_or_logs(settings, remote, caplog):
    secret = "tok-5ecret-value"
    url = f"https://deploy:{secret}@127.0.0.1:{free_port()}/config.git"  # nothing listens there
    with pytest.raises(Unavailable) as refused:
        GitRemote(url, timeout=5).check(remote)
    assert secret not in refused.value.detail and "https://***@127.0.0.1" in refused.value.detail

    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(settings.model_copy(update={"git_remote": SecretStr(url)}))) as client:
        operator = Principal.operator()
        admin = bearer(client.app.state.services.tokens.create(operator, name="admin", role="admin").secret)
        user = create_user(client, admin)
        response = client.put(f"{API}/users/{user['id']}/claude-md", json={"content": "x"}, headers=admin)
        assert_problem(response, 503, "https://***@127.0.0.1")
        assert secret not in response.text
    assert secret not in caplog.text and "deploy:" not in caplog.text


def test_a_remote_that_never_answers_is_given_up_after_the_timeout(remote):
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/content.git"
        with pytest.raises(Unavailable, match="did not answer `git ls-remote` within 0.5 s"):
            GitRemote(url, timeout=0.5).check(remote)


@pytest.mark.parametrize("url", ["/nowhere/remote.git", "https://deploy:tok-5ecret@127.0.0.1:{port}/x.git"])
def test_serve_refuses_to_start_with_a_remote_it_cannot_reach(svc_cli, monkeypatch, tmp_path, url):
    monkeypatch.setenv("SVC_GIT_REMOTE", url.format(port=free_port()))
    result = svc_cli("serve")
    assert result.code == 1
    assert "refusing to start: SVC_GIT_REMOTE cannot be used" in result.stderr
    assert "tok-5ecret" not in result.stderr + result.stdout


def test_two_hosts_saving_one_document_in_turn_lose_nothing(
    client, ada, settings, remote, live_server, tmp_path, remote_cli, monkeypatch
):
    """4 clients per host, saves spread over both; then host A is killed -9 mid-save and B goes on."""
    with ThreadPoolExecutor(2) as starting:
        hosts = list(
            starting.map(
                lambda name: live_server(workers=1, SVC_DATA_DIR=str(tmp_path / name), SVC_GIT_REMOTE=str(remote)),
                ["live-a", "live-b"],
            )
        )
    acknowledged: list[dict] = []
    refused: list[tuple[str, int]] = []
    lock = threading.Lock()

    def client_loop(host, writer: int, count: int, stop: threading.Event) -> None:
        with host.client(timeout=30) as http:
            for n in range(count):
                if stop.is_set():
                    return
                content = f"host {host.base_url} writer {writer} save {n}"
                try:
                    response = http.put(ada.document, json={"content": content}, headers=ada.headers)
                except httpx.HTTPError as exc:
                    refused.append((host.base_url, repr(exc)))
                    continue  # the host died under this request: not acknowledged
                with lock:
                    if response.status_code == 200:
                        acknowledged.append({"host": host.base_url, "content": content, **response.json()})
                    else:
                        refused.append((host.base_url, response.status_code))

    def run(per_client: dict, stops: dict) -> None:
        threads = [
            threading.Thread(target=client_loop, args=(host, w, per_client[host.base_url], stops[host.base_url]))
            for host in hosts
            for w in range(CLIENTS_PER_HOST)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)

    per_client = TWO_HOST_SAVES // (2 * CLIENTS_PER_HOST)
    run({h.base_url: per_client for h in hosts}, {h.base_url: threading.Event() for h in hosts})
    assert (len(acknowledged), refused) == (TWO_HOST_SAVES, [])  # one row lock serialises them

    # Kill -9 host A while both hosts are saving; B keeps serving.
    stop_a = threading.Event()
    killer = threading.Timer(0.3, lambda: (hosts[0].process.kill(), stop_a.set()))
    killer.start()
    after_kill = 3  # saves per client of B
    run(
        {hosts[0].base_url: 10_000, hosts[1].base_url: after_kill},
        {hosts[0].base_url: stop_a, hosts[1].base_url: threading.Event()},
    )
    killer.join()
    assert stop_a.is_set()
    # B served through it: a save racing the dead host's last push may be refused (and then
    # recorded nowhere), never more than that one.
    on_b = [s for s in acknowledged if s["host"] == hosts[1].base_url]
    assert len(on_b) >= CLIENTS_PER_HOST * (per_client + after_kill) - 1, refused
    assert all(status in (409, 503) for host, status in refused if host == hosts[1].base_url), refused

    b = hosts[1].client(timeout=30)
    versions = versions_of(b, ada)
    numbers = [v["version"] for v in reversed(versions)]
    assert numbers == list(range(1, len(numbers) + 1))  # ordered, no gaps
    by_sha = {v["commit_sha"]: v["version"] for v in versions}
    for save_ in acknowledged:  # every acknowledged save is a version holding what was sent
        assert by_sha[save_["commit_sha"]] == save_["version"]
    for save_ in acknowledged[:: max(1, len(acknowledged) // 20)]:
        read = b.get(f"{ada.document}/versions/{save_['commit_sha']}", headers=ada.headers).json()
        assert read["content"] == save_["content"]

    # Both hosts' repositories and the remote agree after verify --repair on each; git is clean.
    doc_id = document_id(settings, ada)
    for name in ("live-a", "live-b"):
        monkeypatch.setenv("SVC_DATA_DIR", str(tmp_path / name))
        repaired = remote_cli("verify", "--repair")
        assert repaired.code == 0, repaired.stdout + repaired.stderr
        assert remote_cli("verify").code == 0
        repository = tmp_path / name / "content.git"
        run_git(repository, "fsck", "--strict")
        assert run_git(repository, "log", "--format=%H", f"refs/docs/{doc_id}").split()[: len(versions)] == [
            v["commit_sha"] for v in versions
        ]
    run_git(remote, "fsck", "--strict")
    assert remote_ref(remote, doc_id) == versions[0]["commit_sha"]
    b.close()


def test_verify_renames_a_remote_ref_of_no_document(client, remote, remote_cli):
    orphan = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZA"
    blob = run_git(remote, "hash-object", "-w", "--stdin", input="left behind")
    tree = run_git(remote, "mktree", input=f"100644 blob {blob}\tclaude.md\n")
    old = {"GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z"}
    commit = run_git(remote, "commit-tree", tree, "-m", "x", env={**os.environ, **old})
    run_git(remote, "update-ref", f"refs/docs/{orphan}", commit)
    found = remote_cli("verify")
    assert found.code == 1 and f"{orphan}\tremote_orphan_ref\tdrift" in found.stdout
    assert remote_cli("verify", "--repair").code == 0
    assert remote_ref(remote, orphan) is None
    assert run_git(remote, "rev-parse", f"refs/deleted/{orphan}") == commit


def test_other_refs_move_by_compare_and_swap_on_the_remote_too(tmp_path, remote):
    """Proposal and release refs: one store creates it, another host (no local copy) moves it on."""
    hosts = [ContentStore(tmp_path / name, GitRemote(str(remote), timeout=10)) for name in ("a.git", "b.git")]
    for host in hosts:
        host.ensure()
    ref = "refs/proposals/01JCZ5J7Q9T1V0G6W8E2X4Y6ZA"
    author = Author("ada", "ada@example.com")
    first = hosts[0].save("01JCZ5J7Q9T1V0G6W8E2X4Y6ZB", b"one", parent=None, author=author, message="one")
    hosts[0].move_ref(ref, first, None)
    assert run_git(remote, "rev-parse", ref) == first
    second = hosts[1].save("01JCZ5J7Q9T1V0G6W8E2X4Y6ZB", b"two", parent=first, author=author, message="two")
    hosts[1].move_ref(ref, second, first)
    assert run_git(remote, "rev-parse", ref) == run_git(tmp_path / "b.git", "rev-parse", ref) == second
    with pytest.raises(RemoteMoved):
        hosts[0].move_ref(ref, None, first)  # stale: the remote is at `second` now
    assert run_git(remote, "rev-parse", ref) == second
    hosts[0].move_ref(ref, None, second)
    assert not run_git(remote, "for-each-ref", ref) and not run_git(tmp_path / "a.git", "for-each-ref", ref)


def test_team_documents_and_proposals_cross_hosts_through_the_remote(client, host_b, crew, settings, remote):
    document = f"{crew.url}/claude-md"
    base = save(client, document, crew.owner.headers, "# Platform\n")
    # Proposed on B, which has never seen the base: it fetches it to push the proposal's commit.
    response = host_b.post(
        f"{document}/proposals", json={"content": "# Platform!\n", "message": "louder"}, headers=crew.member.headers
    )
    assert response.status_code == 201, response.text
    proposal = response.json()
    assert run_git(remote, "rev-parse", f"refs/proposals/{proposal['id']}") == proposal["commit_sha"]
    assert run_git(remote, "rev-parse", f"{proposal['commit_sha']}^") == base["commit_sha"]
    # Accepted on A, which lacks the proposal's commit: it fetches it.
    accepted = client.post(f"{document}/proposals/{proposal['id']}/accept", headers=crew.owner.headers)
    assert accepted.status_code == 200, accepted.text
    head = accepted.json()["commit_sha"]
    assert host_b.get(document, headers=crew.member.headers).json()["content"] == "# Platform!\n"
    [(doc_id,)] = sql(settings, "SELECT id FROM documents WHERE head_sha = %s", (head,))
    assert remote_ref(remote, doc_id) == head
    # Deleted through B: the remote keeps the history under refs/deleted.
    assert host_b.delete(crew.url, headers=crew.owner.headers).status_code == 204
    assert remote_ref(remote, doc_id) is None
    assert run_git(remote, "rev-parse", f"refs/deleted/{doc_id}") == head
    run_git(remote, "fsck", "--strict")


def test_a_catalog_release_is_on_the_remote_and_served_by_a_host_that_never_saw_it(
    client, host_b, crew, settings, remote
):
    content = "---\nname: deploy-notes\ndescription: Writes deploy notes\n---\n\n# Deploy notes\n"
    created = client.post(f"{API}/catalog", headers=crew.owner.headers, json={
        "type": "skill", "name": "deploy-notes", "owner": {"team_id": crew.team["id"]},
        "description": "Writes deploy notes", "content": content,
    })
    assert created.status_code == 201, created.text
    item = created.json()
    released = client.post(f"{API}/catalog/{item['id']}/releases", json={"version": "1.0.0"}, headers=crew.owner.headers)
    assert released.status_code == 201, released.text
    assert run_git(remote, "rev-parse", f"refs/releases/{item['id']}/1.0.0") == released.json()["commit_sha"]
    served = host_b.get(f"{API}/catalog/{item['id']}/content?release=latest", headers=crew.member.headers)
    assert served.status_code == 200 and served.text == content
    # Deleting the item removes the release ref on the remote too; the content history stays there.
    assert host_b.delete(f"{API}/catalog/{item['id']}", headers=crew.owner.headers).status_code == 204
    assert not run_git(remote, "for-each-ref", f"refs/releases/{item['id']}/")
    run_git(remote, "fsck", "--strict")


def test_a_team_deleted_on_one_host_leaves_no_marketplace_on_the_remote(
    client, host_b, crew, settings, remote, remote_cli
):
    item = made(client, crew.owner.headers, {"team_id": crew.team["id"]})
    released = client.post(f"{API}/catalog/{item['id']}/releases", json={"version": "1.0.0"}, headers=crew.owner.headers)
    assert released.status_code == 201, released.text
    ref = f"refs/marketplaces/teams/{crew.team['id']}"
    assert run_git(remote, "for-each-ref", ref) and git(settings, "for-each-ref", ref)
    assert host_b.delete(crew.url, headers=crew.owner.headers).status_code == 204
    assert not run_git(remote, "for-each-ref", "refs/marketplaces/")
    # Host A's own copy stays, as a deleted document's ref does, until verify there removes it.
    found = remote_cli("verify")
    assert found.code == 1 and f"{crew.team['id']}\torphan_marketplace\tdrift\t" in found.stdout
    assert remote_cli("verify", "--repair").code == 0
    assert not git(settings, "for-each-ref", "refs/marketplaces/")


def test_verify_puts_back_proposal_and_release_refs_the_remote_lost(client, crew, remote, remote_cli):
    document = f"{crew.url}/claude-md"
    save(client, document, crew.owner.headers, "# Platform\n")
    proposed = client.post(f"{document}/proposals", json={"content": "# Platform!\n", "message": "louder"},
                           headers=crew.member.headers)
    assert proposed.status_code == 201, proposed.text
    proposal = proposed.json()
    content = "---\nname: deploy-notes\ndescription: Writes deploy notes\n---\n\n# Deploy notes\n"
    item = client.post(f"{API}/catalog", headers=crew.owner.headers, json={
        "type": "skill", "name": "deploy-notes", "owner": {"team_id": crew.team["id"]},
        "description": "Writes deploy notes", "content": content,
    }).json()
    release = client.post(f"{API}/catalog/{item['id']}/releases", json={"version": "1.0.0"}, headers=crew.owner.headers)
    assert release.status_code == 201, release.text
    refs = {f"refs/proposals/{proposal['id']}": proposal["commit_sha"],
            f"refs/releases/{item['id']}/1.0.0": release.json()["commit_sha"]}
    assert remote_cli("verify").code == 0
    for ref in refs:  # the remote restored from a backup older than both
        run_git(remote, "update-ref", "-d", ref)

    found = remote_cli("verify")
    assert found.code == 1
    assert found.stdout.count("remote_published_ref_drift") == 2, found.stdout
    assert remote_cli("verify", "--repair").code == 0
    assert {ref: run_git(remote, "rev-parse", ref) for ref in refs} == refs
    assert remote_cli("verify").code == 0
    run_git(remote, "fsck", "--strict")
