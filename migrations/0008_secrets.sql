-- Secrets inside configurations: which values of a configuration are secret (and so stored
-- sealed, see svc/crypto.py), and which service tokens may read them in clear.

ALTER TABLE configurations
    ADD COLUMN secret_paths jsonb NOT NULL DEFAULT '[]',
    ADD CONSTRAINT configurations_secret_paths_check CHECK (jsonb_typeof(secret_paths) = 'array');

ALTER TABLE configuration_revisions
    ADD COLUMN secret_paths jsonb NOT NULL DEFAULT '[]',
    ADD CONSTRAINT configuration_revisions_secret_paths_check CHECK (jsonb_typeof(secret_paths) = 'array');

ALTER TABLE api_tokens
    ADD COLUMN reveal_secrets boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT api_tokens_reveal_secrets_check CHECK (NOT reveal_secrets OR role = 'service');

COMMENT ON COLUMN configurations.secret_paths IS
    'JSON Pointers (RFC 6901) into config whose values are secret: stored there sealed (svc-secret:v1:<key id>:<nonce>:<ciphertext>, AES-256-GCM), shown as "<secret>" unless revealed.';
COMMENT ON COLUMN configuration_revisions.secret_paths IS
    'The secret_paths in force with this revision: which of its config values are sealed. A rollback copies sealed values as they are.';
COMMENT ON COLUMN api_tokens.reveal_secrets IS
    'true: this service token reads secret values in clear from GET and resolve (a scoped one only in its application). Service tokens only.';
