-- decentcom schema, PostgreSQL dialect.
--
-- Mirrors migrations/sqlite/0001_initial.sql table for table and column for column (see the
-- conventions there); server/tests/schema_parity.rs compares the two live schemas. Differences are
-- types only: BIGSERIAL ids, TIMESTAMPTZ timestamps, BYTEA bytes, BOOLEAN flags; plus the
-- full-text column `messages.search_vector`, PostgreSQL's counterpart of SQLite's FTS5 table.
--
-- Text search choice: no text-search configuration is involved at all. The application writes
-- `search_text` (the content's tokens, lowercased, joined by single spaces) and the tsvector is
-- `array_to_tsvector(string_to_array(search_text, ' '))`: neither a parser nor a stemmer ever sees
-- the raw text, so PostgreSQL and SQLite FTS5 (`ascii` tokenizer over the same column) index
-- exactly the same tokens and answer every query identically (api.md §3.9).

CREATE TABLE users (
    id           BIGSERIAL   PRIMARY KEY,
    pubkey       BYTEA       NOT NULL CHECK (length(pubkey) = 32),
    display_name TEXT,
    avatar_hash  TEXT,
    is_bot       BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT users_pubkey_key UNIQUE (pubkey)
);

CREATE TABLE media (
    id           BIGSERIAL   PRIMARY KEY,
    content_hash TEXT        NOT NULL CHECK (length(content_hash) = 64),
    object_key   TEXT        NOT NULL,
    bucket       TEXT,
    size_bytes   BIGINT      NOT NULL CHECK (size_bytes >= 0),
    mime_type    TEXT        NOT NULL,
    uploaded_by  BIGINT,
    uploaded_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT media_content_hash_key UNIQUE (content_hash)
);

ALTER TABLE users ADD CONSTRAINT users_avatar_hash_fkey
    FOREIGN KEY (avatar_hash) REFERENCES media (content_hash) ON DELETE SET NULL;

CREATE TABLE members (
    user_id   BIGINT      PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    joined_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX members_joined_at_idx ON members (joined_at);

CREATE TABLE roles (
    id         BIGSERIAL   PRIMARY KEY,
    name       TEXT        NOT NULL,
    color      TEXT,
    position   BIGINT      NOT NULL,
    is_builtin BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE role_permissions (
    role_id    BIGINT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission TEXT   NOT NULL CHECK (permission IN (
        'send_messages', 'read_messages', 'manage_messages', 'manage_channels', 'manage_roles',
        'kick_members', 'ban_members', 'manage_invites', 'manage_server', 'attach_files',
        'add_reactions', 'mention_everyone', 'view_audit_log', 'administrator')),
    PRIMARY KEY (role_id, permission)
);

CREATE TABLE member_roles (
    user_id     BIGINT      NOT NULL REFERENCES members (user_id) ON DELETE CASCADE,
    role_id     BIGINT      NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    assigned_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX member_roles_role_id_idx ON member_roles (role_id);

CREATE TABLE categories (
    id         BIGSERIAL   PRIMARY KEY,
    name       TEXT        NOT NULL,
    position   BIGINT      NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT categories_name_key UNIQUE (name)
);

CREATE TABLE channels (
    id          BIGSERIAL   PRIMARY KEY,
    kind        TEXT        NOT NULL CHECK (kind IN ('text', 'dm')),
    name        TEXT,
    topic       TEXT,
    category_id BIGINT      REFERENCES categories (id) ON DELETE RESTRICT,
    position    BIGINT      NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT channels_name_key UNIQUE (name),
    CHECK ((kind = 'text') = (name IS NOT NULL))
);
CREATE INDEX channels_category_id_idx ON channels (category_id);

CREATE TABLE channel_permission_overrides (
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    role_id    BIGINT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    allow_bits BIGINT NOT NULL CHECK (allow_bits BETWEEN 0 AND 16383 AND (allow_bits & 8192) = 0),
    deny_bits  BIGINT NOT NULL CHECK (deny_bits BETWEEN 0 AND 16383 AND (deny_bits & 8192) = 0),
    PRIMARY KEY (channel_id, role_id)
);
CREATE INDEX channel_permission_overrides_role_id_idx ON channel_permission_overrides (role_id);

CREATE TABLE dms (
    channel_id      BIGINT      PRIMARY KEY REFERENCES channels (id) ON DELETE CASCADE,
    user_low        BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high       BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      TIMESTAMPTZ NOT NULL,
    last_message_at TIMESTAMPTZ,
    CONSTRAINT dms_pair_key UNIQUE (user_low, user_high),
    CHECK (user_low < user_high)
);
CREATE INDEX dms_user_high_idx ON dms (user_high);

CREATE TABLE dm_participants (
    channel_id   BIGINT      NOT NULL REFERENCES dms (channel_id) ON DELETE CASCADE,
    user_id      BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_open      BOOLEAN     NOT NULL DEFAULT TRUE,
    last_read_at TIMESTAMPTZ,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX dm_participants_user_id_idx ON dm_participants (user_id);

CREATE TABLE messages (
    id            BIGSERIAL   PRIMARY KEY,
    channel_id    BIGINT      NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    author_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    thread_id     BIGINT,
    content       TEXT        NOT NULL,
    search_text   TEXT        NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL,
    edited_at     TIMESTAMPTZ,
    deleted_at    TIMESTAMPTZ,
    search_vector TSVECTOR    GENERATED ALWAYS AS
        (array_to_tsvector(string_to_array(search_text, ' '))) STORED,
    CHECK (deleted_at IS NULL OR (content = '' AND search_text = ''))
);
CREATE INDEX messages_channel_page_idx ON messages (channel_id, id) WHERE thread_id IS NULL;
CREATE INDEX messages_thread_page_idx ON messages (thread_id, id) WHERE thread_id IS NOT NULL;
CREATE INDEX messages_author_id_idx ON messages (author_id);
CREATE INDEX messages_search_vector_idx ON messages USING GIN (search_vector);

CREATE TABLE threads (
    id                   BIGSERIAL   PRIMARY KEY,
    channel_id           BIGINT      NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    parent_message_id    BIGINT      NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    creator_id           BIGINT      NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    created_at           TIMESTAMPTZ NOT NULL,
    reply_count          BIGINT      NOT NULL DEFAULT 0 CHECK (reply_count >= 0),
    last_reply_at        TIMESTAMPTZ,
    last_reply_author_id BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT threads_parent_message_id_key UNIQUE (parent_message_id)
);
CREATE INDEX threads_channel_id_idx ON threads (channel_id);

ALTER TABLE messages ADD CONSTRAINT messages_thread_id_fkey
    FOREIGN KEY (thread_id) REFERENCES threads (id) ON DELETE CASCADE;

CREATE TABLE thread_followers (
    thread_id    BIGINT      NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    user_id      BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followed_at  TIMESTAMPTZ NOT NULL,
    last_read_at TIMESTAMPTZ,
    PRIMARY KEY (thread_id, user_id)
);
CREATE INDEX thread_followers_user_id_idx ON thread_followers (user_id);

CREATE TABLE reactions (
    id         BIGSERIAL   PRIMARY KEY,
    message_id BIGINT      NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      TEXT        NOT NULL CHECK (octet_length(emoji) BETWEEN 1 AND 64),
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT reactions_message_user_key UNIQUE (message_id, user_id)
);
CREATE INDEX reactions_message_emoji_user_idx ON reactions (message_id, emoji, user_id);
CREATE INDEX reactions_user_id_idx ON reactions (user_id);

CREATE TABLE attachments (
    id           BIGSERIAL   PRIMARY KEY,
    message_id   BIGINT      REFERENCES messages (id) ON DELETE CASCADE,
    channel_id   BIGINT      NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    uploader_id  BIGINT      NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    content_hash TEXT        NOT NULL REFERENCES media (content_hash) ON DELETE NO ACTION,
    filename     TEXT        NOT NULL,
    size_bytes   BIGINT      NOT NULL CHECK (size_bytes > 0),
    mime_type    TEXT        NOT NULL,
    width        BIGINT,
    height       BIGINT,
    created_at   TIMESTAMPTZ NOT NULL,
    deleted_at   TIMESTAMPTZ
);
CREATE INDEX attachments_message_id_idx ON attachments (message_id);
CREATE INDEX attachments_channel_id_idx ON attachments (channel_id);
CREATE INDEX attachments_content_hash_idx ON attachments (content_hash);

CREATE TABLE device_keys (
    id            BIGSERIAL   PRIMARY KEY,
    device_pubkey BYTEA       NOT NULL CHECK (length(device_pubkey) = 32),
    user_id       BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_name   TEXT        NOT NULL,
    permissions   BIGINT      NOT NULL CHECK (permissions BETWEEN 0 AND 3),
    issued_at     TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,
    certificate   BYTEA       NOT NULL,
    signature     BYTEA       NOT NULL CHECK (length(signature) = 64),
    created_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ,
    CONSTRAINT device_keys_device_pubkey_key UNIQUE (device_pubkey)
);
CREATE INDEX device_keys_user_id_idx ON device_keys (user_id);

CREATE TABLE sessions (
    id            BIGSERIAL   PRIMARY KEY,
    token_hash    BYTEA       NOT NULL CHECK (length(token_hash) = 32),
    user_id       BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_key_id BIGINT      REFERENCES device_keys (id) ON DELETE CASCADE,
    is_read_only  BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT sessions_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_device_key_id_idx ON sessions (device_key_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE auth_challenges (
    pubkey     BYTEA       PRIMARY KEY CHECK (length(pubkey) = 32),
    nonce      BYTEA       NOT NULL CHECK (length(nonce) = 32),
    is_bot     BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX auth_challenges_expires_at_idx ON auth_challenges (expires_at);

CREATE TABLE bans (
    pubkey    BYTEA       PRIMARY KEY CHECK (length(pubkey) = 32),
    banned_by BIGINT      NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    reason    TEXT,
    banned_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE allowlist (
    pubkey   BYTEA       PRIMARY KEY CHECK (length(pubkey) = 32),
    added_by BIGINT      NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    added_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE bot_approvals (
    user_id      BIGINT      PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    requested_at TIMESTAMPTZ NOT NULL,
    approved_by  BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    approved_at  TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    note         TEXT
);

CREATE TABLE invites (
    code          TEXT        PRIMARY KEY CHECK (length(code) = 8),
    created_by    BIGINT      NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    grant_role_id BIGINT      REFERENCES roles (id) ON DELETE SET NULL,
    max_uses      BIGINT      NOT NULL DEFAULT 0 CHECK (max_uses >= 0),
    use_count     BIGINT      NOT NULL DEFAULT 0 CHECK (use_count >= 0),
    expires_at    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    CHECK (max_uses = 0 OR use_count <= max_uses)
);
CREATE INDEX invites_expires_at_idx ON invites (expires_at);

INSERT INTO roles (id, name, color, position, is_builtin, created_at, updated_at)
VALUES (1, '@everyone', NULL, 0, TRUE, 'epoch', 'epoch'),
       (2, '@admin', NULL, 1000, TRUE, 'epoch', 'epoch');
-- custom role ids start after the built-in ones
SELECT setval(pg_get_serial_sequence('roles', 'id'), 2);
INSERT INTO role_permissions (role_id, permission)
VALUES (1, 'send_messages'), (1, 'read_messages'), (1, 'attach_files'), (1, 'add_reactions'),
       (2, 'send_messages'), (2, 'read_messages'), (2, 'manage_messages'), (2, 'manage_channels'),
       (2, 'manage_roles'), (2, 'kick_members'), (2, 'ban_members'), (2, 'manage_invites'),
       (2, 'manage_server'), (2, 'attach_files'), (2, 'add_reactions'), (2, 'mention_everyone'),
       (2, 'view_audit_log'), (2, 'administrator');
