"""Single statements on the event loop (`AsyncStatements`): the faults `tests/test_pool.py` puts
the thread pool's pool through (backends cut, statement timeout, exhaustion), a loop that keeps
running while a statement is in flight, and a caller that gives up mid-statement."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import psycopg2
import pytest

from svc.db import AsyncStatements, Database, PoolStats, Prepared
from svc.errors import Conflict, InternalError, Unavailable
from svc.ids import new_id

LOCK = 15  # an advisory lock a test holds to keep a statement in flight for as long as it likes


@pytest.fixture
def make_statements(cluster) -> Iterator[Callable[..., AsyncStatements]]:
    """Pools on the server's maintenance database, each under its own application_name."""
    made: list[AsyncStatements] = []

    def make(url: str | None = None, **options) -> AsyncStatements:
        options.setdefault("application_name", f"svc-test-{new_id()}")
        made.append(AsyncStatements(url or cluster.admin_url, **options))
        return made[-1]

    yield make
    for statements in made:
        statements.close()


@pytest.fixture
def lock(cluster) -> Iterator[Callable[[], None]]:
    """Holds `LOCK` from a connection of its own until the returned function is called."""
    holder = psycopg2.connect(cluster.admin_url)
    holder.autocommit = True
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (LOCK,))
    yield holder.close
    holder.close()


WAIT_FOR_LOCK = f"SELECT 1 FROM pg_advisory_xact_lock({LOCK})"


async def in_flight(statements: AsyncStatements, count: int = 1) -> None:
    """Return once `count` statements have been sent (a checked-out connection sends its statement at once)."""
    while statements.stats().in_use < count:
        await asyncio.sleep(0)


