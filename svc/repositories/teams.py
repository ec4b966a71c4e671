"""SQL for `teams` and `team_members`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from svc.db import Constraints, Transaction
from svc.errors import Conflict, Unprocessable


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    display_name: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Member:
    user_id: str
    username: str
    role: str
    added_at: datetime
    added_by: str


TEAM_COLUMNS = "id, name, display_name, description, created_at, updated_at"

# A broken rule of the teams table, as a 409 (taken) or 422 (invalid) naming it.
CONSTRAINTS: Constraints = {
    "teams_name_key": lambda p: Conflict(f"team name '{p['name']}' is already taken"),
    "teams_name_check": lambda p: Unprocessable("a team name is 1–256 letters, digits, '.', '_', '-'; not '.' or '..'"),
    "teams_display_name_check": lambda p: Unprocessable("a display name is at most 256 characters"),
    "teams_description_check": lambda p: Unprocessable("a description is at most 1024 characters"),
}
MEMBER_COLUMNS = "m.user_id, u.username, m.role, m.added_at, m.added_by"

INSERT = f"""
INSERT INTO teams (id, name, display_name, description)
VALUES (%(id)s, %(name)s, %(display_name)s, %(description)s)
RETURNING {TEAM_COLUMNS}
"""

GET = f"SELECT {TEAM_COLUMNS} FROM teams WHERE id = %(id)s"
# Writers of a team's documents hold the row against deletion (which locks it FOR UPDATE).
HOLD = f"{GET} FOR KEY SHARE"
# Every change of membership (and of the team's fields) takes this lock, so "is there
# another owner?" stays true until it commits. NO KEY UPDATE: it serializes those changes
# without waiting for the document writers' KEY SHARE.
LOCK_FOR_CHANGE = f"{GET} FOR NO KEY UPDATE"
LOCK = f"{GET} FOR UPDATE"

# Admins list every team; a user lists the teams it belongs to.
LIST = f"""
SELECT {TEAM_COLUMNS} FROM teams t
WHERE (%(after)s::text IS NULL OR t.id > %(after)s)
  AND (%(member_id)s::text IS NULL
       OR EXISTS (SELECT 1 FROM team_members m WHERE m.team_id = t.id AND m.user_id = %(member_id)s))
ORDER BY t.id
LIMIT %(limit)s
"""

UPDATE = f"""
UPDATE teams SET
    name = %(name)s, display_name = %(display_name)s, description = %(description)s, updated_at = now()
WHERE id = %(id)s
RETURNING {TEAM_COLUMNS}
"""

DELETE = "DELETE FROM teams WHERE id = %(id)s"

ROLE_OF = "SELECT role FROM team_members WHERE team_id = %(team_id)s AND user_id = %(user_id)s"

UPSERT_MEMBER = """
INSERT INTO team_members (team_id, user_id, role, added_by)
VALUES (%(team_id)s, %(user_id)s, %(role)s, %(added_by)s)
ON CONFLICT ON CONSTRAINT team_members_pkey
DO UPDATE SET role = EXCLUDED.role, added_by = EXCLUDED.added_by
"""

GET_MEMBER = f"""
SELECT {MEMBER_COLUMNS} FROM team_members m JOIN users u ON u.id = m.user_id
WHERE m.team_id = %(team_id)s AND m.user_id = %(user_id)s
"""

LIST_MEMBERS = f"""
SELECT {MEMBER_COLUMNS} FROM team_members m JOIN users u ON u.id = m.user_id
WHERE m.team_id = %(team_id)s AND (%(after)s::text IS NULL OR m.user_id > %(after)s)
ORDER BY m.user_id
LIMIT %(limit)s
"""

DELETE_MEMBER = "DELETE FROM team_members WHERE team_id = %(team_id)s AND user_id = %(user_id)s"

COUNT_OWNERS = "SELECT count(*) FROM team_members WHERE team_id = %(team_id)s AND role = 'owner'"

OWNED_BY = "SELECT team_id FROM team_members WHERE user_id = %(user_id)s AND role = 'owner' ORDER BY team_id"

# Teams in which this user is the only owner.
SOLELY_OWNED_BY = f"""
SELECT {TEAM_COLUMNS} FROM teams t
WHERE EXISTS (SELECT 1 FROM team_members m WHERE m.team_id = t.id AND m.user_id = %(user_id)s AND m.role = 'owner')
  AND NOT EXISTS (SELECT 1 FROM team_members m
                  WHERE m.team_id = t.id AND m.user_id <> %(user_id)s AND m.role = 'owner')
