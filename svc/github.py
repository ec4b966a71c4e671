"""GitHub's REST API, as far as listing the caller's repositories needs it
(`GET /user/repos`, operation `repos/list-for-authenticated-user`).

The caller's token goes only into the `Authorization` header of requests to the configured
API (a `Link` to another origin is refused rather than followed with it); it is never stored,
logged or put into a problem's detail. Pages are remembered by their ETag under a hash of the
token and the URL, so that listing again asks with `If-None-Match`, and GitHub answers 304,
which does not count against the rate limit.

GitHub's refusals become problems the caller can act on: a rejected token 403 naming GitHub,
its rate limit 503 with `Retry-After`, anything else going wrong (5xx, unreachable, too slow,
an answer not shaped as described) 502.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from svc.errors import BadGateway, BadRequest, Forbidden, Unavailable

API_VERSION = "2022-11-28"
PAGE_SIZE = 100
MAX_PAGES = 100  # 10,000 repositories: beyond that a listing is refused rather than run on
CACHE_ENTRIES = 1024
# httpx logs each request at INFO: a line per page of every listing would drown the service's
# own log (what goes wrong becomes a problem the caller sees).
logging.getLogger("httpx").setLevel(logging.WARNING)
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?([^";]*\bnext\b[^";]*)"?')


@dataclass(frozen=True)
class GitHubRepository:
    """What this service keeps of a repository GitHub lists."""

    github_id: int
    name: str
    full_name: str
    description: str | None
    url: str
    default_branch: str | None
    is_private: bool
    language: str | None
    stars_count: int
    forks_count: int


@dataclass(frozen=True)
class _Page:
    etag: str
    repositories: tuple[GitHubRepository, ...]
    next_url: str | None


class GitHubClient:
    """Lists a GitHub user's repositories with the token they give."""

    def __init__(self, base_url: str, *, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._transport = transport
        self._http: httpx.Client | None = None  # made at first use: its TLS context costs every app start
        self._timeout = timeout
        self._pages: OrderedDict[str, _Page] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(timeout=self._timeout, transport=self._transport, follow_redirects=False)
            return self._http

    def repositories(self, token: str | None) -> list[GitHubRepository]:
        """Every repository the token's user may access (every page, following `Link`)."""
        if not token or not token.strip():
            raise BadRequest("send your GitHub token in the X-GitHub-Token header")
        token = token.strip()
        url: str | None = f"{self.base_url}/user/repos?per_page={PAGE_SIZE}&sort=full_name"
        found: list[GitHubRepository] = []
        for _ in range(MAX_PAGES):
            page = self._page(token, url)
            found.extend(page.repositories)
            url = page.next_url
            if url is None:
                return found
        raise BadGateway(f"GitHub listed more than {MAX_PAGES} pages of repositories; stopped there")

    def _page(self, token: str, url: str) -> _Page:
        key = hashlib.sha256(f"{token}\n{url}".encode()).hexdigest()
        with self._lock:
            cached = self._pages.get(key)
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "svc-configuration-service",
        }
        if cached is not None:
            headers["If-None-Match"] = cached.etag
        try:
            response = self._client().get(url, headers=headers)
        except httpx.TimeoutException:
            raise BadGateway(f"GitHub did not answer within {self._timeout:g} s") from None
        except httpx.TransportError as exc:
            raise BadGateway(f"GitHub could not be reached ({type(exc).__name__})") from None
        if response.status_code == 304 and cached is not None:
            with self._lock:
                self._pages.move_to_end(key)
            return cached
        _raise_for_refusal(response)
        page = _Page(
            etag=response.headers.get("ETag", ""),
            repositories=_parse(response),
            next_url=self._next_url(response.headers.get("Link")),
        )
        if page.etag:
            with self._lock:
                self._pages[key] = page
                self._pages.move_to_end(key)
                while len(self._pages) > CACHE_ENTRIES:
                    self._pages.popitem(last=False)
        return page

    def _next_url(self, link: str | None) -> str | None:
        """The `rel="next"` target of a `Link` header (RFC 8288), if any; it must be on the API's origin."""
        for target, relations in _NEXT_LINK.findall(link or ""):
            if "next" in relations.split():
                if _origin(target) != self._origin:
                    raise BadGateway("GitHub's next page link points to another host; it was not followed")
                return target
        return None


def _raise_for_refusal(response: httpx.Response) -> None:
    status = response.status_code
    if status == 200:
        return
    message = _message(response)
    if status == 429 or (status == 403 and response.headers.get("X-RateLimit-Remaining") == "0"):
        error = Unavailable(f"GitHub's rate limit for this token is spent{message}; try again later")
        error.retry_after = _retry_after(response)
        raise error
    if status in (401, 403):
        raise Forbidden(f"GitHub refused the token in X-GitHub-Token ({status}{message})")
    if status >= 500:
        raise BadGateway(f"GitHub answered {status}{message}")
    raise BadGateway(f"GitHub answered {status}{message}, which this service does not expect")


def _retry_after(response: httpx.Response) -> int:
    """Seconds to wait: GitHub's `Retry-After`, else until `X-RateLimit-Reset` (epoch seconds)."""
    retry_after = response.headers.get("Retry-After", "")
    if retry_after.isdigit():
        return max(1, int(retry_after))
    reset = response.headers.get("X-RateLimit-Reset", "")
    if reset.isdigit():
        return max(1, math.ceil(int(reset) - time.time()))
    return 60


def _message(response: httpx.Response) -> str:
    """`: <GitHub's message>` when the body has one (basic-error), else nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f": {str(message)[:200]}" if message else ""


def _parse(response: httpx.Response) -> tuple[GitHubRepository, ...]:
    try:
        body = response.json()
        return tuple(_repository(item) for item in body)
    except (ValueError, TypeError, KeyError) as exc:
        raise BadGateway(f"GitHub's list of repositories is not shaped as its API describes ({exc})") from None


def _repository(item: dict[str, Any]) -> GitHubRepository:
    """A `repository` object (GitHub's schema of that name); required fields only, except the
    counts and the default branch, which are read as they come."""
    if not isinstance(item, dict):
        raise TypeError("an entry is not an object")
    values = {
        "github_id": item["id"],
        "name": item["name"],
        "full_name": item["full_name"],
        "description": item["description"],
        "url": item["html_url"],
        "default_branch": item.get("default_branch"),
        "is_private": item["private"],
        "language": item.get("language"),
        "stars_count": item.get("stargazers_count", 0),
        "forks_count": item.get("forks_count", 0),
    }
    for field in ("github_id", "stars_count", "forks_count"):
        if not isinstance(values[field], int) or isinstance(values[field], bool):
            raise TypeError(f"{field} is not an integer")
    return GitHubRepository(**values)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
