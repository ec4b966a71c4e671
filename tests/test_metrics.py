"""Every series `/metrics` exports is set by the code it describes: for each metric family declared
in svc/metrics.py, a request sequence that makes it move, read through the API with the
Prometheus parser. A family declared without a test here fails `test_every_declared_family_is_moved_here`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import psycopg2
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from prometheus_client.metrics import MetricWrapperBase

from svc import metrics
from svc.api.app import create_app
from svc.errors import Unavailable
from svc.services.auth import Principal
from tests.claude_md_helpers import create_user
from tests.configuration_helpers import create_application, create_configuration
from tests.conftest import bearer
from tests.metrics_helpers import moved, parse, scrape, value
from tests.test_delivery import eventually

RESOLVE = "/api/v1/resolve/{application_name}/{configuration_name}"
MOVED_HERE: dict[str, str] = {}  # family → the test that makes it move


def moves(*families: str) -> Callable:
    """Register the test as the one that makes these families move."""

    def register(test: Callable) -> Callable:
        MOVED_HERE.update(dict.fromkeys(families, test.__name__))
        return test

    return register


def declared_families() -> set[str]:
    """The family names of every metric object in svc/metrics.py (as the parser names them)."""
    return {
        described.name
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
        for described in metric.describe()
    }


def test_every_declared_family_is_moved_here():
    assert declared_families() == set(MOVED_HERE), "a metric without a test that makes it move, or vice versa"


@moves("svc_http_requests", "svc_http_request_duration_seconds")
def test_requests_are_labelled_by_the_path_template_the_client_used(client, admin):
    app = create_application(client, admin)
    before = scrape(client, admin)
    requests = [  # method, path, the route label it must get, status
        ("GET", "/health", "/health", 200),
        ("GET", "/api/v1/applications", "/api/v1/applications", 200),
        ("GET", f"/api/v1/applications/{app['id']}", "/api/v1/applications/{application_id}", 200),
        ("PUT", "/api/v1/applications", "/api/v1/applications", 405),
        ("GET", "/openapi.json", "/openapi.json", 200),
        ("GET", "/docs", "/docs", 200),
        ("GET", "/no/such/path", "unmatched", 404),
    ]
    for method, path, _, status in requests:
        assert client.request(method, path, headers=admin).status_code == status
    after = scrape(client, admin)

    for method, _, route, status in requests:
        assert moved(before, after, "svc_http_requests_total", method=method, route=route, status=str(status)) == 1
        assert moved(before, after, "svc_http_request_duration_seconds_count", method=method, route=route) == 1
    # Every label is a path OpenAPI lists, or the path of a route it leaves out: the pages the
    # service documents itself with (`/openapi.json`, `/docs`, ...), reached by other tests too.
    undocumented = {c.path for c in iter_route_contexts(client.app.routes) if not getattr(c, "include_in_schema", True)}
    assert "/openapi.json" in undocumented
    documented = set(client.get("/openapi.json").json()["paths"]) | undocumented | {"unmatched"}
    routes = {dict(labels)["route"] for name, labels in after if name == "svc_http_requests_total"}
    assert routes <= documented, routes - documented


@moves("svc_cache_lookups")
def test_cache_lookups_count_hits_and_misses(client, admin, make_token, services):
    app = create_application(client, admin)
    create_configuration(client, admin, app["id"], name="limits")
    service = bearer(make_token("service"))
    before = scrape(client, admin)
    client.get("/api/v1/resolve/billing/limits", headers=service)  # a token and a configuration not yet cached
    assert eventually(lambda: len(services.delivery.cache) == 1)
    client.get("/api/v1/resolve/billing/limits", headers=service)  # both cached now
    after = scrape(client, admin)
    assert moved(before, after, "svc_cache_lookups_total", cache="auth", result="miss") >= 1
    assert moved(before, after, "svc_cache_lookups_total", cache="auth", result="hit") >= 1
    assert moved(before, after, "svc_cache_lookups_total", cache="resolve", result="miss") == 1
    assert moved(before, after, "svc_cache_lookups_total", cache="resolve", result="hit") == 1


@contextmanager
def transactions_held(client, services) -> Iterator[int]:
    """Every connection of the thread pool's pool in a transaction, and one more caller waiting."""
    with ExitStack() as held:
        for _ in range(services.db.max_size):
            held.enter_context(services.db.transaction())
        waiter = threading.Thread(target=lambda: services.db.ping())
        waiter.start()
        yield services.db.max_size
    waiter.join(10)


