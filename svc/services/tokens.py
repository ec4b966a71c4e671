"""Creating, listing and revoking API tokens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from svc.db import Database
from svc.errors import NotFound
from svc.ids import new_id
from svc.repositories.tokens import Token, TokenRepository
from svc.services import audit, policy
from svc.services.auth import Principal, Role, hash_secret, new_secret
from svc.services.pagination import Page, keyset_page
from svc.services.policy import Action

BOOTSTRAP_TOKEN_NAME = "bootstrap-admin"


@dataclass(frozen=True)
class NewToken:
    """A token just created; `secret` is shown once and never stored."""

    token: Token
    secret: str


class TokenService:
    def __init__(self, db: Database, *, on_revoked: Callable[[], None] = lambda: None) -> None:
        self.db = db
        # Lets this process forget cached principals at once; other workers hear the NOTIFY.
        self.on_revoked = on_revoked

    def create(
        self,
        actor: Principal,
        *,
        name: str,
        role: Role,
        user_id: str | None = None,
        application_id: str | None = None,
        read_only: bool = False,
        reveal_secrets: bool = False,
    ) -> NewToken:
        policy.require(actor, Action.MANAGE_TOKENS)
        policy.require_token_shape(
            role, user_id=user_id, application_id=application_id, reveal_secrets=reveal_secrets
        )
        secret = new_secret()
        with self.db.transaction() as tx:
            token = TokenRepository(tx).insert(
                id=new_id(),
                name=name,
                role=role,
                token_hash=hash_secret(secret),
                user_id=user_id,
                application_id=application_id,
                read_only=read_only,
                reveal_secrets=reveal_secrets,
            )
            audit.record(tx, actor, "token.create", "token", token.id, _audit_detail(token))
            tx.commit()
        return NewToken(token=token, secret=secret)

    def list(self, actor: Principal, *, limit: int, after: str | None = None) -> Page:
        policy.require(actor, Action.MANAGE_TOKENS)
        with self.db.transaction() as tx:
            tokens = TokenRepository(tx)
            return keyset_page(lambda n: tokens.list(limit=n, after=after), limit)

    def revoke(self, actor: Principal, token_id: str) -> Token:
        """Revoke a token; it stops working on the next request. Revoking twice is harmless."""
        policy.require(actor, Action.MANAGE_TOKENS)
        with self.db.transaction() as tx:
            token = TokenRepository(tx).revoke(token_id)
            if token is None:
                raise NotFound(f"token {token_id} not found")
            audit.record(tx, actor, "token.revoke", "token", token_id, _audit_detail(token))
            tx.commit()
        self.on_revoked()
        return token

    def bootstrap(self) -> str | None:
        """Create the first admin token when no token exists yet; return its secret, else None."""
        secret = new_secret()
        with self.db.transaction() as tx:
            tokens = TokenRepository(tx)
            tokens.lock_bootstrap()
            if tokens.count() > 0:
                return None
            token = tokens.insert(
                id=new_id(),
                name=BOOTSTRAP_TOKEN_NAME,
                role="admin",
                token_hash=hash_secret(secret),
                user_id=None,
                application_id=None,
                read_only=False,
            )
            actor = Principal(token_id=None, name="svc serve", role="admin")
            audit.record(tx, actor, "token.create", "token", token.id, _audit_detail(token))
            tx.commit()
        return secret


def _audit_detail(token: Token) -> dict[str, Any]:
    """What the audit trail keeps of a token: never its secret or hash."""
    return {
        "name": token.name,
        "role": token.role,
        "user_id": token.user_id,
        "application_id": token.application_id,
        "read_only": token.read_only,
        "reveal_secrets": token.reveal_secrets,
    }
