"""Teams and their members. Any user may create a team and becomes its owner; a team always
keeps at least one owner.

Every change of membership locks the team row first, then counts owners: two owners
demoting each other at once are serialized, and the second sees that it would remove the
last owner.
"""

from __future__ import annotations

from dataclasses import replace
from operator import attrgetter
from typing import Any

from svc.content import ContentStore
from svc.db import Database, Transaction
from svc.errors import Conflict, NotFound, Unprocessable
from svc.ids import new_id
from svc.repositories.applications import ApplicationRepository
from svc.repositories.teams import Member, Team, TeamRepository
from svc.repositories.users import UserRepository
from svc.services import audit, policy
from svc.services.auth import Principal
from svc.services.documents import Retirement
from svc.services.marketplace import MarketplaceService
from svc.services.pagination import Page, keyset_page
from svc.services.policy import TEAM_ROLES, Action, MembershipChange, TeamResource
from svc.services.users import acting_name

EDITABLE_FIELDS = ("name", "display_name", "description")


class TeamService:
    def __init__(self, db: Database, store: ContentStore, marketplace: MarketplaceService) -> None:
        self.db = db
        self.store = store
        self.marketplace = marketplace

    def create(
        self,
        actor: Principal,
        *,
        name: str,
        display_name: str | None = None,
        description: str | None = None,
        owner_id: str | None = None,
    ) -> Team:
        """A new team whose first owner is `owner_id` (admins, and `svc team create`) or the caller."""
        policy.require(actor, Action.CREATE_TEAM)
        owner_id = owner_id if policy.scope(actor).everything else actor.user_id  # who reaches every team names one
        if owner_id is None:
            raise Unprocessable("a team needs an owner: an admin token must name one (owner_id)")
        with self.db.transaction() as tx:
            if UserRepository(tx).get(owner_id) is None:
                raise NotFound(f"user {owner_id} not found")
            teams = TeamRepository(tx)
            team = teams.insert(id=new_id(), name=name, display_name=display_name, description=description)
            teams.put_member(team.id, owner_id, role="owner", added_by=acting_name(tx, actor))
            audit.record(tx, actor, "team.create", "team", team.id, {**_audit_detail(team), "owner_id": owner_id})
            tx.commit()
        return team

    def list(self, actor: Principal, *, limit: int, after: str | None = None, mine: bool = False) -> Page:
        """Admins list every team (or, with `mine`, none: they belong to none); a user lists its own."""
        policy.require(actor, Action.LIST_TEAMS)
        if mine:
            policy.require(actor, Action.BE_A_USER)
        member_id = actor.user_id if mine else policy.scope(actor).member_id
        with self.db.transaction() as tx:
            teams = TeamRepository(tx)
            return keyset_page(lambda n: teams.list(limit=n, after=after, member_id=member_id), limit)

    def get(self, actor: Principal, team_id: str) -> Team:
        with self.db.transaction() as tx:
            return self._visible(tx, actor, team_id, Action.READ_TEAM)

    def update(self, actor: Principal, team_id: str, fields: dict[str, Any]) -> Team:
        """Change the fields given (name, display_name, description); owners only."""
        with self.db.transaction() as tx:
            current = self._visible(tx, actor, team_id, Action.UPDATE_TEAM, lock=True)
            changed = {k: v for k, v in fields.items() if k in EDITABLE_FIELDS and getattr(current, k) != v}
            if not changed:
                return current
            proposed = replace(current, **changed)
            team = TeamRepository(tx).update(
                team_id, name=proposed.name, display_name=proposed.display_name, description=proposed.description
            )
            audit.record(
                tx, actor, "team.update", "team", team_id,
                {"before": {k: getattr(current, k) for k in changed}, "after": changed},
            )
            # The team's marketplace is named after it.
            self.marketplace.commit(tx, {"team_id": team_id}, f"Rename the team {team.name}")
        return team

    def delete(self, actor: Principal, team_id: str) -> None:
        """Delete a team with its members and its documents' metadata. Each document's git
        history is kept: its ref is renamed to refs/deleted/<document id>, named in the audit
        event, from where an operator can still read every version. Its marketplace, derived
        from its releases, is deleted."""
        with self.db.transaction() as tx:
            teams = TeamRepository(tx)
            role = teams.role_of(team_id, actor.user_id)
            policy.require(actor, Action.DELETE_TEAM, TeamResource(team_id, role))
            # Waits for the document writes in flight (they hold the team row).
            team = teams.lock(team_id)
            if team is None:
                raise NotFound(f"team {team_id} not found")
            retirement = Retirement.lock(tx, team_id=team_id)
            # Its applications stay, without a team (the foreign key sets team_id to NULL).
            released = [{"id": a.id, "name": a.name} for a in ApplicationRepository(tx).of_team(team_id)]
            teams.delete(team_id)
            audit.record(
                tx, actor, "team.delete", "team", team_id,
                {**_audit_detail(team), "documents": retirement.audit_detail(), "applications": released},
            )
            tx.commit()
        retirement.carry_out(self.store)
        self.marketplace.discard("teams", team_id)

    # --- members -----------------------------------------------------------------------

    def members(self, actor: Principal, team_id: str, *, limit: int, after: str | None = None) -> Page:
        with self.db.transaction() as tx:
            self._visible(tx, actor, team_id, Action.READ_TEAM)
            teams = TeamRepository(tx)
            return keyset_page(
                lambda n: teams.members(team_id, limit=n, after=after), limit, cursor=attrgetter("user_id")
            )

    def put_member(self, actor: Principal, team_id: str, user_id: str, *, role: str) -> Member:
        """Add a user to a team, or change its role. Owners are added or demoted by owners only;
        demoting the last owner is 409."""
        if role not in TEAM_ROLES:
            raise Unprocessable(f"role must be one of: {', '.join(TEAM_ROLES)}")
        with self.db.transaction() as tx:
            teams = TeamRepository(tx)
            current = self._lock_membership(tx, actor, team_id, user_id, role)
            if UserRepository(tx).get(user_id) is None:
                raise NotFound(f"user {user_id} not found")
            if current == role:
                return teams.member(team_id, user_id)
            if current == "owner":
                _require_another_owner(teams, team_id, "demoted")
            member = teams.put_member(team_id, user_id, role=role, added_by=acting_name(tx, actor))
            audit.record(
                tx, actor, "team.member.put", "team", team_id, {"user_id": user_id, "before": current, "after": role}
            )
            tx.commit()
        return member

    def remove_member(self, actor: Principal, team_id: str, user_id: str) -> None:
        """Take a user out of a team; removing the last owner is 409."""
        with self.db.transaction() as tx:
            teams = TeamRepository(tx)
            current = self._lock_membership(tx, actor, team_id, user_id, None)
            if current is None:
                raise NotFound(f"user {user_id} is not a member of team {team_id}")
            if current == "owner":
                _require_another_owner(teams, team_id, "removed")
            teams.remove_member(team_id, user_id)
            audit.record(tx, actor, "team.member.remove", "team", team_id, {"user_id": user_id, "before": current})
            tx.commit()

    def _lock_membership(
        self, tx: Transaction, actor: Principal, team_id: str, user_id: str, new_role: str | None
    ) -> str | None:
        """Lock the team (serializing every membership change of it), check the caller may
        make this change, and return the member's current role."""
        teams = TeamRepository(tx)
        team = teams.lock_for_change(team_id)
        caller = TeamResource(team_id, teams.role_of(team_id, actor.user_id))
        policy.require(actor, Action.READ_TEAM, caller)
        if team is None:
            raise NotFound(f"team {team_id} not found")
        current = teams.role_of(team_id, user_id)
        roles = frozenset(r for r in (current, new_role) if r is not None)
        policy.require(actor, Action.CHANGE_MEMBERSHIP, MembershipChange(caller, roles))
        return current

    def _visible(self, tx: Transaction, actor: Principal, team_id: str, action: Action, *, lock: bool = False) -> Team:
        teams = TeamRepository(tx)
        role = teams.role_of(team_id, actor.user_id)
        policy.require(actor, action, TeamResource(team_id, role))
        team = teams.lock_for_change(team_id) if lock else teams.get(team_id)
        if team is None:
            raise NotFound(f"team {team_id} not found")
        return team


def membership(tx: Transaction, actor: Principal, team_id: str | None) -> TeamResource | None:
    """A team as the policy sees it: with the caller's role in it (None: no team)."""
    if team_id is None:
        return None
    return TeamResource(team_id, TeamRepository(tx).role_of(team_id, actor.user_id))


def _require_another_owner(teams: TeamRepository, team_id: str, what: str) -> None:
    if teams.owner_count(team_id) <= 1:
        raise Conflict(f"the last owner of team {team_id} cannot be {what}; make another member an owner first")


def _audit_detail(team: Team) -> dict[str, Any]:
    return {"name": team.name, "display_name": team.display_name, "description": team.description}
