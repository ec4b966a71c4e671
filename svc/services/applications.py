"""Applications: the owners of configurations."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from svc.db import Database
from svc.errors import Forbidden, NotFound
from svc.ids import new_id
from svc.repositories.applications import Application, ApplicationRepository
from svc.repositories.configurations import ConfigurationRepository
from svc.services import audit, changes
from svc.services.auth import Principal
from svc.services.pagination import Page, keyset_page

EDITABLE_FIELDS = ("name", "comments")


class ApplicationService:
    def __init__(self, db: Database, *, announce: changes.Announce) -> None:
        self.db = db
        self.announce = announce

    def create(self, actor: Principal, *, name: str, comments: str | None = None) -> Application:
        actor.require_configuration_access(write=True)
        if actor.application_id is not None:
            raise Forbidden("a token limited to one application cannot create applications")
        with self.db.transaction() as tx:
            application = ApplicationRepository(tx).insert(id=new_id(), name=name, comments=comments)
            audit.record(
                tx, actor, "application.create", "application", application.id,
                {"name": name, "comments": comments},
            )
            tx.commit()
        return application

    def get(self, actor: Principal, application_id: str) -> Application:
        actor.require_configuration_access(write=False)
        with self.db.transaction() as tx:
            return visible_application(actor, ApplicationRepository(tx).get(application_id), application_id)

    def list(
        self, actor: Principal, *, limit: int, after: str | None = None, name_prefix: str | None = None
    ) -> Page:
        """Applications by id; a token limited to one application sees only that one."""
        actor.require_configuration_access(write=False)
        with self.db.transaction() as tx:
            applications = ApplicationRepository(tx)
            return keyset_page(
                lambda n: applications.list(
                    limit=n, after=after, name_prefix=name_prefix, only_id=actor.application_id
                ),
                limit,
            )

    def update(self, actor: Principal, application_id: str, fields: dict[str, Any]) -> Application:
        """Change the fields given (`name`, `comments`); the others keep their values."""
        actor.require_configuration_access(write=True)
        with self.db.transaction() as tx:
            applications = ApplicationRepository(tx)
            current = visible_application(actor, applications.lock(application_id), application_id)
            changed = {k: v for k, v in fields.items() if k in EDITABLE_FIELDS and getattr(current, k) != v}
            if not changed:
                return current
            proposed = replace(current, **changed)
            updated = applications.update(application_id, name=proposed.name, comments=proposed.comments)
            audit.record(
                tx, actor, "application.update", "application", application_id,
                {"before": {k: getattr(current, k) for k in changed}, "after": changed},
            )
            tx.commit()
        return updated

    def delete(self, actor: Principal, application_id: str) -> None:
        """Delete an application with its configurations, their revisions and its scoped tokens."""
        actor.require_configuration_access(write=True)
        with self.db.transaction() as tx:
            applications = ApplicationRepository(tx)
            application = visible_application(actor, applications.lock(application_id), application_id)
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
            applications.delete(application_id)
            audit.record(
                tx, actor, "application.delete", "application", application_id,
                {
                    "name": application.name,
                    "configurations": [
                        {"id": c.id, "name": c.name, "before_revision": c.revision} for c in configurations
                    ],
                },
            )
            tx.commit()


def visible_application(actor: Principal, row: Application | None, application_id: str) -> Application:
    """The row, or NotFound when it is missing or outside the caller's scope (which must look the same)."""
    if row is None or not actor.can_see_application(application_id):
        raise NotFound(f"application {application_id} not found")
    return row

