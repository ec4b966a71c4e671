"""The services of one process, built once at start-up over one pool."""

from __future__ import annotations

from dataclasses import dataclass

from svc.config import Settings
from svc.db import Database
from svc.services.audit import AuditService
from svc.services.auth import Authenticator
from svc.services.tokens import TokenService


@dataclass
class Services:
    settings: Settings
    db: Database
    authenticator: Authenticator
    tokens: TokenService
    audit: AuditService

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
        return cls(
            settings=settings,
            db=db,
            authenticator=Authenticator(db),
            tokens=TokenService(db),
            audit=AuditService(db),
        )

    def readiness(self) -> dict[str, bool]:
        """Which dependencies answer right now (for `/ready`)."""
        return {"database": self.db.ping()}

    def close(self) -> None:
        self.db.close()
