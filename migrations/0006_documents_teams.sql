-- Teams and their members; every git-backed text becomes a "document" with an owner and a
-- kind; proposals of changes to documents.
--
-- claude_md_documents / claude_md_versions are renamed, not copied: every row, id and
-- commit sha stays as it is, and each document keeps its ref refs/docs/<document id>.

CREATE TABLE teams (
    id           ulid        NOT NULL,
    name         text        NOT NULL,
    display_name text,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT teams_pkey PRIMARY KEY (id),
    CONSTRAINT teams_name_key UNIQUE (name),
    CONSTRAINT teams_name_check CHECK (
        name ~ '^[A-Za-z0-9._-]+$' AND length(name) <= 256 AND name NOT IN ('.', '..')
    ),
    CONSTRAINT teams_display_name_check CHECK (length(display_name) <= 256),
    CONSTRAINT teams_description_check CHECK (length(description) <= 1024)
);
COMMENT ON TABLE teams IS 'Groups of users who share a claude.md, catalog items and applications.';
COMMENT ON COLUMN teams.name IS 'Unique; the same rules as application names.';

CREATE TABLE team_members (
    team_id  ulid        NOT NULL,
    user_id  ulid        NOT NULL,
    role     text        NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    added_by text        NOT NULL,
    CONSTRAINT team_members_pkey PRIMARY KEY (team_id, user_id),
    CONSTRAINT team_members_team_id_fkey FOREIGN KEY (team_id) REFERENCES teams (id) ON DELETE CASCADE,
    CONSTRAINT team_members_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT team_members_role_check CHECK (role IN ('owner', 'admin', 'member'))
);
CREATE INDEX team_members_user_id_idx ON team_members (user_id, team_id);
COMMENT ON TABLE team_members IS
    'Who belongs to which team, with which role. A team always keeps at least one owner (enforced by the service under the team row lock).';
COMMENT ON COLUMN team_members.role IS
    'owner: everything, including owners and deleting the team; admin: members, admins and the team''s content; member: reads and proposes.';
COMMENT ON COLUMN team_members.added_by IS 'Who added the member or last changed the role: a username or a token name.';

-- Documents: one row per git-backed text. The owner is a user or a team; the kind says what
-- the text is and which file name it has inside each commit.
ALTER TABLE claude_md_documents RENAME TO documents;
ALTER TABLE documents RENAME CONSTRAINT claude_md_documents_pkey TO documents_pkey;
ALTER TABLE documents RENAME CONSTRAINT claude_md_documents_user_id_fkey TO documents_owner_user_id_fkey;
ALTER TABLE documents RENAME CONSTRAINT claude_md_documents_head_version_check TO documents_head_version_check;
ALTER TABLE documents RENAME CONSTRAINT claude_md_documents_head_sha_check TO documents_head_sha_check;
ALTER TABLE documents RENAME CONSTRAINT claude_md_documents_head_check TO documents_head_check;
ALTER TABLE documents DROP CONSTRAINT claude_md_documents_user_id_key;
ALTER TABLE documents RENAME COLUMN user_id TO owner_user_id;
ALTER TABLE documents ALTER COLUMN owner_user_id DROP NOT NULL;
ALTER TABLE documents ADD COLUMN kind text NOT NULL DEFAULT 'claude_md';
ALTER TABLE documents ALTER COLUMN kind DROP DEFAULT;
ALTER TABLE documents ADD COLUMN owner_team_id ulid;
ALTER TABLE documents
    ADD CONSTRAINT documents_kind_check CHECK (kind IN ('claude_md', 'skill', 'mcp', 'tool')),
    ADD CONSTRAINT documents_owner_check CHECK (num_nonnulls(owner_user_id, owner_team_id) = 1),
    ADD CONSTRAINT documents_owner_team_id_fkey
        FOREIGN KEY (owner_team_id) REFERENCES teams (id) ON DELETE CASCADE,
    -- One document of each kind per owner (a catalog item owns its own document).
    ADD CONSTRAINT documents_owner_user_id_kind_key UNIQUE (owner_user_id, kind),
    ADD CONSTRAINT documents_owner_team_id_kind_key UNIQUE (owner_team_id, kind);
COMMENT ON TABLE documents IS
    'Every git-backed text (a user''s or a team''s claude.md, catalog items): the versions are commits on refs/docs/<id>. A row is created by its first save or proposal (then at version 0 until a proposal is accepted).';
