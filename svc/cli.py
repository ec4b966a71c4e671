"""`svc`: run the service and operate it. Output for scripts goes to stdout, messages to stderr."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from svc import serving
from svc.config import Settings, get_settings
from svc.crypto import InvalidSecretKeys
from svc.content import ContentStore
from svc.db import Database
from svc.embedded import database_url
from svc.errors import ServiceError
from svc.log import configure_logging
from svc.migrate import MigrationError, Runner
from svc.secret_keys import secret_key_ring
from svc.services.auth import Principal
from svc.services.catalog import CatalogService
from svc.services.catalog_import import import_directory
from svc.services.container import content_store_of
from svc.services.marketplace import MarketplaceService
from svc.services.secret_store import RotationProgress, rotate
from svc.services.teams import TeamService
from svc.services.tokens import TokenService
from svc.services.users import UserService
from svc.services.verify import VerifyService, repack


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def runner_for(settings: Settings, url: str) -> Runner:
    return Runner(
        url,
        lock_wait=settings.migrate_lock_wait,
        lock_timeout_ms=settings.migrate_lock_timeout_ms,
        statement_timeout_ms=settings.migrate_statement_timeout_ms,
    )


@contextmanager
def small_database(url: str) -> Iterator[Database]:
    """A one-connection pool for a command-line operation, closed when it ends."""
    db = Database(url, min_size=0, max_size=1)
    try:
        yield db
    finally:
        db.close()


# --- serve -------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    url = database_url(settings)
    runner = runner_for(settings, url)
    if settings.embedded:
        say(f"embedded PostgreSQL: {settings.pgdata}")
        runner.up()
        # Worker processes inherit the environment: hand them the embedded server's URL.
        os.environ["DATABASE_URL"] = url
    else:
        pending = runner.status().pending
        if pending:
            names = ", ".join(m.filename for m in pending)
            say(f"refusing to start: {len(pending)} migration(s) pending ({names}); run `svc migrate` first")
            return 1
    store = content_store_of(settings)
    if store.remote is not None:
        store.ensure()
        try:
            store.check_remote()
        except ServiceError as exc:
            say(f"refusing to start: SVC_GIT_REMOTE cannot be used: {exc.detail}")
            return 1
        say(f"git remote: {store.remote.display}")
    with small_database(url) as db:
        secret = TokenService(db).bootstrap()
    if secret is not None:
        say("No API token existed, so one admin token was created. It is shown this once; keep it safe:")
        print(secret, flush=True)
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    if workers > 1:
        _share_metrics_between_workers(settings)
    say(f"serving on http://{host}:{port} with {workers} worker(s)")
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into a normal exit so
    # that exit handlers run and the embedded PostgreSQL is stopped cleanly.
    signal.signal(signal.SIGTERM, _exit_normally)
    config = uvicorn.Config(
        "svc.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    try:
        serving.run(config)
    except OSError as exc:  # the address is taken or cannot be bound
        say(f"refusing to start: cannot listen on {host}:{port}: {exc.strerror or exc}")
        return 1
    return 0


def _share_metrics_between_workers(settings: Settings) -> None:
    """prometheus-client's multiprocess mode: workers write to files that /metrics sums up."""
    directory = settings.data_dir.resolve() / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _exit_normally(signum: int, frame: object) -> None:
    raise SystemExit(0)


# --- migrate -------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    runner = runner_for(settings, database_url(settings))
    if args.action == "status":
        status = runner.status()
        for migration in status.applied:
            print(f"applied  {migration.filename}")
        for migration in status.pending:
            print(f"pending  {migration.filename}")
        say(f"{len(status.applied)} applied, {len(status.pending)} pending")
        return 1 if status.pending else 0
    applied = runner.up(dry_run=args.dry_run)
    if applied:
        verb = "would apply" if args.dry_run else "applied"
        say(f"{verb} {len(applied)} migration(s)")
    return 0


# --- secrets -------------------------------------------------------------------------------


