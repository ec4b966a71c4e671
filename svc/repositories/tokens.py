"""SQL for `api_tokens`."""

from __future__ import annotations

from typing import Any

from svc.db import Transaction

COLUMNS = "id, name, role, user_id, application_id, read_only, created_at, last_used_at, revoked_at"

INSERT = f"""
INSERT INTO api_tokens (id, name, role, token_hash, user_id, application_id, read_only)
VALUES (%(id)s, %(name)s, %(role)s, %(token_hash)s, %(user_id)s, %(application_id)s, %(read_only)s)
RETURNING {COLUMNS}
"""

# One round trip: find a live token and, at most once a minute, stamp its use.
AUTHENTICATE = f"""
WITH found AS (
    SELECT {COLUMNS} FROM api_tokens
    WHERE token_hash = %(token_hash)s AND revoked_at IS NULL
), touched AS (
    UPDATE api_tokens SET last_used_at = now()
    WHERE id = (SELECT id FROM found)
      AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
)
SELECT {COLUMNS} FROM found
"""

LIST = f"""
SELECT {COLUMNS} FROM api_tokens
WHERE (%(after)s::text IS NULL OR id > %(after)s)
ORDER BY id
LIMIT %(limit)s
"""

GET = f"SELECT {COLUMNS} FROM api_tokens WHERE id = %(id)s"

REVOKE = f"""
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s
RETURNING {COLUMNS}
"""

COUNT_ALL = "SELECT count(*) FROM api_tokens"

LOCK_BOOTSTRAP = "SELECT pg_advisory_xact_lock(hashtext('svc.bootstrap_token'))"


class TokenRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(self, **fields: Any) -> dict[str, Any]:
        return self.tx.fetch_one(INSERT, fields)

    def authenticate(self, token_hash: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(AUTHENTICATE, {"token_hash": token_hash})

    def list(self, *, limit: int, after: str | None) -> list[dict[str, Any]]:
        return self.tx.fetch_all(LIST, {"limit": limit, "after": after})

    def get(self, token_id: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(GET, {"id": token_id})

    def revoke(self, token_id: str) -> dict[str, Any] | None:
        return self.tx.fetch_one(REVOKE, {"id": token_id})

    def count(self) -> int:
        return self.tx.fetch_value(COUNT_ALL)

    def lock_bootstrap(self) -> None:
        """Serialise bootstrap checks so two starting servers print at most one token."""
        self.tx.execute(LOCK_BOOTSTRAP)
