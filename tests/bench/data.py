"""Benchmark data: realistic applications, configurations, users and claude.md documents,
created through the API; plus the bulk path (git fast-import + COPY) for 100k commits.
"""

from __future__ import annotations

import io
import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg2

from svc.ids import new_id
from tests.bench import gitbench
from tests.bench.processes import say

# A placeholder in request bodies that the load generators replace with a per-request sequence.
SEQUENCE = "@@SEQ@@"
VERSIONS_PER_BULK_DOCUMENT = 100


class Api:
    """A small thread-safe client of the service (one keep-alive connection per thread)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=60)
        return client

    def call(self, method: str, path: str, body: Any = None, *, expect: int = 200,
             headers: dict[str, str] | None = None) -> httpx.Response:
        response = self._client().request(method, path, json=body, headers=headers)
        if response.status_code != expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response


def config_document(application: str, name: str) -> dict[str, Any]:
    """A configuration as services keep them (about 1.5 KiB of JSON)."""
    return {
        "service": name,
        "owner": f"team-{application}",
        "replicas": 3,
        "log_level": "info",
        "http": {"port": 8080, "read_timeout_ms": 5000, "write_timeout_ms": 5000, "max_body_bytes": 1048576},
        "database": {"host": f"{application}-db.internal", "port": 5432, "pool": {"min": 2, "max": 20},
                     "statement_timeout_ms": 30000},
        "cache": {"enabled": True, "ttl_seconds": 300, "max_entries": 10000},
        "features": {f"feature_{i:02d}": i % 3 == 0 for i in range(24)},
        "endpoints": {
            "payments": f"https://payments.internal/{application}/v2",
            "search": "https://search.internal/v1",
            "auth": "https://auth.internal/oauth2/token",
        },
        "regions": ["eu-west-1", "eu-central-1", "us-east-1"],
        "rate_limits": {"default": {"rps": 100, "burst": 200}, "admin": {"rps": 10, "burst": 20}},
        "retries": {"attempts": 3, "backoff_ms": [100, 400, 1600]},
    }


def with_sequence(document: Any) -> tuple[str, str]:
    """The JSON of `document` split around its sequence placeholder (see load.Request.body)."""
    prefix, suffix = json.dumps(document, separators=(",", ":")).split(SEQUENCE)
    return prefix, suffix


@dataclass
class Dataset:
    applications: list[dict[str, Any]] = field(default_factory=list)
    configurations: list[dict[str, Any]] = field(default_factory=list)  # with "application_name"
    longpoll: dict[str, Any] | None = None
    service_token: str = ""
    history_user: str = ""
    hot_user: str = ""
    users: list[str] = field(default_factory=list)

    def resolve_path(self, configuration: dict[str, Any]) -> str:
        return f"/api/v1/resolve/{configuration['application_name']}/{configuration['name']}"


def load(api: Api, *, applications: int, configurations_per_application: int, users: int,
         history_versions: int) -> Dataset:
    """Create the data every figure works on, through the API, with 16 requests in parallel."""
    data = Dataset()
    data.service_token = api.call("POST", "/api/v1/tokens", {"name": "bench-service", "role": "service"},
                                  expect=201).json()["token"]
    with ThreadPoolExecutor(16) as pool:
        data.applications = list(pool.map(
            lambda i: api.call("POST", "/api/v1/applications",
                               {"name": f"bench-app-{i:02d}", "comments": "benchmark"}, expect=201).json(),
            range(applications)))

        def create_configuration(pair: tuple[dict[str, Any], int]) -> dict[str, Any]:
            application, j = pair
            name = f"cfg-{j:02d}"
            created = api.call("POST", f"/api/v1/applications/{application['id']}/configurations",
                               {"name": name, "config": config_document(application["name"], name),
                                "message": "initial"}, expect=201).json()
            return {**created, "application_name": application["name"]}

        pairs = [(a, j) for a in data.applications for j in range(configurations_per_application)]
        data.configurations = list(pool.map(create_configuration, pairs))
        data.longpoll = create_configuration((data.applications[0], 99))
        say(f"created {len(data.applications)} applications, {len(data.configurations) + 1} configurations")

        def create_user(name: str) -> str:
            return api.call("POST", "/api/v1/users", {"email": f"{name}@example.com", "username": name,
                                                      "display_name": name.replace("-", " ").title()},
                            expect=201).json()["id"]

        names = ["bench-history", "bench-hot", *(f"bench-user-{i:03d}" for i in range(users))]
        ids = list(pool.map(create_user, names))
        data.history_user, data.hot_user, data.users = ids[0], ids[1], ids[2:]

        def first_save(user_id: str) -> None:
            save_document(api, user_id, "first version")

        list(pool.map(first_save, [data.hot_user, *data.users]))
    for n in range(history_versions):  # one document: its saves are serialized anyway
        save_document(api, data.history_user, f"version {n}")
    say(f"created {users + 2} users and {users + 1 + history_versions} claude.md versions through the API")
    return data


def save_document(api: Api, user_id: str, note: str) -> None:
    content = gitbench.document_text(note, 0)
    api.call("PUT", f"/api/v1/users/{user_id}/claude-md", {"content": content})


def claude_md_body(label: str) -> tuple[str, str]:
    return with_sequence({"content": gitbench.document_text(label, 0) + f"- save {SEQUENCE}\n"})


def configuration_body(configuration: dict[str, Any]) -> tuple[str, str]:
    """A PUT body for `configuration` (its `application_name` and `name`): a new `rollout` each request."""
    document = config_document(configuration["application_name"], configuration["name"])
    document["rollout"] = SEQUENCE
    return with_sequence({"config": document})


# --- bulk: straight into git and PostgreSQL ---------------------------------------------------


def total_commits(url: str) -> int:
    """Commits the service recorded: every version of every document."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(sum(head_version), 0) FROM documents")
        return int(cur.fetchone()[0])