def cmd_secrets(args: argparse.Namespace, settings: Settings) -> int:
    """`svc secrets rotate`: every stored secret sealed again under the first key of SVC_SECRET_KEYS."""
    keyring = secret_key_ring(settings)

    def report(progress: RotationProgress) -> None:
        say(f"{progress.table}: {progress.rows} row(s) with secrets checked, {progress.values} value(s) re-encrypted")

    with small_database(database_url(settings)) as db:
        done = rotate(db, keyring, batch_size=args.batch_size, report=report)
    total = sum(progress.values for progress in done)
    say(f"done: {total} secret value(s) re-encrypted under key '{keyring.primary_id}'; "
        "every key but the first can now leave SVC_SECRET_KEYS")
    return 0


# --- token ---------------------------------------------------------------------------------


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    with small_database(database_url(settings)) as db:
        tokens = TokenService(db)
        operator = Principal.operator()
        if args.action == "create":
            created = tokens.create(
                operator,
                name=args.name,
                role=args.role,
                user_id=args.user,
                application_id=args.application,
                read_only=args.read_only,
                reveal_secrets=args.reveal_secrets,
            )
            say(f"created {created.token.role} token {created.token.id} ({created.token.name})")
            print(created.secret)
        elif args.action == "list":
            after = None
            while True:
                page = tokens.list(operator, limit=100, after=after)
                for t in page.items:
                    state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
                    scope = t.application_id or t.user_id or "-"
                    ro = (" read-only" if t.read_only else "") + (" reveal-secrets" if t.reveal_secrets else "")
                    print(f"{t.id}  {t.role:<7} {state:<18} {scope:<26} {t.name}{ro}")
                if page.next is None:
                    break
                after = page.next
        else:
            token = tokens.revoke(operator, args.id)
            say(f"revoked token {token.id} ({token.name})")
    return 0


# --- user ----------------------------------------------------------------------------------


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    with small_database(database_url(settings)) as db:
        user = UserService(db, content_store_of(settings)).create(
            Principal.operator(), email=args.email, username=args.username, display_name=args.display_name
        )
    say(f"created user {user.username} <{user.email}>")
    print(user.id)
    return 0


# --- team ----------------------------------------------------------------------------------


def cmd_team(args: argparse.Namespace, settings: Settings) -> int:
    with small_database(database_url(settings)) as db:
        store = content_store_of(settings)
        team = TeamService(db, store, MarketplaceService(db, store, settings.marketplaces_path)).create(
            Principal.operator(),
            name=args.name,
            display_name=args.display_name,
            description=args.description,
            owner_id=args.owner,
        )
    say(f"created team {team.name} owned by user {args.owner}")
    print(team.id)
    return 0


# --- catalog -------------------------------------------------------------------------------


def cmd_catalog(args: argparse.Namespace, settings: Settings) -> int:
    """Progress per file and the summary on stderr; exit 1 when a file was invalid."""
    with small_database(database_url(settings)) as db:
        store = content_store(settings)
        marketplace = MarketplaceService(db, store, settings.marketplaces_path)
        catalog = CatalogService(db, store, marketplace, max_bytes=settings.max_document_bytes)
        outcome = import_directory(catalog, Principal.operator(), args.owner, Path(args.directory), progress=say)
    say("imported: " + (", ".join(f"{n} {what}" for what, n in sorted(outcome.counts.items())) or "nothing found"))
    return 1 if outcome.failed else 0


# --- verify and gc (the content store of documents) ------------------------------------------


