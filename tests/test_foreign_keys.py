"""Every foreign key has an index that leads with its columns: deleting (or re-keying) the row it
references then finds the referencing rows by index instead of scanning their whole table."""

from __future__ import annotations

UNINDEXED_FOREIGN_KEYS = """
SELECT c.conrelid::regclass::text AS table_name, c.conname AS constraint_name
FROM pg_constraint c
WHERE c.contype = 'f'
  AND c.connamespace = 'public'::regnamespace
  AND NOT EXISTS (
      SELECT 1 FROM pg_index i
      WHERE i.indrelid = c.conrelid
        AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
        AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey
  )
ORDER BY 1, 2
"""

FOREIGN_KEYS = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace"


def test_every_foreign_key_has_an_index_on_its_columns(services):
    with services.db.transaction() as tx:
        assert tx.fetch_value(FOREIGN_KEYS) > 0  # the check below looks at something
        assert tx.fetch_all(UNINDEXED_FOREIGN_KEYS) == []
