"""The migration runner against a real PostgreSQL."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg2
import pytest

from svc import cli
from svc.config import get_settings
from svc.migrate import MIGRATIONS_DIR, MigrationError, Runner


@pytest.fixture
def empty_db(cluster):
    name = cluster.create_database(template=None)
    yield cluster.url(name)
    cluster.drop_database(name)


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_first.sql").write_text("CREATE TABLE first (id int PRIMARY KEY);\n")
    (directory / "0002_second.sql").write_text("CREATE TABLE second (id int PRIMARY KEY);\n")
    return directory


def runner(url: str, directory: Path, lines: list[str] | None = None, **kwargs) -> Runner:
    sink = lines if lines is not None else []
    return Runner(url, directory=directory, progress=sink.append, **kwargs)


def query(url: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_applies_in_order_records_and_second_run_is_a_no_op(empty_db, migrations):
    lines: list[str] = []
    applied = runner(empty_db, migrations, lines).up()
    assert [m.filename for m in applied] == ["0001_first.sql", "0002_second.sql"]
    assert any("applied  0001_first.sql" in line and "ms)" in line for line in lines)
    rows = query(empty_db, "SELECT version, name, length(checksum), execution_ms >= 0 FROM schema_migrations ORDER BY 1")
    assert rows == [(1, "first", 64, True), (2, "second", 64, True)]

    assert runner(empty_db, migrations).up() == []
    assert runner(empty_db, migrations).status().pending == []


def test_edited_applied_file_is_refused_naming_it(empty_db, migrations):
    runner(empty_db, migrations).up()
    (migrations / "0001_first.sql").write_text("CREATE TABLE first (id bigint PRIMARY KEY);\n")
    (migrations / "0003_third.sql").write_text("CREATE TABLE third (id int);\n")
    with pytest.raises(MigrationError, match="0001_first.sql was edited"):
        runner(empty_db, migrations).up()
    assert query(empty_db, "SELECT to_regclass('third') IS NULL") == [(True,)]


def test_missing_applied_file_is_refused(empty_db, migrations):
    runner(empty_db, migrations).up()
    (migrations / "0002_second.sql").unlink()
    with pytest.raises(MigrationError, match="0002_second.sql is missing"):
        runner(empty_db, migrations).status()


def test_duplicate_numbers_and_bad_names_are_refused(empty_db, migrations):
    (migrations / "0002_other.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="duplicate migration number 0002"):
        runner(empty_db, migrations).up()
    (migrations / "0002_other.sql").unlink()
    (migrations / "3_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_name.sql"):
        runner(empty_db, migrations).up()
    assert query(empty_db, "SELECT to_regclass('first') IS NULL") == [(True,)]


def test_failing_file_rolls_back_with_its_record(empty_db, migrations):
    (migrations / "0003_broken.sql").write_text("CREATE TABLE third (id int);\nSELECT no_such_column FROM third;\n")
    with pytest.raises(MigrationError, match="0003_broken.sql failed"):
        runner(empty_db, migrations).up()
    assert query(empty_db, "SELECT version FROM schema_migrations ORDER BY 1") == [(1,), (2,)]
    assert query(empty_db, "SELECT to_regclass('third') IS NULL") == [(True,)]


def test_dry_run_applies_nothing(empty_db, migrations):
    lines: list[str] = []
    pending = runner(empty_db, migrations, lines).up(dry_run=True)
    assert len(pending) == 2
    assert any("would apply 0002_second.sql" in line for line in lines)
    assert query(empty_db, "SELECT count(*) FROM schema_migrations") == [(0,)]
    assert query(empty_db, "SELECT to_regclass('first') IS NULL") == [(True,)]


def test_no_transaction_file_runs_outside_a_transaction(empty_db, migrations):
    (migrations / "0003_index.sql").write_text(
        "-- svc:no-transaction\nCREATE INDEX CONCURRENTLY first_id_idx ON first (id);\n"
    )
    runner(empty_db, migrations).up()
    assert query(empty_db, "SELECT to_regclass('first_id_idx') IS NOT NULL") == [(True,)]


def test_two_runners_started_together_apply_each_file_once(empty_db, migrations):
    # A slow first file keeps the lock held while the other runner tries for it.
    (migrations / "0001_first.sql").write_text("SELECT pg_sleep(0.5);\nCREATE TABLE first (id int PRIMARY KEY);\n")
    results: list[object] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            results.append(runner(empty_db, migrations).up())
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(len(r) for r in results) == [0, 2]
    assert query(empty_db, "SELECT version FROM schema_migrations ORDER BY 1") == [(1,), (2,)]


def test_runner_gives_up_waiting_for_a_held_lock(empty_db, migrations):
    from svc.migrate import ADVISORY_LOCK_KEY

    holder = psycopg2.connect(empty_db)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        with pytest.raises(MigrationError, match="another migration runner held the lock"):
            runner(empty_db, migrations, lock_wait=0.5).up()
    finally:
        holder.close()


def test_cli_status_exits_non_zero_while_pending(empty_db, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", empty_db)
    get_settings.cache_clear()
    try:
        assert cli.main(["migrate", "status"]) == 1
        assert "pending  0001_foundation.sql" in capsys.readouterr().out
        assert cli.main(["migrate"]) == 0
        assert cli.main(["migrate", "status"]) == 0
        out = capsys.readouterr().out
        assert "applied  0001_foundation.sql" in out and "pending" not in out
    finally:
        get_settings.cache_clear()


def test_project_migrations_are_well_formed():
    from svc.migrate import load_migrations

    found = load_migrations(MIGRATIONS_DIR)
    versions = [m.version for m in found]
    # Numbers are handed out to work in progress ahead of time, so a branch may have gaps.
    assert versions[0] == 1 and versions == sorted(set(versions))
    assert shutil.which("git")  # the content store needs git on PATH
