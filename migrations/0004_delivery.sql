-- Delivery: tell every worker's in-process caches when something they may hold went stale.
-- Triggers rather than application code, so a change made any way (API, CLI, psql) is announced.

CREATE FUNCTION notify_svc_invalidate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('svc_invalidate', TG_ARGV[0]);
    RETURN NULL;
END;
$$;

-- Cached principals: a revoked, changed or deleted token must stop working on the next request.
-- (last_used_at is left out on purpose: it changes on use and says nothing about access.)
CREATE TRIGGER api_tokens_invalidate
    AFTER UPDATE OF role, user_id, application_id, read_only, revoked_at, token_hash OR DELETE
    ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION notify_svc_invalidate('tokens');

-- Resolved configurations are cached by application name: a rename makes them stale.
CREATE TRIGGER applications_invalidate
    AFTER UPDATE OF name OR DELETE ON applications
    FOR EACH STATEMENT EXECUTE FUNCTION notify_svc_invalidate('applications');

-- Change stream retention is by time; this index keeps the pruning cheap.
CREATE INDEX configuration_events_occurred_at_idx ON configuration_events (occurred_at);
