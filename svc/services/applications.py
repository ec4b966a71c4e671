"""Applications: the owners of configurations."""

from __future__ import annotations

from typing import Any

import psycopg2.errors

from svc.db import Database, constraint_name
from svc.errors import Conflict, Forbidden, NotFound
from svc.ids import new_id
from svc.repositories.applications import ApplicationRepository
from svc.repositories.configurations import ConfigurationRepository
from svc.services import audit, changes
from svc.services.auth import Principal
from svc.services.pagination import Page, page_of

EDITABLE_FIELDS = ("name", "comments")


class ApplicationService:
    def __init__(self, db: Database, *, announce: changes.Announce) -> None:
        self.db = db
        self.announce = announce

    def create(self, actor: Principal, *, name: str, comments: str | None = None) -> dict[str, Any]:
        actor.require_configuration_access(write=True)
        if actor.application_id is not None:
            raise Forbidden("a token limited to one application cannot create applications")
        try:
            with self.db.transaction() as tx:
                application = ApplicationRepository(tx).insert(id=new_id(), name=name, comments=comments)
                audit.record(
                    tx, actor, "application.create", "application", application["id"],
                    {"name": name, "comments": comments},
                )
                tx.commit()
        except psycopg2.errors.UniqueViolation as exc:
            raise _name_conflict(exc, name)
        return application

    def get(self, actor: Principal, application_id: str) -> dict[str, Any]:
        actor.require_configuration_access(write=False)
        with self.db.transaction() as tx:
            return visible_application(actor, ApplicationRepository(tx).get(application_id), application_id)

    def list(
        self, actor: Principal, *, limit: int, after: str | None = None, name_prefix: str | None = None
    ) -> Page:
        """Applications by id; a token limited to one application sees only that one."""
        actor.require_configuration_access(write=False)
        with self.db.transaction() as tx:
            rows = ApplicationRepository(tx).list(
                limit=limit + 1, after=after, name_prefix=name_prefix, only_id=actor.application_id
            )
        return page_of(rows, limit)

    def update(self, actor: Principal, application_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Change the fields given (`name`, `comments`); the others keep their values."""
        actor.require_configuration_access(write=True)
        try:
            with self.db.transaction() as tx:
                applications = ApplicationRepository(tx)
                current = visible_application(actor, applications.lock(application_id), application_id)
                changed = {k: v for k, v in fields.items() if k in EDITABLE_FIELDS and current[k] != v}
                if not changed:
                    return current
                proposed = {k: current[k] for k in EDITABLE_FIELDS} | changed
                updated = applications.update(application_id, **proposed)
                audit.record(
                    tx, actor, "application.update", "application", application_id,
                    {"before": {k: current[k] for k in changed}, "after": changed},
                )
                tx.commit()
        except psycopg2.errors.UniqueViolation as exc:
            raise _name_conflict(exc, fields.get("name"))
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
                    configuration_id=configuration["id"],
                    name=configuration["name"],
                    revision=configuration["revision"],
                    kind="deleted",
                )
            applications.delete(application_id)
            audit.record(
                tx, actor, "application.delete", "application", application_id,
                {
                    "name": application["name"],
                    "configurations": [
                        {"id": c["id"], "name": c["name"], "before_revision": c["revision"]} for c in configurations
                    ],
                },
            )
            tx.commit()


def visible_application(actor: Principal, row: dict[str, Any] | None, application_id: str) -> dict[str, Any]:
    """The row, or NotFound when it is missing or outside the caller's scope (which must look the same)."""
    if row is None or not actor.can_see_application(application_id):
        raise NotFound(f"application {application_id} not found")
    return row


def _name_conflict(exc: psycopg2.Error, name: str | None) -> Exception:
    """The 409 for a taken name; any other unique violation is a bug and stays itself."""
    if constraint_name(exc) != "applications_name_key":
        return exc
    return Conflict(f"application name '{name}' is already taken")