COMMENT ON COLUMN documents.kind IS 'What the text is; decides its file name inside each commit (claude_md: claude.md).';
COMMENT ON COLUMN documents.head_version IS 'The newest version number (0: none yet, only proposals).';
COMMENT ON COLUMN documents.head_sha IS 'The commit of the newest version: the value refs/docs/<id> must hold.';

ALTER TABLE claude_md_versions RENAME TO document_versions;
ALTER TABLE document_versions RENAME CONSTRAINT claude_md_versions_pkey TO document_versions_pkey;
ALTER TABLE document_versions RENAME CONSTRAINT claude_md_versions_commit_sha_key TO document_versions_commit_sha_key;
ALTER TABLE document_versions RENAME CONSTRAINT claude_md_versions_document_id_fkey TO document_versions_document_id_fkey;
ALTER TABLE document_versions RENAME CONSTRAINT claude_md_versions_version_check TO document_versions_version_check;
ALTER TABLE document_versions RENAME CONSTRAINT claude_md_versions_commit_sha_check TO document_versions_commit_sha_check;
ALTER TABLE document_versions RENAME CONSTRAINT claude_md_versions_size_bytes_check TO document_versions_size_bytes_check;
COMMENT ON TABLE document_versions IS
    'Every saved version of a document (numbers from 1, no gaps); the bytes are in the git commit.';
COMMENT ON COLUMN document_versions.author IS 'The git author''s name: the acting user, a token name, or the proposer of an accepted proposal.';

CREATE TABLE document_proposals (
    id           ulid        NOT NULL,
    document_id  ulid        NOT NULL,
    status       text        NOT NULL DEFAULT 'open',
    base_version integer     NOT NULL,
    base_sha     text,
    commit_sha   text        NOT NULL,
    proposer_user_id ulid,
    author       text        NOT NULL,
    author_email text        NOT NULL,
    message      text        NOT NULL,
    size_bytes   integer     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    decided_by   text,
    decided_at   timestamptz,
    reason       text,
    accepted_version integer,
    CONSTRAINT document_proposals_pkey PRIMARY KEY (id),
    CONSTRAINT document_proposals_document_id_fkey
        FOREIGN KEY (document_id) REFERENCES documents (id) ON DELETE CASCADE,
    CONSTRAINT document_proposals_proposer_user_id_fkey
        FOREIGN KEY (proposer_user_id) REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT document_proposals_status_check CHECK (status IN ('open', 'accepted', 'rejected', 'withdrawn')),
    CONSTRAINT document_proposals_base_check CHECK ((base_version = 0) = (base_sha IS NULL) AND base_version >= 0),
    CONSTRAINT document_proposals_base_sha_check CHECK (base_sha ~ '^[0-9a-f]{40}$'),
    CONSTRAINT document_proposals_commit_sha_check CHECK (commit_sha ~ '^[0-9a-f]{40}$'),
    CONSTRAINT document_proposals_decided_check CHECK ((status = 'open') = (decided_at IS NULL)),
    CONSTRAINT document_proposals_accepted_check CHECK ((status = 'accepted') = (accepted_version IS NOT NULL)),
    CONSTRAINT document_proposals_message_check CHECK (length(message) BETWEEN 1 AND 1024),
    CONSTRAINT document_proposals_reason_check CHECK (length(reason) <= 1024),
    CONSTRAINT document_proposals_size_bytes_check CHECK (size_bytes >= 0)
);
CREATE INDEX document_proposals_document_id_idx ON document_proposals (document_id, status, id);
COMMENT ON TABLE document_proposals IS
    'Suggested changes to a document: the content is a commit on refs/proposals/<id> whose parent is base_sha.';
COMMENT ON COLUMN document_proposals.base_sha IS 'The version the proposal was based on (NULL: the document had none yet).';
COMMENT ON COLUMN document_proposals.author IS 'The proposer as git author (name); author_email is the address in the commit.';
COMMENT ON COLUMN document_proposals.decided_by IS 'Who accepted or rejected it (or the proposer, who withdrew it).';
COMMENT ON COLUMN document_proposals.accepted_version IS 'The document version that accepting it made.';

-- Applications may belong to a team: its members read them, its owners and admins write them.
-- Deleting a team leaves its applications to admin and service tokens (their configurations
-- keep serving).
ALTER TABLE applications
    ADD COLUMN team_id ulid,
    ADD CONSTRAINT applications_team_id_fkey FOREIGN KEY (team_id) REFERENCES teams (id) ON DELETE SET NULL;
CREATE INDEX applications_team_id_idx ON applications (team_id, id);
COMMENT ON COLUMN applications.team_id IS
    'The team the application belongs to (NULL: none): members read it, owners and admins write it.';
