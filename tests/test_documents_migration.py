"""0006 on a database holding phase-1 data: claude_md_documents/claude_md_versions become
documents/document_versions with every row, id and sha intact, and `svc verify` finds nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from svc.content import Author, ContentStore
from svc.db import Database
from svc.ids import new_id
from svc.migrate import MIGRATIONS_DIR, Runner
from svc.services.auth import Principal
from svc.services.claude_md import ClaudeMdService
from svc.services.marketplace import MarketplaceService
from svc.services.verify import VerifyService
from tests.claude_md_helpers import rows

DOCUMENTS_MIGRATION = 6


def _phase_one(url: str, store: ContentStore) -> dict[str, list[str]]:
    """Two users with three claude.md versions each, written as phase 1 wrote them; user id → contents."""
    written = {}
    for name in ("ada", "bob"):
        user_id, document_id = new_id(), new_id()
        rows(url, "INSERT INTO users (id, email, username) VALUES (%s, %s, %s)", (user_id, f"{name}@example.com", name))
        rows(url, "INSERT INTO claude_md_documents (id, user_id) VALUES (%s, %s)", (document_id, user_id))
        parent, contents = None, []
        for version in (1, 2, 3):
            content = f"# {name}\n\nversion {version}\n"
            sha = store.save(document_id, content.encode(), parent=parent, author=Author(name, f"{name}@example.com"),
                             message=f"v{version}")
            rows(
                url,
                "INSERT INTO claude_md_versions (document_id, version, commit_sha, author, message, size_bytes) "
                "VALUES (%s, %s, %s, %s, %s, %s);"
                "UPDATE claude_md_documents SET head_version = %s, head_sha = %s WHERE id = %s",
                (document_id, version, sha, name, f"v{version}", len(content), version, sha, document_id),
            )
            parent = sha
            contents.append(content)
        written[user_id] = contents
    return written


@pytest.fixture
def empty_db(cluster):
    name = cluster.create_database(template=None)
    yield cluster.url(name)
    cluster.drop_database(name)


def test_documents_migration_keeps_every_version_and_verify_is_clean(empty_db: str, tmp_path: Path):
    url = empty_db
    before_teams = tmp_path / "migrations"
    before_teams.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) < DOCUMENTS_MIGRATION:
            shutil.copy(path, before_teams)
    Runner(url, directory=before_teams, progress=lambda line: None).up()
    store = ContentStore(tmp_path / "content.git")
    store.ensure()
    written = _phase_one(url, store)
    documents = rows(url, "SELECT id, user_id, head_version, head_sha, created_at, updated_at FROM claude_md_documents")
    versions = rows(url, "SELECT * FROM claude_md_versions ORDER BY document_id, version")

    Runner(url, progress=lambda line: None).up()

    assert rows(url, "SELECT to_regclass('claude_md_documents'), to_regclass('claude_md_versions')") == [(None, None)]
    assert sorted(documents) == sorted(
        rows(url, "SELECT id, owner_user_id, head_version, head_sha, created_at, updated_at FROM documents")
    )
    assert rows(url, "SELECT DISTINCT kind, owner_team_id FROM documents") == [("claude_md", None)]
    assert versions == rows(url, "SELECT * FROM document_versions ORDER BY document_id, version")
    leftovers = rows(url, "SELECT conname FROM pg_constraint WHERE conname LIKE 'claude_md%%'")
    assert leftovers == []

    db = Database(url, min_size=0, max_size=2)
    try:
        assert VerifyService(db, store, MarketplaceService(db, store, tmp_path / "marketplaces")).verify().findings == []
        claude_md = ClaudeMdService(db, store, max_bytes=1 << 20)
        operator = Principal.operator()
        for user_id, contents in written.items():
            assert claude_md.get(operator, user_id).content == contents[-1]
            history = claude_md.history(operator, user_id, limit=10, before=None).versions
            assert [claude_md.version(operator, user_id, v.commit_sha).content for v in history] == contents[::-1]
        saved = claude_md.save(operator, next(iter(written)), content="after", message=None, expected=None)
        assert saved.version == 4
    finally:
        db.close()
