"""SQL for `applications`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from svc.db import Constraints, Transaction
from svc.errors import Conflict, Unprocessable

COLUMNS = "id, name, comments, team_id, description, icon, color, created_at, updated_at"

INSERT = f"""
INSERT INTO applications (id, name, comments, team_id, description, icon, color)
VALUES (%(id)s, %(name)s, %(comments)s, %(team_id)s, %(description)s, %(icon)s, %(color)s)
RETURNING {COLUMNS}
"""

GET = f"SELECT {COLUMNS} FROM applications WHERE id = %(id)s"

LOCK = f"SELECT {COLUMNS} FROM applications WHERE id = %(id)s FOR UPDATE"

# Keeps the application from being deleted (not from being changed) until the transaction ends.
HOLD = f"SELECT {COLUMNS} FROM applications WHERE id = %(id)s FOR KEY SHARE"

# `only_id` narrows the list to the one application a scoped token may see; `member_id` to
# the applications of the teams a user belongs to.
LIST = f"""
SELECT {COLUMNS} FROM applications
WHERE (%(after)s::text IS NULL OR id > %(after)s)
  AND (%(name_pattern)s::text IS NULL OR name LIKE %(name_pattern)s ESCAPE '\\')
  AND (%(only_id)s::text IS NULL OR id = %(only_id)s)
  AND (%(member_id)s::text IS NULL
       OR team_id IN (SELECT team_id FROM team_members WHERE user_id = %(member_id)s))
ORDER BY id
LIMIT %(limit)s
"""

UPDATE = f"""
UPDATE applications
SET name = %(name)s, comments = %(comments)s, team_id = %(team_id)s,
    description = %(description)s, icon = %(icon)s, color = %(color)s, updated_at = now()
WHERE id = %(id)s
RETURNING {COLUMNS}
"""

DELETE = "DELETE FROM applications WHERE id = %(id)s"

OF_TEAM = f"SELECT {COLUMNS} FROM applications WHERE team_id = %(team_id)s ORDER BY id"

CONSTRAINTS: Constraints = {
    "applications_name_key": lambda p: Conflict(f"application name '{p['name']}' is already taken"),
    "applications_team_id_fkey": lambda p: Unprocessable(f"team_id {p['team_id']} names no team"),
}


@dataclass(frozen=True)
class Application:
    id: str
    name: str
    comments: str | None
    team_id: str | None
    description: str | None
    icon: str | None
    color: str | None
    created_at: datetime
    updated_at: datetime


def prefix_pattern(prefix: str) -> str:
    """A LIKE pattern matching names that start with `prefix` taken literally."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class ApplicationRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(
        self,
        *,
        id: str,
        name: str,
        comments: str | None,
        team_id: str | None,
        description: str | None = None,
        icon: str | None = None,
        color: str | None = None,
    ) -> Application:
        params = {
            "id": id, "name": name, "comments": comments, "team_id": team_id,
            "description": description, "icon": icon, "color": color,
        }
        return self.tx.fetch_one(INSERT, params, row=Application, constraints=CONSTRAINTS)

    def get(self, application_id: str) -> Application | None:
        return self.tx.fetch_one(GET, {"id": application_id}, row=Application)

    def lock(self, application_id: str) -> Application | None:
        """The row, locked until the transaction ends (no configuration can be added meanwhile)."""
        return self.tx.fetch_one(LOCK, {"id": application_id}, row=Application)

    def hold(self, application_id: str) -> Application | None:
        """The row, kept from being deleted until the transaction ends (writes of its parts)."""
        return self.tx.fetch_one(HOLD, {"id": application_id}, row=Application)

    def list(
        self, *, limit: int, after: str | None, name_prefix: str | None, only_id: str | None, member_id: str | None
    ) -> list[Application]:
        params = {
            "limit": limit,
            "after": after,
            "name_pattern": None if name_prefix is None else prefix_pattern(name_prefix),
            "only_id": only_id,
            "member_id": member_id,
        }
        return self.tx.fetch_all(LIST, params, row=Application)

    def update(
        self,
        application_id: str,
        *,
        name: str,
        comments: str | None,
        team_id: str | None,
        description: str | None,
        icon: str | None,
        color: str | None,
    ) -> Application:
        params = {
            "id": application_id, "name": name, "comments": comments, "team_id": team_id,
            "description": description, "icon": icon, "color": color,
        }
        return self.tx.fetch_one(UPDATE, params, row=Application, constraints=CONSTRAINTS)

    def of_team(self, team_id: str) -> list[Application]:
        return self.tx.fetch_all(OF_TEAM, {"team_id": team_id}, row=Application)

    def delete(self, application_id: str) -> None:
        self.tx.execute(DELETE, {"id": application_id})
