"""SQL for `users`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from svc.db import Constraints, Transaction
from svc.errors import Conflict, Unprocessable

COLUMNS = "id, email, username, display_name, created_at, updated_at"

INSERT = f"""
INSERT INTO users (id, email, username, display_name)
VALUES (%(id)s, %(email)s, %(username)s, %(display_name)s)
RETURNING {COLUMNS}
"""

GET = f"SELECT {COLUMNS} FROM users WHERE id = %(id)s"
# Writers of a user's document hold the row against deletion; a deletion locks it first, so
# both take their locks in the same order (user, then document) and never deadlock.
HOLD = f"{GET} FOR KEY SHARE"
LOCK = f"{GET} FOR UPDATE"

LIST = f"""
SELECT {COLUMNS} FROM users
WHERE (%(after)s::text IS NULL OR id > %(after)s)
ORDER BY id
LIMIT %(limit)s
"""

# email and username are never NULL, so NULL means "leave as it is"; display_name may be
# cleared, so it carries its own flag.
UPDATE = f"""
UPDATE users SET
    email = coalesce(%(email)s, email),
    username = coalesce(%(username)s, username),
    display_name = CASE WHEN %(set_display_name)s THEN %(display_name)s ELSE display_name END,
    updated_at = now()
WHERE id = %(id)s
RETURNING {COLUMNS}
"""

DELETE = f"DELETE FROM users WHERE id = %(id)s RETURNING {COLUMNS}"

# A broken rule of the users table, as a 409 (taken) or 422 (invalid) naming it.
CONSTRAINTS: Constraints = {
    "users_email_lower_key": lambda p: Conflict(f"email '{p['email']}' is already taken"),
    "users_username_key": lambda p: Conflict(f"username '{p['username']}' is already taken"),
    "users_email_check": lambda p: Unprocessable(f"email '{p['email']}' is not an email address"),
    "users_username_check": lambda p: Unprocessable("a username is 1–256 letters, digits, '.', '_', '-'"),
    "users_display_name_check": lambda p: Unprocessable("a display name is at most 256 characters"),
}


@dataclass(frozen=True)
class User:
    id: str
    email: str
    username: str
    display_name: str | None
    created_at: datetime
    updated_at: datetime


class UserRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(self, *, id: str, email: str, username: str, display_name: str | None) -> User:
        params = {"id": id, "email": email, "username": username, "display_name": display_name}
        return self.tx.fetch_one(INSERT, params, row=User, constraints=CONSTRAINTS)

    def get(self, user_id: str) -> User | None:
        return self.tx.fetch_one(GET, {"id": user_id}, row=User)

    def hold(self, user_id: str) -> User | None:
        """The user, kept from being deleted until the transaction ends."""
        return self.tx.fetch_one(HOLD, {"id": user_id}, row=User)

    def lock(self, user_id: str) -> User | None:
        return self.tx.fetch_one(LOCK, {"id": user_id}, row=User)

    def list(self, *, limit: int, after: str | None) -> list[User]:
        return self.tx.fetch_all(LIST, {"limit": limit, "after": after}, row=User)

    def update(
        self,
        user_id: str,
        *,
        email: str | None,
        username: str | None,
        set_display_name: bool,
        display_name: str | None,
    ) -> User | None:
        params = {
            "id": user_id,
            "email": email,
            "username": username,
            "set_display_name": set_display_name,
            "display_name": display_name,
        }
        return self.tx.fetch_one(UPDATE, params, row=User, constraints=CONSTRAINTS)

    def delete(self, user_id: str) -> User | None:
        return self.tx.fetch_one(DELETE, {"id": user_id}, row=User)
