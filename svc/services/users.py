"""Users: the people whose claude.md documents the service keeps. Admins manage them."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from svc.content import ContentStore
from svc.db import Database, Transaction
from svc.errors import Conflict, Forbidden, NotFound
from svc.ids import new_id
from svc.repositories.teams import TeamRepository
from svc.repositories.users import User, UserRepository
from svc.services import audit, policy
from svc.services.auth import Principal
from svc.services.documents import Retirement
from svc.services.marketplace import MarketplaceService
from svc.services.pagination import Page, keyset_page
from svc.services.policy import Action, UserResource

def acting_name(tx: Transaction, actor: Principal) -> str:
    """The acting user's username, else the token's name."""
    user = UserRepository(tx).get(actor.user_id) if actor.user_id else None
    return user.username if user else actor.name


UNSET: Any = object()
"""PATCH marker: the field was not sent (display_name may be set to None on purpose)."""


class UserService:
    def __init__(self, db: Database, store: ContentStore, marketplace: MarketplaceService) -> None:
        self.db = db
        self.store = store
        self.marketplace = marketplace

    def create(self, actor: Principal, *, email: str, username: str, display_name: str | None = None) -> User:
        policy.require(actor, Action.MANAGE_USERS)
        with self.db.transaction() as tx:
            user = UserRepository(tx).insert(id=new_id(), email=email, username=username, display_name=display_name)
            audit.record(tx, actor, "user.create", "user", user.id, _audit_detail(user))
            tx.commit()
        return user

    def list(self, actor: Principal, *, limit: int, after: str | None = None) -> Page:
        policy.require(actor, Action.MANAGE_USERS)
        with self.db.transaction() as tx:
            users = UserRepository(tx)
            return keyset_page(lambda n: users.list(limit=n, after=after), limit)

    def get(self, actor: Principal, user_id: str) -> User:
        """Admins read anyone; a user reads itself."""
        policy.require(actor, Action.READ_USER, UserResource(user_id))
        with self.db.transaction() as tx:
            user = UserRepository(tx).get(user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return user

    def me(self, actor: Principal) -> User:
        policy.require(actor, Action.BE_A_USER)
        return self.get(actor, actor.user_id)

    def update(
        self,
        actor: Principal,
        user_id: str,
        *,
        email: str | None = None,
        username: str | None = None,
        display_name: str | None = UNSET,
    ) -> User:
        """Admins change anything; a user may change only its own display name."""
        policy.require(actor, Action.UPDATE_USER, UserResource(user_id))
        if (email is not None or username is not None) and not policy.can(actor, Action.MANAGE_USERS):
            raise Forbidden("only an admin can change a user's email or username")
        with self.db.transaction() as tx:
            user = UserRepository(tx).update(
                user_id,
                email=email,
                username=username,
                set_display_name=display_name is not UNSET,
                display_name=None if display_name is UNSET else display_name,
            )
            if user is None:
                raise NotFound(f"user {user_id} not found")
            audit.record(tx, actor, "user.update", "user", user_id, _audit_detail(user))
            tx.commit()
        return user

    def delete(self, actor: Principal, user_id: str) -> None:
        """Delete a user with their tokens and their document's metadata. The document's git
        history is kept: its ref is renamed to refs/deleted/<document id> (named in the audit
        event), from where an operator can still read every version. Their marketplace, derived
        from their releases, is deleted."""
        policy.require(actor, Action.MANAGE_USERS)
        with self.db.transaction() as tx:
            users = UserRepository(tx)
            teams = TeamRepository(tx)
            # Teams first, then the user: the order in which a membership change takes them.
            teams.lock_owned_by(user_id)
            # Waits for the saves in flight (they hold the user row); none can start after this.
            if users.lock(user_id) is None:
                raise NotFound(f"user {user_id} not found")
            orphaned = teams.solely_owned_by(user_id)
            if orphaned:
                names = ", ".join(team.name for team in orphaned)
                raise Conflict(f"user {user_id} is the last owner of team(s) {names}; give them another owner first")
            retirement = Retirement.lock(tx, user_id=user_id)
            user = users.delete(user_id)
            detail = _audit_detail(user)
            for retired in retirement.audit_detail():  # a user owns one document: their claude.md
                detail |= asdict(retired)
            audit.record(tx, actor, "user.delete", "user", user_id, detail)
            tx.commit()
        retirement.carry_out(self.store)
        self.marketplace.discard("users", user_id)


def _audit_detail(user: User) -> dict[str, Any]:
    return {"email": user.email, "username": user.username, "display_name": user.display_name}
