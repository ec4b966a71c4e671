"""SQL for `users`."""

from __future__ import annotations

from typing import Any

from svc.db import Transaction

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


class UserRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(self, **fields: Any) -> dict[str, Any]:
        return self.tx.fetch_one(INSERT, fields)

    def get(self, user_id: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(GET, {"id": user_id})

    def hold(self, user_id: str) -> dict[str, Any] | None:
        """The user, kept from being deleted until the transaction ends."""
        return self.tx.fetch_one(HOLD, {"id": user_id})

    def lock(self, user_id: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(LOCK, {"id": user_id})

    def list(self, *, limit: int, after: str | None) -> list[dict[str, Any]]:
        return self.tx.fetch_all(LIST, {"limit": limit, "after": after})

    def update(
        self,
        user_id: str,
        *,
        email: str | None,
        username: str | None,
        set_display_name: bool,
        display_name: str | None,
    ) -> dict[str, Any] | None:
        return self.tx.fetch_one(
            UPDATE,
            {
                "id": user_id,
                "email": email,
                "username": username,
                "set_display_name": set_display_name,
                "display_name": display_name,
            },
        )

    def delete(self, user_id: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(DELETE, {"id": user_id})
