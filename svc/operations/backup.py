"""`svc backup` and `svc restore`: the whole service in one file, taken beside a running service.

The file is a tar archive of:

- `manifest.json`: the format, the versions (svc, PostgreSQL, pg_dump), the migration level, the key
  ids that seal stored secrets (with how many values each), what else the archive holds;
- `database.dump`: `pg_dump --format=custom`, one consistent snapshot of the database;
- `content.bundle`: a git bundle of every ref of the content repository, taken *after* the dump.
  Refs only move forward to commits that contain their earlier ones, and a version is committed to
  git before its row commits, so every version the dump names is in the bundle;
- `secret-keys` (with `--with-keys` only): the key file.

Without the key file (or SVC_SECRET_KEYS holding the same keys) the restored secret values cannot
be read: the manifest names the key ids they need.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any


from svc.content import ContentStore
from svc.db import Database, close_quietly, dedicated_connection
from svc.embedded import postgres_binary
from svc.errors import ServiceError
from svc.migrate import Runner, load_migrations
from svc.operations.keys import key_usage

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE = "database.dump"
CONTENT = "content.bundle"
KEYS = "secret-keys"
TIMEOUT_SECONDS = 3600


@dataclass
class Manifest:
    """What a backup holds, as `manifest.json` says it."""

    format: int
    created_at: str
    svc_version: str
    postgresql_version: str
    pg_dump_version: str
    migration: str | None
    secret_key_ids: dict[str, dict[str, int]]
    content_refs: int
    with_keys: bool
    files: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, text: str) -> Manifest:
        try:
            fields = json.loads(text)
            if fields.get("format") != FORMAT:
                raise ServiceError(f"backup format {fields.get('format')!r} is not one this svc reads ({FORMAT})")
            return cls(**fields)
        except (ValueError, TypeError) as exc:
            raise ServiceError(f"the backup's {MANIFEST} is not readable: {exc}") from None


def create_backup(
    url: str, db: Database, store: ContentStore, target: Path, *, key_file: Path | None = None
) -> Manifest:
    """Write the backup of the database at `url` and of `store` to `target` (mode 0600); with
    `key_file`, the key file too. The file appears complete or not at all."""
    status = Runner(url, progress=lambda line: None).status()
    with tempfile.TemporaryDirectory(prefix=".svc-backup-", dir=target.parent) as scratch:
        work = Path(scratch)
        _run([str(postgres_binary("pg_dump")), "--format=custom", "--no-owner", "--no-privileges",
              "--file", str(work / DATABASE), url], "pg_dump")
        refs = _bundle(store, work / CONTENT)
        files = [DATABASE] + ([CONTENT] if refs else [])
        if key_file is not None:
            shutil.copyfile(key_file, work / KEYS)
            files.append(KEYS)
        manifest = Manifest(
            format=FORMAT,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            svc_version=version("svc"),
            postgresql_version=_server_version(url),
            pg_dump_version=_run([str(postgres_binary("pg_dump")), "--version"], "pg_dump").strip(),
            migration=status.applied[-1].filename if status.applied else None,
            secret_key_ids={u.key_id: {"configurations": u.configurations, "revisions": u.revisions}
                            for u in key_usage(db)},
            content_refs=refs,
            with_keys=key_file is not None,
            files=files,
        )
        (work / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
        partial = work / "backup.tar"
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as archive:
            for name in [MANIFEST, *files]:
                archive.add(work / name, arcname=name)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, target)
    return manifest


def read_manifest(archive_path: Path) -> Manifest:
    """The manifest of the backup at `archive_path`; ServiceError when it is not a backup."""
    try:
        with tarfile.open(archive_path) as archive:
            member = archive.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            return Manifest.read(member.read().decode("utf-8"))
    except (OSError, tarfile.TarError, KeyError) as exc:
        raise ServiceError(f"{archive_path} is not a backup made by `svc backup`: {exc}") from None


def refuse_unless_empty(*, data_dir: Path | None, database_url: str | None, content: Path, key_file: Path | None) -> None:
    """ServiceError naming what is there, unless every place the restore writes to is empty."""
    if data_dir is not None and _holds_anything(data_dir):
        raise ServiceError(
            f"the data directory {data_dir} is not empty; restore writes only into an empty one: "
            "set SVC_DATA_DIR to a new directory (or move this one away)"
        )
    if database_url is not None:
        tables = _user_tables(database_url)
        if tables:
            raise ServiceError(
                f"the database of DATABASE_URL is not empty ({tables} table(s)); restore writes only into "
                "an empty database: create a new one (createdb) and point DATABASE_URL at it"
            )
    if _holds_anything(content):
        raise ServiceError(f"the content repository {content} already exists; restore needs it absent or empty")
    if key_file is not None and key_file.exists():
        raise ServiceError(f"the key file {key_file} already exists; restore does not overwrite keys")


def restore_backup(
    archive_path: Path,
    url: str,
    store: ContentStore,
    *,
    key_file: Path,
    say: Callable[[str], None],
) -> Manifest:
    """Restore the backup into the (empty) database at `url` and the (absent) repository of
    `store`; its key file, if it holds one, to `key_file`. Pending migrations are then applied."""
    manifest = read_manifest(archive_path)
    known = {migration.filename for migration in load_migrations()}
    if manifest.migration is not None and manifest.migration not in known:
        raise ServiceError(
            f"the backup is at migration {manifest.migration}, which this svc ({version('svc')}) does not know: "
            f"restore it with svc {manifest.svc_version} or later"
        )
    with tempfile.TemporaryDirectory(prefix=".svc-restore-") as scratch:
        work = Path(scratch)
        with tarfile.open(archive_path) as archive:
            archive.extractall(work, members=[archive.getmember(name) for name in manifest.files],
                               filter="data")
        _run([str(postgres_binary("pg_restore")), "--no-owner", "--no-privileges", "--exit-on-error",
              "--single-transaction", "--dbname", url, str(work / DATABASE)], "pg_restore")
        say(f"database restored (migration {manifest.migration})")
        _unbundle(work / CONTENT if CONTENT in manifest.files else None, store)
        say(f"content repository restored to {store.path} ({manifest.content_refs} ref(s))")
        if KEYS in manifest.files:
            key_file.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as written:
                written.write((work / KEYS).read_bytes())
            say(f"key file restored to {key_file}")
    applied = Runner(url, progress=lambda line: None).up()
    if applied:
        say(f"applied {len(applied)} migration(s) newer than the backup")
    return manifest


def _bundle(store: ContentStore, bundle: Path) -> int:
    """Bundle every ref of the repository into `bundle`; how many refs (0: nothing written)."""
    refs = _run(["git", "--git-dir", str(store.path), "for-each-ref", "--format=%(refname)"], "git").split()
    if refs:
        _run(["git", "--git-dir", str(store.path), "bundle", "create", "--quiet", str(bundle), "--all"], "git bundle")
    return len(refs)


def _unbundle(bundle: Path | None, store: ContentStore) -> None:
    store.ensure()
    if bundle is not None:
        _run(["git", "--git-dir", str(store.path), "fetch", "--quiet", str(bundle), "+refs/*:refs/*"], "git fetch")


def _holds_anything(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _user_tables(url: str) -> int:
    return _scalar(
        url,
        "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )


def _server_version(url: str) -> str:
    return _scalar(url, "SHOW server_version")


def _scalar(url: str, sql: str) -> Any:
    """The one value `sql` answers on the database at `url`."""
    conn = dedicated_connection(url, purpose="svc backup", connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]
    finally:
        close_quietly(conn)


def _run(command: list[str], what: str) -> str:
    """Run `command`; its stdout, or ServiceError with its last lines of stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "PGPASSWORD")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, env=env, cwd="/")
    if result.returncode != 0:
        reason = " ".join(result.stderr.strip().splitlines()[-3:]) or f"exit code {result.returncode}"
        raise ServiceError(f"{what} failed: {reason}")
    return result.stdout