ORDER BY t.id
"""


class TeamRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(self, *, id: str, name: str, display_name: str | None, description: str | None) -> Team:
        params = {"id": id, "name": name, "display_name": display_name, "description": description}
        return self.tx.fetch_one(INSERT, params, row=Team, constraints=CONSTRAINTS)

    def get(self, team_id: str) -> Team | None:
        return self.tx.fetch_one(GET, {"id": team_id}, row=Team)

    def hold(self, team_id: str) -> Team | None:
        """The team, kept from being deleted until the transaction ends."""
        return self.tx.fetch_one(HOLD, {"id": team_id}, row=Team)

    def lock_for_change(self, team_id: str) -> Team | None:
        """The team, locked against other changes of it or its members until the transaction ends."""
        return self.tx.fetch_one(LOCK_FOR_CHANGE, {"id": team_id}, row=Team)

    def lock(self, team_id: str) -> Team | None:
        """The team, locked for deletion (waits for every writer holding it)."""
        return self.tx.fetch_one(LOCK, {"id": team_id}, row=Team)

    def list(self, *, limit: int, after: str | None, member_id: str | None) -> list[Team]:
        return self.tx.fetch_all(LIST, {"limit": limit, "after": after, "member_id": member_id}, row=Team)

    def update(self, team_id: str, *, name: str, display_name: str | None, description: str | None) -> Team:
        params = {"id": team_id, "name": name, "display_name": display_name, "description": description}
        return self.tx.fetch_one(UPDATE, params, row=Team, constraints=CONSTRAINTS)

    def delete(self, team_id: str) -> None:
        self.tx.execute(DELETE, {"id": team_id})

    def role_of(self, team_id: str, user_id: str | None) -> str | None:
        """A user's role in a team; None when not a member (or no user)."""
        if user_id is None:
            return None
        return self.tx.fetch_value(ROLE_OF, {"team_id": team_id, "user_id": user_id})

    def put_member(self, team_id: str, user_id: str, *, role: str, added_by: str) -> Member:
        self.tx.execute(UPSERT_MEMBER, {"team_id": team_id, "user_id": user_id, "role": role, "added_by": added_by})
        return self.member(team_id, user_id)

    def member(self, team_id: str, user_id: str) -> Member | None:
        return self.tx.fetch_one(GET_MEMBER, {"team_id": team_id, "user_id": user_id}, row=Member)

    def members(self, team_id: str, *, limit: int, after: str | None) -> list[Member]:
        return self.tx.fetch_all(LIST_MEMBERS, {"team_id": team_id, "limit": limit, "after": after}, row=Member)

    def remove_member(self, team_id: str, user_id: str) -> None:
        self.tx.execute(DELETE_MEMBER, {"team_id": team_id, "user_id": user_id})

    def owner_count(self, team_id: str) -> int:
        return self.tx.fetch_value(COUNT_OWNERS, {"team_id": team_id})

    def lock_owned_by(self, user_id: str) -> None:
        """Lock, against membership changes, every team this user owns."""
        for row in self.tx.fetch_all(OWNED_BY, {"user_id": user_id}):
            self.lock_for_change(row["team_id"])

    def solely_owned_by(self, user_id: str) -> list[Team]:
        return self.tx.fetch_all(SOLELY_OWNED_BY, {"user_id": user_id}, row=Team)
