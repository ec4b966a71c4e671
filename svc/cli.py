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
from importlib.metadata import version
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
from svc.operations.backup import create_backup, read_manifest, refuse_unless_empty, restore_backup
from svc.operations.keys import key_usage, rotate_key_file
from svc.secret_keys import key_source, secret_key_ring
from svc.services.auth import Principal
from svc.services.catalog import CatalogService
from svc.services.catalog_import import import_directory
from svc.services.container import content_store_of, marketplace_of
from svc.services.owners import owner_id, parse_owner
from svc.services.policy import TEAM_ROLES
from svc.services.secret_store import RotationProgress, check_secret_samples, rotate
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
    _say_secret_keys(settings)
    if workers > 1:
        _share_metrics_between_workers(settings)
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into a normal exit so
    # that exit handlers run and the embedded PostgreSQL is stopped cleanly.
    signal.signal(signal.SIGTERM, _exit_normally)
    config = serving.service_config(host, port, workers)
    try:
        served = serving.run(
            config, on_listening=lambda: say(f"serving on http://{host}:{port} with {workers} worker(s)")
        )
    except OSError as exc:  # the address is taken or cannot be bound
        say(f"refusing to start: cannot listen on {host}:{port}: {exc.strerror or exc}")
        return 2
    if not served:
        say("stopped: the application failed to start (its error is logged above)")
        return 3
    return 0


def _say_secret_keys(settings: Settings) -> None:
    """Which key ids this service holds (ids only), and hand the key file to worker processes:
    they see DATABASE_URL, not the embedded default, so they are told where its key file is."""
    keyring = secret_key_ring(settings)
    if settings.uses_key_file:
        os.environ["SVC_SECRET_KEY_FILE"] = str(settings.secret_key_file)
    if keyring.key_ids:
        say(f"secret keys: {', '.join(keyring.key_ids)} (the first encrypts) from {key_source(settings)}")
    else:
        say("secret keys: none (set SVC_SECRET_KEYS to store secret values)")


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
    """`svc secrets rotate`: every stored secret sealed again under a new key (a key file: no
    environment change) or under the first key of SVC_SECRET_KEYS."""

    def report(progress: RotationProgress) -> None:
        say(f"{progress.table}: {progress.rows} row(s) with secrets checked, {progress.values} value(s) re-encrypted")

    with small_database(database_url(settings)) as db:
        if settings.uses_key_file:
            secret_key_ring(settings)  # the embedded default's key file exists from here on
            done = rotate_key_file(db, settings.secret_key_file, batch_size=args.batch_size, report=report, say=say)
            retired = ", ".join(f"'{key_id}'" for key_id in done.retired) or "none"
            say(f"done: {done.values} secret value(s) re-encrypted under key '{done.new_key_id}'; "
                f"retired from {settings.secret_key_file}: {retired}. Back the key file up again.")
            return 0
        keyring = secret_key_ring(settings)
        finished = rotate(db, keyring, batch_size=args.batch_size, report=report)
    total = sum(progress.values for progress in finished)
    say(f"done: {total} secret value(s) re-encrypted under key '{keyring.primary_id}'; "
        "every key but the first can now leave SVC_SECRET_KEYS (restart each service after changing it)")
    return 0


def cmd_secrets_status(args: argparse.Namespace, settings: Settings) -> int:
    """One line per key id that seals stored values: id, values in configurations, in revisions,
    and whether this key ring holds it. Exit 1 when a value's key is not held."""
    keyring = secret_key_ring(settings)
    with small_database(database_url(settings)) as db:
        usage = key_usage(db)
        unreadable = check_secret_samples(db, keyring)
    held = set(keyring.key_ids)
    for found in usage:
        state = "held" if found.key_id in held else "MISSING"
        if found.key_id in unreadable and found.key_id in held:
            state = "WRONG KEY"
        print(f"{found.key_id}\t{found.configurations} configuration value(s)\t{found.revisions} revision value(s)\t{state}")
    say(f"key ring from {key_source(settings)}: {', '.join(keyring.key_ids) or 'no keys'}"
        + (f" (the first, '{keyring.primary_id}', encrypts)" if keyring.primary_id else ""))
    unused = [key_id for key_id in keyring.key_ids[1:] if key_id not in {u.key_id for u in usage}]
    if unused:
        say(f"no stored value needs {', '.join(unused)}: they can be retired")
    return 1 if unreadable else 0


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
            for t in _every(lambda after: tokens.list(operator, limit=100, after=after)):
                state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
                scope = t.application_id or t.user_id or "-"
                ro = (" read-only" if t.read_only else "") + (" reveal-secrets" if t.reveal_secrets else "")
                print(f"{t.id}  {t.role:<7} {state:<18} {scope:<26} {t.name}{ro}")
        else:
            token = tokens.revoke(operator, args.id)
            say(f"revoked token {token.id} ({token.name})")
    return 0


