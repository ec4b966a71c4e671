"""Several uvicorn workers saving at once: every acknowledged save is exactly one version."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.claude_md_helpers import API, create_user, git, sql
from tests.conftest import bearer

WRITERS = 4
SAVES_EACH = 50


def _save_many(server, headers: dict[str, str], url: str, writer: int) -> list[dict]:
    acknowledged = []
    with server.client(headers=headers, timeout=30) as http:
        for i in range(SAVES_EACH):
            response = http.put(url, json={"content": f"writer {writer} save {i}\n", "message": f"w{writer}-{i}"})
            assert response.status_code == 200, response.text
            acknowledged.append(response.json())
    return acknowledged


def _history(server, headers: dict[str, str], url: str) -> list[dict]:
    versions, after = [], ""
    with server.client(headers=headers, timeout=30) as http:
        while True:
            page = http.get(f"{url}/history?limit=100{after}").json()
            versions += page["versions"]
            if page["next"] is None:
                return versions
            after = f"&after={page['next']}"


def _assert_every_save_is_one_version(server, settings, headers, url, user_id, acknowledged: list[dict]) -> None:
    history = _history(server, headers, url)
    assert [v["version"] for v in history] == list(range(len(acknowledged), 0, -1))  # gapless, none twice
    by_sha = {a["commit_sha"]: a for a in acknowledged}
    assert sorted(by_sha) == sorted(v["commit_sha"] for v in history)
    assert all(by_sha[v["commit_sha"]]["version"] == v["version"] for v in history)
    # git agrees: one linear chain of exactly these commits, newest at the document's ref.
    ref = f"refs/docs/{sql(settings, 'SELECT id FROM claude_md_documents WHERE user_id = %s', (user_id,))[0][0]}"
    chain = [line.split(" ", 1) for line in git(settings, "log", "--first-parent", "--format=%H %s", ref).splitlines()]
    assert chain == [[v["commit_sha"], v["message"]] for v in history]
    with server.client(headers=headers, timeout=30) as http:
        for version in history[:: len(history) // 5]:
            stored = http.get(f"{url}/versions/{version['commit_sha']}").json()["content"]
            assert stored == by_sha[version["commit_sha"]]["content"]


def test_four_workers_saving_one_document(client, admin, live_server, settings):
    user = create_user(client, admin, "ada")
    server = live_server(workers=WRITERS)
    url = f"{API}/users/{user['id']}/claude-md"
    with ThreadPoolExecutor(WRITERS) as pool:
        results = pool.map(lambda w: _save_many(server, admin, url, w), range(WRITERS))
        acknowledged = [saved for batch in results for saved in batch]
    assert len(acknowledged) == WRITERS * SAVES_EACH
    _assert_every_save_is_one_version(server, settings, admin, url, user["id"], acknowledged)
    newest = max(acknowledged, key=lambda a: a["version"])
    assert git(settings, "rev-list", newest["commit_sha"]).split() == [
        a["commit_sha"] for a in sorted(acknowledged, key=lambda a: -a["version"])
    ]
    git(settings, "fsck", "--strict", "--no-dangling")


def test_four_workers_saving_four_documents(client, admin, live_server, settings, make_token):
    users = [create_user(client, admin, f"user{w}") for w in range(WRITERS)]
    tokens = [bearer(make_token("user", user_id=u["id"])) for u in users]
    server = live_server(workers=WRITERS)
    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(lambda w: _save_many(server, tokens[w], f"{API}/me/claude-md", w), range(WRITERS)))
    for writer, acknowledged in enumerate(results):
        assert [a["version"] for a in acknowledged] == list(range(1, SAVES_EACH + 1))
        _assert_every_save_is_one_version(
            server, settings, tokens[writer], f"{API}/me/claude-md", users[writer]["id"], acknowledged
        )
        assert git(settings, "rev-list", acknowledged[-1]["commit_sha"]).split() == [
            a["commit_sha"] for a in reversed(acknowledged)
        ]
    assert len(git(settings, "for-each-ref", "refs/docs/").splitlines()) == WRITERS
    git(settings, "fsck", "--strict", "--no-dangling")
