"""Catalog search latency over 10,000 items, and the bundle of 50 installed items.

    uv run python -m tests.bench.catalog [--items 10000] [--runs 300]

Search: `CatalogService.search` (policy, one transaction, the ranked keyset query, shaping;
no HTTP) as a member of 5 of 40 teams, for a few queries, p50/p99 in ms; beside it the
same query's plan time alone (`EXPLAIN (SUMMARY)` without ANALYZE: its "Planning Time"),
and the round trip of that EXPLAIN, so the figure is read against what PostgreSQL needs
just to plan the statement. Items are bulk-inserted with SQL (search reads metadata only), then
VACUUM ANALYZE, as autovacuum would, so the GIN index holds them all.

Bundle: `BundleService.build` for a user with 50 installed items (20 skills, 15 MCP
servers, 15 tools, half of them released) and a claude.md: the whole .tar.gz, and the
304 path (If-None-Match names the current ETag).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

from svc.api.etags import etag, parse_precondition
from svc.content import ContentStore
from svc.db import Database
from svc.ids import new_id
from svc.repositories import catalog as catalog_sql
from svc.services.auth import Principal
from svc.services.bundle import BundleService
from svc.services.catalog import CatalogService
from svc.services.claude_md import ClaudeMdService
from svc.services.marketplace import MarketplaceService
from svc.services.teams import TeamService
from svc.services.users import UserService
from tests.bench.processes import scratch_database

WORDS = (
    "review deploy migration database rollback flag lint test security incident postgres kubernetes docker "
    "release notes changelog weather search index cache queue metrics logging tracing alert oncall runbook "
    "terraform helm python typescript rust golang api schema graphql grpc auth token secret vault backup"
).split()
QUERIES = ("deploy", "postgres migration", '"release notes"', "review -security", "kubernetes OR helm", "zebra")
SKILL_TEXT = "---\nname: {name}\ndescription: {description}\n---\n\n# {name}\n\n" + "Step by step.\n" * 40


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed(call: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def load_items(db: Database, teams: list[str], count: int) -> None:
    rng = random.Random(7)
    with db.connection() as conn, conn.cursor() as cur:
        for _ in range(count):
            document_id, item_id = new_id(), new_id()
            team = rng.choice(teams)
            item_type = rng.choice(("skill", "mcp", "tool"))
            words = rng.sample(WORDS, 6)
            cur.execute(
                "INSERT INTO documents (id, kind, owner_team_id) VALUES (%s, %s, %s)", (document_id, item_type, team)
            )
            cur.execute(
                "INSERT INTO catalog_items (id, owner_team_id, type, name, description, tags, document_id, status) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (item_id, team, item_type, f"{words[0]}-{words[1]}-{item_id[-6:].lower()}",
                 f"Helps with {' and '.join(words[2:5])} for the {words[5]} team.", rng.sample(WORDS, 2),
                 document_id, "deprecated" if rng.random() < 0.1 else "active"),
            )
        conn.commit()
        # As autovacuum would: move the GIN index's pending list into the index, gather statistics.
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE catalog_items")
        conn.autocommit = False


def plan_time(db: Database, q: str, user_id: str) -> tuple[float, float]:
    """(Planning Time reported by EXPLAIN, round trip of that EXPLAIN), ms."""
    params = {"user_id": user_id, "everyone": False, "q": q, "type": None, "tag": None, "owner": None,
              "status": "active", "after_rank": None, "after_id": None, "limit": 51}
    with db.transaction() as tx:
        start = time.perf_counter()
        plan = tx.fetch_value("EXPLAIN (SUMMARY, FORMAT JSON) " + catalog_sql.SEARCH, params)
        return plan[0]["Planning Time"], (time.perf_counter() - start) * 1000


def bench_search(db: Database, catalog: CatalogService, member: Principal, runs: int) -> None:
    print(f"search over the catalog, {runs} runs each: ms p50 / p99")
    print(f"{'query':24} {'search p50':>10} {'p99':>7} {'plan p50':>9} {'EXPLAIN rt':>10} {'hits':>5}")
    for q in QUERIES:
        hits = len(catalog.search(member, q=q, type=None, tag=None, owner=None, status="active", limit=50, after=None)["items"])
        search = timed(lambda: catalog.search(
            member, q=q, type=None, tag=None, owner=None, status="active", limit=50, after=None), runs)
        plans = [plan_time(db, q, member.user_id) for _ in range(runs)]
        p50, p99 = percentiles(search)
        print(f"{q:24} {p50:10.2f} {p99:7.2f} {statistics.median(p for p, _ in plans):9.3f} "
              f"{statistics.median(r for _, r in plans):10.2f} {hits:5}")


def bench_bundle(db: Database, store: ContentStore, catalog: CatalogService, user: Principal, team: str, runs: int) -> None:
    operator = Principal.operator()
    ClaudeMdService(db, store, max_bytes=1 << 20).save(user, None, content="# rules\n" * 50, message=None, expected=None)
    for n in range(50):
        name = f"bundle-{n}"
        if n < 20:
            kind, content = "skill", SKILL_TEXT.format(name=name, description=f"Skill {n} for the bundle")
        elif n < 35:
            name = f"io.github.bench/{name}"
            kind, content = "mcp", json.dumps({
                "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
                "name": name, "description": f"Server {n}", "version": "1.0.0",
                "packages": [{"registryType": "npm", "identifier": f"@bench/server-{n}", "version": "1.0.0",
                              "transport": {"type": "stdio"},
                              "environmentVariables": [{"name": "API_KEY", "isSecret": True}]}],
            })
        else:
            name = f"tool_{n}"
            kind, content = "tool", json.dumps({"name": name, "description": f"Tool {n}",
                                                 "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}})
        item = catalog.create(operator, type=kind, name=name, owner={"team_id": team}, description=f"bundle {n}",
                              tags=[], content=content)
        if n % 2:
            catalog.create_release(operator, item["id"], version="1.0.0", sha=None, notes=None)
        catalog.install(user, item["id"])
    bundles = BundleService(db, store)
    base = "http://localhost/git"
    built = bundles.build(user, git_base_url=base)
    full = timed(lambda: bundles.build(user, git_base_url=base), runs)
    cached = timed(
        lambda: bundles.build(user, git_base_url=base, expected=parse_precondition(None, etag(built.etag))), runs
    )
    print(f"\nbundle of 50 installed items ({len(built.data)} bytes .tar.gz), {runs} runs: ms p50 / p99")
    print(f"  build the archive      {percentiles(full)[0]:8.2f} {percentiles(full)[1]:8.2f}")
    print(f"  304 (ETag unchanged)   {percentiles(cached)[0]:8.2f} {percentiles(cached)[1]:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    with scratch_database(min_size=2, max_size=4) as (root, _, db):
        store = ContentStore(root / "content.git")
        store.ensure()
        operator = Principal.operator()
        marketplace = MarketplaceService(db, store, root / "marketplaces")
        users, teams = UserService(db, store, marketplace), TeamService(db, store, marketplace)
        user_id = users.create(operator, email="m@example.com", username="member").id
        owner_id = users.create(operator, email="o@example.com", username="owner").id
        team_ids = [teams.create(operator, name=f"team-{n}", owner_id=owner_id).id for n in range(40)]
        for team_id in team_ids[:5]:
            teams.put_member(operator, team_id, user_id, role="member")
        member = Principal(token_id=None, name="member", role="user", user_id=user_id)
        load_items(db, team_ids, args.items)
        catalog = CatalogService(db, store, marketplace, max_bytes=1 << 20)
        print(f"{args.items} items in 40 teams; the searcher is a member of 5 (sees ~{args.items // 8})\n")
        bench_search(db, catalog, member, args.runs)
        bench_bundle(db, store, catalog, member, team_ids[0], min(args.runs, 100))


if __name__ == "__main__":
    main()
