"""SQL over the sealed values of every configuration and revision: rotation batches and key samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from svc.db import Transaction, jsonb

# Rows are taken in key order and locked: a rotation beside a running service waits for a writer
# of the row (a short transaction) instead of overwriting its new revision.
CONFIGURATION_BATCH = """
SELECT id AS configuration_id, 0 AS revision, config, secret_paths FROM configurations
WHERE secret_paths <> '[]'::jsonb AND id > %(after_id)s
ORDER BY id
LIMIT %(limit)s
FOR UPDATE
"""

REVISION_BATCH = """
SELECT configuration_id, revision, config, secret_paths FROM configuration_revisions
WHERE secret_paths <> '[]'::jsonb AND (configuration_id, revision) > (%(after_id)s, %(after_revision)s)
ORDER BY configuration_id, revision
LIMIT %(limit)s
FOR UPDATE
"""

# The same state, sealed again: not a new revision, so no event and no audit entry.
SET_CONFIGURATION = "UPDATE configurations SET config = %(config)s WHERE id = %(configuration_id)s"

SET_REVISION = """
UPDATE configuration_revisions SET config = %(config)s
WHERE configuration_id = %(configuration_id)s AND revision = %(revision)s
"""

# Every revision of one configuration, locked: a value made secret is sealed in each of them.
REVISIONS_OF = """
SELECT configuration_id, revision, config, secret_paths FROM configuration_revisions
WHERE configuration_id = %(configuration_id)s
ORDER BY revision
FOR UPDATE
"""

# Revisions of one configuration with more of their values sealed (`revisions`: a JSON array of
# {"revision", "config", "secret_paths"}): the same states, so no event and no audit entry.
SET_REVISIONS = """
UPDATE configuration_revisions r
SET config = sealed.config, secret_paths = sealed.secret_paths
FROM jsonb_to_recordset(%(revisions)s::jsonb) AS sealed(revision integer, config jsonb, secret_paths jsonb)
WHERE r.configuration_id = %(configuration_id)s AND r.revision = sealed.revision
"""

# One configuration per key id found in a stored secret (for /ready). Reads every configuration
# with secrets: fine for thousands, to be sampled if that ever grows.
SAMPLES = """
SELECT DISTINCT ON (m[1]) m[1] AS key_id, c.id AS configuration_id, 0 AS revision, c.config, c.secret_paths
FROM configurations c, regexp_matches(c.config::text, 'svc-secret:v1:([A-Za-z0-9_.-]{1,32}):', 'g') AS m
WHERE c.secret_paths <> '[]'::jsonb
ORDER BY m[1], c.id
"""


@dataclass(frozen=True)
class SealedRow:
    """A stored config with its secret paths; `revision` 0 is the configuration row itself."""

    configuration_id: str
    revision: int
    config: Any
    secret_paths: list[str]
    key_id: str | None = None


class SecretRepository:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def configurations_after(self, after_id: str, limit: int) -> list[SealedRow]:
        return self.tx.fetch_all(CONFIGURATION_BATCH, {"after_id": after_id, "limit": limit}, row=SealedRow)

    def revisions_after(self, after_id: str, after_revision: int, limit: int) -> list[SealedRow]:
        params = {"after_id": after_id, "after_revision": after_revision, "limit": limit}
        return self.tx.fetch_all(REVISION_BATCH, params, row=SealedRow)

    def set_config(self, row: SealedRow, config: Any) -> None:
        params = {"configuration_id": row.configuration_id, "revision": row.revision, "config": jsonb(config)}
        self.tx.execute(SET_REVISION if row.revision else SET_CONFIGURATION, params)

    def revisions_of(self, configuration_id: str) -> list[SealedRow]:
        """Every revision of a configuration, oldest first, locked until the transaction ends."""
        return self.tx.fetch_all(REVISIONS_OF, {"configuration_id": configuration_id}, row=SealedRow)

    def set_revisions(self, configuration_id: str, revisions: list[tuple[int, Any, list[str]]]) -> None:
        """Store (revision, config, secret_paths) over those revisions of a configuration."""
        if revisions:
            rows = [{"revision": r, "config": config, "secret_paths": paths} for r, config, paths in revisions]
            self.tx.execute(SET_REVISIONS, {"configuration_id": configuration_id, "revisions": jsonb(rows)})

    def samples(self) -> list[SealedRow]:
        return self.tx.fetch_all(SAMPLES, row=SealedRow)
