"""Read-modify-write races across worker processes (two; four with `SVC_LONG_TESTS=1`): clients
that write with If-Match (and read again on 412) lose no update, and revision and version numbers
stay gapless.

What tests/test_configuration_history.py and tests/test_claude_md_concurrency.py already
show (one winner per ETag, unconditional writes each making one revision or version) is
not repeated here.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg2

from svc.api.etags import parse_precondition
from svc.errors import PreconditionFailed
from svc.ids import new_id
from svc.repositories.configurations import ConfigurationRepository, Event, Planned, State
from svc.services import audit
from svc.services import configurations as configurations_service
from svc.services.auth import Principal

from tests.claude_md_helpers import API, create_user
from tests.configuration_helpers import create_application, create_configuration
from tests.conftest import on_app_loop
from tests.fault_helpers import LONG

WORKERS = 4 if LONG else 2
CLIENTS = 6
UPDATES_EACH = 8 if LONG else 4


def _increment(http: httpx.Client, url: str, client: int) -> tuple[list[int], int]:
    """Add one to the counter of a configuration, UPDATES_EACH times; the revisions written
    and the number of stale writes refused."""
    written, refused = [], 0
    while len(written) < UPDATES_EACH:
        current = http.get(url)
        assert current.status_code == 200, current.text
        config = current.json()["config"]
        config["counter"] += 1
        config["last"] = client
        response = http.put(url, json={"config": config}, headers={"If-Match": current.headers["etag"]})
        if response.status_code == 412:
            refused += 1  # somebody else wrote first: read again
            continue
        assert response.status_code == 200, response.text
        written.append(response.json()["revision"])
    return written, refused


def _append(http: httpx.Client, url: str, client: int) -> tuple[list[int], int]:
    """Append a line to a claude.md document, UPDATES_EACH times; the versions written and
    the number of stale writes refused."""
    written, refused = [], 0
    while len(written) < UPDATES_EACH:
        current = http.get(url)
        assert current.status_code == 200, current.text
        content = current.json()["content"] + f"client {client} line {len(written)}\n"
        response = http.put(url, json={"content": content}, headers={"If-Match": current.headers["etag"]})
        if response.status_code == 412:
            refused += 1
            continue
        assert response.status_code == 200, response.text
        written.append(response.json()["version"])
    return written, refused


def test_if_match_read_modify_write_loses_no_update(client, admin, live_server):
    application = create_application(client, admin, "counters")
    configuration = create_configuration(client, admin, application["id"], "counter", {"counter": 0})
    user = create_user(client, admin, "ada")
    document = f"{API}/users/{user['id']}/claude-md"
    assert client.put(document, json={"content": ""}, headers=admin).status_code == 200  # If-Match needs a version
    server = live_server(workers=WORKERS)
    counter = f"{API}/configurations/{configuration['id']}"

    def race(work, url: str, client_number: int) -> tuple[list[int], int]:
        with server.client(headers=admin, timeout=30) as http:
            return work(http, url, client_number)

    with ThreadPoolExecutor(2 * CLIENTS) as pool:
        counting = [pool.submit(race, _increment, counter, n) for n in range(CLIENTS)]
        appending = [pool.submit(race, _append, document, n) for n in range(CLIENTS)]
        counted = [future.result() for future in counting]
        appended = [future.result() for future in appending]
    revisions = [r for written, _ in counted for r in written]
    versions = [v for written, _ in appended for v in written]

    total = CLIENTS * UPDATES_EACH
    # Every acknowledged write has its own number, and together they leave no gap.
    assert sorted(revisions) == list(range(2, total + 2))
    assert sorted(versions) == list(range(2, total + 2))
    final = client.get(counter, headers=admin).json()
    assert (final["config"]["counter"], final["revision"]) == (total, total + 1)
    stored = [r["revision"] for r in client.get(f"{counter}/revisions?limit=100", headers=admin).json()["items"]]
    assert stored == list(range(total + 1, 0, -1))
    lines = client.get(document, headers=admin).json()["content"].splitlines()
    assert sorted(lines) == sorted(f"client {c} line {n}" for c in range(CLIENTS) for n in range(UPDATES_EACH))
    history = client.get(f"{document}/history?limit=100", headers=admin).json()["versions"]
    assert [v["version"] for v in history] == list(range(total + 1, 0, -1))
    refused = sum(n for _, n in counted + appended)
    print(f"\nconcurrency: {2 * total} updates with If-Match by {2 * CLIENTS} clients on {WORKERS} workers, "
          f"{refused} stale writes refused with 412 and retried, none lost")


# --- a write overtaken between its read and its record ------------------------------------------


def _hold_row_then_move_it(database_url: str, configuration_id: str, write) -> tuple[object, int]:
    """Run `write` (in a thread) while this test holds the row lock; once the write waits for that
    lock, move the row on by one revision as another writer would, and commit. `write`'s result."""
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT revision FROM configurations WHERE id = %s FOR UPDATE", (configuration_id,))
            (revision,) = cur.fetchone()
            with ThreadPoolExecutor(1) as pool:
                writing = pool.submit(write)
                _wait_for_a_lock_waiter(database_url)
                cur.execute(
                    "UPDATE configurations SET revision = revision + 1, config = config || '{\"other\": 1}' "
                    "WHERE id = %s",
                    (configuration_id,),
                )
                cur.execute(
                    "INSERT INTO configuration_revisions (configuration_id, revision, config, secret_paths, author) "
                    "SELECT id, revision, config, secret_paths, 'other writer' FROM configurations WHERE id = %s",
                    (configuration_id,),
                )
                conn.commit()
                try:
                    return writing.result(timeout=30), revision
                except Exception as exc:  # noqa: BLE001 - the caller asserts on what the write raised
                    return exc, revision
    finally:
        conn.close()


