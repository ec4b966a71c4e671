-- Streams end with their credentials (issue 22): every change that can take access away from an
-- open long-poll or event stream is announced on `svc_credentials`, in the transaction that makes
-- it, so every worker re-checks the callers of its open streams as soon as it commits. Triggers
-- rather than application code, so a change made any way (API, CLI, psql) is announced.
-- The payload names only the kind of row that changed: no id, no secret.

CREATE FUNCTION notify_svc_credentials() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('svc_credentials', TG_ARGV[0]);
    RETURN NULL;
END;
$$;

-- Revoked, changed or deleted (with its user or its application, by cascade).
CREATE TRIGGER api_tokens_credentials
    AFTER UPDATE OF role, user_id, application_id, read_only, reveal_secrets, revoked_at, token_hash OR DELETE
    ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION notify_svc_credentials('token');

CREATE TRIGGER users_credentials
    AFTER DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION notify_svc_credentials('user');

-- A user reaches a team application through its membership.
CREATE TRIGGER team_members_credentials
    AFTER UPDATE OF role, user_id, team_id OR DELETE ON team_members
    FOR EACH STATEMENT EXECUTE FUNCTION notify_svc_credentials('membership');

-- Moved into, out of or between teams. (A deletion already ends its streams, after the
-- `deleted` events of its configurations, through svc_invalidate; a token limited to the
-- application is deleted with it and announced above.)
CREATE TRIGGER applications_credentials
    AFTER UPDATE OF team_id ON applications
    FOR EACH STATEMENT EXECUTE FUNCTION notify_svc_credentials('application');
