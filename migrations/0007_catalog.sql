-- The catalog: skills, MCP servers and tools. Each item's content is a document (kind =
-- the item's type) owned by the item's owner, so an owner now has many documents of one
-- kind: the one-per-owner rule stays only for claude.md.

ALTER TABLE documents DROP CONSTRAINT documents_owner_user_id_kind_key;
ALTER TABLE documents DROP CONSTRAINT documents_owner_team_id_kind_key;
CREATE UNIQUE INDEX documents_owner_user_id_claude_md_key ON documents (owner_user_id) WHERE kind = 'claude_md';
CREATE UNIQUE INDEX documents_owner_team_id_claude_md_key ON documents (owner_team_id) WHERE kind = 'claude_md';
CREATE INDEX documents_owner_team_id_idx ON documents (owner_team_id) WHERE owner_team_id IS NOT NULL;

-- The words a search matches: name (split at '.', '/', '_', '-'), tags and description.
-- A function so the generated column and its GIN index share one immutable expression.
CREATE FUNCTION catalog_search_vector(name text, description text, tags text[]) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN setweight(to_tsvector('english'::regconfig, translate(name, './_-', '    ')), 'A')
    || setweight(to_tsvector('english'::regconfig, coalesce(array_to_string(tags, ' '), '')), 'B')
    || setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C');
COMMENT ON FUNCTION catalog_search_vector(text, text, text[]) IS
    'The search vector of a catalog item: name (weight A, split at . / _ -), tags (B), description (C).';

CREATE TABLE catalog_items (
    id            ulid        NOT NULL,
    owner_user_id ulid,
    owner_team_id ulid,
    type          text        NOT NULL,
    name          text        NOT NULL,
    description   text        NOT NULL,
    tags          text[]      NOT NULL DEFAULT '{}',
    status        text        NOT NULL DEFAULT 'active',
    install_count integer     NOT NULL DEFAULT 0,
    document_id   ulid        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    search        tsvector    GENERATED ALWAYS AS (catalog_search_vector(name, description, tags)) STORED,
    CONSTRAINT catalog_items_pkey PRIMARY KEY (id),
    CONSTRAINT catalog_items_owner_check CHECK (num_nonnulls(owner_user_id, owner_team_id) = 1),
    CONSTRAINT catalog_items_owner_user_id_fkey FOREIGN KEY (owner_user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT catalog_items_owner_team_id_fkey FOREIGN KEY (owner_team_id) REFERENCES teams (id) ON DELETE CASCADE,
    CONSTRAINT catalog_items_document_id_fkey FOREIGN KEY (document_id) REFERENCES documents (id) ON DELETE CASCADE,
    CONSTRAINT catalog_items_document_id_key UNIQUE (document_id),
    -- Exactly one owner column is set, so NULLS NOT DISTINCT makes this "per owner".
    CONSTRAINT catalog_items_owner_type_name_key UNIQUE NULLS NOT DISTINCT (owner_user_id, owner_team_id, type, name),
    CONSTRAINT catalog_items_type_check CHECK (type IN ('skill', 'mcp', 'tool')),
    CONSTRAINT catalog_items_name_check CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT catalog_items_description_check CHECK (length(description) <= 1024),
    CONSTRAINT catalog_items_tags_check CHECK (cardinality(tags) <= 20 AND array_position(tags, NULL) IS NULL),
    CONSTRAINT catalog_items_status_check CHECK (status IN ('active', 'deprecated')),
    CONSTRAINT catalog_items_install_count_check CHECK (install_count >= 0)
);
CREATE INDEX catalog_items_search_idx ON catalog_items USING gin (search);
CREATE INDEX catalog_items_tags_idx ON catalog_items USING gin (tags);
CREATE INDEX catalog_items_owner_team_id_idx ON catalog_items (owner_team_id, id);
COMMENT ON TABLE catalog_items IS
    'Skills, MCP server definitions and tools. Metadata here; the content is the document document_id (versions in git).';
COMMENT ON COLUMN catalog_items.name IS
    'Unique per owner and type; the content must carry the same name (skill front matter, server.json, tool name).';
COMMENT ON COLUMN catalog_items.install_count IS
    'How many distinct users installed the item; kept by a trigger on catalog_installs.';
COMMENT ON COLUMN catalog_items.search IS 'Full-text search vector over name, tags and description (GIN-indexed).';
COMMENT ON COLUMN catalog_items.status IS 'deprecated items are found by search only when asked for.';

CREATE TABLE catalog_releases (
    item_id    ulid        NOT NULL,
    version    text        NOT NULL,
    commit_sha text        NOT NULL,
    notes      text,
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT catalog_releases_pkey PRIMARY KEY (item_id, version),
    CONSTRAINT catalog_releases_item_id_fkey FOREIGN KEY (item_id) REFERENCES catalog_items (id) ON DELETE CASCADE,
    CONSTRAINT catalog_releases_version_check CHECK (length(version) BETWEEN 5 AND 256),
    CONSTRAINT catalog_releases_commit_sha_check CHECK (commit_sha ~ '^[0-9a-f]{40}$'),
    CONSTRAINT catalog_releases_notes_check CHECK (length(notes) <= 4096)
);
COMMENT ON TABLE catalog_releases IS
    'Semantic versions pinned to versions of an item''s content; immutable. Each is also the git ref refs/releases/<item id>/<version>.';
COMMENT ON COLUMN catalog_releases.created_by IS 'Who made the release: a username or a token name.';

CREATE TABLE catalog_installs (
    item_id      ulid        NOT NULL,
    user_id      ulid        NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT catalog_installs_pkey PRIMARY KEY (item_id, user_id),
    CONSTRAINT catalog_installs_item_id_fkey FOREIGN KEY (item_id) REFERENCES catalog_items (id) ON DELETE CASCADE,
    CONSTRAINT catalog_installs_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX catalog_installs_user_id_idx ON catalog_installs (user_id, item_id);
COMMENT ON TABLE catalog_installs IS 'Which user uses which item (what GET /me/bundle packs); one row per user and item.';

-- A trigger, so the count stays right however rows go (a user deleted cascades here too).
CREATE FUNCTION catalog_installs_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE catalog_items SET install_count = install_count + 1 WHERE id = NEW.item_id;
    ELSE
        UPDATE catalog_items SET install_count = install_count - 1 WHERE id = OLD.item_id;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION catalog_installs_count() IS 'Keeps catalog_items.install_count equal to its number of installs.';
CREATE TRIGGER catalog_installs_count_trigger AFTER INSERT OR DELETE ON catalog_installs
    FOR EACH ROW EXECUTE FUNCTION catalog_installs_count();
