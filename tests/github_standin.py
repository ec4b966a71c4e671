"""A local stand-in for GitHub's `GET /user/repos`, answering as GitHub's REST API description
says (tests/data/github): pages with a `Link` header, ETags and 304, and GitHub's refusals
(a bad token, the rate limit, 5xx, a slow answer) when told to."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DESCRIPTION = json.loads((Path(__file__).parent / "data" / "github" / "list-for-authenticated-user.json").read_text())
TOKEN = "ghp_standin0000000000000000000000000000"


def repository(number: int, owner: str = "octocat") -> dict[str, Any]:
    """A repository payload shaped by the `repository` schema, its values after its examples."""
    name = f"Hello-World-{number:04d}"
    return {
        "id": 1296269 + number,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": name,
        "full_name": f"{owner}/{name}",
        "private": number % 3 == 0,
        "html_url": f"https://github.com/{owner}/{name}",
        "description": "This your first repo!" if number % 2 else None,
        "fork": False,
        "url": f"https://api.github.com/repos/{owner}/{name}",
        "language": "Python" if number % 2 else None,
        "forks_count": 9,
        "stargazers_count": 80 + number,
        "default_branch": "master",
        "watchers_count": 80,
        "size": 108,
        "open_issues_count": 0,
        "archived": False,
        "disabled": False,
        "visibility": "public",
    }


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class StandIn:
    """What the stand-in answers (change the fields between requests) and what it was asked."""

    repositories: list[dict[str, Any]] = field(default_factory=lambda: [repository(n) for n in range(1, 6)])
    mode: str = "ok"  # ok, rate_limited, too_many, server_error, slow, bad_payload
    delay: float = 0.0
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def page(self, query: dict[str, list[str]]) -> tuple[list[dict[str, Any]], int, int]:
        per_page = int(query.get("per_page", ["30"])[0])
        number = int(query.get("page", ["1"])[0])
        last = max(1, -(-len(self.repositories) // per_page))
        return self.repositories[(number - 1) * per_page:number * per_page], number, last


def serve(stand_in: StandIn) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            stand_in.requests.append(Request("GET", parts.path, query, dict(self.headers.items())))
            if stand_in.mode == "slow":
                time.sleep(stand_in.delay)
            if parts.path != "/user/repos":
                return self._json(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._json(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            if stand_in.mode == "rate_limited":
                reset = str(int(time.time()) + 120)
                body = {"message": "API rate limit exceeded for user ID 1.", "documentation_url": "https://docs.github.com"}
                return self._json(403, body, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
            if stand_in.mode == "too_many":
                return self._json(429, {"message": "secondary rate limit"}, {"Retry-After": "30"})
            if stand_in.mode == "server_error":
                return self._json(502, {"message": "Server Error"})
            items, number, last = stand_in.page(query)
            body = [{"oops": True}] if stand_in.mode == "bad_payload" else items
            data = json.dumps(body).encode()
            tag = f'W/"{hashlib.sha256(data).hexdigest()}"'
            links = []
            base = f"{stand_in.url}/user/repos?per_page={query.get('per_page', ['30'])[0]}"
            if number < last:
                links.append(f'<{base}&page={number + 1}>; rel="next"')
            links.append(f'<{base}&page={last}>; rel="last"')
            headers = {"ETag": tag, "Link": ", ".join(links), "X-RateLimit-Remaining": "4999"}
            if self.headers.get("If-None-Match") == tag:
                self.send_response(304)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                return None
            return self._send(200, data, headers)

        def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(body).encode(), headers or {})

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
