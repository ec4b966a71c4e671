"""The benchmark run: start `svc serve` as users run it, load data, measure every figure of
issue 6 beside a baseline measured in the same run, print the table, write results/latest.md.

    uv run python -m tests.bench            # full run (~10 s per figure)
    uv run python -m tests.bench --quick    # ~3 s per figure, smaller data
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import psycopg2

from tests.bench import data as bench_data
from tests.bench import gitbench, load, longpoll, service_writes, staleness
from tests.bench.load import Plan, Request, Result, fmt_ms
from tests.bench.processes import (
    Processes, Server, backend_count, database_url, postgres_bin, postgres_cpu_seconds, say, settled_backends,
)
from tests.bench.profile import Profiler

RESULTS = Path(__file__).resolve().parent / "results"
# The configurations the write figure spreads its writes over.
WRITTEN_CONFIGURATIONS = 1_024
FIGURES = ("resolve", "get", "cold", "mixed", "writes", "claude", "history", "longpoll", "staleness", "rss")


@dataclass(frozen=True)
class Sizes:
    seconds: float
    applications: int
    configurations_per_application: int
    users: int
    history_versions: int
    small_total_commits: int
    large_total_commits: int
    waiters: int
    rss_small: int
    rss_large: int
    cold_configurations: int


FULL = Sizes(seconds=10, applications=10, configurations_per_application=10, users=100, history_versions=60,
             small_total_commits=1_000, large_total_commits=100_000, waiters=1_000, rss_small=1_000,
             rss_large=50_000, cold_configurations=150_000)
QUICK = Sizes(seconds=3, applications=4, configurations_per_application=8, users=100, history_versions=60,
              small_total_commits=1_000, large_total_commits=10_000, waiters=1_000, rss_small=1_000,
              rss_large=10_000, cold_configurations=30_000)


@dataclass(frozen=True)
class Pgbench:
    tps: float
    transactions: int
    seconds: float
    postgres_ms: float


@dataclass
class Row:
    figure: str
    measured: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def at_least(value: float | None, target: float, *results: Result) -> bool:
    return value is not None and value >= target and all(r.errors == 0 for r in results)


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, tool: str) -> None:
        self.args = args
        self.sizes = sizes
        self.tool = tool
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.processes = Processes()
        self.data_dir = Path(tempfile.mkdtemp(prefix="svc-bench-"))
        self.service: Server | None = None
        self.trivial: Server | None = None
        self.admin_token = ""
        self.data: bench_data.Dataset | None = None
        self.profiler = Profiler(RESULTS / "profiles") if args.profile else None

    # --- plumbing -----------------------------------------------------------------------

    @property
    def seconds(self) -> float:
        return self.sizes.seconds

    def wanted(self, figure: str) -> bool:
        return not self.args.only or figure in self.args.only

    def measure(self, name: str, server: Server, plan: Plan, connections: int,
                seconds: float | None = None) -> Result:
        seconds = self.seconds if seconds is None else seconds
        say(f"{name}: {connections} connections, {seconds:g} s ({self.tool}) against {server.name}")
        profiling = self.profiler.start(name, server, seconds) if self.profiler and server is self.service else None
        pgdata = self.pgdata if server is self.service else None
        cpu_before = server.cpu_seconds()
        postgres_before = postgres_cpu_seconds(pgdata) if pgdata else 0.0
        result = load.run(self.tool, server.base_url, plan, connections=connections, seconds=seconds,
                          threads=self.args.wrk_threads)
        if result.requests:
            result.cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / result.requests
            if pgdata:
                result.postgres_cpu_ms = (postgres_cpu_seconds(pgdata) - postgres_before) * 1000 / result.requests
        if profiling:
            self.notes.append(self.profiler.finish(profiling))
        say(f"  → {result.summary()}" + (f" statuses {result.statuses}" if result.errors else ""))
        return result

    def service_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.data.service_token}"}

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def trivial_plan(self) -> Plan:
        # The same Authorization header as the service requests, so requests are the same size.
        return Plan([Request("GET", "/trivial")], headers=self.service_headers())

    @property
    def pgdata(self) -> Path:
        return self.data_dir.resolve() / "postgres"

    @property
    def url(self) -> str:
        return database_url(self.pgdata, "svc")

    # --- the run --------------------------------------------------------------------------

    def run(self) -> None:
        workers = self.args.workers
        self.service = self.processes.start_service(self.data_dir, host=self.args.host, workers=workers,
                                                    log_dir=self.data_dir)
        if not self.service.token:
            raise RuntimeError("svc serve printed no bootstrap token on its first start")
        self.admin_token = self.service.token
        self.trivial = self.processes.start_trivial(host=self.args.host, workers=workers, log_dir=self.data_dir)
        api = bench_data.Api(self.service.base_url, self.admin_token)
        self.data = bench_data.load(
            api, applications=self.sizes.applications,
            configurations_per_application=self.sizes.configurations_per_application,
            users=self.sizes.users, history_versions=self.sizes.history_versions,
        )
        history_small = None
        if self.wanted("history"):
            total = bench_data.bulk_commits(self.url, self.data_dir / "content.git", self.data_dir,
                                            self.sizes.small_total_commits)
            history_small = (total, self.measure_history(f"history p50 at {total:,} commits"))
        if self.wanted("resolve"):
            self.figure_resolve()
        if self.wanted("get"):
            self.figure_get()
        if self.wanted("cold"):
            self.figure_cold()
        if self.wanted("mixed"):
            self.figure_mixed()
        if self.wanted("writes"):
            self.figure_writes()
        if self.wanted("claude"):
            self.figure_claude_md()
        if history_small is not None:
            self.figure_history(*history_small)
        if self.wanted("longpoll"):
            self.figure_longpoll(api)
        if self.wanted("staleness"):
            self.figure_staleness()
        self.processes.stop(self.trivial)
        if self.wanted("rss"):
            self.figure_rss()

    def against_trivial(self, name: str, plan: Plan, connections: int,
                        warm_up: Plan | None = None) -> tuple[Result, float, str]:
        """Measure `plan` on the service between two half-length runs of the trivial endpoint
        (before and after), so that a machine getting busier or quieter moves both sides.
        The service is warmed up for a second with `warm_up` (default: `plan` itself)."""
        half = max(1.0, self.seconds / 2)
        before = self.measure("trivial endpoint (before)", self.trivial, self.trivial_plan(), connections, half)
        self.measure(f"{name} warm-up", self.service, warm_up or plan, connections, seconds=1)
        measured = self.measure(name, self.service, plan, connections)
        after = self.measure("trivial endpoint (after)", self.trivial, self.trivial_plan(), connections, half)
        rps = (before.requests + after.requests) / (before.seconds + after.seconds)
        cpu = [r.cpu_ms for r in (before, after) if r.cpu_ms is not None]
        text = (f"trivial FastAPI: {rps:,.0f} req/s (before {before.rps:,.0f}, after {after.rps:,.0f}; "
                f"p50 {fmt_ms(before.p50_ms)} / {fmt_ms(after.p50_ms)}, p99 {fmt_ms(before.p99_ms)} / "
                f"{fmt_ms(after.p99_ms)}; {before.errors + after.errors} errors"
                + (f"; CPU/req: workers {sum(cpu) / len(cpu):.2f} ms" if cpu else "") + ")")
        return measured, rps, text

    def figure_resolve(self) -> None:
        paths = [self.data.resolve_path(c) for c in self.data.configurations[:16]]
        plan = Plan([Request("GET", p) for p in paths], headers=self.service_headers())
        measured, baseline, text = self.against_trivial("cached resolve", plan, 32)
        r = ratio(measured.rps, baseline)
        self.rows.append(Row("Cached `resolve` req/s, 32 connections", measured.summary(), text, r, "≥ 0.8",
                             at_least(r, 0.8, measured)))

    def figure_get(self) -> None:
        paths = [f"/api/v1/configurations/{c['id']}" for c in self.data.configurations]
        plan = Plan([Request("GET", p) for p in paths], headers=self.service_headers())
        measured, baseline, text = self.against_trivial("GET configuration, warm", plan, 64)
        r = ratio(measured.rps, baseline)
        self.rows.append(Row(f"Warm `GET /configurations/{{id}}` req/s ({len(paths)} unchanging configurations), "
                             "64 connections (0 errors)", measured.summary(), text, r, "≥ 0.8, 0 errors",
                             at_least(r, 0.8, measured)))

    def figure_cold(self) -> None:
        """Every request reads a configuration no request read before: each one goes to PostgreSQL."""
        count = self.sizes.cold_configurations
        ids = bench_data.bulk_configurations(self.url, self.data.applications[-1], count)
        requests = [Request("GET", f"/api/v1/configurations/{id_}") for id_ in ids]
        reserve = count // 8  # the warm-up reads these, so the measured run finds none of its own in the cache
        plan = Plan(requests[:-reserve], headers=self.service_headers())
        warm_up = Plan(requests[-reserve:], headers=self.service_headers())
        measured, baseline, text = self.against_trivial("GET configuration, cold", plan, 64, warm_up=warm_up)
        if measured.requests > len(plan.requests):
            self.notes.append(f"cold reads: {measured.requests:,} requests over {len(plan.requests):,} "
                              "configurations: some were read twice (raise cold_configurations)")
        r = ratio(measured.rps, baseline)
        self.rows.append(Row(f"Cold `GET /configurations/{{id}}` req/s (a different one of {count:,} each "
                             "request), 64 connections (0 errors)", measured.summary(), text, r,
                             "≥ 0.3, 0 errors", at_least(r, 0.3, measured)))

    def figure_mixed(self) -> None:
        plan = self.mixed_plan()
        measured, baseline, text = self.against_trivial("mixed workload", plan, 64)
        self.rows.append(Row("Mixed workload req/s (resolve 12 : GET by id 5 : PUT 1 : claude.md history 1 : "
                             "claude.md GET 1), 64 connections", measured.summary(), text,
                             ratio(measured.rps, baseline), "0 errors", measured.errors == 0))

    def figure_writes(self) -> None:
        """Writes/s against `pgbench -N` measured half just before and half just after them, then the
        staleness probe (`figure_staleness`) again while the same write load runs.

        Like `pgbench -N`, whose transactions update one of 100,000 accounts at random, the writes
        spread over many configurations (`WRITTEN_CONFIGURATIONS`, handed out in turn); the same
        load on only 16 configurations, where concurrent writes to one row can meet, is its own row."""
        application = self.data.applications[0]
        spread = [{"id": id_, "application_name": application["name"], "name": f"written-{i:06d}"}
                  for i, id_ in enumerate(bench_data.bulk_configurations(
                      self.url, application, WRITTEN_CONFIGURATIONS, label="written"))]
        plan = self.write_plan(spread)
        hot = self.data.configurations[-16:]
        url = self.pgbench_database()
        half = max(1, round(self.seconds / 2))
        before = self.pgbench(url, clients=16, seconds=half)
        self.measure("configuration writes warm-up", self.service, plan, 16, seconds=1)
        measured = self.measure("configuration writes", self.service, plan, 16)
        on_hot = self.measure("configuration writes, 16 configurations", self.service, self.write_plan(hot), 16)
        say(f"configuration writes through the service layer: 16 writers, {self.seconds:g} s")
        direct, direct_count = service_writes.rate(self.url, [c["id"] for c in hot], seconds=self.seconds)
        say(f"  → {direct:,.0f} writes/s")
        after = self.pgbench(url, clients=16, seconds=half)
        tps = (before.transactions + after.transactions) / (before.seconds + after.seconds)
        postgres_ms = (before.postgres_ms + after.postgres_ms) / 2
        baseline = (f"`pgbench -N`, 16 clients: {tps:,.0f} tps (before {before.tps:,.0f}, after {after.tps:,.0f}; "
                    f"CPU/tx: PostgreSQL {postgres_ms:.2f} ms)")
        r = ratio(measured.rps, tps)
        self.rows.append(Row(f"Configuration writes/s (PUT), 16 connections over {WRITTEN_CONFIGURATIONS:,} "
                             "configurations", measured.summary(), baseline, r, "≥ 0.5", at_least(r, 0.5, measured)))
        self.rows.append(Row("Configuration writes/s (PUT), the same 16 connections over 16 configurations",
                             on_hot.summary(), "the same `pgbench -N`", ratio(on_hot.rps, tps), "—", None))
        r = ratio(direct, tps)
        self.rows.append(Row("Configuration writes/s through the service layer (16 writers on one event loop in one "
                             "process, over the 16 configurations, no HTTP)",
                             f"{direct:,.0f} writes/s ({direct_count:,} writes)", "the same `pgbench -N`", r, "—",
                             None))
        script = self.data_dir / "record.sql"
        text, defines = service_writes.record_workload(
            [c["id"] for c in hot], bench_data.config_document("bench", "ceiling"))
        script.write_text(text)
        alone = self.pgbench(self.url, clients=16, seconds=half,
                             workload=("-n", "-M", "prepared", *defines, "-f", str(script)))
        r = ratio(alone.tps, tps)
        self.rows.append(Row("PostgreSQL alone: the statement that records configuration changes (new state, "
                             "revision, event, audit), one change per statement (no batching), through `pgbench -M "
                             "prepared`, 16 clients over the 16 configurations: no HTTP, no Python",
                             f"{alone.tps:,.0f} statements/s (CPU/statement: PostgreSQL {alone.postgres_ms:.2f} ms)",
                             "the same `pgbench -N`", r, "—", None))

        loaded: list[Result] = []
        writing = threading.Thread(target=lambda: loaded.append(
            load.run(self.tool, self.service.base_url, plan, connections=16, seconds=self.seconds,
                     threads=self.args.wrk_threads)))
        say(f"staleness under the write load: 16 connections, {self.seconds:g} s ({self.tool})")
        writing.start()
        try:
            time.sleep(1)  # the load is up before the first probe
            self.figure_staleness("under the write load above")
        finally:
            writing.join()
        if loaded:
            say(f"  write load meanwhile → {loaded[0].summary()}")
            self.rows[-1].measured += f"; write load meanwhile: {loaded[0].summary()}"

    def write_plan(self, configurations: list[dict]) -> Plan:
        return Plan([Request("PUT", f"/api/v1/configurations/{c['id']}", bench_data.configuration_body(c))
                     for c in configurations], headers=self.service_headers(), partition=True)

    def pgbench_database(self) -> str:
        """A fresh `pgbench -i -s 1` database on the same embedded server; its URL."""
        admin = database_url(self.pgdata, "postgres")
        conn = psycopg2.connect(admin)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS pgbench")
                cur.execute("CREATE DATABASE pgbench")
        finally:
            conn.close()
        url = database_url(self.pgdata, "pgbench")
        say("pgbench -i -s 1")
        subprocess.run([str(postgres_bin("pgbench")), "-i", "-s", "1", "-q", url], check=True, capture_output=True,
                       timeout=300)
        return url

    def pgbench(self, url: str, *, clients: int, seconds: int, workload: tuple[str, ...] = ("-N",)) -> Pgbench:
        """pgbench transactions/s: `pgbench -N` on the pgbench database, or `workload`."""
        say(f"pgbench {' '.join(w for w in workload if len(w) < 80)}: {clients} clients, {seconds} s")
        backends = backend_count(self.pgdata)
        postgres_before = postgres_cpu_seconds(self.pgdata)
        completed = subprocess.run([str(postgres_bin("pgbench")), *workload, "-c", str(clients),
                                    "-j", str(min(clients, os.cpu_count() or 1)), "-T", str(seconds), url],
                                   capture_output=True, text=True, timeout=seconds + 120)
        if completed.returncode != 0:
            raise RuntimeError(f"pgbench failed: {completed.stderr}")
        settled_backends(self.pgdata, backends)
        tps = float(completed.stdout.split("tps = ")[1].split()[0])
        transactions = int(completed.stdout.split("number of transactions actually processed: ")[1].split()[0])
        postgres_ms = (postgres_cpu_seconds(self.pgdata) - postgres_before) * 1000 / max(1, transactions)
        say(f"  → {tps:,.0f} tps ({transactions:,} transactions; CPU/tx: PostgreSQL {postgres_ms:.2f} ms)")
        return Pgbench(tps=tps, transactions=transactions, seconds=transactions / tps if tps else seconds,
                       postgres_ms=postgres_ms)

    def figure_claude_md(self) -> None:
        headers = self.admin_headers()
        scratch = gitbench.scratch_repository(
            self.data_dir / "baseline.git", gitbench.fsync_settings(self.data_dir / "content.git"))
        self.notes.append(f"git baseline repository settings: {gitbench.fsync_settings(scratch) or 'git defaults'}")

        one = Plan([Request("PUT", f"/api/v1/users/{self.data.hot_user}/claude-md",
                            bench_data.claude_md_body("hot"))], headers=headers)
        say(f"git plumbing baseline: one document, sequential, {self.seconds:g} s")
        sequential = gitbench.plumbing_rate(scratch, label="one", refs=1, parallel=1, seconds=self.seconds)
        say(f"  → {sequential.summary()}")
        measured = self.measure("claude.md saves, one document", self.service, one, 16)
        r = ratio(measured.rps, sequential.per_second)
        self.rows.append(Row("claude.md saves/s, one document (16 connections)", measured.summary(),
                             f"git plumbing, sequential: {sequential.summary()}", r, "≥ 1.0",
                             at_least(r, 1.0, measured)))

        many = Plan([Request("PUT", f"/api/v1/users/{u}/claude-md", bench_data.claude_md_body(f"user {i}"))
                     for i, u in enumerate(self.data.users)], headers=headers)
        say(f"git plumbing baseline: {len(self.data.users)} refs, 16 in parallel, {self.seconds:g} s")
        parallel = gitbench.plumbing_rate(scratch, label="many", refs=len(self.data.users), parallel=16,
                                          seconds=self.seconds)
        say(f"  → {parallel.summary()}")
        measured = self.measure("claude.md saves, 100 documents", self.service, many, 16)
        r = ratio(measured.rps, parallel.per_second)
        self.rows.append(Row(f"claude.md saves/s, {len(self.data.users)} documents (16 connections)",
                             measured.summary(),
                             f"git plumbing, 16 parallel over {len(self.data.users)} refs: {parallel.summary()}",
                             r, "≥ 1.0", at_least(r, 1.0, measured)))

    def measure_history(self, label: str) -> tuple[Result, Result]:
        """History p50 over one connection, and the trivial endpoint's just before it as a noise
        control: when the machine is busier at one point than at the other, the control shows it."""
        plan = Plan([Request("GET", f"/api/v1/users/{self.data.history_user}/claude-md/history")],
                    headers=self.admin_headers())
        control = self.measure(f"trivial endpoint (control for {label})", self.trivial, self.trivial_plan(), 1,
                               seconds=max(1.0, self.seconds / 2))
        self.measure(f"{label} (warm-up)", self.service, plan, 1, seconds=1)
        return self.measure(label, self.service, plan, 1), control

    def figure_history(self, small_total: int, small: tuple[Result, Result]) -> None:
        total = bench_data.bulk_commits(self.url, self.data_dir / "content.git", self.data_dir,
                                        self.sizes.large_total_commits)
        (at_small, control_small), (at_large, control_large) = small, self.measure_history(
            f"history p50 at {total:,} commits")
        r = ratio(at_large.p50_ms, at_small.p50_ms)
        control = ratio(control_large.p50_ms, control_small.p50_ms)
        noise = (f"noise control, trivial endpoint p50 then/now: {fmt_ms(control_small.p50_ms)} / "
                 f"{fmt_ms(control_large.p50_ms)}"
                 + (f", ratio {control:.2f}; history ratio divided by it: {r / control:.2f}" if control and r else ""))
        self.rows.append(Row(
            f"claude.md history p50 (1 connection), {total:,} commits in the repository",
            f"p50 {fmt_ms(at_large.p50_ms)}, p99 {fmt_ms(at_large.p99_ms)}, {at_large.rps:,.0f} req/s, "
            f"{at_large.errors} errors",
            f"same at {small_total:,} commits: p50 {fmt_ms(at_small.p50_ms)}, p99 {fmt_ms(at_small.p99_ms)} ({noise})",
            r, "≤ 1.2", r is not None and r <= 1.2 and at_large.errors == at_small.errors == 0))

    def figure_longpoll(self, api: bench_data.Api) -> None:
        target = self.data.longpoll
        path = self.data.resolve_path(target)
        current = api.call("GET", path, headers=self.service_headers())
        etag = current.headers["ETag"]
        body = json.dumps({"config": {**bench_data.config_document(target["application_name"], target["name"]),
                                      "rollout": "changed"}}).encode()
        say(f"long-poll: {self.sizes.waiters} waiters")
        woke = longpoll.run(self.service.base_url, path=f"{path}?wait=60", etag=etag, token=self.data.service_token,
                            admin_token=self.admin_token, waiters=self.sizes.waiters,
                            change_path=f"/api/v1/configurations/{target['id']}", change_body=body, timeout=15)
        p50, p99 = woke.percentile(0.5), woke.percentile(0.99)
        say(f"  → {woke.woken}/{woke.waiters} woken, p50 {fmt_ms(p50)}, p99 {fmt_ms(p99)}, statuses {woke.statuses}")
        self.rows.append(Row(
            f"Long-poll: {woke.waiters:,} waiters, one change",
            f"{woke.woken:,}/{woke.waiters:,} woken; wake-up p50 {fmt_ms(p50)}, p99 {fmt_ms(p99)}, "
            f"max {fmt_ms(max(woke.latencies_ms, default=None))}"
            + (f"; {woke.statuses}" if woke.woken != woke.waiters else ""),
            "—", None, "all woken, p99 ≤ 1 s", woke.woken == woke.waiters and p99 is not None and p99 <= 1000))

    def figure_staleness(self, condition: str = "") -> None:
        target = self.data.longpoll
        say(f"staleness: 20 writes, 16 readers across the workers {condition}".strip())
        found = staleness.run(
            self.service.base_url, resolve_path=self.data.resolve_path(target),
            change_path=f"/api/v1/configurations/{target['id']}", token=self.data.service_token,
            admin_token=self.admin_token,
            config=bench_data.config_document(target["application_name"], target["name"]),
        )
        worst, p99 = found.worst_ms, found.percentile(0.99)
        self.rows.append(Row(
            f"Old version served after a write commits (cached resolve, every worker) {condition}".strip(),
            f"{found.writes} writes × {found.readers} readers: p50 {fmt_ms(found.percentile(0.5))}, "
            f"p99 {fmt_ms(p99)}, worst {fmt_ms(worst)}",
            "—", None, "≤ 1 s", worst <= 1000))

    def figure_rss(self) -> None:
        """RSS of fresh workers after a few mixed requests and after many: a leak shows as growth."""
        say("restarting svc serve for fresh workers")
        self.processes.stop(self.service)
        self.service = self.processes.start_service(self.data_dir, host=self.args.host, workers=self.args.workers,
                                                    log_dir=self.data_dir)
        plan = self.mixed_plan()
        small = self.measure(f"mixed requests ({self.sizes.rss_small:,})", self.service,
                             Plan(plan.requests, plan.headers, stop_after=self.sizes.rss_small), 16, seconds=120)
        rss_small = self.worker_rss()
        more = self.sizes.rss_large - small.requests
        large = self.measure(f"mixed requests ({more:,} more)", self.service,
                             Plan(plan.requests, plan.headers, stop_after=more), 16, seconds=240)
        rss_large = self.worker_rss()
        served = small.requests + large.requests
        r = ratio(sum(rss_large.values()), sum(rss_small.values()))

        def mib(values: dict[int, int]) -> str:
            return " + ".join(f"{v / 2**20:.1f}" for v in values.values()) + " MiB"

        self.rows.append(Row(
            f"Worker RSS after {served:,} mixed requests ({len(rss_large)} workers)",
            f"{mib(rss_large)}; mixed load {large.summary()}",
            f"after {small.requests:,}: {mib(rss_small)}", r, "≤ 1.10",
            r is not None and r <= 1.10 and small.errors == large.errors == 0))

    def mixed_plan(self) -> Plan:
        """resolve 12 : GET 5 : PUT 1 : claude.md history 1 : claude.md GET 1, over all configurations
        and users. One plan has one set of headers: the admin token, which may do all of it."""
        configs = self.data.configurations
        requests: list[Request] = []
        for i in range(len(configs)):
            c = configs[i]
            requests += [Request("GET", self.data.resolve_path(configs[(i + k) % len(configs)])) for k in range(12)]
            requests += [Request("GET", f"/api/v1/configurations/{configs[(i + k) % len(configs)]['id']}")
                         for k in range(5)]
            requests.append(Request("PUT", f"/api/v1/configurations/{c['id']}", bench_data.configuration_body(c)))
            user = self.data.users[i % len(self.data.users)]
            requests.append(Request("GET", f"/api/v1/users/{user}/claude-md/history"))
            requests.append(Request("GET", f"/api/v1/users/{user}/claude-md"))
        return Plan(requests, headers=self.admin_headers())

    def worker_rss(self) -> dict[int, int]:
        rss = {}
        for pid in self.service.worker_pids():
            try:
                rss[pid] = psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                continue
        say(f"  worker RSS: { {pid: f'{v / 2**20:.1f} MiB' for pid, v in rss.items()} }")
        return rss

    def close(self) -> None:
        self.processes.close()
        if self.args.keep:
            say(f"kept the data directory {self.data_dir}")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)


# --- output -------------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, {memory:.0f} GiB RAM, " \
           f"{platform.system()} {platform.release()}, Python {platform.python_version()}"


def verdict(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def markdown(bench: Bench, started: datetime, elapsed: float) -> str:
    args = bench.args
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} on {machine()}.",
        f"`svc serve --workers {args.workers}` on embedded PostgreSQL; load generator: "
        + (f"wrk ({args.wrk_threads} thread(s))" if bench.tool == "wrk"
           else "**python-loadgen (the fallback: slower than wrk, its figures are lower bounds)**")
        + f" on the same machine; {bench.sizes.seconds:g} s per figure"
        f"{' (--quick)' if args.quick else ''}; whole run {elapsed:.0f} s.",
        "",
        "| Figure | Measured | Baseline (same run) | Ratio | Target | Met |",
        "|---|---|---|---|---|---|",
    ]
    for row in bench.rows:
        value = "—" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(f"| {row.figure} | {row.measured} | {row.baseline} | {value} | {row.target} | "
                     f"{verdict(row.met)} |")
    if bench.notes:
        lines += ["", *(f"- {note}" for note in bench.notes)]
    return "\n".join(lines) + "\n"


def plain(bench: Bench) -> str:
    out = []
    for row in bench.rows:
        value = "—" if row.ratio is None else f"{row.ratio:.2f}"
        met = {None: "", True: "MET", False: "NOT MET"}[row.met]
        out += [f"{row.figure}", f"    measured: {row.measured}", f"    baseline: {row.baseline}",
                f"    ratio {value}   target {row.target}   {met}", ""]
    return "\n".join(out)


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65_536 if hard == resource.RLIM_INFINITY else min(hard, 65_536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # the service inherits it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="~3 s per figure and smaller data")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("SVC_WORKERS", "2")),
                        help="uvicorn workers for the service and the baseline (default: SVC_WORKERS or 2)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seconds", type=float, help="seconds per figure (default 10, 3 with --quick)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                        help="auto: wrk when installed, else the Python fallback")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: leaves CPU to servers)")
    parser.add_argument("--only", type=lambda s: s.split(","), help=f"comma-separated subset of {','.join(FIGURES)}")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy one worker during each service figure (results/profiles/)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.md")
    args = parser.parse_args(argv)
    for figure in args.only or ():
        if figure not in FIGURES:
            parser.error(f"unknown figure {figure!r}; choose from {', '.join(FIGURES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.seconds:
        sizes = Sizes(**{**sizes.__dict__, "seconds": args.seconds})
    tool = args.loadgen
    if tool in ("auto", "wrk"):
        found = load.find_wrk()
        if found is None and tool == "wrk":
            print("wrk is not installed and could not be installed here: run `apt-get install -y wrk` as root, "
                  "or use `--loadgen python` (slower; its figures are lower bounds)", file=sys.stderr)
            return 2
        tool = "wrk" if found else "python"
        if tool == "python":
            say("wrk not available (install it with `apt-get install -y wrk`): using the Python fallback load "
                "generator, whose figures are lower bounds")
    raise_open_files_limit()
    started = datetime.now()
    clock = time.monotonic()
    bench = Bench(args, sizes, tool)
    failed: BaseException | None = None
    try:
        bench.run()
    except BaseException as exc:
        failed = exc
        say(f"FAILED: {type(exc).__name__}: {exc}")
        if bench.service is not None:
            say(f"service log tail:\n{bench.service.log_tail()}")
    finally:
        bench.close()
    report = markdown(bench, started, time.monotonic() - clock)
    if failed is not None:
        report += f"\n**The run failed** before it finished: {type(failed).__name__}: {failed}\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(plain(bench))
    say(f"wrote {args.output}")
    if isinstance(failed, KeyboardInterrupt):
        return 130
    return 1 if failed is not None else 0

