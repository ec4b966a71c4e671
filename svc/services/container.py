"""The services of one process, built once at start-up over one pool."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass, field
from typing import Annotated

from anyio.to_thread import run_sync
from pydantic import Field

from svc.config import Settings
from svc.content import ContentStore, GitRemote
from svc.crypto import KeyRing
from svc.db import AsyncStatements, Database, PoolStats
from svc.github import GitHubClient
from svc.errors import Unavailable
from svc.listener import CREDENTIALS_CHANNEL, INVALIDATE_CHANNEL, ChangeListener
from svc.secret_keys import KeyFileRing, secret_key_ring
from svc.services.applications import ApplicationService
from svc.services.audit import AuditService
from svc.services.auth import Authenticator
from svc.services.bundle import BundleService
from svc.services.catalog import CatalogService
from svc.services.claude_md import CLAUDE_MD, ClaudeMdService, TeamMount
from svc.services.configurations import ConfigurationService
from svc.services.secret_store import check_secret_samples
from svc.changes import CHANNEL as CHANGES_CHANNEL
from svc.changes import ChangeFeed
from svc.services.delivery import DeliveryService
from svc.services.documents import DocumentService
from svc.services.marketplace import MarketplaceService
from svc.services.products import ApplicationDocumentService, SourceRepositoryService, WorkItemService
from svc.services.teams import TeamService
from svc.services.tokens import TokenService
from svc.services.users import UserService


log = logging.getLogger(__name__)


def content_store_of(settings: Settings) -> ContentStore:
    """This host's repository and, when `SVC_GIT_REMOTE` is set, the remote every host pushes to."""
    url = settings.git_remote.get_secret_value() if settings.git_remote is not None else ""
    remote = GitRemote(url, timeout=settings.git_remote_timeout) if url else None
    return ContentStore(settings.git_path, remote)


def marketplace_of(db: Database, content: ContentStore, settings: Settings) -> MarketplaceService:
    """The marketplaces Claude Code fetches, served from `SVC_DATA_DIR`'s marketplaces folder."""
    return MarketplaceService(db, content, settings.marketplaces_path)


@dataclass(frozen=True)
class Readiness:
    status: str
    checks: Annotated[dict[str, bool], Field(description="database, git, and whether every secret key opens")]
    unreadable_secret_keys: Annotated[
        dict[str, str], Field(description="key id → why the key ring cannot open secrets stored under it")
    ]
    pool: PoolStats


