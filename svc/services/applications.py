"""Applications: the owners of configurations."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from svc.content import ContentStore
from svc.db import Database, Transaction
from svc.errors import NotFound
from svc.ids import new_id
from svc.repositories.applications import Application, ApplicationRepository
from svc.repositories.configurations import ConfigurationRepository
from svc.repositories.products import ProductRepository
from svc import changes
from svc.services import audit, policy
from svc.services.auth import Principal
from svc.services.documents import Retirement
from svc.services.pagination import Page, keyset_page
from svc.services.policy import Action, ApplicationResource, TeamMove, TeamResource
from svc.services.teams import membership

EDITABLE_FIELDS = ("name", "comments", "team_id", "description", "icon", "color")


class ApplicationService:
    def __init__(self, db: Database, *, announce: changes.Announce, store: ContentStore) -> None:
        self.db = db
        self.announce = announce
        self.store = store

    def create(
        self,
        actor: Principal,
        *,
        name: str,
        comments: str | None = None,
        team_id: str | None = None,
        description: str | None = None,
        icon: str | None = None,
        color: str | None = None,
    ) -> Application:
        """A new application; with `team_id`, one of that team (admins, or its owners and admins)."""
        with self.db.transaction() as tx:
            team = membership(tx, actor, team_id)
            policy.require(actor, Action.CREATE_APPLICATION, ApplicationResource(None, team))
            if team is not None:
                policy.require(actor, Action.GIVE_TO_TEAM, team)
            product = {"description": description, "icon": icon, "color": color}
            application = ApplicationRepository(tx).insert(
                id=new_id(), name=name, comments=comments, team_id=team_id, **product
            )
            audit.record(
                tx, actor, "application.create", "application", application.id,
                {"name": name, "comments": comments, "team_id": team_id, **product},
            )
            tx.commit()
        return application

    def get(self, actor: Principal, application_id: str) -> Application:
        with self.db.transaction() as tx:
            return reachable_application(tx, actor, ApplicationRepository(tx).get(application_id), application_id)

    def list(
        self, actor: Principal, *, limit: int, after: str | None = None, name_prefix: str | None = None
    ) -> Page:
        """Applications by id; a token limited to one application sees only that one, a user
        token those of its teams."""
        policy.require(actor, Action.LIST_APPLICATIONS)
        scope = policy.scope(actor)
        with self.db.autocommit() as statement:
            applications = ApplicationRepository(statement)
            return keyset_page(
                lambda n: applications.list(
                    limit=n, after=after, name_prefix=name_prefix, only_id=scope.application_id, member_id=scope.member_id
                ),
                limit,
            )

    def update(self, actor: Principal, application_id: str, fields: dict[str, Any]) -> Application:
        """Change the fields given (`name`, `comments`, `team_id`, `description`, `icon`, `color`);
        the others keep their values. Moving the application between teams (or to or from none)
        needs an admin, or the owner role in the team it leaves and owner or admin in the team it
        joins."""
        with self.db.transaction() as tx:
            applications = ApplicationRepository(tx)
            current = reachable_application(tx, actor, applications.lock(application_id), application_id, write=True)
            changed = {k: v for k, v in fields.items() if k in EDITABLE_FIELDS and getattr(current, k) != v}
            if not changed:
                return current
            if "team_id" in changed:
                move = TeamMove(membership(tx, actor, current.team_id), membership(tx, actor, changed["team_id"]))
                policy.require(actor, Action.MOVE_APPLICATION, move)
            proposed = replace(current, **changed)
            updated = applications.update(
                application_id, name=proposed.name, comments=proposed.comments, team_id=proposed.team_id,
                description=proposed.description, icon=proposed.icon, color=proposed.color,
            )
            audit.record(
                tx, actor, "application.update", "application", application_id,
                {"before": {k: getattr(current, k) for k in changed}, "after": changed},
            )
            tx.commit()
        return updated

    def delete(self, actor: Principal, application_id: str) -> None:
        """Delete an application with its configurations, their revisions, its scoped tokens, its
        work items, repositories and documents; the documents' git history is kept under
        refs/deleted/<document id> (named in the audit event), as for a deleted user."""
        with self.db.transaction() as tx:
            applications = ApplicationRepository(tx)
            application = reachable_application(tx, actor, applications.lock(application_id), application_id, write=True)
            configurations = ConfigurationRepository(tx).lock_of_application(application_id)
            for configuration in configurations:
                changes.publish(
                    tx,
                    self.announce,
                    application_id=application_id,
                    configuration_id=configuration.id,
                    name=configuration.name,
                    revision=configuration.revision,
                    kind="deleted",
                )
            retirement = Retirement.lock(tx, application_id=application_id)
            parts = ProductRepository(tx).count_parts(application_id)
            applications.delete(application_id)
            audit.record(
                tx, actor, "application.delete", "application", application_id,
                {
                    "name": application.name,
                    "configurations": [
                        {"id": c.id, "name": c.name, "before_revision": c.revision} for c in configurations
                    ],
                    "documents": retirement.audit_detail(),
                    **parts,
                },
            )
            tx.commit()
        retirement.carry_out(self.store)


def reachable_application(
    tx: Transaction,
    actor: Principal,
    row: Application | None,
    application_id: str,
    *,
    write: bool = False,
    missing: NotFound | None = None,
) -> Application:
    """The row, once the caller may read (or write) it; NotFound (`missing`) when it is
    missing or outside a scoped token's application, which must look the same. The team's
    membership is looked up in the caller's transaction."""
    team = None if row is None else membership(tx, actor, row.team_id)
    require_reachable(
        actor, None if row is None else application_id, team, write=write,
        missing=missing or NotFound(f"application {application_id} not found"),
    )
    return row


def require_reachable(
    actor: Principal, application_id: str | None, team: TeamResource | None, *, write: bool, missing: NotFound
) -> None:
    """Raise `missing` unless the application exists (`application_id` is not None) and the caller
    may read (or write) it, its team being `team` with the caller's role; Forbidden where it may see
    but not write it."""
    try:
        policy.require(actor, Action.WRITE_APPLICATION if write else Action.READ_APPLICATION,
                       ApplicationResource(application_id, team))
    except NotFound:
        raise missing from None
    if application_id is None:
        raise missing
