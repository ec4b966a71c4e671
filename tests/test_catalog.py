"""The catalog: items whose content is a validated document, releases, search, installs and
the bundle, through the API on a real PostgreSQL and git."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from tests.claude_md_helpers import API, assert_problem, git, person, sql, svc_cli  # noqa: F401 (fixtures: person is crew's)
from tests.team_helpers import crew  # noqa: F401 (fixtures)

DATA = Path(__file__).parent / "data" / "catalog"
SKILL = (DATA / "code-review" / "SKILL.md").read_text()
SERVER = (DATA / "local-weather" / "server.json").read_text()
TOOL = (DATA / "tools" / "get_weather.json").read_text()
SERVER_NAME = "io.github.user/local-weather"
MIB = 1024 * 1024


def create(client, headers, owner, type="skill", name="code-review", content=SKILL, **fields):
    body = {"type": type, "name": name, "owner": owner, "description": "Reviews diffs", "content": content, **fields}
    return client.post(f"{API}/catalog", json=body, headers=headers)


def made(client, headers, owner, **kwargs) -> dict:
    response = create(client, headers, owner, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


def skill(name: str, description: str, body: str = "Do the thing.\n") -> str:
    return f"---\nname: {name}\ndescription: {json.dumps(description)}\n---\n\n# {name}\n\n{body}"


def footprint(settings) -> tuple:
    """Everything a write leaves behind: rows, refs and git objects."""
    rows = sql(
        settings,
        "SELECT (SELECT count(*) FROM catalog_items), (SELECT count(*) FROM documents), "
        "(SELECT count(*) FROM document_versions), (SELECT count(*) FROM document_proposals), "
        "(SELECT count(*) FROM catalog_releases)",
    )
    objects = git(settings, "count-objects", "-v")
    return rows[0], git(settings, "for-each-ref"), objects


# --- validation on every write path -------------------------------------------------------

BOMB = "---\nname: code-review\ndescription: &a [x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n---\n"
BAD = [
    # (type, content, status, words of the detail or of an error)
    ("skill", "---\n- name\n- description\n---\nbody\n", 422, "mapping"),
    ("skill", BOMB, 422, "aliases"),
    ("skill", "---\nname: code-review\n\tdescription: tabs\n---\n", 422, ""),
    ("skill", skill("code-review", "nul \x00 here"), 422, "NUL"),
    ("skill", skill("Other_Name", "wrong name"), 422, "name"),
    ("skill", skill("code-review", "x" * MIB), 413, "limit"),
    ("mcp", '{"name": "io.github.user/local-weather",', 400, ""),
    ("mcp", json.dumps({"name": SERVER_NAME, "description": 5, "version": "1.0.0"}), 422, "description"),
    ("tool", json.dumps({"name": "get_weather", "description": "d", "input_schema": {"type": "string"}}), 422, "object"),
]


def _detail_mentions(body: dict, words: str) -> bool:
    return words in body["detail"] + json.dumps(body.get("errors") or [])


@pytest.fixture
def items(client, crew) -> dict[str, dict]:
    """One item of each type, owned by the team."""
    team = {"team_id": crew.team["id"]}
    return {
        "skill": made(client, crew.admin.headers, team),
        "mcp": made(client, crew.admin.headers, team, type="mcp", name=SERVER_NAME, content=SERVER),
        "tool": made(client, crew.admin.headers, team, type="tool", name="get_weather", content=TOOL),
    }


def _write(path: str, client, crew, items, item_type: str, content: str):
    url = f"{API}/catalog/{items[item_type]['id']}/document"
    if path == "create":
        name = {"skill": "code-review", "mcp": SERVER_NAME, "tool": "get_weather"}[item_type]
        return create(client, crew.admin.headers, {"user_id": crew.admin.id}, type=item_type, name=name, content=content)
    if path == "save":
        return client.put(url, json={"content": content}, headers=crew.admin.headers)
    if path == "import":
        filename = {"skill": "SKILL.md", "mcp": "server.json", "tool": "get_weather.json"}[item_type]
        files = {"file": (filename, content.encode("utf-8", "surrogatepass"), "application/octet-stream")}
        return client.post(f"{url}/import", files=files, headers=crew.admin.headers)
    assert path == "propose"
    return client.post(f"{url}/proposals", json={"content": content, "message": "try"}, headers=crew.member.headers)


@pytest.mark.parametrize("path", ["create", "save", "import", "propose"])
def test_every_write_path_refuses_bad_content_and_writes_nothing(client, crew, settings, items, path):
    for item_type, content, status, words in BAD:
        before = footprint(settings)
        response = _write(path, client, crew, items, item_type, content)
        body = assert_problem(response, status)
        assert _detail_mentions(body, words), (item_type, body)
        if status == 422 and item_type == "skill" and words not in ("", "NUL"):
            assert body["errors"] and all({"path", "message"} <= set(e) for e in body["errors"])
        assert footprint(settings) == before, (item_type, content[:40])
    if path == "import":  # bytes that are not UTF-8 are a 400
        files = {"file": ("SKILL.md", b"---\nname: code-review\ndescription: \xff\n---\n", "text/markdown")}
        url = f"{API}/catalog/{items['skill']['id']}/document/import"
        assert_problem(client.post(url, files=files, headers=crew.admin.headers), 400, "UTF-8")


def test_accepting_and_rolling_back_keep_the_content_valid_and_the_history(client, crew, items):
    url = f"{API}/catalog/{items['skill']['id']}/document"
    changed = SKILL.replace("correctness, security", "correctness, speed")
    proposal = client.post(f"{url}/proposals", json={"content": changed, "message": "speed"}, headers=crew.member.headers)
    assert proposal.status_code == 201, proposal.text
    accepted = client.post(f"{url}/proposals/{proposal.json()['id']}/accept", headers=crew.admin.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["version"] == 2
    first = items["skill"]["current_version"]["commit_sha"]
    rolled = client.post(f"{url}/rollback/{first[:10]}", headers=crew.owner.headers)
    assert rolled.status_code == 200 and rolled.json()["content"] == SKILL
    history = client.get(f"{url}/history", headers=crew.member.headers).json()["versions"]
    assert [v["version"] for v in history] == [3, 2, 1]
    diff = client.get(f"{url}/diff", params={"from": first, "to": accepted.json()["commit_sha"]}, headers=crew.member.headers)
    assert "-description: Reviews a pull request or a local diff for correctness, security" in diff.text
    assert client.put(url, json={"content": changed}, headers=crew.member.headers).status_code == 403
    item = client.get(f"{API}/catalog/{items['skill']['id']}", headers=crew.member.headers).json()
    assert item["current_version"]["version"] == 3


# --- items and visibility -----------------------------------------------------------------


def test_items_are_seen_only_by_their_owner_and_team_members(client, crew, items, admin):
    team_item = items["skill"]
    mine = made(client, crew.outsider.headers, {"user_id": crew.outsider.id}, description="the outsider's reviews")
    # Names are unique per owner and type, not across owners.
    assert_problem(create(client, crew.admin.headers, {"team_id": crew.team["id"]}), 409, "code-review")
    for who, expected in ((crew.member, {team_item["id"]}), (crew.outsider, {mine["id"]})):
        found = client.get(f"{API}/catalog", params={"q": "review", "type": "skill", "status": "all"}, headers=who.headers).json()
        assert {i["id"] for i in found["items"]} == expected
    everything = client.get(f"{API}/catalog", params={"type": "skill"}, headers=admin).json()
    assert {i["id"] for i in everything["items"]} == {team_item["id"], mine["id"]}
    # Hidden: 404 that names only the item, on the item, its document, releases and content.
    for suffix in ("", "/document", "/releases", "/content", "/document/history"):
        body = assert_problem(client.get(f"{API}/catalog/{team_item['id']}{suffix}", headers=crew.outsider.headers), 404)
        assert crew.team["id"] not in body["detail"]
    assert client.get(f"{API}/catalog/{mine['id']}", headers=crew.member.headers).status_code == 404
    # Another user cannot create items for someone else or a team it is not in.
    assert create(client, crew.outsider.headers, {"user_id": crew.member.id}, name="x").status_code == 404
    assert create(client, crew.member.headers, {"team_id": crew.team["id"]}, name="x").status_code == 403
    # Members read, only owners and admins change.
    patch = {"description": "Reviews pull requests", "tags": ["review", "git"]}
    assert client.patch(f"{API}/catalog/{team_item['id']}", json=patch, headers=crew.member.headers).status_code == 403
    changed = client.patch(f"{API}/catalog/{team_item['id']}", json=patch, headers=crew.admin.headers)
    assert changed.status_code == 200 and changed.json()["tags"] == ["review", "git"]
    assert client.delete(f"{API}/catalog/{mine['id']}", headers=crew.outsider.headers).status_code == 204
    assert client.get(f"{API}/catalog/{mine['id']}", headers=crew.outsider.headers).status_code == 404


def test_deleting_an_item_keeps_its_history_in_git_and_drops_its_release_refs(client, crew, items, settings):
    item = items["tool"]
    assert client.post(f"{API}/catalog/{item['id']}/releases", json={"version": "1.0.0"}, headers=crew.admin.headers).status_code == 201
    document_id = sql(settings, "SELECT document_id FROM catalog_items WHERE id = %s", (item["id"],))[0][0]
    assert client.delete(f"{API}/catalog/{item['id']}", headers=crew.admin.headers).status_code == 204
    refs = git(settings, "for-each-ref", "--format=%(refname)")
    assert f"refs/deleted/{document_id}" in refs and f"refs/releases/{item['id']}" not in refs
    assert sql(settings, "SELECT count(*) FROM documents WHERE id = %s", (document_id,))[0][0] == 0
    assert_problem(client.patch(f"{API}/catalog/{items['skill']['id']}", json={"tags": None}, headers=crew.admin.headers), 422, "tags")
    # Deleting the team takes its items (installed ones too) with it; their histories stay in git.
    client.post(f"{API}/catalog/{items['skill']['id']}/install", headers=crew.member.headers)
    assert client.delete(crew.url, headers=crew.owner.headers).status_code == 204
    assert sql(settings, "SELECT count(*) FROM catalog_items")[0][0] == 0
    assert client.get(f"{API}/me/bundle", headers=crew.member.headers).status_code == 200
    assert client.get(f"{API}/me/installs", headers=crew.member.headers).json()["items"] == []


# --- releases ------------------------------------------------------------------------------


def test_releases_are_semver_immutable_and_refs_git_can_find(client, crew, items, settings):
    item = items["skill"]
    url = f"{API}/catalog/{item['id']}"
    first_sha = item["current_version"]["commit_sha"]
    released = client.post(f"{url}/releases", json={"version": "1.0.0", "notes": "first"}, headers=crew.admin.headers)
    assert released.status_code == 201 and released.json()["commit_sha"] == first_sha
    assert git(settings, "rev-parse", f"refs/releases/{item['id']}/1.0.0").strip() == first_sha
    newer = SKILL + "\nMore.\n"
    second_sha = client.put(f"{url}/document", json={"content": newer}, headers=crew.admin.headers).json()["commit_sha"]
    assert_problem(client.post(f"{url}/releases", json={"version": "1.0.0", "sha": second_sha}, headers=crew.admin.headers), 409, "immutable")
    assert_problem(client.post(f"{url}/releases", json={"version": "v1.1"}, headers=crew.admin.headers), 422, "semantic")
    other_sha = items["tool"]["current_version"]["commit_sha"]
    assert_problem(client.post(f"{url}/releases", json={"version": "2.0.0", "sha": other_sha}, headers=crew.admin.headers), 404, "not a version")
    assert client.post(f"{url}/releases", json={"version": "1.1.0"}, headers=crew.member.headers).status_code == 403
    assert client.post(f"{url}/releases", json={"version": "1.1.0"}, headers=crew.admin.headers).status_code == 201
    assert client.post(f"{url}/releases", json={"version": "2.0.0-rc.1"}, headers=crew.admin.headers).status_code == 201
    listed = client.get(f"{url}/releases", headers=crew.member.headers).json()
    assert [r["version"] for r in listed["items"]] == ["2.0.0-rc.1", "1.1.0", "1.0.0"] and listed["latest"] == "1.1.0"
    for release, text in (("1.0.0", SKILL), ("latest", newer), (None, newer)):
        params = {"release": release} if release else {}
        content = client.get(f"{url}/content", params=params, headers=crew.member.headers)
        assert content.status_code == 200 and content.content == text.encode()
        assert content.headers["content-type"] == "text/markdown; charset=utf-8"
        again = client.get(f"{url}/content", params=params, headers={**crew.member.headers, "If-None-Match": content.headers["etag"]})
        assert again.status_code == 304
    assert_problem(client.get(f"{url}/content", params={"release": "9.9.9"}, headers=crew.member.headers), 404)
    mcp = client.get(f"{API}/catalog/{items['mcp']['id']}/content", headers=crew.member.headers)
    assert mcp.headers["content-type"] == "application/json" and json.loads(mcp.content)["name"] == SERVER_NAME


def test_of_two_concurrent_creations_of_one_release_exactly_one_wins(client, crew, items, settings):
    url = f"{API}/catalog/{items['mcp']['id']}"
    newer = SERVER.replace("Local MCP server", "A local MCP server")
    second_sha = client.put(f"{url}/document", json={"content": newer}, headers=crew.admin.headers).json()["commit_sha"]
    shas = (items["mcp"]["current_version"]["commit_sha"], second_sha)
    for round_ in range(3):
        version = f"1.{round_}.0"
        barrier = threading.Barrier(2)
        statuses: dict[str, int] = {}

        def release(sha: str, headers: dict) -> None:
            barrier.wait()
            response = client.post(f"{url}/releases", json={"version": version, "sha": sha}, headers=headers)
            statuses[sha] = response.status_code

        threads = [threading.Thread(target=release, args=pair) for pair in zip(shas, (crew.owner.headers, crew.admin.headers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses.values()) == [201, 409], statuses
        winner = next(sha for sha, status in statuses.items() if status == 201)
        assert git(settings, "rev-parse", f"refs/releases/{items['mcp']['id']}/{version}").strip() == winner
        stored = sql(settings, "SELECT commit_sha FROM catalog_releases WHERE version = %s", (version,))
        assert stored == [(winner,)]


# --- search --------------------------------------------------------------------------------


def test_search_ranks_paginates_by_keyset_and_survives_any_query(client, crew):
    team = {"team_id": crew.team["id"]}
    descriptions = {
        "deploy-check": "Checks a deploy: migrations, feature flags and rollback plans for the deploy.",
        "migration-review": "Reviews database migrations for locking and rollback.",
        "flag-audit": "Lists feature flags nobody reads any more.",
        "old-deploy": "The old deploy helper.",
        "lint-fix": "Fixes lint warnings.",
    }
    ids = {}
    for name, description in descriptions.items():
        ids[name] = made(client, crew.admin.headers, team, name=name, content=skill(name, description),
                         description=description, tags=["ops"] if "deploy" in name else [])["id"]
    client.patch(f"{API}/catalog/{ids['old-deploy']}", json={"status": "deprecated"}, headers=crew.admin.headers)
    search = lambda **params: client.get(f"{API}/catalog", params=params, headers=crew.member.headers)  # noqa: E731
    hits = search(q="deploy").json()["items"]
    assert hits[0]["id"] == ids["deploy-check"]  # in its name and twice in its description
    assert ids["old-deploy"] not in {h["id"] for h in hits}  # deprecated: only when asked
    assert ids["old-deploy"] in {h["id"] for h in search(q="deploy", status="all").json()["items"]}
    assert [h["id"] for h in search(q="deploy", status="deprecated").json()["items"]] == [ids["old-deploy"]]
    assert {h["id"] for h in search(tag="ops", status="all").json()["items"]} == {ids["deploy-check"], ids["old-deploy"]}
    assert search(q="migrations -locking").json()["items"][0]["id"] == ids["deploy-check"]
    # Walking pages of one hit each gives the whole ranked list once, in order.
    for params in ({"q": "rollback OR flags OR lint OR deploy"}, {}):
        whole = [h["id"] for h in search(**params, limit=100).json()["items"]]
        walked, after = [], None
        while True:
            page = search(**params, limit=1, **({"after": after} if after else {})).json()
            walked += [h["id"] for h in page["items"]]
            after = page["next"]
            if after is None:
                break
        assert walked == whole and len(whole) == len(set(whole)) >= 4
    for q in ("foo & | ! ( ) :* <-> 'x", '"unclosed', "-", "OR OR", "\\", "a:*b", "🙂"):
        assert search(q=q).status_code == 200, q
    assert_problem(search(q="a\x00b"), 422)
    assert_problem(search(after="!!"), 422, "after")
    assert search(after="7f800000.01M8XMXKDFSDY3BXP25DH1V58M").status_code == 200  # any position is one


# --- installs and the bundle ---------------------------------------------------------------


def test_installs_are_idempotent_and_counted_per_user(client, crew, items):
    url = f"{API}/catalog/{items['skill']['id']}/install"
    for who in (crew.member, crew.member, crew.admin):
        assert client.post(url, headers=who.headers).status_code == 200
    assert client.get(f"{API}/catalog/{items['skill']['id']}", headers=crew.member.headers).json()["install_count"] == 2
    assert client.post(url, headers=crew.outsider.headers).status_code == 404
    mine = client.get(f"{API}/me/installs", headers=crew.member.headers).json()["items"]
    assert [i["id"] for i in mine] == [items["skill"]["id"]]
    for _ in range(2):
        assert client.delete(url, headers=crew.member.headers).json()["install_count"] == 1
    assert client.get(f"{API}/me/installs", headers=crew.member.headers).json()["items"] == []


def test_the_bundle_is_what_claude_code_reads_at_the_released_versions(client, crew, items):
    member = crew.member.headers
    client.put(f"{API}/me/claude-md", json={"content": "# Mia's rules\n"}, headers=member)
    skill_url = f"{API}/catalog/{items['skill']['id']}"
    client.post(f"{skill_url}/releases", json={"version": "1.0.0"}, headers=crew.admin.headers)
    client.put(f"{skill_url}/document", json={"content": SKILL + "\nUnreleased.\n"}, headers=crew.admin.headers)
    for item in items.values():
        assert client.post(f"{API}/catalog/{item['id']}/install", headers=member).status_code == 200
    response = client.get(f"{API}/me/bundle", headers=member)
    assert response.status_code == 200 and response.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        assert all(m.mtime == 0 for m in tar.getmembers())
    assert sorted(files) == [
        ".claude/CLAUDE.md", ".claude/settings.json", ".claude/skills/code-review/SKILL.md",
        ".claude/tools/get_weather.json", ".mcp.json",
    ]
    assert files[".claude/skills/code-review/SKILL.md"] == SKILL.encode()  # the release, not the newer version
    assert files[".claude/CLAUDE.md"] == b"# Mia's rules\n"
    assert json.loads(files[".claude/tools/get_weather.json"]) == json.loads(TOOL)
    assert json.loads(files[".claude/settings.json"]) == {"extraKnownMarketplaces": {
        "platform": {"source": {"source": "git", "url": "http://testserver/git/teams/platform.git"}},
    }}
    assert json.loads(files[".mcp.json"]) == {
        "mcpServers": {
            "local-weather": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-weather@1.0.0", "${CONFIG_PATH}", "--port", "8080"],
                "env": {"API_KEY": "${API_KEY}"},
            }
        }
    }
    again = client.get(f"{API}/me/bundle", headers=member)
    assert again.content == response.content and again.headers["etag"] == response.headers["etag"]
    cached = client.get(f"{API}/me/bundle", headers={**member, "If-None-Match": response.headers["etag"]})
    assert cached.status_code == 304
    client.post(f"{skill_url}/releases", json={"version": "1.1.0"}, headers=crew.admin.headers)
    changed = client.get(f"{API}/me/bundle", headers={**member, "If-None-Match": response.headers["etag"]})
    assert changed.status_code == 200 and changed.headers["etag"] != response.headers["etag"]


def test_readme_tour_import_release_search_install_bundle(client, crew, svc_cli, tmp_path, settings, admin):
    """A folder of skills imported for a team, one released, found by a word of its
    description, installed, and its released text in the bundle."""
    result = svc_cli("catalog", "import", str(DATA), "--owner", f"team:{crew.team['name']}")
    assert result.code == 0, result.stderr
    assert "[1/" in result.stderr and "created" in result.stderr and "imported: 6 created" in result.stderr
    rerun = svc_cli("catalog", "import", str(DATA), "--owner", f"team:{crew.team['name']}")
    assert rerun.code == 0 and "imported: 6 unchanged" in rerun.stderr
    bad = tmp_path / "bad" / "broken"
    bad.mkdir(parents=True)
    (bad / "SKILL.md").write_text("no front matter\n")
    failed = svc_cli("catalog", "import", str(tmp_path / "bad"), "--owner", f"team:{crew.team['name']}")
    assert failed.code == 1 and "invalid" in failed.stderr
    found = client.get(f"{API}/catalog", params={"q": "prioritised"}, headers=crew.member.headers).json()["items"]
    assert [i["name"] for i in found] == ["code-review"]
    item_id = found[0]["id"]
    assert client.post(f"{API}/catalog/{item_id}/releases", json={"version": "1.0.0"}, headers=crew.admin.headers).status_code == 201
    assert client.post(f"{API}/catalog/{item_id}/install", headers=crew.member.headers).status_code == 200
    bundle = client.get(f"{API}/me/bundle", headers=crew.member.headers)
    project = tmp_path / "project"
    project.mkdir()
    with tarfile.open(fileobj=io.BytesIO(bundle.content)) as tar:
        tar.extractall(project, filter="data")
    assert (project / ".claude" / "skills" / "code-review" / "SKILL.md").read_text() == SKILL
    assert git(settings, "fsck", "--no-dangling") == ""
    verified = svc_cli("verify")
    assert verified.code == 0, verified.stdout + verified.stderr
    events = client.get(f"{API}/audit", params={"resource_id": item_id}, headers=admin).json()["items"]
    assert {"catalog.create", "catalog.release", "catalog.install"} <= {e["action"] for e in events}
