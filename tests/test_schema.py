"""The database schema as an admin reads it with psql: every table explains itself, and the
database refuses what the API refuses, whoever writes to it."""

from __future__ import annotations

import shutil

import psycopg2
import pytest

from svc.ids import new_id
from svc.migrate import MIGRATIONS_DIR, Runner
from tests.configuration_helpers import query


def test_every_table_has_a_comment(database_url):
    uncommented = query(
        database_url,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND obj_description(c.oid, 'pg_class') IS NULL"
        " ORDER BY 1",
    )
    assert uncommented == []


def test_scoped_tokens_are_found_by_index(database_url):
    indexes = query(database_url, "SELECT indexdef FROM pg_indexes WHERE tablename = 'api_tokens'")
    assert any(definition.endswith("(application_id)") for (definition,) in indexes)


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_segment_names_are_refused_by_the_database(database_url, name):
    application_id = new_id()
    query(database_url, "INSERT INTO applications (id, name) VALUES (%s, 'billing') RETURNING id", (application_id,))
    inserts = {
        "applications_name_check": ("INSERT INTO applications (id, name) VALUES (%s, %s)", (new_id(), name)),
        "configurations_name_check": (
            "INSERT INTO configurations (id, application_id, name, config, revision) VALUES (%s, %s, %s, '{}', 1)",
            (new_id(), application_id, name),
        ),
        "users_username_check": (
            "INSERT INTO users (id, email, username) VALUES (%s, 'a@example.com', %s)",
            (new_id(), name),
        ),
    }
    for constraint, (sql, params) in inserts.items():
        with pytest.raises(psycopg2.errors.CheckViolation) as refused:
            query(database_url, sql, params)
        assert refused.value.diag.constraint_name == constraint
    # Names that merely contain or start with dots are still fine.
    query(database_url, "INSERT INTO applications (id, name) VALUES (%s, %s) RETURNING id", (new_id(), name + "x"))


def test_upgrade_gives_each_newest_revision_its_schema_and_comments(cluster, tmp_path):
    """Migration 0005 backfills what is known (the newest revision is the current state) and
    leaves older revisions' schema and comments NULL: they were never recorded."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for migration in sorted(MIGRATIONS_DIR.glob("000[1-4]_*.sql")):
        shutil.copy(migration, directory)
    name = cluster.create_database(template=None)
    url = cluster.url(name)
    try:
        Runner(url, directory=directory, progress=lambda line: None).up()
        application_id, configuration_id = new_id(), new_id()
        query(url, "INSERT INTO applications (id, name) VALUES (%s, 'billing') RETURNING id", (application_id,))
        query(
            url,
            "INSERT INTO configurations (id, application_id, name, comments, config, schema, revision)"
            " VALUES (%s, %s, 'main', 'typed', '{\"port\": 2}', '{\"type\": \"object\"}', 2) RETURNING id",
            (configuration_id, application_id),
        )
        query(
            url,
            "INSERT INTO configuration_revisions (configuration_id, revision, config, author)"
            " VALUES (%s, 1, '{\"port\": 1}', 'a'), (%s, 2, '{\"port\": 2}', 'a') RETURNING revision",
            (configuration_id, configuration_id),
        )
        shutil.copy(next(MIGRATIONS_DIR.glob("0005_*.sql")), directory)
        Runner(url, directory=directory, progress=lambda line: None).up()
        revisions = query(url, "SELECT revision, schema, comments FROM configuration_revisions ORDER BY revision")
        assert revisions == [(1, None, None), (2, {"type": "object"}, "typed")]
    finally:
        cluster.drop_database(name)
