"""The services of one process, built once at start-up over one pool."""

from __future__ import annotations

from dataclasses import dataclass

from svc.config import Settings
from svc.content import ContentStore
from svc.db import Database
from svc.services.applications import ApplicationService
from svc.services.audit import AuditService
from svc.services.auth import Authenticator
from svc.services.claude_md import ClaudeMdService
from svc.services.configurations import ConfigurationService
from svc.services.tokens import TokenService
from svc.services.users import UserService


@dataclass
class Services:
    settings: Settings
    db: Database
    authenticator: Authenticator
    tokens: TokenService
    audit: AuditService
    applications: ApplicationService
    configurations: ConfigurationService
    content: ContentStore
    users: UserService
    claude_md: ClaudeMdService

    @classmethod
    def build(cls, settings: Settings, database_url: str) -> Services:
        db = Database(
            database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout=settings.pool_timeout,
            connect_timeout=settings.connect_timeout,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        content = ContentStore(settings.git_path)
        content.ensure()
        return cls(
            settings=settings,
            db=db,
            authenticator=Authenticator(db),
            tokens=TokenService(db),
            audit=AuditService(db),
            applications=ApplicationService(db),
            configurations=ConfigurationService(db, max_config_bytes=settings.max_config_bytes),
            content=content,
            users=UserService(db, content),
            claude_md=ClaudeMdService(db, content, max_bytes=settings.max_document_bytes),
        )

    def readiness(self) -> dict[str, bool]:
        """Which dependencies answer right now (for `/ready`)."""
        return {"database": self.db.ping(), "git": self.content.is_ready()}

    def close(self) -> None:
        self.db.close()
