-- Applications, their versioned JSON configurations, and the change events that announce them.

CREATE TABLE applications (
    id         ulid        NOT NULL,
    name       text        NOT NULL,
    comments   text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT applications_pkey PRIMARY KEY (id),
    CONSTRAINT applications_name_key UNIQUE (name),
    -- PostgreSQL regexes cap repetition counts at 255, hence length() for the upper bound.
    CONSTRAINT applications_name_check CHECK (name ~ '^[A-Za-z0-9._-]+$' AND length(name) <= 256),
    CONSTRAINT applications_comments_check CHECK (length(comments) <= 1024)
);

-- `?name_prefix=` is a LIKE 'prefix%' search; text_pattern_ops lets it use an index under any collation.
CREATE INDEX applications_name_pattern_idx ON applications (name text_pattern_ops);

-- A token limited to an application dies with it.
ALTER TABLE api_tokens
    ADD CONSTRAINT api_tokens_application_id_fkey
    FOREIGN KEY (application_id) REFERENCES applications (id) ON DELETE CASCADE;

CREATE TABLE configurations (
    id             ulid        NOT NULL,
    application_id ulid        NOT NULL,
    name           text        NOT NULL,
    comments       text,
    config         jsonb       NOT NULL,
    -- A JSON Schema every new `config` must satisfy; NULL = no schema.
    schema         jsonb,
    -- The current revision: the highest number in configuration_revisions for this row.
    revision       integer     NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT configurations_pkey PRIMARY KEY (id),
    CONSTRAINT configurations_application_id_fkey
        FOREIGN KEY (application_id) REFERENCES applications (id) ON DELETE CASCADE,
    CONSTRAINT configurations_application_id_name_key UNIQUE (application_id, name),
    CONSTRAINT configurations_name_check CHECK (name ~ '^[A-Za-z0-9._-]+$' AND length(name) <= 256),
    CONSTRAINT configurations_comments_check CHECK (length(comments) <= 1024),
    CONSTRAINT configurations_config_check CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT configurations_schema_check CHECK (schema IS NULL OR jsonb_typeof(schema) = 'object'),
    CONSTRAINT configurations_revision_check CHECK (revision >= 1)
);

-- Keyset pages of one application's configurations.
CREATE INDEX configurations_application_id_idx ON configurations (application_id, id);
-- `?contains=` is `config @> …`; jsonb_path_ops is smaller and faster than the default for @>.
CREATE INDEX configurations_config_idx ON configurations USING gin (config jsonb_path_ops);

CREATE TABLE configuration_revisions (
    configuration_id ulid        NOT NULL,
    revision         integer     NOT NULL,
    config           jsonb       NOT NULL,
    -- The name of the token that made the change.
    author           text        NOT NULL,
    message          text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT configuration_revisions_pkey PRIMARY KEY (configuration_id, revision),
    CONSTRAINT configuration_revisions_configuration_id_fkey
        FOREIGN KEY (configuration_id) REFERENCES configurations (id) ON DELETE CASCADE,
    CONSTRAINT configuration_revisions_revision_check CHECK (revision >= 1),
    CONSTRAINT configuration_revisions_message_check CHECK (length(message) <= 1024)
);

-- One row per committed configuration change, for delivery to waiting clients. No foreign keys:
-- the event of a deletion outlives what it describes.
CREATE TABLE configuration_events (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id   ulid        NOT NULL,
    configuration_id ulid        NOT NULL,
    name             text        NOT NULL,
    revision         integer     NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
    occurred_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX configuration_events_application_id_idx ON configuration_events (application_id, id);
