"""Prometheus metrics. With several workers, `svc serve` sets PROMETHEUS_MULTIPROC_DIR so that
every worker writes its figures to shared files and `/metrics` reports the sum over all of them."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported)

HTTP_REQUESTS = Counter("svc_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "svc_http_request_duration_seconds",
    "Time to answer an HTTP request (long-polls and streams excluded)",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
# `pool`: "transactions" (the thread pool's connections) or "statements" (single statements on the loop).
POOL_IN_USE = Gauge("svc_db_pool_in_use", "Pooled connections checked out", ["pool"], multiprocess_mode="livesum")
POOL_WAITING = Gauge(
    "svc_db_pool_waiting", "Callers waiting for a pooled connection", ["pool"], multiprocess_mode="livesum"
)
CACHE_LOOKUPS = Counter("svc_cache_lookups_total", "In-process cache lookups", ["cache", "result"])
LONG_POLL_WAITERS = Gauge("svc_long_poll_waiters", "Requests held waiting for a change", multiprocess_mode="livesum")
EVENT_STREAMS = Gauge("svc_event_streams", "Open change streams (SSE)", multiprocess_mode="livesum")
LISTENER_CONNECTED = Gauge(
    "svc_listener_connected", "1 while the worker's LISTEN connection is up", multiprocess_mode="livemin"
)
# Bound once: looking a labelled child up costs more than incrementing it.
AUTH_CACHE_HITS = CACHE_LOOKUPS.labels("auth", "hit")
AUTH_CACHE_MISSES = CACHE_LOOKUPS.labels("auth", "miss")
RESOLVE_CACHE_HITS = CACHE_LOOKUPS.labels("resolve", "hit")
RESOLVE_CACHE_MISSES = CACHE_LOOKUPS.labels("resolve", "miss")
GIT_OPERATIONS = Counter("svc_git_operations_total", "Content-store (git) operations", ["operation", "outcome"])
GIT_LATENCY = Histogram(
    "svc_git_operation_duration_seconds",
    "Time of content-store (git) operations",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


Params = ParamSpec("Params")
Result = TypeVar("Result")


def git_operation(operation: str) -> Callable[[Callable[Params, Result]], Callable[Params, Result]]:
    """Count and time every call of a content-store method under `operation`, with its outcome
    (`ok`, or `error` when it raised)."""

    def decorate(method: Callable[Params, Result]) -> Callable[Params, Result]:
        succeeded, failed = GIT_OPERATIONS.labels(operation, "ok"), GIT_OPERATIONS.labels(operation, "error")
        latency = GIT_LATENCY.labels(operation)

        @functools.wraps(method)
        def measured(*args: Params.args, **kwargs: Params.kwargs) -> Result:
            started = time.perf_counter()
            outcome = failed
            try:
                result = method(*args, **kwargs)
                outcome = succeeded
                return result
            finally:
                outcome.inc()
                latency.observe(time.perf_counter() - started)

        return measured

    return decorate


def render() -> bytes:
    """The text exposition of every metric (all workers' when multiprocess mode is on)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY)


def mark_worker_exited() -> None:
    """Drop this worker's live gauges from the shared files (multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())
