-- Applications as products (issue 24): an application's description, icon and colour; its
-- documents (a kind of the documents mechanism, owned by the application), its work items and
-- the source repositories imported from GitHub. Deleting an application deletes all of them.

ALTER TABLE applications
    ADD COLUMN description text,
    ADD COLUMN icon        text,
    ADD COLUMN color       text,
    ADD CONSTRAINT applications_description_check CHECK (length(description) <= 4096),
    ADD CONSTRAINT applications_icon_check CHECK (length(icon) BETWEEN 1 AND 16),
    ADD CONSTRAINT applications_color_check CHECK (color ~ '^#[0-9a-f]{6}$');
COMMENT ON COLUMN applications.icon IS 'A short string shown beside the name, such as an emoji.';
COMMENT ON COLUMN applications.color IS 'A colour as #rrggbb (lower case).';

-- Documents may now be owned by an application.
ALTER TABLE documents
    ADD COLUMN owner_application_id ulid,
    DROP CONSTRAINT documents_kind_check,
    DROP CONSTRAINT documents_owner_check,
    ADD CONSTRAINT documents_kind_check CHECK (kind IN ('claude_md', 'skill', 'mcp', 'tool', 'application_document')),
    ADD CONSTRAINT documents_owner_check CHECK (num_nonnulls(owner_user_id, owner_team_id, owner_application_id) = 1),
    ADD CONSTRAINT documents_owner_application_id_fkey
        FOREIGN KEY (owner_application_id) REFERENCES applications (id) ON DELETE CASCADE;
CREATE INDEX documents_owner_application_id_idx ON documents (owner_application_id) WHERE owner_application_id IS NOT NULL;

CREATE TABLE source_repositories (
    id             ulid        NOT NULL,
    application_id ulid        NOT NULL,
    name           text        NOT NULL,
    full_name      text        NOT NULL,
    description    text,
    url            text,
    default_branch text,
    is_private     boolean     NOT NULL DEFAULT false,
    language       text,
    github_id      bigint,
    stars_count    integer     NOT NULL DEFAULT 0,
    forks_count    integer     NOT NULL DEFAULT 0,
    revision       integer     NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT source_repositories_pkey PRIMARY KEY (id),
    CONSTRAINT source_repositories_application_id_fkey
        FOREIGN KEY (application_id) REFERENCES applications (id) ON DELETE CASCADE,
    -- An import is idempotent by GitHub's id: importing again refreshes the row.
    CONSTRAINT source_repositories_application_id_github_id_key UNIQUE (application_id, github_id),
    CONSTRAINT source_repositories_name_check CHECK (length(name) BETWEEN 1 AND 256),
    CONSTRAINT source_repositories_full_name_check CHECK (length(full_name) BETWEEN 1 AND 512),
    CONSTRAINT source_repositories_description_check CHECK (length(description) <= 4096),
    CONSTRAINT source_repositories_url_check CHECK (length(url) <= 2048),
    CONSTRAINT source_repositories_default_branch_check CHECK (length(default_branch) <= 256),
    CONSTRAINT source_repositories_language_check CHECK (length(language) <= 128),
    CONSTRAINT source_repositories_counts_check CHECK (stars_count >= 0 AND forks_count >= 0),
    CONSTRAINT source_repositories_revision_check CHECK (revision >= 1)
);
CREATE INDEX source_repositories_application_id_idx ON source_repositories (application_id, id);
COMMENT ON TABLE source_repositories IS
    'The source repositories of an application (a product): added by hand or imported from GitHub.';
COMMENT ON COLUMN source_repositories.github_id IS 'GitHub''s repository id (NULL: added by hand and never imported).';
COMMENT ON COLUMN source_repositories.revision IS 'Counts the changes of the row; with the id it is the ETag.';

CREATE TABLE application_documents (
    id             ulid        NOT NULL,
    application_id ulid        NOT NULL,
    title          text        NOT NULL,
    type           text        NOT NULL,
    is_pinned      boolean     NOT NULL DEFAULT false,
    repository_id  ulid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT application_documents_pkey PRIMARY KEY (id),
    CONSTRAINT application_documents_id_fkey FOREIGN KEY (id) REFERENCES documents (id) ON DELETE CASCADE,
    CONSTRAINT application_documents_application_id_fkey
        FOREIGN KEY (application_id) REFERENCES applications (id) ON DELETE CASCADE,
    CONSTRAINT application_documents_repository_id_fkey
        FOREIGN KEY (repository_id) REFERENCES source_repositories (id) ON DELETE SET NULL,
    CONSTRAINT application_documents_title_check CHECK (length(title) BETWEEN 1 AND 256),
    CONSTRAINT application_documents_type_check CHECK (type IN ('blueprint', 'architecture', 'note', 'plan'))
);
CREATE INDEX application_documents_application_id_idx ON application_documents (application_id, is_pinned, id);
COMMENT ON TABLE application_documents IS
    'An application''s documents: the metadata here, the content in the document of the same id (versions in git).';

CREATE TABLE work_items (
    id             ulid        NOT NULL,
    application_id ulid        NOT NULL,
    title          text        NOT NULL,
    description    text,
    type           text        NOT NULL,
    status         text        NOT NULL DEFAULT 'todo',
    priority       text        NOT NULL DEFAULT 'medium',
    repository_id  ulid,
    revision       integer     NOT NULL DEFAULT 1,
    created_by     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT work_items_pkey PRIMARY KEY (id),
    CONSTRAINT work_items_application_id_fkey
        FOREIGN KEY (application_id) REFERENCES applications (id) ON DELETE CASCADE,
    CONSTRAINT work_items_repository_id_fkey
        FOREIGN KEY (repository_id) REFERENCES source_repositories (id) ON DELETE SET NULL,
    CONSTRAINT work_items_title_check CHECK (length(title) BETWEEN 1 AND 256),
    CONSTRAINT work_items_description_check CHECK (length(description) <= 16384),
    CONSTRAINT work_items_type_check CHECK (type IN ('feature', 'fix', 'refactor', 'investigation')),
    CONSTRAINT work_items_status_check CHECK (status IN ('todo', 'in_progress', 'done')),
    CONSTRAINT work_items_priority_check CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    CONSTRAINT work_items_revision_check CHECK (revision >= 1)
);
-- Lists by status (the board's columns) and by all, in id order.
CREATE INDEX work_items_application_id_status_idx ON work_items (application_id, status, id);
CREATE INDEX work_items_application_id_idx ON work_items (application_id, id);
COMMENT ON TABLE work_items IS
    'An application''s work: todo -> in_progress -> done (and back to todo); every transition is audited.';
COMMENT ON COLUMN work_items.created_by IS 'Who created it: a username or a token name.';
COMMENT ON COLUMN work_items.revision IS 'Counts the changes of the row; with the id it is the ETag.';