# --- user ----------------------------------------------------------------------------------


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    with small_database(database_url(settings)) as db:
        store = content_store_of(settings)
        users = UserService(db, store, marketplace_of(db, store, settings))
        operator = Principal.operator()
        if args.action == "create":
            user = users.create(operator, email=args.email, username=args.username, display_name=args.display_name)
            say(f"created user {user.username} <{user.email}>")
            print(user.id)
        elif args.action == "list":
            for user in _every(lambda after: users.list(operator, limit=100, after=after)):
                print(f"{user.id}  {user.username:<24} {user.email:<32} {user.display_name or ''}".rstrip())
        else:
            user_id = owner_id(db, parse_owner(f"user:{args.username}", ("user",)))
            users.delete(operator, user_id)
            say(f"deleted user {args.username} ({user_id}); their claude.md history stays in git")
    return 0


# --- team ----------------------------------------------------------------------------------


def cmd_team(args: argparse.Namespace, settings: Settings) -> int:
    with small_database(database_url(settings)) as db:
        store = content_store_of(settings)
        teams = TeamService(db, store, marketplace_of(db, store, settings))
        operator = Principal.operator()
        if args.action == "create":
            owner = parse_owner(args.owner, ("user",))
            team = teams.create(
                operator,
                name=args.name,
                display_name=args.display_name,
                description=args.description,
                owner_id=owner_id(db, owner),
            )
            say(f"created team {team.name} owned by {args.owner}")
            print(team.id)
        elif args.action == "list":
            for team in _every(lambda after: teams.list(operator, limit=100, after=after)):
                print(f"{team.id}  {team.name:<24} {team.display_name or ''}".rstrip())
        else:
            team_id = owner_id(db, parse_owner(f"team:{args.team}", ("team",)))
            user_id = owner_id(db, parse_owner(f"user:{args.username}", ("user",)))
            member = teams.put_member(operator, team_id, user_id, role=args.role)
            say(f"{args.username} is {member.role} of team {args.team}")
    return 0


def _every(page_after: Callable[[str | None], object]) -> Iterator:
    """Every item of a paged listing, page after page."""
    after = None
    while True:
        page = page_after(after)
        yield from page.items
        if page.next is None:
            return
        after = page.next


# --- catalog -------------------------------------------------------------------------------


def cmd_catalog(args: argparse.Namespace, settings: Settings) -> int:
    """Progress per file and the summary on stderr; exit 1 when a file was invalid."""
    with small_database(database_url(settings)) as db:
        store = content_store(settings)
        marketplace = marketplace_of(db, store, settings)
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
        store = content_store(settings)
        verifier = VerifyService(db, store, marketplace_of(db, store, settings))
        report = verifier.verify(repair=args.repair, progress=say)
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