def _wait_for_a_lock_waiter(database_url: str) -> None:
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for _ in range(1000):
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                if cur.fetchone()[0]:
                    return
                time.sleep(0.01)
        raise AssertionError("the write never waited for the row lock")
    finally:
        conn.close()


def test_a_write_overtaken_after_its_read_lands_on_top_of_the_other(services, client, admin, database_url):
    application = create_application(client, admin, "overtaken")
    configuration = create_configuration(client, admin, application["id"], "main", {"mine": 0})
    operator = Principal.operator()
    result, read_at = _hold_row_then_move_it(
        database_url, configuration["id"],
        lambda: on_app_loop(client, lambda: services.configurations.update(
            operator, configuration["id"], {"config": {"mine": 1}})),
    )
    # The write read revision 1, lost the race to the other writer's revision 2, read again, and
    # recorded revision 3: nothing lost, nothing recorded twice.
    assert (read_at, result.revision, result.config) == (1, 3, {"mine": 1})
    revisions = client.get(f"{API}/configurations/{configuration['id']}/revisions", headers=admin).json()["items"]
    assert [(r["revision"], r["author"]) for r in revisions][:2] == [(3, operator.name), (2, "other writer")]
    audited = client.get(f"{API}/audit?resource_id={configuration['id']}", headers=admin).json()["items"]
    assert [(a["action"], a["detail"]["before_revision"], a["detail"]["after_revision"]) for a in audited] == [
        ("configuration.update", 2, 3), ("configuration.create", None, 1),
    ]


def test_a_conditional_write_overtaken_after_its_read_fails_its_precondition(services, client, admin, database_url):
    application = create_application(client, admin, "overtaken")
    configuration = create_configuration(client, admin, application["id"], "main", {"mine": 0})
    url = f"{API}/configurations/{configuration['id']}"
    tag = client.get(url, headers=admin).headers["etag"]
    result, _ = _hold_row_then_move_it(
        database_url, configuration["id"],
        lambda: on_app_loop(client, lambda: services.configurations.update(
            Principal.operator(), configuration["id"], {"config": {"mine": 1}},
            expected=parse_precondition(tag, None),
        )),
    )
    assert isinstance(result, PreconditionFailed)
    conn = psycopg2.connect(database_url)  # the other writer announced nothing: read the table, not the cache
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT revision, config FROM configurations WHERE id = %s", (configuration["id"],))
            assert cur.fetchone() == (2, {"mine": 0, "other": 1})
    finally:
        conn.close()
    audited = client.get(f"{API}/audit?resource_id={configuration['id']}", headers=admin).json()["items"]
    assert [a["action"] for a in audited] == ["configuration.create"]


