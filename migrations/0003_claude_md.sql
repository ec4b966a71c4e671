-- Users and their claude.md documents. The bytes of every version live in the bare git
-- repository (one ref per document: refs/docs/<document id>); PostgreSQL is the source of
-- truth for which versions exist.

CREATE TABLE users (
    id           ulid        NOT NULL,
    -- Kept as entered; unique regardless of case (users_email_lower_key).
    email        text        NOT NULL,
    username     text        NOT NULL,
    display_name text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_username_check CHECK (username ~ '^[A-Za-z0-9._-]+$' AND length(username) <= 256),
    -- No whitespace or angle brackets: the email is the author address of git commits.
    CONSTRAINT users_email_check CHECK (length(email) <= 320 AND email ~ '^[^@[:space:]<>]+@[^@[:space:]<>]+$'),
    CONSTRAINT users_display_name_check CHECK (length(display_name) <= 256)
);

CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- Tokens of a deleted user go with it.
ALTER TABLE api_tokens
    ADD CONSTRAINT api_tokens_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);

-- One document per user. The row is created in the transaction of the first save, so a
-- committed row always has a head; version 0 / NULL exists only inside that transaction.
CREATE TABLE claude_md_documents (
    id           ulid        NOT NULL,
    user_id      ulid        NOT NULL,
    -- The newest version: its number and its git commit (the expected value of the ref).
    head_version integer     NOT NULL DEFAULT 0,
    head_sha     text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT claude_md_documents_pkey PRIMARY KEY (id),
    CONSTRAINT claude_md_documents_user_id_key UNIQUE (user_id),
    CONSTRAINT claude_md_documents_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT claude_md_documents_head_version_check CHECK (head_version >= 0),
    CONSTRAINT claude_md_documents_head_sha_check CHECK (head_sha ~ '^[0-9a-f]{40}$'),
    CONSTRAINT claude_md_documents_head_check CHECK ((head_version = 0) = (head_sha IS NULL))
);

-- Every saved version. Numbers start at 1 per document and have no gaps.
CREATE TABLE claude_md_versions (
    document_id ulid        NOT NULL,
    version     integer     NOT NULL,
    commit_sha  text        NOT NULL,
    author      text        NOT NULL,
    message     text        NOT NULL,
    size_bytes  integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT claude_md_versions_pkey PRIMARY KEY (document_id, version),
    CONSTRAINT claude_md_versions_commit_sha_key UNIQUE (document_id, commit_sha),
    CONSTRAINT claude_md_versions_document_id_fkey
        FOREIGN KEY (document_id) REFERENCES claude_md_documents (id) ON DELETE CASCADE,
    CONSTRAINT claude_md_versions_version_check CHECK (version >= 1),
    CONSTRAINT claude_md_versions_commit_sha_check CHECK (commit_sha ~ '^[0-9a-f]{40}$'),
    CONSTRAINT claude_md_versions_size_bytes_check CHECK (size_bytes >= 0)
);