# --- backup and restore ---------------------------------------------------------------------


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    """One file: database dump, content repository, manifest (and the key file with --with-keys)."""
    target = Path(args.path).resolve()
    key_file = None
    if args.with_keys:
        if not settings.uses_key_file:
            raise ServiceError(
                "--with-keys takes the key file, and the keys come from SVC_SECRET_KEYS here: "
                "keep that value with the backup yourself (it is not written into backups)"
            )
        secret_key_ring(settings)
        key_file = settings.secret_key_file
    if target.exists():
        raise ServiceError(f"{target} already exists; backup does not overwrite a file")
    url = database_url(settings)
    with small_database(url) as db:
        manifest = create_backup(url, db, content_store(settings), target, key_file=key_file)
    keys = ", ".join(manifest.secret_key_ids) or "none"
    if key_file is not None:
        say(f"the backup holds the secret key file {key_file} (keys {keys}): keep it as safe as the keys themselves")
    elif manifest.secret_key_ids:
        say(f"the backup holds no keys: its secret values need key(s) {keys}; keep them (or use --with-keys)")
    say(f"backup written to {target}: migration {manifest.migration}, {manifest.content_refs} git ref(s)")
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    """Into an empty data directory (embedded default) or an empty DATABASE_URL; then `svc verify`."""
    archive = Path(args.path).resolve()
    manifest = read_manifest(archive)
    key_file = settings.secret_key_file if manifest.with_keys else None
    url = None if settings.embedded else database_url(settings)
    refuse_unless_empty(
        data_dir=settings.data_dir.resolve() if settings.embedded else None,
        database_url=url,
        content=settings.git_path,
        key_file=key_file,
    )
    url = url or database_url(settings)  # the embedded default: a new cluster in the empty data directory
    restore_backup(archive, url, content_store_of(settings), key_file=settings.secret_key_file, say=say)
    if manifest.with_keys and not settings.uses_key_file:
        say(f"the backup's keys are in {settings.secret_key_file}: set SVC_SECRET_KEY_FILE to it, "
            "or put its lines, comma-separated, in SVC_SECRET_KEYS")
    if manifest.secret_key_ids:
        with small_database(url) as db:
            unreadable = check_secret_samples(db, secret_key_ring(settings))
        for key_id, why in unreadable.items():
            say(f"secret values under key '{key_id}' cannot be read yet: {why}")
    return cmd_verify(argparse.Namespace(repair=False), settings)


# --- psql ----------------------------------------------------------------------------------


def cmd_psql(args: argparse.Namespace, settings: Settings) -> int:
    from svc.embedded import psql_binary

    url = database_url(settings)
    # Not exec: the embedded server must be released (and stopped if we started it) on exit.
    return subprocess.call([str(psql_binary()), url, *args.extra_args])


