"""A team's Claude Code marketplace over git smart HTTP, with 200 released skills.

    uv run python -m tests.bench.marketplace [--items 200] [--runs 30]

Starts `svc serve` (embedded PostgreSQL, one worker), makes a team with `--items` skills
through the API, each released, then measures with the real git CLI:

- `git ls-remote` of the marketplace, p50 / p99;
- `git clone --depth 1`, p50;
- a release's POST (which rebuilds the marketplace commit and moves its ref in the same
  transaction), p50, beside a save of the same item's document (no marketplace work);

and, as the baseline measured in the same run, `git ls-remote` and `git clone --depth 1` of a
plain bare copy of the same marketplace served by `git http-backend` (behind a minimal
threaded CGI bridge in this process). Ratios are service / baseline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.bench.catalog import percentiles, timed
from tests.bench.processes import Processes, free_port, say

SKILL_TEXT = "---\nname: {name}\ndescription: Skill number {n} of the team, for the benchmark.\n---\n\n# {name}\n\n" + (
    "Do it step by step, and check each step.\n" * 30
)


def git(*args: str, token: str | None = None, cwd: Path | None = None) -> str:
    extra = ["-c", f"http.extraHeader=Authorization: Bearer {token}"] if token else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"GIT_TERMINAL_PROMPT": "0"}
    result = subprocess.run(["git", *extra, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {result.stderr}")
    return result.stdout


class HttpBackend(BaseHTTPRequestHandler):
    """`git http-backend` as CGI: the baseline server of plain bare repositories under `root`."""

    root: Path

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("content-type", ""), "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": self.headers.get("git-protocol", ""), "REMOTE_ADDR": "127.0.0.1",
            "HTTP_CONTENT_ENCODING": self.headers.get("content-encoding", ""),
        }
        output = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = output.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="svc-bench-marketplace-") as scratch:
        root = Path(scratch)
        try:
            server = processes.start_service(root / "data", host="127.0.0.1", workers=1, log_dir=root)
            measure(server.base_url, server.token, root, args.items, args.runs)
        finally:
            processes.close()


def measure(base_url: str, admin_token: str, root: Path, items: int, runs: int) -> None:
    api = httpx.Client(base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {admin_token}"}, timeout=60)
    user = api.post("/users", json={"email": "o@example.com", "username": "owner"}).json()
    token = api.post("/tokens", json={"name": "owner", "role": "user", "user_id": user["id"]}).json()["token"]
    owner = httpx.Client(base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    team = owner.post("/teams", json={"name": "bench"}).json()
    say(f"creating and releasing {items} skills…")
    ids = []
    for n in range(items):
        name = f"skill-{n:03d}"
        created = owner.post("/catalog", json={
            "type": "skill", "name": name, "owner": {"team_id": team["id"]}, "description": f"Skill {n}",
            "content": SKILL_TEXT.format(name=name, n=n),
        })
        created.raise_for_status()
        ids.append(created.json()["id"])
        owner.post(f"/catalog/{ids[-1]}/releases", json={"version": "1.0.0"}).raise_for_status()
    url = f"{base_url}/git/teams/bench.git"

    ls_remote = timed(lambda: git("ls-remote", url, token=token), runs)
    clones = root / "clones"
    clones.mkdir()
    counter = iter(range(10**6))
    clone = timed(lambda: git("clone", "--quiet", "--depth", "1", url, str(clones / f"c{next(counter)}"), token=token),
                  max(5, runs // 3))
    versions = iter(f"1.0.{n}" for n in range(1, 10**6))
    release = timed(lambda: owner.post(f"/catalog/{ids[0]}/releases", json={"version": next(versions)}).raise_for_status(), runs)
    texts = iter(range(10**6))
    save = timed(lambda: owner.put(f"/catalog/{ids[1]}/document", json={
        "content": SKILL_TEXT.format(name="skill-001", n=1) + f"\nEdit {next(texts)}.\n"}).raise_for_status(), runs)

    plain = root / "plain"
    plain.mkdir()
    git("clone", "--quiet", "--bare", url, str(plain / "bench.git"), token=token)
    HttpBackend.root = plain
    port = free_port()
    baseline = ThreadingHTTPServer(("127.0.0.1", port), HttpBackend)
    threading.Thread(target=baseline.serve_forever, daemon=True).start()
    plain_url = f"http://127.0.0.1:{port}/bench.git"
    try:
        base_ls_remote = timed(lambda: git("ls-remote", plain_url), runs)
        base_clone = timed(lambda: git("clone", "--quiet", "--depth", "1", plain_url, str(clones / f"p{next(counter)}")),
                           max(5, runs // 3))
    finally:
        baseline.shutdown()

    print(f"\nmarketplace of {items} released skills, {runs} runs; ms p50 / p99")
    rows = [
        ("git ls-remote", ls_remote, base_ls_remote),
        ("git clone --depth 1", clone, base_clone),
        ("release (incl. marketplace commit)", release, save),
    ]
    print(f"  {'':38} {'service':>17}   {'baseline':>17}   ratio (p50)")
    for label, ours, theirs in rows:
        o50, o99 = percentiles(ours)
        t50, t99 = percentiles(theirs)
        print(f"  {label:38} {o50:8.1f} {o99:8.1f}   {t50:8.1f} {t99:8.1f}   {o50 / t50:5.2f}x")
    print("  (baselines: git http-backend on a plain bare copy; for the release, a save of a document)")


if __name__ == "__main__":
    main()