def bulk_commits(url: str, repository: Path, scratch: Path, target_total: int) -> int:
    """Add documents (each with its own user) until the repository holds `target_total` commits:
    `git fast-import` for the commits, then COPY of the rows the service keeps for them.
    Returns the new total."""
    existing = total_commits(url)
    missing = target_total - existing
    if missing <= 0:
        return existing
    count = math.ceil(missing / VERSIONS_PER_BULK_DOCUMENT)
    documents = {}
    for i in range(count):
        documents[new_id()] = min(VERSIONS_PER_BULK_DOCUMENT, missing - i * VERSIONS_PER_BULK_DOCUMENT)
    say(f"bulk-loading {missing} commits on {count} documents (git fast-import + COPY)")
    versions = gitbench.fast_import(repository, documents, author="bench-admin <bench-admin@svc.invalid>",
                                    scratch=scratch)
    heads = {version.document_id: version for version in versions}  # in version order: the last is the head
    users = {document_id: new_id() for document_id in documents}
    stamp = new_id().lower()[-8:]

    def copy(cur, table: str, columns: str, rows) -> None:
        buffer = io.StringIO("".join("\t".join(map(str, row)) + "\n" for row in rows))
        cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)

    def at(seconds: int) -> str:
        return datetime.fromtimestamp(seconds, UTC).isoformat()

    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:  # one transaction
        copy(cur, "users", "id, email, username",
             ((user, f"bulk-{stamp}-{i}@example.com", f"bulk-{stamp}-{i}") for i, user in enumerate(users.values())))
        copy(cur, "documents", "id, kind, owner_user_id, head_version, head_sha, created_at, updated_at",
             ((d, "claude_md", users[d], h.version, h.commit_sha, at(h.created_at - h.version), at(h.created_at))
              for d, h in heads.items()))
        copy(cur, "document_versions", "document_id, version, commit_sha, author, message, size_bytes, created_at",
             ((v.document_id, v.version, v.commit_sha, "bench-admin", v.message, v.size_bytes, at(v.created_at))
              for v in versions))
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE users, documents, document_versions")
    return total_commits(url)


def bulk_configurations(url: str, application: dict[str, Any], count: int, *, label: str = "cold") -> list[str]:
    """`count` more configurations of `application`, named `<label>-<n>`, by COPY straight into
    PostgreSQL (the cold-read figure needs more configurations than it sends requests, the
    write figure spreads its writes over many). Returns their ids."""
    ids = [new_id() for _ in range(count)]
    name = application["name"]

    def row(i: int, id_: str) -> str:
        config = json.dumps(config_document(name, f"{label}-{i:06d}"), separators=(",", ":"))
        return f"{id_}\t{application['id']}\t{label}-{i:06d}\t{config}\t1\n"

    say(f"bulk-loading {count:,} configurations (COPY)")
    buffer = io.StringIO("".join(row(i, id_) for i, id_ in enumerate(ids)))
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        cur.copy_expert("COPY configurations (id, application_id, name, config, revision) FROM STDIN", buffer)
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE configurations")
    return ids
