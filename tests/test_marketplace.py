"""Claude Code plugin marketplaces over git's smart HTTP protocol: the real git CLI against a real
uvicorn, and (when npm can be reached) the real Claude Code CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from svc.claude_code import marketplace_name, mcp_server_entry
from tests.claude_md_helpers import API, PROBLEM, git, person, svc_cli  # noqa: F401 (fixtures: person is crew's)
from tests.team_helpers import crew  # noqa: F401 (fixtures)
from tests.conftest import LiveServer
from tests.test_catalog import DATA, SERVER, SERVER_NAME, SKILL, TOOL, made, skill

SERVERS = Path(__file__).parent / "data" / "servers"


def run_git(*args: str, cwd: Path | None = None, token: str | None = None, check: bool = True,
            home: Path | None = None) -> subprocess.CompletedProcess:
    """git as a user runs it; the token through a credential helper (HTTP Basic), never in the URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    if home is not None:
        env["HOME"] = str(home)
    helper = ["-c", "credential.helper=", "-c", f"credential.helper=!f() {{ echo username=git; echo password={token}; }}; f"] if token else []
    result = subprocess.run(["git", *helper, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result


def http_get(url: str, **kwargs) -> httpx.Response:
    return httpx.get(url, timeout=60, **kwargs)  # a loaded machine answers a fresh server slowly


def http_post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(url, timeout=60, **kwargs)


def token_of(person) -> str:
    return person.headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def catalog(client, crew) -> dict[str, dict]:
    """The team's items: a released skill, MCP server and tool, a released then deprecated
    skill, and a skill never released."""
    team, by = {"team_id": crew.team["id"]}, crew.admin.headers
    items = {
        "skill": made(client, by, team),
        "mcp": made(client, by, team, type="mcp", name=SERVER_NAME, content=SERVER),
        "tool": made(client, by, team, type="tool", name="get_weather", content=TOOL),
        "old": made(client, by, team, name="old-habits", content=skill("old-habits", "Gone")),
        "draft": made(client, by, team, name="draft", content=skill("draft", "Not yet")),
    }
    for key in ("skill", "mcp", "tool", "old"):
        release(client, by, items[key], "1.0.0")
    release(client, by, items["skill"], "1.1.0-rc.1")  # a pre-release is never the marketplace's
    assert client.patch(f"{API}/catalog/{items['old']['id']}", json={"status": "deprecated"}, headers=by).status_code == 200
    return items


def release(client, headers, item, version):
    response = client.post(f"{API}/catalog/{item['id']}/releases", json={"version": version}, headers=headers)
    assert response.status_code == 201, response.text


@pytest.fixture
def server(served_app) -> LiveServer:
    return served_app()


def url(server: LiveServer, team="platform") -> str:
    return f"{server.base_url}/git/teams/{team}.git"


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_a_shallow_clone_is_the_teams_released_skills_and_servers(crew, catalog, server, tmp_path, protocol):
    clone = tmp_path / "clone"
    run_git("-c", f"protocol.version={protocol}", "clone", "--depth", "1", url(server), str(clone), token=token_of(crew.member))
    assert run_git("rev-parse", "--is-shallow-repository", cwd=clone).stdout.strip() == "true"
    files = sorted(str(p.relative_to(clone)) for p in clone.rglob("*") if p.is_file() and ".git" not in p.parts)
    assert files == [
        ".claude-plugin/marketplace.json",
        "plugins/code-review/.claude-plugin/plugin.json",
        "plugins/code-review/skills/code-review/SKILL.md",
        "plugins/local-weather/.claude-plugin/plugin.json",
        "plugins/local-weather/.mcp.json",
    ]  # no tool, no deprecated or unreleased skill
    marketplace = read(clone / ".claude-plugin" / "marketplace.json")
    assert marketplace["name"] == "platform" and marketplace["owner"] == {"name": "Platform"}
    assert [(p["name"], p["version"], p["source"]) for p in marketplace["plugins"]] == [
        ("code-review", "1.0.0", "./plugins/code-review"), ("local-weather", "1.0.0", "./plugins/local-weather"),
    ]
    assert read(clone / "plugins/code-review/.claude-plugin/plugin.json") == {
        "name": "code-review", "description": "Reviews diffs", "version": "1.0.0",
    }
    assert (clone / "plugins/code-review/skills/code-review/SKILL.md").read_bytes() == SKILL.encode()
    assert read(clone / "plugins/local-weather/.mcp.json") == {"mcpServers": {"local-weather": {
        "command": "npx",
        "args": ["-y", "@modelcontextprotocol/server-weather@1.0.0", "${CONFIG_PATH}", "--port", "8080"],
        "env": {"API_KEY": "${API_KEY}"},
    }}}


def test_ls_remote_shows_the_one_branch_and_a_fetch_sees_each_release(client, crew, catalog, server, tmp_path):
    token = token_of(crew.member)
    refs = run_git("ls-remote", url(server), token=token).stdout.splitlines()
    assert sorted(line.split("\t")[1] for line in refs) == ["HEAD", "refs/heads/main"]
    clone = tmp_path / "clone"
    run_git("clone", "--depth", "1", url(server), str(clone), token=token)
    release(client, crew.admin.headers, catalog["skill"], "1.2.0")
    run_git("fetch", "--depth", "1", "--quiet", "origin", cwd=clone, token=token)  # a shallow fetch, as on update
    run_git("reset", "--quiet", "--hard", "origin/main", cwd=clone)
    assert read(clone / "plugins/code-review/.claude-plugin/plugin.json")["version"] == "1.2.0"
    assert run_git("log", "-1", "--format=%s", cwd=clone).stdout.strip() == "Release code-review 1.2.0"


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_no_object_outside_the_marketplace_can_be_fetched_by_id(client, crew, catalog, server, settings, tmp_path, person, protocol):
    """Another team's marketplace commit and a content-store document commit are refused,
    though their ids are known."""
    other = person("zoe")
    response = client.post(f"{API}/teams", json={"name": "secret-team"}, headers=other.headers)
    team_id = response.json()["id"]
    theirs = made(client, other.headers, {"team_id": team_id}, name="hidden", content=skill("hidden", "Theirs"))
    release(client, other.headers, theirs, "1.0.0")
    draft = client.get(f"{API}/catalog/{catalog['draft']['id']}", headers=crew.admin.headers).json()
    foreign = [
        git(settings, "rev-parse", f"refs/marketplaces/teams/{team_id}").strip(),  # another team's marketplace
        draft["current_version"]["commit_sha"],  # a document version in the content store
        git(settings, "rev-parse", f"{draft['current_version']['commit_sha']}:SKILL.md").strip(),  # its blob
    ]
    clone = tmp_path / "clone"
    token = token_of(crew.member)
    run_git("clone", "--depth", "1", url(server), str(clone), token=token)
    for sha in foreign:
        fetched = run_git("-c", f"protocol.version={protocol}", "fetch", "origin", sha, cwd=clone, token=token, check=False)
        assert fetched.returncode != 0, fetched.stdout
        assert run_git("cat-file", "-e", sha, cwd=clone, check=False).returncode != 0


def test_who_may_read_a_marketplace(client, crew, catalog, server, person, make_token):
    refs = f"{url(server)}/info/refs?service=git-upload-pack"
    anonymous = http_get(refs)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == 'Basic realm="svc"'
    assert anonymous.headers["content-type"] == PROBLEM
    wrong = http_get(refs, auth=("git", "svc_not-a-token"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == 'Basic realm="svc"'
    for who in (crew.owner, crew.admin, crew.member):
        assert http_get(refs, auth=("anything", token_of(who))).status_code == 200
    assert http_get(refs, headers=crew.member.headers).status_code == 200  # Bearer works too
    assert http_get(refs, auth=("git", token_of(crew.outsider))).status_code == 404
    missing = http_get(f"{url(server, 'nobody')}/info/refs?service=git-upload-pack", auth=("git", token_of(crew.member)))
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert run_git("ls-remote", url(server), check=False).returncode != 0  # no credentials: git gives up
    service = make_token("service")
    assert http_get(refs, auth=("git", service)).status_code in (403, 404)


def test_pushes_other_services_and_other_paths_are_refused_and_write_nothing(client, crew, catalog, server, settings, tmp_path):
    token = token_of(crew.owner)
    before = git(settings, "for-each-ref")
    pushed = http_post(f"{url(server)}/git-receive-pack", auth=("git", token), content=b"0000")
    assert pushed.status_code == 403 and pushed.headers["content-type"] == PROBLEM
    advertised = http_get(f"{url(server)}/info/refs?service=git-receive-pack", auth=("git", token))
    assert advertised.status_code == 403 and "read-only" in advertised.json()["detail"]
    for path in ("/info/refs", "/info/refs?service=git-upload-archive"):
        assert http_get(url(server) + path, auth=("git", token)).status_code == 403
    for path in ("/HEAD", "/objects/info/packs", "/../../content.git/info/refs"):
        response = http_get(url(server) + path, auth=("git", token))
        assert response.status_code == 404 and response.headers["content-type"] == PROBLEM
    clone = tmp_path / "clone"
    run_git("clone", url(server), str(clone), token=token)
    (clone / "README.md").write_text("mine\n")
    run_git("add", "README.md", cwd=clone)
    run_git("-c", "user.name=o", "-c", "user.email=o@x", "commit", "-qm", "x", cwd=clone)
    assert run_git("push", "origin", "HEAD:main", cwd=clone, token=token, check=False).returncode != 0
    assert git(settings, "for-each-ref") == before


def test_a_users_own_marketplace(client, crew, server, tmp_path):
    mine = made(client, crew.member.headers, {"user_id": crew.member.id}, name="my-notes", content=skill("my-notes", "Mine"))
    release(client, crew.member.headers, mine, "0.1.0")
    user_url = f"{server.base_url}/git/users/{crew.member.username}.git"
    clone = tmp_path / "mine"
    run_git("clone", "--depth", "1", user_url, str(clone), token=token_of(crew.member))
    marketplace = read(clone / ".claude-plugin/marketplace.json")
    assert marketplace["name"] == "mia" and [p["name"] for p in marketplace["plugins"]] == ["my-notes"]
    assert http_get(f"{user_url}/info/refs?service=git-upload-pack", auth=("git", token_of(crew.admin))).status_code == 404


def test_deprecation_deletion_and_rename_reach_the_marketplace(client, crew, catalog, settings):
    by = crew.owner.headers
    ref = f"refs/marketplaces/teams/{crew.team['id']}"

    def plugins() -> list[str]:
        listed = json.loads(git(settings, "show", f"{ref}:.claude-plugin/marketplace.json"))
        return [p["name"] for p in listed["plugins"]]

    assert plugins() == ["code-review", "local-weather"]
    client.patch(f"{API}/catalog/{catalog['skill']['id']}", json={"status": "deprecated"}, headers=by)
    assert plugins() == ["local-weather"]
    client.patch(f"{API}/catalog/{catalog['old']['id']}", json={"status": "active"}, headers=by)
    assert plugins() == ["local-weather", "old-habits"]
    assert client.delete(f"{API}/catalog/{catalog['mcp']['id']}", headers=by).status_code == 204
    assert plugins() == ["old-habits"]
    assert client.patch(f"{API}/teams/{crew.team['id']}", json={"name": "Platform.Core"}, headers=by).status_code == 200
    assert json.loads(git(settings, "show", f"{ref}:.claude-plugin/marketplace.json"))["name"] == "platform-core"
    history = git(settings, "log", "--format=%s", ref).splitlines()
    assert history[:3] == ["Rename the team Platform.Core", "Delete io.github.user/local-weather", "Change the status of old-habits"]


def test_two_releases_at_once_both_reach_the_marketplace(client, crew, services, settings):
    team = {"team_id": crew.team["id"]}
    items = [made(client, crew.admin.headers, team, name=f"s{i}", content=skill(f"s{i}", "one of many")) for i in range(4)]
    barrier = threading.Barrier(len(items))
    failures = []

    def release_one(item):
        barrier.wait()
        try:
            release(client, crew.admin.headers, item, "1.0.0")
        except AssertionError as exc:  # pragma: no cover (reported below)
            failures.append(exc)

    threads = [threading.Thread(target=release_one, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    listed = json.loads(git(settings, "show", f"refs/marketplaces/teams/{crew.team['id']}:.claude-plugin/marketplace.json"))
    assert sorted(p["name"] for p in listed["plugins"]) == ["s0", "s1", "s2", "s3"]


# --- an owner's deletion, and svc verify ------------------------------------------------------


def marketplace_refs(settings) -> list[str]:
    return git(settings, "for-each-ref", "--format=%(refname)", "refs/marketplaces/").split()


def test_deleting_a_team_or_a_user_deletes_its_marketplace(client, crew, admin, server, settings, tmp_path):
    team_id, user_id = crew.team["id"], crew.member.id
    theirs = made(client, crew.admin.headers, {"team_id": team_id})
    release(client, crew.admin.headers, theirs, "1.0.0")
    mine = made(client, crew.member.headers, {"user_id": user_id}, name="my-notes", content=skill("my-notes", "Mine"))
    release(client, crew.member.headers, mine, "0.1.0")
    for path in ("teams/platform", f"users/{crew.member.username}"):  # each served copy is made
        run_git("clone", "--depth", "1", f"{server.base_url}/git/{path}.git", str(tmp_path / path), token=token_of(crew.member))
    served = settings.marketplaces_path
    assert marketplace_refs(settings) == [f"refs/marketplaces/teams/{team_id}", f"refs/marketplaces/users/{user_id}"]
    assert (served / "teams" / f"{team_id}.git").is_dir() and (served / "users" / f"{user_id}.git").is_dir()

    assert client.delete(crew.url, headers=crew.owner.headers).status_code == 204
    assert marketplace_refs(settings) == [f"refs/marketplaces/users/{user_id}"]
    assert not (served / "teams" / f"{team_id}.git").exists()
    assert client.delete(f"{API}/users/{user_id}", headers=admin).status_code == 204
    assert marketplace_refs(settings) == []
    assert not (served / "users" / f"{user_id}.git").exists()


def test_verify_removes_the_marketplace_of_a_team_that_is_gone(client, crew, settings, svc_cli):
    item = made(client, crew.admin.headers, {"team_id": crew.team["id"]})
    release(client, crew.admin.headers, item, "1.0.0")
    gone = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZC"  # a team deleted before deletions removed marketplaces
    git(settings, "update-ref", f"refs/marketplaces/teams/{gone}", f"refs/marketplaces/teams/{crew.team['id']}")
    served = settings.marketplaces_path / "teams" / f"{gone}.git"
    run_git("init", "--quiet", "--bare", str(served))

    report = svc_cli("verify")
    assert report.code == 1 and report.stdout.startswith(f"{gone}\torphan_marketplace\tdrift\t"), report.stdout
    assert len(report.stdout.splitlines()) == 1
    repaired = svc_cli("verify", "--repair")
    assert repaired.code == 0 and f"{gone}\torphan_marketplace\trepaired\t" in repaired.stdout
    assert marketplace_refs(settings) == [f"refs/marketplaces/teams/{crew.team['id']}"]
    assert not served.exists()
    again = svc_cli("verify")
    assert (again.code, again.stdout) == (0, "")


def test_verify_rebuilds_a_marketplace_moved_back_by_hand(client, crew, settings, svc_cli):
    item = made(client, crew.admin.headers, {"team_id": crew.team["id"]})
    release(client, crew.admin.headers, item, "1.0.0")
    release(client, crew.admin.headers, item, "1.1.0")
    ref = f"refs/marketplaces/teams/{crew.team['id']}"
    clean = svc_cli("verify")
    assert (clean.code, clean.stdout) == (0, "")

    def version() -> str:
        return json.loads(git(settings, "show", f"{ref}:plugins/code-review/.claude-plugin/plugin.json"))["version"]

    git(settings, "update-ref", ref, f"{ref}~1")  # moved back by hand to the 1.0.0 marketplace
    assert version() == "1.0.0"
    report = svc_cli("verify")
    assert report.code == 1 and report.stdout.startswith(f"{crew.team['id']}\tmarketplace_drift\tdrift\t{ref} is at")
    assert version() == "1.0.0"  # only reported
    repaired = svc_cli("verify", "--repair")
    assert repaired.code == 0 and "\tmarketplace_drift\trepaired\t" in repaired.stdout
    assert version() == "1.1.0"
    assert git(settings, "log", "-1", "--format=%s", ref).strip() == "Rebuild the marketplace (svc verify --repair)"
    again = svc_cli("verify")
    assert (again.code, again.stdout) == (0, "")


# --- the one translation of server.json ------------------------------------------------------


def test_server_json_as_claude_code_reads_it():
    github = json.loads((SERVERS / "github-mcp-server.json").read_text())
    assert mcp_server_entry(github) == {
        "command": "docker",
        "args": [
            "run", "-i", "--rm",
            "-e", "GITHUB_PERSONAL_ACCESS_TOKEN=${TOKEN}", "-e", "GITHUB_HOST=${HOST:-https://github.com}",
            "-e", "GITHUB_TOOLSETS",
            "ghcr.io/github/github-mcp-server:0.24.1",
        ],
        "env": {
            "GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_PERSONAL_ACCESS_TOKEN}",
            "GITHUB_TOOLSETS": "${GITHUB_TOOLSETS:-repos,issues,pull_requests}",
        },
    }
    assert mcp_server_entry({**github, "packages": []}) == {
        "type": "http", "url": "https://api.githubcopilot.com/mcp/", "headers": {"Authorization": "Bearer ${TOKEN}"},
    }
    remote = json.loads((DATA / "remote-weather" / "server.json").read_text())
    assert mcp_server_entry(remote) == {
        "type": "http", "url": "https://${HOST:-api.example.com}/mcp", "headers": {"Authorization": "${AUTHORIZATION}"},
    }
    pypi = {"name": "io.github.user/time.v2", "packages": [{
        "registryType": "pypi", "identifier": "mcp-server-time", "version": "0.6.2", "transport": {"type": "stdio"},
        "environmentVariables": [{"name": "LOCAL_TZ", "default": "UTC"}],
    }]}
    assert mcp_server_entry(pypi) == {"command": "uvx", "args": ["mcp-server-time==0.6.2"], "env": {"LOCAL_TZ": "${LOCAL_TZ:-UTC}"}}


def test_marketplace_names_are_what_claude_code_accepts():
    assert marketplace_name("Platform.Core_Team") == "platform-core-team"
    assert marketplace_name("claude-plugins-official") == "claude-plugins-official-svc"


# --- the real Claude Code --------------------------------------------------------------------

CLAUDE_CODE_VERSION = "2.1.337"


def claude_code_cli() -> Path:
    """The pinned Claude Code CLI, from the directory `.ci/run` installs it into
    (`SVC_CLAUDE_CODE_DIR`, default ~/.cache/svc-tests/claude-code-<version>), installed there
    with npm when missing. Skips only when npm is missing or cannot install it."""
    default = Path.home() / ".cache" / "svc-tests" / f"claude-code-{CLAUDE_CODE_VERSION}"
    root = Path(os.environ.get("SVC_CLAUDE_CODE_DIR") or default)
    binary = root / "node_modules" / ".bin" / "claude"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so Claude Code cannot be: the Claude Code end-to-end test is skipped")
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root), f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"],
        capture_output=True, text=True, timeout=900,
    )
    if installed.returncode != 0 or not binary.exists():
        reason = (installed.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"npm could not install @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION} ({reason}): skipped")
    return binary


def test_claude_code_adds_the_marketplace_installs_and_updates_plugins(client, crew, catalog, server, tmp_path):
    """As a new user does: a git credential helper holds the token, Claude Code (offline, no
    API key) adds the team's marketplace, installs a skill and an MCP server, and after a
    release sees the new version once the marketplace and the plugin are updated."""
    claude = claude_code_cli()
    home = tmp_path / "home"
    home.mkdir()
    run_git("config", "--global", "credential.helper", "store", home=home)
    host = server.base_url.removeprefix("http://")
    (home / ".git-credentials").write_text(f"http://git:{token_of(crew.member)}@{host}\n")
    (home / ".git-credentials").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ANTHROPIC_", "CLAUDE_"))}
    env |= {"HOME": str(home), "GIT_TERMINAL_PROMPT": "0", "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}

    def run(*args: str) -> str:
        result = subprocess.run([str(claude), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"claude {' '.join(args)}: {result.stdout}\n{result.stderr}"
        return result.stdout

    run("plugin", "marketplace", "add", url(server))
    run("plugin", "install", "code-review@platform")
    run("plugin", "install", "local-weather@platform")
    cache = home / ".claude" / "plugins" / "cache" / "platform"
    assert (cache / "code-review" / "1.0.0" / "skills" / "code-review" / "SKILL.md").read_bytes() == SKILL.encode()
    assert "local-weather" in read(cache / "local-weather" / "1.0.0" / ".mcp.json")["mcpServers"]
    listed = run("mcp", "list")
    assert "plugin:local-weather:local-weather" in listed and "@modelcontextprotocol/server-weather@1.0.0" in listed
    assert token_of(crew.member) not in (home / ".claude" / "plugins" / "known_marketplaces.json").read_text()

    newer = SKILL + "\nAlso check the tests.\n"
    item_url = f"{API}/catalog/{catalog['skill']['id']}"
    assert client.put(f"{item_url}/document", json={"content": newer}, headers=crew.admin.headers).status_code == 200
    release(client, crew.admin.headers, catalog["skill"], "1.2.0")
    run("plugin", "marketplace", "update", "platform")
    run("plugin", "update", "code-review@platform")
    assert (cache / "code-review" / "1.2.0" / "skills" / "code-review" / "SKILL.md").read_text() == newer