def test_writers_that_keep_losing_the_race_take_the_row_lock(services, client, admin, monkeypatch):
    """Unconditional writes from many threads on one row: with no unlocked try at all every write
    takes the lock, and with the default some do; either way each gets its own revision."""
    application = create_application(client, admin, "contended")
    operator = Principal.operator()
    for attempts in (0, configurations_service.OPTIMISTIC_ATTEMPTS):
        monkeypatch.setattr(configurations_service, "OPTIMISTIC_ATTEMPTS", attempts)
        configuration = create_configuration(client, admin, application["id"], f"tries-{attempts}", {"n": 0})

        def write(n: int) -> int:
            return on_app_loop(client, lambda: services.configurations.update(
                operator, configuration["id"], {"config": {"n": n}})).revision

        with ThreadPoolExecutor(8) as pool:
            revisions = list(pool.map(write, range(1, 41)))
        assert sorted(revisions) == list(range(2, 42))
        stored = client.get(f"{API}/configurations/{configuration['id']}/revisions?limit=100", headers=admin).json()
        assert [r["revision"] for r in stored["items"]] == list(range(41, 0, -1))


# --- writes of one worker recorded together -----------------------------------------------------


def test_concurrent_writes_recorded_together_keep_each_its_own_revision_and_audit(client, admin, services):
    """Sixteen PUTs at once, two per configuration, share the worker's statements: each is its
    configuration's next revision, and its audit event names its own request."""
    application = create_application(client, admin, "together")
    ids = [create_configuration(client, admin, application["id"], f"c{n}", {"n": 0})["id"] for n in range(8)]
    writes = [(ids[n % 8], n) for n in range(16)]

    def put(write: tuple[str, int]) -> tuple[str, int]:
        configuration_id, n = write
        response = client.put(f"{API}/configurations/{configuration_id}", json={"config": {"n": n + 100}},
                              headers={**admin, "X-Request-ID": f"write-{n}"})
        assert response.status_code == 200, response.text
        return configuration_id, response.json()["revision"]

    with ThreadPoolExecutor(16) as pool:
        written = list(pool.map(put, writes))
    for configuration_id in ids:
        assert sorted(revision for id_, revision in written if id_ == configuration_id) == [2, 3]
        audited = client.get(f"{API}/audit?resource_id={configuration_id}", headers=admin).json()["items"]
        updates = {a["request_id"]: a["detail"]["after_revision"] for a in audited if a["action"] == "configuration.update"}
        mine = {f"write-{n}": revision for (id_, n), (_, revision) in zip(writes, written) if id_ == configuration_id}
        assert updates == mine
        final = client.get(f"{API}/configurations/{configuration_id}", headers=admin).json()
        last = next(n for (id_, n), (_, revision) in zip(writes, written) if id_ == configuration_id and revision == 3)
        assert (final["revision"], final["config"]) == (3, {"n": last + 100})


def test_one_statement_records_the_changes_still_current_and_nothing_of_the_others(services, client, admin):
    """A change worked out from a revision that is no longer current records nothing (no state,
    revision, event or audit), and does not stop the others of its statement."""
    application = create_application(client, admin, "statement")
    current, moved = (create_configuration(client, admin, application["id"], name, {"v": 1}) for name in ("a", "b"))
    operator = Principal.operator()
    with services.db.autocommit() as statements:
        repository = ConfigurationRepository(statements)
        targets = {t.configuration.id: t.configuration for t in repository.for_writes(
            [(current["id"], None), (moved["id"], None)])}
        planned = [
            Planned(id_, State({"v": 2}, None, [], None), expected_revision=revision, event=Event(
                operator.name, None, "updated", audit.entry(operator, "configuration.update", "configuration", id_)))
            for id_, revision in ((current["id"], targets[current["id"]].revision), (moved["id"], 7))
        ]
        recorded = repository.record_updates(planned)
    assert [(r.configuration.id, r.configuration.revision, r.configuration.config) for r in recorded] == [
        (current["id"], 2, {"v": 2})
    ]
    for configuration, revisions in ((current, [2, 1]), (moved, [1])):
        url = f"{API}/configurations/{configuration['id']}"
        stored = client.get(f"{url}/revisions", headers=admin).json()["items"]
        assert [r["revision"] for r in stored] == revisions
        audited = client.get(f"{API}/audit?resource_id={configuration['id']}", headers=admin).json()["items"]
        assert len(audited) == len(revisions)