def content_store(settings: Settings) -> ContentStore:
    """The existing repository, with the service's settings applied (never a new, empty one)."""
    store = content_store_of(settings)
    if not store.is_ready():
        raise ServiceError(f"no usable content repository at {store.path}")
    store.ensure()
    return store


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Findings on stdout, one per line; progress and the summary on stderr."""
    with small_database(database_url(settings)) as db:
        report = VerifyService(db, content_store(settings)).verify(repair=args.repair, progress=say)
    for finding in report.findings:
        state = "repaired" if finding.repaired else "drift"
        print(f"{finding.document_id}\t{finding.problem}\t{state}\t{finding.detail}")
    left = len(report.unrepaired)
    say(f"checked {report.documents} document(s): {len(report.findings)} problem(s), {left} left unrepaired")
    if left and not args.repair:
        say("run `svc verify --repair` to mend what can be mended")
    return 1 if left else 0


def cmd_gc(args: argparse.Namespace, settings: Settings) -> int:
    repack(content_store(settings), progress=say)
    return 0


# --- psql ----------------------------------------------------------------------------------


def cmd_psql(args: argparse.Namespace, settings: Settings) -> int:
    from svc.embedded import psql_binary

    url = database_url(settings)
    # Not exec: the embedded server must be released (and stopped if we started it) on exit.
    return subprocess.call([str(psql_binary()), url, *args.extra_args])


# --- wiring --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svc", description="Configuration service")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(handler=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply pending migrations (or: migrate status)")
    migrate.add_argument("action", nargs="?", choices=["up", "status"], default="up")
    migrate.add_argument("--dry-run", action="store_true", help="apply in a transaction, then roll back")
    migrate.set_defaults(handler=cmd_migrate)

    token = commands.add_parser("token", help="create, list or revoke API tokens")
    token_actions = token.add_subparsers(dest="action", required=True)
    create = token_actions.add_parser("create", help="create a token; prints only the secret on stdout")
    create.add_argument("--role", required=True, choices=["admin", "service", "user"])
    create.add_argument("--name", required=True)
    create.add_argument("--user", help="user id (role user)")
    create.add_argument("--application", help="limit a service token to this application id")
    create.add_argument("--read-only", action="store_true")
    create.add_argument(
        "--reveal-secrets", action="store_true", help="a service token that reads secret values in clear"
    )
    token_actions.add_parser("list", help="list tokens")
    revoke = token_actions.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    token.set_defaults(handler=cmd_token)

    secrets = commands.add_parser("secrets", help="operate on the secret values inside configurations")
    secret_actions = secrets.add_subparsers(dest="action", required=True)
    rotate_parser = secret_actions.add_parser(
        "rotate", help="re-encrypt every stored secret under the first key (resumable, safe while serving)"
    )
    rotate_parser.add_argument("--batch-size", type=int, default=100, help="rows per transaction (default 100)")
    secrets.set_defaults(handler=cmd_secrets)

    user = commands.add_parser("user", help="manage users")
    user_actions = user.add_subparsers(dest="action", required=True)
    user_create = user_actions.add_parser("create", help="create a user; prints only the new id on stdout")
    user_create.add_argument("--email", required=True)
    user_create.add_argument("--username", required=True)
    user_create.add_argument("--display-name")
    user.set_defaults(handler=cmd_user)

    team = commands.add_parser("team", help="manage teams")
    team_actions = team.add_subparsers(dest="action", required=True)
    team_create = team_actions.add_parser("create", help="create a team; prints only the new id on stdout")
    team_create.add_argument("--name", required=True)
    team_create.add_argument("--owner", required=True, metavar="USER_ID", help="the user who becomes its owner")
    team_create.add_argument("--display-name")
    team_create.add_argument("--description")
    team.set_defaults(handler=cmd_team)

    catalog = commands.add_parser("catalog", help="manage the catalog of skills, MCP servers and tools")
    catalog_actions = catalog.add_subparsers(dest="action", required=True)
    catalog_import = catalog_actions.add_parser(
        "import", help="import <name>/SKILL.md, server.json and tools/<name>.json files; unchanged ones are skipped"
    )
    catalog_import.add_argument("directory")
    catalog_import.add_argument("--owner", required=True, metavar="team:NAME|user:USERNAME")
    catalog.set_defaults(handler=cmd_catalog)

    verify = commands.add_parser(
        "verify",
        help="compare document versions in PostgreSQL with the git repository (and SVC_GIT_REMOTE); exit 1 on drift",
    )
    verify.add_argument("--repair", action="store_true", help="mend drift without dropping any saved version")
    verify.set_defaults(handler=cmd_verify)

    gc = commands.add_parser("gc", help="pack the git repository's loose objects (safe while serving)")
    gc.set_defaults(handler=cmd_gc)

    psql = commands.add_parser("psql", help="open psql on the configured database (extra arguments go to psql)")
    psql.set_defaults(handler=cmd_psql, passes_extra_args=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra_args = extra
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        return handler(args, settings)
    except (MigrationError, ServiceError, InvalidSecretKeys) as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