# --- wiring --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svc",
        description="Configuration service. Settings come from the environment and .env (see .env.example); "
        "with DATABASE_URL unset, an embedded PostgreSQL runs under SVC_DATA_DIR (default .svc).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('svc')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to listen on (default: SVC_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: SVC_PORT, else 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: SVC_WORKERS, else 1)")
    serve.set_defaults(handler=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply pending migrations (or: migrate status)")
    migrate.add_argument(
        "action", nargs="?", choices=["up", "status"], default="up",
        help="up: apply what is pending; status: list applied and pending, exit 1 if any is pending (default: up)",
    )
    migrate.add_argument("--dry-run", action="store_true", help="apply in a transaction, then roll back (default: off)")
    migrate.set_defaults(handler=cmd_migrate)

    token = commands.add_parser("token", help="create, list or revoke API tokens")
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = token_actions.add_parser("create", help="create a token; prints only the secret on stdout")
    create.add_argument("--role", required=True, choices=["admin", "service", "user"], help="what the token is")
    create.add_argument("--name", required=True, help="a name to recognise it by in listings")
    create.add_argument("--user", metavar="USER_ID", help="the user a user token acts as (role user; required there)")
    create.add_argument("--application", metavar="APPLICATION_ID",
                        help="limit a service token to this application (default: every application)")
    create.add_argument("--read-only", action="store_true", help="reads only (default: reads and writes)")
    create.add_argument("--reveal-secrets", action="store_true",
                        help="a service token that reads secret values in clear (default: masked)")
    token_actions.add_parser("list", help="list tokens (never their secrets)")
    revoke = token_actions.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", help="the token's id, as `svc token list` shows it")
    token.set_defaults(handler=cmd_token)

    secrets = commands.add_parser("secrets", help="the keys that encrypt secret values inside configurations")
    secret_actions = secrets.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate_parser = secret_actions.add_parser(
        "rotate",
        help="re-encrypt every stored secret under a new key: with a key file (the embedded default) a new key "
        "is written into it and the old one retired; with SVC_SECRET_KEYS, under its first key. Resumable, "
        "safe while serving",
    )
    rotate_parser.add_argument("--batch-size", type=int, default=100, help="rows per transaction (default: 100)")
    rotate_parser.set_defaults(handler=cmd_secrets)
    secret_actions.add_parser(
        "status", help="key ids that seal stored values, how many each, and whether this key ring holds them"
    ).set_defaults(handler=cmd_secrets_status)

    user = commands.add_parser("user", help="manage users")
    user_actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    user_create = user_actions.add_parser("create", help="create a user; prints only the new id on stdout")
    user_create.add_argument("--email", required=True, help="the user's e-mail address")
    user_create.add_argument("--username", required=True, help="the name the user is known by (in user:USERNAME)")
    user_create.add_argument("--display-name", help="a name to show (default: none)")
    user_actions.add_parser("list", help="list users: id, username, e-mail, display name")
    user_delete = user_actions.add_parser(
        "delete", help="delete a user with their tokens; their claude.md history stays in git"
    )
    user_delete.add_argument("username", help="the user's username")
    user.set_defaults(handler=cmd_user)

    team = commands.add_parser("team", help="manage teams")
    team_actions = team.add_subparsers(dest="action", required=True, metavar="ACTION")
    team_create = team_actions.add_parser("create", help="create a team; prints only the new id on stdout")
    team_create.add_argument("--name", required=True, help="the team's name (in team:NAME)")
    team_create.add_argument("--owner", required=True, metavar="user:USERNAME", help="the user who becomes its owner")
    team_create.add_argument("--display-name", help="a name to show (default: none)")
    team_create.add_argument("--description", help="what the team is for (default: none)")
    team_actions.add_parser("list", help="list teams: id, name, display name")
    add_member = team_actions.add_parser("add-member", help="add a user to a team, or change their role")
    add_member.add_argument("team", help="the team's name")
    add_member.add_argument("username", help="the user's username")
    add_member.add_argument("--role", choices=TEAM_ROLES, default="member",
                            help="their role in the team (default: member)")
    team.set_defaults(handler=cmd_team)

    catalog = commands.add_parser("catalog", help="manage the catalog of skills, MCP servers and tools")
    catalog_actions = catalog.add_subparsers(dest="action", required=True, metavar="ACTION")
    catalog_import = catalog_actions.add_parser(
        "import", help="import <name>/SKILL.md, server.json and tools/<name>.json files; unchanged ones are skipped"
    )
    catalog_import.add_argument("directory", help="the directory to read")
    catalog_import.add_argument("--owner", required=True, metavar="team:NAME|user:USERNAME",
                                help="who owns the imported items")
    catalog.set_defaults(handler=cmd_catalog)

    verify = commands.add_parser(
        "verify",
        help="compare PostgreSQL with the git repository (document versions, marketplaces; and SVC_GIT_REMOTE); "
        "exit 1 on drift",
    )
    verify.add_argument("--repair", action="store_true",
                        help="mend drift without dropping any saved version (default: only report)")
    verify.set_defaults(handler=cmd_verify)

    gc = commands.add_parser("gc", help="pack the git repository's loose objects (safe while serving)")
    gc.set_defaults(handler=cmd_gc)

    backup = commands.add_parser(
        "backup", help="write the database, the content repository and a manifest to one file (safe while serving)"
    )
    backup.add_argument("path", help="the file to write (must not exist)")
    backup.add_argument("--with-keys", action="store_true",
                        help="add the key file that opens secret values (default: keys left out)")
    backup.set_defaults(handler=cmd_backup)

    restore = commands.add_parser(
        "restore", help="restore a backup into an empty data directory or empty DATABASE_URL, then verify"
    )
    restore.add_argument("path", help="a file written by `svc backup`")
    restore.set_defaults(handler=cmd_restore)

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
