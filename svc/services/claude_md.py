"""claude.md: the documents kind of a user's and a team's `claude.md`, and the two ways a
request names its owner (a user, `/me`, or a team)."""

from __future__ import annotations

from dataclasses import dataclass

from svc.catalog_types import MARKDOWN_MEDIA_TYPES
from svc.content import ContentStore
from svc.db import Database, Transaction
from svc.errors import NotFound
from svc.repositories.teams import TeamRepository
from svc.repositories.users import UserRepository
from svc.services import policy
from svc.services.auth import Principal
from svc.services.documents import DocumentKind, DocumentService, Target
from svc.services.policy import Action, DocumentResource, TeamResource


CLAUDE_MD = DocumentKind(
    name="claude_md", filename="claude.md", import_suffix=".md", media_types=MARKDOWN_MEDIA_TYPES, format="Markdown"
)


@dataclass(frozen=True)
class UserMount:
    """`/users/{id}/…` and `/me/…`: a user's document; `owner_id=None` is the caller."""

    kind: DocumentKind

    def open(self, tx: Transaction, actor: Principal, owner_id: str | None, action: Action, *, hold: bool) -> Target:
        if owner_id is None:
            policy.require(actor, Action.BE_A_USER)
            owner_id = actor.user_id
        resource = DocumentResource(user_id=owner_id)
        policy.require(actor, action, resource)
        users = UserRepository(tx)
        # Held, a deletion of the user waits for this write (and none can start meanwhile).
        if (users.hold(owner_id) if hold else users.get(owner_id)) is None:
            raise NotFound(f"user {owner_id} not found")
        return Target(self.kind, owner={"user_id": owner_id}, audit={"user_id": owner_id}, resource=resource)


@dataclass(frozen=True)
class TeamMount:
    """`/teams/{id}/…`: a team's document; what the caller may do follows its role in the team."""

    kind: DocumentKind

    def open(self, tx: Transaction, actor: Principal, owner_id: str | None, action: Action, *, hold: bool) -> Target:
        assert owner_id is not None
        teams = TeamRepository(tx)
        team = teams.hold(owner_id) if hold else teams.get(owner_id)
        role = None if team is None else teams.role_of(owner_id, actor.user_id)
        resource = DocumentResource(team=TeamResource(owner_id, role))
        policy.require(actor, action, resource)
        if team is None:
            raise NotFound(f"team {owner_id} not found")
        return Target(self.kind, owner={"team_id": owner_id}, audit={"team_id": owner_id}, resource=resource)


class ClaudeMdService(DocumentService):
    """The users' claude.md documents (for scripts and benchmarks that need only those)."""

    def __init__(self, db: Database, store: ContentStore, *, max_bytes: int) -> None:
        super().__init__(db, store, UserMount(CLAUDE_MD), max_bytes=max_bytes)
