"""Faults between git and PostgreSQL: what the save path does, what `svc verify` reports, what
`--repair` mends. PostgreSQL's versions are the truth; no repair drops one of them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from svc.content import Author
from svc.content.store import STALE_LOCK_SECONDS
from svc.services.verify import ORPHAN_AFTER_SECONDS
from tests.claude_md_helpers import (  # noqa: F401
    ada,
    assert_problem,
    document_id,
    git,
    person,
    ref_path,
    save,
    sql,
    svc_cli,
)

FAIL_AT_COMMIT = """
CREATE FUNCTION test_fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {action};
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER test_fail_at_commit AFTER INSERT ON document_versions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_at_commit();
"""
REMOVE_FAILURE = "DROP TRIGGER test_fail_at_commit ON document_versions; DROP FUNCTION test_fail_at_commit();"


def _head(settings, person) -> str:
    return git(settings, "rev-parse", f"refs/docs/{document_id(settings, person)}").strip()


def _versions(client, person) -> list[int]:
    return [v["version"] for v in client.get(f"{person.document}/history", headers=person.headers).json()["versions"]]


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_consistent_repository_verifies_clean(client, ada, person, svc_cli):
    save(client, ada.document, ada.headers, "one")
    save(client, ada.document, ada.headers, "two")
    bob = person("bob")
    save(client, bob.document, bob.headers, "bob")
    result = svc_cli("verify")
    assert (result.code, result.stdout) == (0, "")
    assert "verify: checked 2 document(s)" in result.stderr
    assert "0 problem(s)" in result.stderr


def test_a_commit_that_fails_after_the_git_write_moves_the_ref_back(client, ada, settings, svc_cli):
    v1 = save(client, ada.document, ada.headers, "one")
    sql(settings, FAIL_AT_COMMIT.format(action="RAISE EXCEPTION 'injected failure at commit'"))
    response = client.put(ada.document, json={"content": "two"}, headers=ada.headers)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert _head(settings, ada) == v1["commit_sha"]
    sql(settings, REMOVE_FAILURE)
    assert _versions(client, ada) == [1]
    assert svc_cli("verify").code == 0
    assert save(client, ada.document, ada.headers, "two")["version"] == 2


def test_a_connection_lost_during_commit_leaves_a_commit_ahead_that_repair_resets(client, ada, settings, svc_cli):
    v1 = save(client, ada.document, ada.headers, "one")
    sql(settings, FAIL_AT_COMMIT.format(action="PERFORM pg_terminate_backend(pg_backend_pid()), pg_sleep(5)"))
    response = client.put(ada.document, json={"content": "two"}, headers=ada.headers)
    assert_problem(response, 503, "database unavailable")
    sql(settings, REMOVE_FAILURE)
    # Nobody knows whether that COMMIT happened, so the ref stayed ahead rather than risk
    # being behind a version the database recorded.
    ahead = _head(settings, ada)
    assert ahead != v1["commit_sha"]
    assert _versions(client, ada) == [1]

    report = svc_cli("verify")
    assert report.code == 1
    [line] = report.stdout.splitlines()
    assert line.split("\t")[:3] == [document_id(settings, ada), "unacknowledged_commit", "drift"]
    assert ahead in line
    assert "--repair" in report.stderr

    repaired = svc_cli("verify", "--repair")
    assert repaired.code == 0
    assert "\tunacknowledged_commit\trepaired\t" in repaired.stdout
    assert _head(settings, ada) == v1["commit_sha"]
    assert svc_cli("verify").code == 0
    assert save(client, ada.document, ada.headers, "two")["version"] == 2


CRASHING_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from svc.content import ContentStore
    from svc.db import Database
    from svc.services.auth import Principal
    from svc.services.claude_md import ClaudeMdService

    database_url, git_path, user_id = sys.argv[1:]
    db = Database(database_url, min_size=0, max_size=1, application_name="crashing-writer")
    documents = ClaudeMdService(db, ContentStore(Path(git_path)), max_bytes=1 << 20)
    documents.save(Principal.operator(), user_id, content="never acknowledged", message=None, expected=None)
    """
)