@dataclass
class Services:
    settings: Settings
    db: Database
    statements: AsyncStatements
    authenticator: Authenticator
    tokens: TokenService
    audit: AuditService
    content: ContentStore
    users: UserService
    claude_md: DocumentService
    team_claude_md: DocumentService
    teams: TeamService
    catalog: CatalogService
    marketplace: MarketplaceService
    bundle: BundleService
    applications: ApplicationService
    application_documents: ApplicationDocumentService
    work_items: WorkItemService
    source_repositories: SourceRepositoryService
    github: GitHubClient
    configurations: ConfigurationService
    listener: ChangeListener
    changes: ChangeFeed
    delivery: DeliveryService
    keyring: KeyRing
    _background: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, database_url: str) -> Services:
        sessions = {  # what both pools' connections and callers are held to
            "timeout": settings.pool_timeout,
            "connect_timeout": settings.connect_timeout,
            "statement_timeout_ms": settings.statement_timeout_ms,
        }
        db = Database(database_url, min_size=settings.pool_min_size, max_size=settings.pool_max_size, **sessions)
        # Single statements on the worker's event loop; connections open when first used, on that loop.
        statements = AsyncStatements(database_url, size=settings.read_pool_size, **sessions)
        content = content_store_of(settings)
        content.ensure()
        authenticator = Authenticator(db)
        marketplace = marketplace_of(db, content, settings)
        keyring = secret_key_ring(settings)  # once per process: the key file's notice is said once
        github = GitHubClient(settings.github_api_url, timeout=settings.github_timeout)
        changes = ChangeFeed(database_url, statements, connect_timeout=settings.connect_timeout)
        configurations = ConfigurationService(
            db, statements, keyring, max_config_bytes=settings.max_config_bytes, announce=changes.announce
        )
        delivery = DeliveryService(
            db,
            statements,
            keyring,
            cache_max_bytes=settings.cache_max_bytes,
            event_retention_hours=settings.event_retention_hours,
            configurations=configurations,
        )

        def revoked() -> None:
            # This worker acts before the revocation's response is sent; the others hear the NOTIFY.
            authenticator.forget_all_soon()
            delivery.credentials_changed_soon()

        return cls(
            settings=settings,
            db=db,
            statements=statements,
            authenticator=authenticator,
            tokens=TokenService(db, on_revoked=revoked),
            audit=AuditService(db),
            content=content,
            users=UserService(db, content, marketplace),
            claude_md=ClaudeMdService(db, content, max_bytes=settings.max_document_bytes),
            team_claude_md=DocumentService(db, content, TeamMount(CLAUDE_MD), max_bytes=settings.max_document_bytes),
            teams=TeamService(db, content, marketplace),
            catalog=CatalogService(db, content, marketplace, max_bytes=settings.max_document_bytes),
            marketplace=marketplace,
            bundle=BundleService(db, content),
            applications=ApplicationService(db, announce=changes.announce, store=content),
            application_documents=ApplicationDocumentService(db, content, max_bytes=settings.max_document_bytes),
            work_items=WorkItemService(db),
            source_repositories=SourceRepositoryService(db, github),
            github=github,
            configurations=configurations,
            listener=ChangeListener(
                database_url, [CHANGES_CHANNEL, INVALIDATE_CHANNEL, CREDENTIALS_CHANNEL], connect_timeout=settings.connect_timeout
            ),
            changes=changes,
            delivery=delivery,
            keyring=keyring,
        )

    async def start(self) -> None:
        """Start the per-worker background parts: the LISTEN connection, the change feed and event pruning."""
        self.authenticator.attach(self.listener)
        self.changes.attach(self.listener)
        self.delivery.attach(self.listener, self.changes)
        await self.listener.start()
        await self.changes.start()
        if not await self.changes.wait_connected(timeout=self.settings.connect_timeout):
            log.warning("LISTEN connection not up or changes not caught up yet; caches stay bypassed until they are")
        self._background.append(asyncio.create_task(self._prune_events_hourly(), name="svc-prune-events"))
        if self._reloads_keys_on_hangup():
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.keyring.reload)

    def _reloads_keys_on_hangup(self) -> bool:
        # Signals reach only the main thread's loop: a served worker's, not a test client's.
        return isinstance(self.keyring, KeyFileRing) and threading.current_thread() is threading.main_thread()

    async def stop(self) -> None:
        if self._reloads_keys_on_hangup():
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in self._background:
            task.cancel()
        await self.changes.stop()
        await self.listener.stop()

    async def _prune_events_hourly(self) -> None:
        while True:
            try:
                deleted = await run_sync(self.delivery.prune_events)
                if deleted:
                    log.info("pruned %d change events older than %d h", deleted, self.settings.event_retention_hours)
            except Unavailable as exc:
                log.warning("could not prune change events: %s", exc.detail)
            await asyncio.sleep(3600)

    def readiness(self) -> Readiness:
        """Whether the dependencies answer right now (for `/ready`): 503 naming those that do not."""
        checks = {"database": self.db.ping(), "git": self.content.is_ready()}
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise Unavailable(f"not ready: {', '.join(failed)} unreachable")
        # Reported, not failed: every other configuration still serves, so taking the process out of
        # a load balancer would turn one unreadable secret into a whole outage.
        unreadable = check_secret_samples(self.db, self.keyring)
        return Readiness("ok", checks | {"secret_keys": not unreadable}, unreadable, self.db.stats())

    def close(self) -> None:
        self.github.close()
        self.changes.close()
        self.statements.close()
        self.db.close()