def test_a_row_another_transaction_holds_is_skipped_not_waited_for(services, client, admin, database_url):
    """The recording statement does not wait for a row another writer holds (that row is about to
    move on): it records the other changes at once and nothing for the held one."""
    application = create_application(client, admin, "held")
    free, held = (create_configuration(client, admin, application["id"], name, {"v": 1}) for name in ("free", "held"))
    operator = Principal.operator()
    other = psycopg2.connect(database_url)
    try:
        with other.cursor() as cur:
            cur.execute("SELECT 1 FROM configurations WHERE id = %s FOR UPDATE", (held["id"],))
            with services.db.autocommit() as statements:
                planned = [
                    Planned(id_, State({"v": 2}, None, [], None), expected_revision=1, event=Event(
                        operator.name, None, "updated",
                        audit.entry(operator, "configuration.update", "configuration", id_)))
                    for id_ in (free["id"], held["id"])
                ]
                recorded = ConfigurationRepository(statements).record_updates(planned)
        other.rollback()
    finally:
        other.close()
    assert [(r.configuration.id, r.configuration.revision) for r in recorded] == [(free["id"], 2)]
    assert client.get(f"{API}/configurations/{held['id']}", headers=admin).json()["revision"] == 1


def test_a_write_reads_a_few_pages_of_the_table_however_many_configurations_there_are(services, client, admin):
    """The write statements find their rows by index: a write among 2,000 other configurations reads
    a few pages of `configurations`, not all of them. (A plain join with jsonb_to_recordset, which
    PostgreSQL guesses at 100 rows, was planned as a scan of the whole table whenever that looked
    cheaper than 100 index lookups: on every write of a site with a few thousand configurations.)"""
    application = create_application(client, admin, "pages")
    mine = create_configuration(client, admin, application["id"], "mine", {"v": 1})
    others = create_application(client, admin, "others")
    with services.db.transaction() as tx:
        tx.execute(
            "INSERT INTO configurations (id, application_id, name, config, revision) "
            "SELECT id, %(application_id)s, 'other-' || n, jsonb_build_object('n', n, 'padding', repeat('x', 1200)), 1 "
            "FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS other(id, n)",
            {"application_id": others["id"], "ids": [new_id() for _ in range(2000)]},
        )
        tx.commit()
    with services.db.transaction() as tx:
        tx.execute("ANALYZE configurations")
        tx.commit()
    operator = Principal.operator()
    pages = "SELECT pg_stat_get_xact_blocks_fetched('configurations'::regclass)"
    with services.db.transaction() as tx:  # rolled back
        repository = ConfigurationRepository(tx)
        before = tx.fetch_value(pages)
        (target,) = repository.for_writes([(mine["id"], None)])
        read = tx.fetch_value(pages) - before
        (recorded,) = repository.record_updates([Planned(
            mine["id"], State({"v": 2}, None, [], None), expected_revision=target.configuration.revision,
            event=Event(operator.name, None, "updated",
                        audit.entry(operator, "configuration.update", "configuration", mine["id"])))])
        written = tx.fetch_value(pages) - before - read
    assert recorded.configuration.revision == 2
    with services.db.autocommit() as statements:
        table_pages = statements.fetch_value("SELECT relpages FROM pg_class WHERE relname = 'configurations'")
    assert table_pages > 200  # what a scan of the whole table would read
    assert read <= 4 and written <= 20, f"pages read: {read} to find the row, {written} to record the change"