@contextmanager
def statements_held(client, services) -> Iterator[int]:
    """Every connection of the loop's statement pool in a statement that waits for a lock, and one
    more caller waiting for a connection."""
    blocker = psycopg2.connect(services.settings.database_url.get_secret_value())
    blocker.autocommit = True
    blocker.cursor().execute("SELECT pg_advisory_lock(15)")
    statement = "SELECT pg_advisory_xact_lock_shared(15)"
    calls = [client.portal.start_task_soon(services.statements.execute, statement)
             for _ in range(services.statements.size + 1)]
    try:
        yield services.statements.size
    finally:
        blocker.close()  # releases the lock
        for call in calls:
            call.result(10)


@moves("svc_db_pool_in_use", "svc_db_pool_waiting")
@pytest.mark.parametrize("pool, held", [("transactions", transactions_held), ("statements", statements_held)])
def test_pool_gauges_follow_checked_out_connections_and_waiters(client, admin, services, pool, held):
    idle = scrape(client, admin)
    with held(client, services) as size:  # the statement pool opens its connections meanwhile
        assert eventually(lambda: (s := scrape(client, admin)) and value(s, "svc_db_pool_waiting", pool=pool) >= 1
                          and value(s, "svc_db_pool_in_use", pool=pool) == size), \
            "the connections checked out and a caller waiting for one were not counted"
    after = eventually(lambda: (s := scrape(client, admin)) and value(s, "svc_db_pool_in_use", pool=pool) == 0 and s)
    assert after, "connections given back were still counted"
    assert value(after, "svc_db_pool_waiting", pool=pool) == value(idle, "svc_db_pool_waiting", pool=pool)


@moves("svc_long_poll_waiters")
def test_a_long_poll_is_a_waiter_and_no_latency_figure(client, admin):
    app = create_application(client, admin)
    configuration = create_configuration(client, admin, app["id"], name="limits")
    current = client.get("/api/v1/resolve/billing/limits", headers=admin).headers["etag"]
    before = scrape(client, admin)
    answers = []
    poll = threading.Thread(target=lambda: answers.append(client.get(
        "/api/v1/resolve/billing/limits", params={"wait": 30}, headers={**admin, "If-None-Match": current})))
    poll.start()
    assert eventually(lambda: value(scrape(client, admin), "svc_long_poll_waiters") == 1)
    client.put(f"/api/v1/configurations/{configuration['id']}", headers=admin, json={"config": {"rate": 2}})
    poll.join(10)
    assert answers and answers[0].status_code == 200
    after = scrape(client, admin)
    assert value(after, "svc_long_poll_waiters") == 0
    assert moved(before, after, "svc_http_requests_total", method="GET", route=RESOLVE, status="200") == 1
    assert moved(before, after, "svc_http_request_duration_seconds_count", method="GET", route=RESOLVE) == 0


@moves("svc_event_streams")
def test_an_open_event_stream_is_counted_while_it_lasts(client, admin):
    app = create_application(client, admin)
    events = f"/api/v1/applications/{app['id']}/events"
    before = scrape(client, admin)
    with client.stream("GET", events, headers=admin) as stream:
        assert stream.status_code == 200
        assert next(stream.iter_lines()).startswith("retry:")  # the stream has begun
        assert eventually(lambda: value(scrape(client, admin), "svc_event_streams") == 1)
    assert eventually(lambda: value(scrape(client, admin), "svc_event_streams") == 0)
    after = scrape(client, admin)
    assert moved(before, after, "svc_http_requests_total", method="GET", route="/api/v1/applications/{application_id}/events",
                 status="200") == 1
    assert moved(before, after, "svc_http_request_duration_seconds_count", method="GET",
                 route="/api/v1/applications/{application_id}/events") == 0


@moves("svc_listener_connected")
def test_listener_connected_is_one_while_the_listen_connection_is_up(settings):
    with TestClient(create_app(settings)) as running:
        token = running.app.state.services.tokens.create(Principal.operator(), name="scraper", role="admin")
        assert value(scrape(running, bearer(token.secret)), "svc_listener_connected") == 1
    assert value(parse(metrics.render().decode()), "svc_listener_connected") == 0


@moves("svc_git_operations", "svc_git_operation_duration_seconds")
def test_git_operations_are_counted_and_timed_with_their_outcome(client, admin, services):
    user = create_user(client, admin)
    document = f"/api/v1/users/{user['id']}/claude-md"
    before = scrape(client, admin)
    assert client.put(document, headers=admin, json={"content": "# one"}).status_code in (200, 201)
    assert client.get(document, headers=admin).status_code == 200
    with pytest.raises(Unavailable):
        services.content.read("0" * 40)  # a commit the repository does not have
    after = scrape(client, admin)
    assert moved(before, after, "svc_git_operations_total", operation="save", outcome="ok") == 1
    assert moved(before, after, "svc_git_operations_total", operation="read", outcome="error") == 1
    assert moved(before, after, "svc_git_operation_duration_seconds_count", operation="save") == 1
    assert moved(before, after, "svc_git_operation_duration_seconds_count", operation="read") >= 1
