"""Products: listing 10,000 work items of one application by status, beside the warm
configuration read measured in the same run; importing 500 repositories (5 pages of 100) from
the local GitHub stand-in.

    uv run python -m tests.bench.products [--items 10000] [--runs 300] [--repositories 500]

Every request goes through the whole ASGI application (no socket) on an embedded PostgreSQL,
as `put_cpu` does; the figures are wall-clock latencies of one request at a time, p50/p99 in ms.
Work items are bulk-inserted with SQL (60 % todo, 30 % in progress, 10 % done), then VACUUM
ANALYZE. A listing is one page of 100 (`?status=…&limit=100`), at a random place in the list
(the `after` cursor of a page found by walking it once first).

Import: `POST /applications/{id}/repositories/import` naming all 500, against the stand-in:
the first import (5 pages from GitHub, 500 rows written) on fresh applications, then repeated
imports of the same application (5 conditional requests answered 304, nothing changed).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import orjson

from svc.api.app import create_app
from svc.config import Settings
from svc.services.auth import Principal
from tests.bench.processes import scratch_database
from tests.bench.put_cpu import call
from tests.github_standin import TOKEN, StandIn, repository, serve

INSERT_WORK_ITEMS = """
INSERT INTO work_items (id, application_id, title, type, status, created_by)
SELECT '01' || lpad(n::text, 24, '0'), %(application_id)s, 'item ' || n,
       (ARRAY['feature', 'fix', 'refactor', 'investigation'])[1 + n %% 4],
       CASE WHEN n %% 10 < 6 THEN 'todo' WHEN n %% 10 < 9 THEN 'in_progress' ELSE 'done' END, 'bench'
FROM generate_series(1, %(items)s) AS n
"""


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def timed(request, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        status = await request()
        samples.append((time.perf_counter() - started) * 1000)
        assert status == 200, status
    return samples


def report(label: str, samples: list[float], baseline: float | None = None) -> None:
    p50, p99 = percentiles(samples)
    ratio = "" if baseline is None else f"   ({p50 / baseline:.1f}x the warm configuration read's p50)"
    print(f"{label:<44} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms{ratio}")


async def measure(url: str, data_dir, args: argparse.Namespace, stand_in: StandIn) -> None:
    settings = Settings(_env_file=None, database_url=url, data_dir=data_dir, access_log=False,
                        github_api_url=stand_in.url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services = app.state.services
        secret = services.tokens.create(Principal.operator(), name="bench", role="admin").secret
        auth = {"Authorization": f"Bearer {secret}"}
        json_auth = {**auth, "Content-Type": "application/json"}

        async def post(path: str, body: dict, headers: dict[str, str] = json_auth) -> dict:
            status, answer = await call(app, "POST", path, headers, orjson.dumps(body))
            assert status in (200, 201), (status, answer)
            return orjson.loads(answer)

        application = await post("/api/v1/applications", {"name": "bench"})
        configuration = await post(
            f"/api/v1/applications/{application['id']}/configurations", {"name": "limits", "config": {"rate": 1}}
        )
        with services.db.transaction() as tx:
            tx.execute(INSERT_WORK_ITEMS, {"application_id": application["id"], "items": args.items})
            tx.commit()
        with services.db.connection() as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("VACUUM ANALYZE work_items")
            conn.autocommit = False

        items_path = f"/api/v1/applications/{application['id']}/work-items"
        cursors: dict[str, list[str | None]] = {}
        for status in ("todo", "in_progress", "done"):
            cursors[status], after = [None], None
            while True:
                query = f"status={status}&limit=100" + (f"&after={after}" if after else "")
                code, page = await call(app, "GET", items_path, auth, query=query)
                after = orjson.loads(page)["next"]
                if after is None:
                    break
                cursors[status].append(after)
        rng = random.Random(7)

        async def read_configuration() -> int:
            return (await call(app, "GET", f"/api/v1/configurations/{configuration['id']}", auth))[0]

        def list_page(status: str):
            async def request() -> int:
                after = rng.choice(cursors[status])
                query = f"status={status}&limit=100" + (f"&after={after}" if after else "")
                return (await call(app, "GET", items_path, auth, query=query))[0]
            return request

        await timed(read_configuration, 50)  # warm
        baseline = await timed(read_configuration, args.runs)
        print(f"{args.items} work items in one application; one request at a time, in process")
        report("GET configuration (warm)", baseline)
        base = percentiles(baseline)[0]
        for status in ("todo", "in_progress", "done"):
            pages = len(cursors[status])
            report(f"list work items ?status={status} (page of 100 of {pages})",
                   await timed(list_page(status), args.runs), base)

        names = [r["full_name"] for r in stand_in.repositories]
        github = {**json_auth, "X-GitHub-Token": TOKEN}
        first, again = [], []
        for n in range(args.import_rounds):
            target = await post("/api/v1/applications", {"name": f"import-{n}"})
            path = f"/api/v1/applications/{target['id']}/repositories/import"
            started = time.perf_counter()
            result = await post(path, {"full_names": names}, github)
            first.append((time.perf_counter() - started) * 1000)
            assert result["changed"] == len(names), result["changed"]
        for _ in range(args.import_rounds * 4):
            started = time.perf_counter()
            result = await post(path, {"full_names": names}, github)
            again.append((time.perf_counter() - started) * 1000)
            assert result["changed"] == 0
        print(f"import {len(names)} repositories ({-(-len(names) // 100)} pages) from the local GitHub stand-in")
        report(f"first import ({args.import_rounds} fresh applications)", first, base)
        report("import again (304s, nothing changed)", again, base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repositories", type=int, default=500)
    parser.add_argument("--import-rounds", type=int, default=5)
    args = parser.parse_args()
    stand_in = StandIn(repositories=[repository(n) for n in range(1, args.repositories + 1)])
    server = serve(stand_in)
    try:
        with scratch_database(min_size=1, max_size=2) as (root, url, db):
            asyncio.run(measure(url, root / "data", args, stand_in))
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
