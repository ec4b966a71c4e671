-- Announcing configuration changes after commit (issue 14): a writer no longer sends NOTIFY in
-- its transaction, so every worker also reads the events it may not have heard of. Ids come
-- from a sequence and do not commit in order; the writing transaction's id says which events
-- can still appear (those of transactions not finished at the previous read).

-- Nullable and without a rewrite: rows written before this migration keep NULL and are never
-- caught up (they were announced the old way).
ALTER TABLE configuration_events ADD COLUMN xid xid8;
ALTER TABLE configuration_events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();

COMMENT ON COLUMN configuration_events.xid IS 'The writing transaction (pg_current_xact_id()): workers catch up with every event whose xid is at least the oldest transaction still running at their previous read, since ids commit out of order.';

CREATE INDEX configuration_events_xid_idx ON configuration_events (xid);