STALL_CRASHING_WRITER = """
CREATE FUNCTION test_stall() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') = 'crashing-writer' THEN PERFORM pg_sleep(60); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_stall BEFORE INSERT ON document_versions FOR EACH ROW EXECUTE FUNCTION test_stall();
"""


def test_a_process_killed_between_git_and_postgresql(client, ada, settings, svc_cli):
    v1 = save(client, ada.document, ada.headers, "one")
    sql(settings, STALL_CRASHING_WRITER)
    writer = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, settings.database_url.get_secret_value(), str(settings.git_path),
         ada.id],
        cwd=Path(__file__).resolve().parent.parent,
    )
    deadline = time.monotonic() + 30
    while _head(settings, ada) == v1["commit_sha"]:  # wait until its ref update is done
        assert time.monotonic() < deadline and writer.poll() is None
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    # The server would notice the dead client at its next read; do it now.
    sql(settings, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'crashing-writer'")
    sql(settings, "DROP TRIGGER test_stall ON document_versions; DROP FUNCTION test_stall();")

    assert client.get(ada.document, headers=ada.headers).json()["content"] == "one"
    report = svc_cli("verify")
    assert report.code == 1 and "\tunacknowledged_commit\t" in report.stdout
    assert svc_cli("verify", "--repair").code == 0
    assert _head(settings, ada) == v1["commit_sha"]
    assert svc_cli("verify").code == 0


def test_a_ref_moved_back_by_hand_is_put_forward(client, ada, settings, svc_cli):
    v1 = save(client, ada.document, ada.headers, "one")
    v2 = save(client, ada.document, ada.headers, "two")
    git(settings, "update-ref", f"refs/docs/{document_id(settings, ada)}", v1["commit_sha"])
    report = svc_cli("verify")
    assert report.code == 1 and "\tref_behind\tdrift\t" in report.stdout
    assert svc_cli("verify", "--repair").code == 0
    assert _head(settings, ada) == v2["commit_sha"]
    assert client.get(ada.document, headers=ada.headers).json()["content"] == "two"


def test_a_deleted_ref_is_recreated(client, ada, settings, svc_cli):
    save(client, ada.document, ada.headers, "one")
    v2 = save(client, ada.document, ada.headers, "two")
    git(settings, "update-ref", "-d", f"refs/docs/{document_id(settings, ada)}")
    report = svc_cli("verify")
    assert report.code == 1 and "\tmissing_ref\tdrift\t" in report.stdout
    assert svc_cli("verify", "--repair").code == 0
    assert _head(settings, ada) == v2["commit_sha"]


def test_a_ref_pointing_outside_the_history_is_reset(client, ada, settings, svc_cli, services):
    v1 = save(client, ada.document, ada.headers, "one")
    elsewhere = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZA"
    stray = services.content.save(elsewhere, b"other", parent=None, author=Author("x", "x@y"), message="x")
    git(settings, "update-ref", f"refs/docs/{document_id(settings, ada)}", stray)
    report = svc_cli("verify", "--repair")
    assert report.code == 0 and "\tref_diverged\trepaired\t" in report.stdout
    assert _head(settings, ada) == v1["commit_sha"]


def test_a_stale_lock_is_reported_and_removed(client, ada, settings, svc_cli):
    save(client, ada.document, ada.headers, "one")
    lock = ref_path(settings, ada).with_suffix(".lock")
    lock.write_text("")
    assert svc_cli("verify").code == 0  # a fresh lock may belong to a save in flight
    _age(lock, STALE_LOCK_SECONDS + 1)
    report = svc_cli("verify")
    assert report.code == 1 and "\tstale_lock\tdrift\t" in report.stdout
    assert lock.exists()
    assert svc_cli("verify", "--repair").code == 0
    assert not lock.exists()


def test_a_ref_without_a_document_is_renamed_not_deleted(client, ada, settings, svc_cli):
    v1 = save(client, ada.document, ada.headers, "one")
    orphan = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZB"
    git(settings, "update-ref", f"refs/docs/{orphan}", v1["commit_sha"])
    assert svc_cli("verify").code == 0  # young: may be a first save whose COMMIT is in flight
    _age(settings.git_path / "refs" / "docs" / orphan, ORPHAN_AFTER_SECONDS + 1)
    report = svc_cli("verify")
    assert report.code == 1 and f"{orphan}\torphan_ref\tdrift\t" in report.stdout
    repaired = svc_cli("verify", "--repair")
    assert repaired.code == 0 and f"renamed to refs/deleted/{orphan}" in repaired.stdout
    assert git(settings, "rev-parse", f"refs/deleted/{orphan}").strip() == v1["commit_sha"]
    assert git(settings, "for-each-ref", "--format=%(refname)", "refs/docs/").split() == [
        f"refs/docs/{document_id(settings, ada)}"
    ]


def test_a_lost_object_is_reported_and_not_repairable(client, ada, settings, svc_cli):
    v1 = save(client, ada.document, ada.headers, "one")
    save(client, ada.document, ada.headers, "two")
    sha = v1["commit_sha"]
    (settings.git_path / "objects" / sha[:2] / sha[2:]).unlink()
    report = svc_cli("verify", "--repair")
    assert report.code == 1
    assert f"\tmissing_content\tdrift\tcommit {sha} is missing" in report.stdout
    assert "1 left unrepaired" in report.stderr
    assert_problem(client.get(f"{ada.document}/versions/{sha}", headers=ada.headers), 503, "svc verify")


def test_a_missing_repository_is_an_error(client, settings, svc_cli):
    shutil.rmtree(settings.git_path)
    result = svc_cli("verify")
    assert result.code == 1 and "no usable content repository" in result.stderr
    assert svc_cli("gc").code == 1


def test_a_repository_restored_from_a_bundle(client, ada, settings, svc_cli, tmp_path):
    v1 = save(client, ada.document, ada.headers, "one")
    orphan = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZB"
    git(settings, "update-ref", f"refs/docs/{orphan}", v1["commit_sha"])
    bundle = tmp_path / "content.bundle"
    git(settings, "bundle", "create", str(bundle), "--all")
    shutil.rmtree(settings.git_path)
    # A mirror clone keeps refs/docs/* (they come back packed).
    subprocess.run(["git", "clone", "--quiet", "--mirror", str(bundle), str(settings.git_path)], check=True)
    assert f"refs/docs/{orphan}" in (settings.git_path / "packed-refs").read_text()

    report = svc_cli("verify", "--repair")
    assert report.code == 0
    assert f"{orphan}\torphan_ref\trepaired\t" in report.stdout  # packed, so not a save in flight
    assert git(settings, "config", "core.fsync") == "committed\n"  # the service's settings again
    assert save(client, ada.document, ada.headers, "two")["version"] == 2
    assert svc_cli("verify").code == 0


def test_proposal_refs_are_checked_and_mended(client, ada, settings, svc_cli):
    save(client, ada.document, ada.headers, "one")
    made = client.post(f"{ada.document}/proposals", json={"content": "two", "message": "m"}, headers=ada.headers)
    proposal = made.json()
    git(settings, "update-ref", "-d", f"refs/proposals/{proposal['id']}")
    orphan = "01JCZ5J7Q9T1V0G6W8E2X4Y6ZB"
    git(settings, "update-ref", f"refs/proposals/{orphan}", proposal["commit_sha"])
    _age(settings.git_path / "refs" / "proposals" / orphan, ORPHAN_AFTER_SECONDS + 1)
    report = svc_cli("verify")
    assert report.code == 1
    assert "\tproposal_ref_drift\tdrift\t" in report.stdout and f"{orphan}\torphan_proposal_ref\tdrift" in report.stdout
    assert svc_cli("verify", "--repair").code == 0
    assert git(settings, "for-each-ref", "--format=%(refname) %(objectname)", "refs/proposals/").split() == [
        f"refs/proposals/{proposal['id']}", proposal["commit_sha"]
    ]
    assert svc_cli("verify").code == 0


def test_verify_knows_every_kind_the_database_allows(database_url):
    """Each kind `documents.kind` may hold is in the one list of kinds, so verify finds its bytes."""
    import psycopg2

    from svc.services.document_kinds import KINDS

    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'documents_kind_check'")
            definition = cur.fetchone()[0]
    finally:
        conn.close()
    allowed = set(re.findall(r"'([a-z_]+)'::text", definition))
    assert allowed and allowed == set(KINDS)
