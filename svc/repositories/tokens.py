"""SQL for `api_tokens`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from svc.db import Constraints, Transaction
from svc.errors import Unprocessable

COLUMNS = "id, name, role, user_id, application_id, read_only, reveal_secrets, created_at, last_used_at, revoked_at"

INSERT = f"""
INSERT INTO api_tokens (id, name, role, token_hash, user_id, application_id, read_only, reveal_secrets)
VALUES (%(id)s, %(name)s, %(role)s, %(token_hash)s, %(user_id)s, %(application_id)s, %(read_only)s,
        %(reveal_secrets)s)
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

REVOKE = f"""
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s
RETURNING {COLUMNS}
"""

LIVE = f"SELECT {COLUMNS} FROM api_tokens WHERE id = %(id)s AND revoked_at IS NULL"

COUNT_ALL = "SELECT count(*) FROM api_tokens"

LOCK_BOOTSTRAP = "SELECT pg_advisory_xact_lock(hashtext('svc.bootstrap_token'))"

# Foreign keys added by later migrations; a violation means the id names nothing.
CONSTRAINTS: Constraints = {
    "api_tokens_user_id_fkey": lambda p: Unprocessable("user_id does not name an existing user"),
    "api_tokens_application_id_fkey": lambda p: Unprocessable("application_id does not name an existing application"),
}


@dataclass(frozen=True)
class Token:
    """A token as shown to admins: never its secret or hash."""

    id: str
    name: str
    role: str
    user_id: str | None
    application_id: str | None
    read_only: bool
    reveal_secrets: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def insert(
        self,
        *,
        id: str,
        name: str,
        role: str,
        token_hash: str,
        user_id: str | None,
        application_id: str | None,
        read_only: bool,
        reveal_secrets: bool = False,
    ) -> Token:
        params = {
            "id": id,
            "name": name,
            "role": role,
            "token_hash": token_hash,
            "user_id": user_id,
            "application_id": application_id,
            "read_only": read_only,
            "reveal_secrets": reveal_secrets,
        }
        return self.tx.fetch_one(INSERT, params, row=Token, constraints=CONSTRAINTS)

    def authenticate(self, token_hash: str) -> Token | None:
        return self.tx.fetch_one(AUTHENTICATE, {"token_hash": token_hash}, row=Token)

    def list(self, *, limit: int, after: str | None) -> list[Token]:
        return self.tx.fetch_all(LIST, {"limit": limit, "after": after}, row=Token)

    def revoke(self, token_id: str) -> Token | None:
        return self.tx.fetch_one(REVOKE, {"id": token_id}, row=Token)

    def live(self, token_id: str) -> Token | None:
        """The token, unless it is revoked or gone."""
        return self.tx.fetch_one(LIVE, {"id": token_id}, row=Token)

    def count(self) -> int:
        return self.tx.fetch_value(COUNT_ALL)

    def lock_bootstrap(self) -> None:
        """Serialise bootstrap checks so two starting servers print at most one token."""
        self.tx.execute(LOCK_BOOTSTRAP)
