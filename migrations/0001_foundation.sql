-- Foundation: identifiers, API tokens, audit trail.

-- Every primary key is a ULID generated in Python: 26 Crockford base32 characters.
CREATE DOMAIN ulid AS text
    CONSTRAINT ulid_format CHECK (VALUE ~ '^[0-7][0-9A-HJKMNP-TV-Z]{25}$');

CREATE TABLE api_tokens (
    id             ulid        NOT NULL,
    name           text        NOT NULL,
    role           text        NOT NULL,
    -- sha256 of the secret; the secret itself is never stored.
    token_hash     text        NOT NULL,
    user_id        ulid,
    application_id ulid,
    read_only      boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz,
    revoked_at     timestamptz,
    CONSTRAINT api_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT api_tokens_role_check CHECK (role IN ('admin', 'service', 'user')),
    CONSTRAINT api_tokens_name_check CHECK (length(name) BETWEEN 1 AND 256),
    CONSTRAINT api_tokens_user_role_check CHECK ((role = 'user') = (user_id IS NOT NULL)),
    CONSTRAINT api_tokens_application_role_check CHECK (application_id IS NULL OR role = 'service')
);

CREATE TABLE audit_events (
    id            ulid        NOT NULL,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    actor_token_id ulid,
    actor_name    text        NOT NULL,
    action        text        NOT NULL,
    resource_type text        NOT NULL,
    resource_id   text        NOT NULL,
    request_id    text,
    detail        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT audit_events_pkey PRIMARY KEY (id)
);

CREATE INDEX audit_events_resource_idx ON audit_events (resource_type, resource_id, id);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_token_id, id);
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at);
