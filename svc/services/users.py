"""Users: the people whose claude.md documents the service keeps. Admins manage them."""

from __future__ import annotations

import logging
from typing import Any

from svc.content import ContentStore, deleted_ref_name
from svc.db import Database
from svc.errors import Forbidden, NotFound, Unavailable
from svc.ids import new_id
from svc.repositories.claude_md import ClaudeMdRepository
from svc.repositories.users import User, UserRepository
from svc.services import audit
from svc.services.auth import Principal
from svc.services.pagination import Page, keyset_page

log = logging.getLogger(__name__)

UNSET: Any = object()
"""PATCH marker: the field was not sent (display_name may be set to None on purpose)."""


class UserService:
    def __init__(self, db: Database, store: ContentStore) -> None:
        self.db = db
        self.store = store

    def create(self, actor: Principal, *, email: str, username: str, display_name: str | None = None) -> User:
        actor.require_admin()
        with self.db.transaction() as tx:
            user = UserRepository(tx).insert(id=new_id(), email=email, username=username, display_name=display_name)
            audit.record(tx, actor, "user.create", "user", user.id, _audit_detail(user))
            tx.commit()
        return user

    def list(self, actor: Principal, *, limit: int, after: str | None = None) -> Page:
        actor.require_admin()
        with self.db.transaction() as tx:
            users = UserRepository(tx)
            return keyset_page(lambda n: users.list(limit=n, after=after), limit)

    def get(self, actor: Principal, user_id: str) -> User:
        """Admins read anyone; a user reads itself."""
        actor.require_role("admin", "user")
        actor.require_user(user_id)
        with self.db.transaction() as tx:
            user = UserRepository(tx).get(user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return user

    def me(self, actor: Principal) -> User:
        return self.get(actor, actor.require_own_user())

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
        actor.require_role("admin", "user")
        actor.require_user(user_id)
        actor.require_write()
        if not actor.is_admin and (email is not None or username is not None):
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
        event), from where an operator can still read every version."""
        actor.require_admin()
        with self.db.transaction() as tx:
            users = UserRepository(tx)
            # Waits for the saves in flight (they hold the user row); none can start after this.
            if users.lock(user_id) is None:
                raise NotFound(f"user {user_id} not found")
            document = ClaudeMdRepository(tx).lock_of_user(user_id)
            user = users.delete(user_id)
            detail = _audit_detail(user)
            if document is not None:
                detail |= {
                    "document_id": document["id"],
                    "head_sha": document["head_sha"],
                    "history_ref": deleted_ref_name(document["id"]),
                }
            audit.record(tx, actor, "user.delete", "user", user_id, detail)
            tx.commit()
        if document is not None:
            # After the commit: if this fails, `svc verify` reports the ref of a document that
            # no longer exists and `--repair` renames it; the history is never dropped.
            try:
                self.store.retire(document["id"])
            except Unavailable as exc:
                log.error("user %s deleted, but the ref of document %s stays: %s", user_id, document["id"], exc.detail)


def _audit_detail(user: User) -> dict[str, Any]:
    return {"email": user.email, "username": user.username, "display_name": user.display_name}