def terminate_backends(cluster, application_name: str) -> None:
    """Terminate the pool's server processes, as an operator or a failover would, and wait until they are gone."""
    admin = psycopg2.connect(cluster.admin_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT bool_and(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            )
            assert cur.fetchone()[0]
    finally:
        admin.close()


def test_reads_heal_after_the_server_terminates_every_connection(cluster, make_statements, lock):
    name = f"svc-test-{new_id()}"
    statements = make_statements(size=4, application_name=name)

    async def scenario() -> None:
        assert await asyncio.gather(*(statements.fetch_value("SELECT 1") for _ in range(8))) == [1] * 8
        waiting = asyncio.ensure_future(statements.fetch_value(WAIT_FOR_LOCK))
        await in_flight(statements)
        assert statements.stats() == PoolStats(max_size=4, open=4, in_use=1, waiting=0)
        terminate_backends(cluster, name)
        # The statement in flight loses its connection: 503.
        with pytest.raises(Unavailable, match="database unavailable: .*terminating connection"):
            await waiting
        # The idle ones are found closed at checkout: every later read succeeds, on one new connection.
        assert [await statements.fetch_value("SELECT 1") for _ in range(8)] == [1] * 8
        assert statements.stats() == PoolStats(max_size=4, open=1, in_use=0, waiting=0)

    asyncio.run(scenario())


def test_errors_become_domain_errors_and_keep_the_connection(database_url, make_statements):
    statements = make_statements(database_url, size=1, statement_timeout_ms=100)
    taken = {"scratch_n_key": lambda params: Conflict(f"n {params['n']} is taken")}
    insert = "INSERT INTO scratch (n) VALUES (%(n)s) RETURNING n"

    async def scenario() -> None:
        with pytest.raises(Unavailable, match="canceling statement due to statement timeout"):
            await statements.fetch_value("SELECT pg_sleep(1)")
        with pytest.raises(InternalError, match='column "no_such_column" does not exist'):
            await statements.fetch_value("SELECT no_such_column")
        await statements.execute("CREATE TABLE scratch (n int CONSTRAINT scratch_n_key UNIQUE)")
        assert await statements.fetch_one(insert, {"n": 1}, constraints=taken) == {"n": 1}
        with pytest.raises(Conflict, match="n 1 is taken"):
            await statements.execute(insert, {"n": 1}, constraints=taken)
        assert await statements.execute("UPDATE scratch SET n = n + 1") == 1  # each statement commits alone
        assert await statements.fetch_all("SELECT n FROM scratch") == [{"n": 2}]
        assert statements.stats().open == 1  # not one of those errors cost the connection

    asyncio.run(scenario())


def test_a_caller_waits_for_a_connection_until_the_timeout(make_statements, lock):
    statements = make_statements(size=1, timeout=0.2)

    async def scenario() -> None:
        holding = asyncio.ensure_future(statements.fetch_value(WAIT_FOR_LOCK))
        await in_flight(statements)
        waiting = asyncio.ensure_future(statements.fetch_value("SELECT 2"))
        await asyncio.sleep(0)
        assert statements.stats().waiting == 1
        with pytest.raises(Unavailable, match="no database connection became free within 0.2 s; the service is overloaded"):
            await waiting
        lock()  # released: the held statement completes and its connection serves again
        assert await holding == 1
        assert await statements.fetch_value("SELECT 2") == 2
        assert statements.stats() == PoolStats(max_size=1, open=1, in_use=0, waiting=0)

    asyncio.run(scenario())


def test_the_loop_runs_other_coroutines_while_a_statement_is_in_flight(make_statements):
    statements = make_statements(size=1)
    finished: list[str] = []

    async def slow_statement() -> None:
        await statements.fetch_value("SELECT pg_sleep(0.3)")
        finished.append("statement")

    async def other() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        finished.append("other")

    async def scenario() -> None:
        await statements.fetch_value("SELECT 1")  # the connection is open: the statement is all that is awaited
        await asyncio.gather(slow_statement(), other())

    asyncio.run(scenario())
    assert finished == ["other", "statement"]


def test_a_cancelled_caller_costs_its_connection_and_nothing_else(make_statements, lock):
    statements = make_statements(size=1)

    async def scenario() -> None:
        abandoned = asyncio.ensure_future(statements.fetch_value(WAIT_FOR_LOCK))
        await in_flight(statements)
        abandoned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        assert statements.stats() == PoolStats(max_size=1, open=0, in_use=0, waiting=0)  # closed, not reused
        assert await statements.fetch_value("SELECT 1") == 1
        assert statements.stats() == PoolStats(max_size=1, open=1, in_use=0, waiting=0)
        statements.close()
        assert statements.stats().open == 0
        with pytest.raises(Unavailable, match="shutting down"):
            await statements.fetch_value("SELECT 1")

    asyncio.run(scenario())


# --- prepared statements ---------------------------------------------------------------------------

SESSION_PREPARED = "SELECT name, parameter_types::text[] AS types FROM pg_prepared_statements ORDER BY name"
ADD = Prepared("svc_test_add", "SELECT %(a)s::int + %(b)s::int + %(a)s::int AS total, '100%%' AS literal")


def test_a_prepared_statement_is_planned_once_per_connection_then_executed_by_name(make_statements):
    statements = make_statements(size=1)

    async def twice() -> list:
        first = await statements.fetch_one(ADD, {"a": 1, "b": 2})
        second = await statements.fetch_one(ADD, {"a": 10, "b": 20})
        return [first, second, await statements.fetch_all(SESSION_PREPARED)]

    first, second, prepared = asyncio.run(twice())
    # Each named parameter is one positional one, however often it appears; %% is a literal %.
    assert (first, second) == ({"total": 4, "literal": "100%"}, {"total": 40, "literal": "100%"})
    assert prepared == [{"name": "svc_test_add", "types": ["integer", "integer"]}]


def test_a_transaction_prepares_on_its_own_connections_and_keeps_them_after_a_rollback(cluster):
    db = Database(cluster.admin_url, min_size=1, max_size=1)
    try:
        with db.transaction() as tx:  # rolled back: a prepared statement outlives its transaction
            assert tx.fetch_value(ADD, {"a": 2, "b": 3}) == 7
        with db.transaction() as tx:
            assert tx.fetch_value(ADD, {"a": 1, "b": 1}) == 3
            assert [r["name"] for r in tx.fetch_all(SESSION_PREPARED)] == ["svc_test_add"]
    finally:
        db.close()
    plain = psycopg2.connect(cluster.admin_url)  # a connection from elsewhere runs the text itself
    try:
        with plain.cursor() as cur:
            cur.execute(ADD, {"a": 1, "b": 2})
            assert cur.fetchone() == (4, "100%")
            cur.execute(SESSION_PREPARED)
            assert cur.fetchall() == []
    finally:
        plain.close()
