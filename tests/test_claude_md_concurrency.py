"""Several uvicorn workers saving at once: every acknowledged save is exactly one version.

Two workers and 20 saves each by default; `SVC_LONG_TESTS=1` runs four workers and 50 saves each.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.claude_md_helpers import API, create_user, git, sql
from tests.conftest import bearer
from tests.fault_helpers import LONG

WRITERS = 4 if LONG else 2
SAVES_EACH = 50 if LONG else 20


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
    ref = f"refs/docs/{sql(settings, 'SELECT id FROM documents WHERE owner_user_id = %s', (user_id,))[0][0]}"
    chain = [line.split(" ", 1) for line in git(settings, "log", "--first-parent", "--format=%H %s", ref).splitlines()]
    assert chain == [[v["commit_sha"], v["message"]] for v in history]
    with server.client(headers=headers, timeout=30) as http:
        for version in history[:: len(history) // 5]:
            stored = http.get(f"{url}/versions/{version['commit_sha']}").json()["content"]
            assert stored == by_sha[version["commit_sha"]]["content"]


def test_workers_saving_one_document_then_one_document_each(client, admin, live_server, settings, make_token):
    """One server for both cases: starting four workers is the expensive part."""
    users = [create_user(client, admin, f"user{w}") for w in range(WRITERS)]
    server = live_server(workers=WRITERS)

    # Four writers, one document: the row lock queues them; nothing is lost or doubled.
    url = f"{API}/users/{users[0]['id']}/claude-md"
    with ThreadPoolExecutor(WRITERS) as pool:
        acknowledged = [saved for batch in pool.map(lambda w: _save_many(server, admin, url, w), range(WRITERS))
                        for saved in batch]
    assert len(acknowledged) == WRITERS * SAVES_EACH
    _assert_every_save_is_one_version(server, settings, admin, url, users[0]["id"], acknowledged)

    # Four writers, four documents (two of them new), each through its owner's token.
    tokens = [bearer(make_token("user", user_id=u["id"])) for u in users]
    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(lambda w: _save_many(server, tokens[w], f"{API}/me/claude-md", w), range(WRITERS)))
    for writer, saved in enumerate(results):
        already = WRITERS * SAVES_EACH if writer == 0 else 0
        assert [a["version"] for a in saved] == list(range(already + 1, already + SAVES_EACH + 1))
        history_so_far = (acknowledged if writer == 0 else []) + saved
        _assert_every_save_is_one_version(
            server, settings, tokens[writer], f"{API}/me/claude-md", users[writer]["id"], history_so_far
        )
    assert len(git(settings, "for-each-ref", "refs/docs/").splitlines()) == WRITERS
    git(settings, "fsck", "--strict", "--no-dangling")
