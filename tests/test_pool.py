"""The connection pool: bounded waiting, self-healing after a PostgreSQL restart."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from svc.db import Database
from svc.errors import InternalError, Unavailable
from tests.fault_helpers import LONG


@pytest.fixture
def db(database_url):
    pool = Database(database_url, min_size=1, max_size=4, timeout=10)
    yield pool
    pool.close()


def slow_query(db: Database) -> int:
    with db.transaction() as tx:
        return tx.fetch_value("SELECT 1 FROM pg_sleep(0.05)")


def test_four_times_more_callers_than_connections_all_succeed(db):
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: slow_query(db), range(64)))
    assert results == [1] * 64
    stats = db.stats()
    assert stats.in_use == 0 and stats.waiting == 0 and stats.open <= 4


def test_waiting_is_bounded_by_the_timeout(database_url):
    db = Database(database_url, min_size=1, max_size=1, timeout=0.3)
    try:
        with db.transaction():
            started = time.monotonic()
            with pytest.raises(Unavailable, match="no database connection became free within 0.3 s"):
                with db.transaction():
                    pass
            assert time.monotonic() - started < 2
        assert slow_query(db) == 1  # the slot came back
    finally:
        db.close()


def test_a_closed_pool_answers_503_and_closes_a_connection_in_use_when_it_comes_back(database_url):
    """Shutting down: the idle connections close at once, one in use when its transaction ends,
    and a later transaction is refused as unavailable (503), as the loop's statements are."""
    db = Database(database_url, min_size=2, max_size=2)
    with db.transaction() as held:
        db.close()
        assert db.stats().open == 1
        assert held.fetch_value("SELECT 1") == 1  # the transaction in flight finishes
    assert held.connection.closed and db.stats().open == 0
    with pytest.raises(Unavailable, match="shutting down"), db.transaction():
        pass


def test_leaving_without_commit_rolls_back_and_returns_the_connection(db):
    with db.transaction() as tx:
        tx.execute("CREATE TABLE scratch (n int)")
        tx.commit()
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO scratch VALUES (1)")
            raise RuntimeError("boom")
    with db.transaction() as tx:
        tx.execute("INSERT INTO scratch VALUES (2)")  # no commit
    with db.transaction() as tx:
        assert tx.fetch_all("SELECT n FROM scratch") == []
    assert db.stats().in_use == 0


def test_failed_statement_leaves_a_usable_connection(db):
    with pytest.raises(InternalError, match="database error: column \"no_such_column\" does not exist"):
        with db.transaction() as tx:
            tx.execute("SELECT no_such_column")
    assert slow_query(db) == 1


def restart_or_skip(cluster):
    if cluster.embedded is None:
        pytest.skip("restarting needs the embedded server")
    cluster.embedded.restart()


def slow_read(db: Database) -> int:
    with db.autocommit() as statement:
        return statement.fetch_value("SELECT 1 FROM pg_sleep(0.05)")


@pytest.mark.parametrize("query", [slow_query, slow_read], ids=["transaction", "single-statement read"])
def test_pool_heals_after_postgres_restart(cluster, db, query):
    # Fill the pool with connections that the restart will cut.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: query(db), range(8)))
    assert db.stats().open == 4
    restart_or_skip(cluster)
    # Every stale connection is detected at checkout: the very first calls succeed.
    assert [query(db) for _ in range(8)] == [1] * 8
    assert db.stats().open == 1  # the four cut ones were closed (and counted so); one new one serves


def test_a_single_statement_read_opens_no_transaction_and_leaves_none_behind(database_url):
    db = Database(database_url, min_size=1, max_size=1, timeout=0.3, statement_timeout_ms=200)
    try:
        with db.autocommit() as statement:
            statement.fetch_value("SELECT 1")
            assert statement.connection.info.transaction_status == 0  # idle: no BEGIN was sent
            with pytest.raises(Unavailable, match="no database connection became free within 0.3 s"):
                with db.autocommit():
                    pass
        with db.transaction() as tx:
            tx.execute("CREATE TABLE scratch (n int)")  # the same connection, transactional again
        with db.autocommit() as statement:
            assert statement.fetch_value("SELECT to_regclass('scratch')") is None  # rolled back
            with pytest.raises(Unavailable, match="canceling statement due to statement timeout"):
                statement.fetch_value("SELECT pg_sleep(1)")
        assert slow_read(db) == 1
    finally:
        db.close()


def test_service_answers_503_while_postgres_is_down_and_recovers(cluster, client, admin):
    if cluster.embedded is None:
        pytest.skip("stopping needs the embedded server")
    assert client.get("/api/v1/tokens", headers=admin).status_code == 200
    cluster.embedded.stop()
    try:
        down = client.get("/api/v1/tokens", headers=admin)
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert down.headers["retry-after"] == "1"  # RFC 9110 §10.2.3: delay-seconds
        assert "database unavailable" in down.json()["detail"]
        assert client.get("/ready").status_code == 503
        assert client.get("/health").status_code == 200
    finally:
        cluster.embedded.start()
    assert client.get("/api/v1/tokens", headers=admin).status_code == 200
    assert client.get("/ready").json()["checks"]["database"] is True


def test_real_server_under_32_concurrent_clients_returns_no_5xx(served_app, make_token):
    """Measured before this pool: a plain sync route over a 20-connection pool returned 5xx here."""
    token = make_token("admin")
    server = served_app(pool_max_size=4, threads=4)
    statuses: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        with server.client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            for _ in range(25):
                code = http.get("/api/v1/tokens").status_code
                with lock:
                    statuses.append(code)

    threads = [threading.Thread(target=hammer) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(statuses) == 800
    assert set(statuses) == {200}


@pytest.mark.skipif(not LONG, reason="two worker processes: SVC_LONG_TESTS=1 (test_pool_heals_after_postgres_restart is its in-process variant)")
def test_live_server_heals_after_restart(cluster, live_server, make_token):
    token = make_token("admin")
    server = live_server(workers=2)
    with server.client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        assert http.get("/api/v1/tokens").status_code == 200
        restart_or_skip(cluster)
        codes = [http.get("/api/v1/tokens").status_code for _ in range(20)]
    assert set(codes) == {200}, codes
    assert isinstance(httpx, object)
