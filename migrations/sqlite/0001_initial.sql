-- decentcom schema, SQLite dialect.
--
-- migrations/postgres/0001_initial.sql mirrors this file table for table and column for column;
-- server/tests/schema_parity.rs compares the two live schemas, so change both together.
--
-- Conventions (both dialects):
--   * ids are 64-bit integers assigned in insertion order (INTEGER PRIMARY KEY AUTOINCREMENT here,
--     BIGSERIAL there); AUTOINCREMENT so an id is never reused after a delete.
--   * timestamps are INTEGER microseconds since the Unix epoch (UTC) here and TIMESTAMPTZ there:
--     both keep exactly microsecond precision, and integers sort correctly without any formatting
--     rules. Every timestamp column ends in `_at`.
--   * public keys, nonces, token hashes and signatures are raw bytes (BLOB / BYTEA).
--   * booleans are BOOLEAN (0/1 with a CHECK here).
--   * constraint names are given explicitly: the PostgreSQL backend maps unique violations back
--     to a domain conflict by name, the SQLite backend by table and columns.

CREATE TABLE users (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    pubkey       BLOB    NOT NULL CHECK (length(pubkey) = 32),
    display_name TEXT,
    -- the avatar's media row; media outlive nothing and are never deleted in v1
    avatar_hash  TEXT    REFERENCES media (content_hash) ON DELETE SET NULL,
    is_bot       BOOLEAN NOT NULL DEFAULT 0 CHECK (is_bot IN (0, 1)),
    created_at   INTEGER NOT NULL,
    CONSTRAINT users_pubkey_key UNIQUE (pubkey)
);

-- Content-addressed blobs: one row per distinct SHA-256. `uploaded_by` is provenance only and
-- deliberately has no foreign key: a blob is shared by every later upload of the same bytes, and
-- users reference media (avatars), so a key back would make the two tables a cycle.
CREATE TABLE media (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    content_hash TEXT    NOT NULL CHECK (length(content_hash) = 64),
    -- where the blob lives in the media store (the seed's `s3_key`); `bucket` is NULL on local disk
    object_key   TEXT    NOT NULL,
    bucket       TEXT,
    size_bytes   INTEGER NOT NULL CHECK (size_bytes >= 0),
    mime_type    TEXT    NOT NULL,
    uploaded_by  INTEGER,
    uploaded_at  INTEGER NOT NULL,
    CONSTRAINT media_content_hash_key UNIQUE (content_hash)
);

CREATE TABLE members (
    user_id   INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    joined_at INTEGER NOT NULL
);
CREATE INDEX members_joined_at_idx ON members (joined_at);

CREATE TABLE roles (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    color      TEXT,
    position   INTEGER NOT NULL,
    is_builtin BOOLEAN NOT NULL DEFAULT 0 CHECK (is_builtin IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- One row per granted permission flag (api.md §5.1); the API shows them as a bitmask.
CREATE TABLE role_permissions (
    role_id    INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission TEXT    NOT NULL CHECK (permission IN (
        'send_messages', 'read_messages', 'manage_messages', 'manage_channels', 'manage_roles',
        'kick_members', 'ban_members', 'manage_invites', 'manage_server', 'attach_files',
        'add_reactions', 'mention_everyone', 'view_audit_log', 'administrator')),
    PRIMARY KEY (role_id, permission)
);

CREATE TABLE member_roles (
    user_id     INTEGER NOT NULL REFERENCES members (user_id) ON DELETE CASCADE,
    role_id     INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    assigned_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX member_roles_role_id_idx ON member_roles (role_id);

CREATE TABLE categories (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    position   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    CONSTRAINT categories_name_key UNIQUE (name)
);

-- Text channels and DM channels share one id space; a DM channel has no name.
CREATE TABLE channels (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL CHECK (kind IN ('text', 'dm')),
    name        TEXT,
    topic       TEXT,
    -- a category in use cannot be removed
    category_id INTEGER REFERENCES categories (id) ON DELETE RESTRICT,
    position    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CONSTRAINT channels_name_key UNIQUE (name),
    CHECK ((kind = 'text') = (name IS NOT NULL))
);
CREATE INDEX channels_category_id_idx ON channels (category_id);

CREATE TABLE channel_permission_overrides (
    channel_id INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    role_id    INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    -- bitmasks of api.md §5.1; ADMINISTRATOR (8192) is never valid in an override
    allow_bits INTEGER NOT NULL CHECK (allow_bits BETWEEN 0 AND 16383 AND (allow_bits & 8192) = 0),
    deny_bits  INTEGER NOT NULL CHECK (deny_bits BETWEEN 0 AND 16383 AND (deny_bits & 8192) = 0),
    PRIMARY KEY (channel_id, role_id)
);
CREATE INDEX channel_permission_overrides_role_id_idx ON channel_permission_overrides (role_id);

-- A DM channel joins exactly one unordered pair of users: (user_low, user_high) with low < high.
CREATE TABLE dms (
    channel_id      INTEGER PRIMARY KEY REFERENCES channels (id) ON DELETE CASCADE,
    user_low        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      INTEGER NOT NULL,
    last_message_at INTEGER,
    CONSTRAINT dms_pair_key UNIQUE (user_low, user_high),
    CHECK (user_low < user_high)
);
CREATE INDEX dms_user_high_idx ON dms (user_high);

-- Each participant's own view of a DM: whether it is listed, and how far it has been read.
CREATE TABLE dm_participants (
    channel_id   INTEGER NOT NULL REFERENCES dms (channel_id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_open      BOOLEAN NOT NULL DEFAULT 1 CHECK (is_open IN (0, 1)),
    last_read_at INTEGER,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX dm_participants_user_id_idx ON dm_participants (user_id);

-- Messages of text channels, thread replies (thread_id set) and DM messages. Deletion is soft:
-- deleted_at is set and content and search_text are emptied.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id  INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    -- authors are never deleted out from under their history
    author_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    thread_id   INTEGER REFERENCES threads (id) ON DELETE CASCADE,
    content     TEXT    NOT NULL,
    -- the content's search tokens joined by single spaces (storage::search::normalise),
    -- written by the application; the full-text index covers this, never the raw text
    search_text TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    edited_at   INTEGER,
    deleted_at  INTEGER,
    CHECK (deleted_at IS NULL OR (content = '' AND search_text = ''))
);
-- the dominant query: the newest page of a channel, and cursor pages from it
CREATE INDEX messages_channel_page_idx ON messages (channel_id, id) WHERE thread_id IS NULL;
CREATE INDEX messages_thread_page_idx ON messages (thread_id, id) WHERE thread_id IS NOT NULL;
CREATE INDEX messages_author_id_idx ON messages (author_id);

CREATE TABLE threads (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id           INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    parent_message_id    INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    creator_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    created_at           INTEGER NOT NULL,
    reply_count          INTEGER NOT NULL DEFAULT 0 CHECK (reply_count >= 0),
    last_reply_at        INTEGER,
    last_reply_author_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT threads_parent_message_id_key UNIQUE (parent_message_id)
);
CREATE INDEX threads_channel_id_idx ON threads (channel_id);

CREATE TABLE thread_followers (
    thread_id    INTEGER NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followed_at  INTEGER NOT NULL,
    last_read_at INTEGER,
    PRIMARY KEY (thread_id, user_id)
);
CREATE INDEX thread_followers_user_id_idx ON thread_followers (user_id);

-- One reaction per user per message; `id` orders emojis by their earliest reaction.
CREATE TABLE reactions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      TEXT    NOT NULL CHECK (length(CAST(emoji AS BLOB)) BETWEEN 1 AND 64),
    created_at INTEGER NOT NULL,
    CONSTRAINT reactions_message_user_key UNIQUE (message_id, user_id)
);
CREATE INDEX reactions_message_emoji_user_idx ON reactions (message_id, emoji, user_id);
CREATE INDEX reactions_user_id_idx ON reactions (user_id);

-- An uploaded file in a channel; unlinked (message_id NULL) until a message claims it.
CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   INTEGER REFERENCES messages (id) ON DELETE CASCADE,
    channel_id   INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    uploader_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    content_hash TEXT    NOT NULL REFERENCES media (content_hash) ON DELETE NO ACTION,
    filename     TEXT    NOT NULL,
    size_bytes   INTEGER NOT NULL CHECK (size_bytes > 0),
    mime_type    TEXT    NOT NULL,
    width        INTEGER,
    height       INTEGER,
    created_at   INTEGER NOT NULL,
    deleted_at   INTEGER
);
CREATE INDEX attachments_message_id_idx ON attachments (message_id);
CREATE INDEX attachments_channel_id_idx ON attachments (channel_id);
CREATE INDEX attachments_content_hash_idx ON attachments (content_hash);

-- Device keys act for a user through a master-signed delegation certificate (api.md §2.5).
CREATE TABLE device_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    device_pubkey BLOB    NOT NULL CHECK (length(device_pubkey) = 32),
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_name   TEXT    NOT NULL,
    permissions   INTEGER NOT NULL CHECK (permissions BETWEEN 0 AND 3),
    issued_at     INTEGER NOT NULL,
    expires_at    INTEGER,
    -- the canonical certificate bytes and the master's 64-byte signature over them
    certificate   BLOB    NOT NULL,
    signature     BLOB    NOT NULL CHECK (length(signature) = 64),
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    CONSTRAINT device_keys_device_pubkey_key UNIQUE (device_pubkey)
);
CREATE INDEX device_keys_user_id_idx ON device_keys (user_id);

-- Only the SHA-256 of a session token is stored.
CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash    BLOB    NOT NULL CHECK (length(token_hash) = 32),
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_key_id INTEGER REFERENCES device_keys (id) ON DELETE CASCADE,
    is_read_only  BOOLEAN NOT NULL DEFAULT 0 CHECK (is_read_only IN (0, 1)),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    CONSTRAINT sessions_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_device_key_id_idx ON sessions (device_key_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- At most one pending challenge per signing key; taken (deleted) by the verify that uses it.
CREATE TABLE auth_challenges (
    pubkey     BLOB    PRIMARY KEY CHECK (length(pubkey) = 32),
    nonce      BLOB    NOT NULL CHECK (length(nonce) = 32),
    is_bot     BOOLEAN NOT NULL DEFAULT 0 CHECK (is_bot IN (0, 1)),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX auth_challenges_expires_at_idx ON auth_challenges (expires_at);

-- Bans are keyed by public key: the banned key need not belong to a user yet.
CREATE TABLE bans (
    pubkey    BLOB    PRIMARY KEY CHECK (length(pubkey) = 32),
    banned_by INTEGER NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    reason    TEXT,
    banned_at INTEGER NOT NULL
);

CREATE TABLE allowlist (
    pubkey   BLOB    PRIMARY KEY CHECK (length(pubkey) = 32),
    added_by INTEGER NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    added_at INTEGER NOT NULL
);

-- A bot's approval state: pending (approved_at and revoked_at NULL), approved, or revoked.
CREATE TABLE bot_approvals (
    user_id      INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    requested_at INTEGER NOT NULL,
    approved_by  INTEGER REFERENCES users (id) ON DELETE SET NULL,
    approved_at  INTEGER,
    revoked_at   INTEGER,
    note         TEXT
);

CREATE TABLE invites (
    code          TEXT    PRIMARY KEY CHECK (length(code) = 8),
    created_by    INTEGER NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    -- deleting the role makes the invite grant nothing
    grant_role_id INTEGER REFERENCES roles (id) ON DELETE SET NULL,
    max_uses      INTEGER NOT NULL DEFAULT 0 CHECK (max_uses >= 0),
    use_count     INTEGER NOT NULL DEFAULT 0 CHECK (use_count >= 0),
    expires_at    INTEGER,
    created_at    INTEGER NOT NULL,
    CHECK (max_uses = 0 OR use_count <= max_uses)
);
CREATE INDEX invites_expires_at_idx ON invites (expires_at);

-- The built-in roles have fixed ids (api.md §5.2). 1539 = SEND_MESSAGES | READ_MESSAGES |
-- ATTACH_FILES | ADD_REACTIONS; @admin holds every flag.
INSERT INTO roles (id, name, color, position, is_builtin, created_at, updated_at)
VALUES (1, '@everyone', NULL, 0, 1, 0, 0),
       (2, '@admin', NULL, 1000, 1, 0, 0);
INSERT INTO role_permissions (role_id, permission)
VALUES (1, 'send_messages'), (1, 'read_messages'), (1, 'attach_files'), (1, 'add_reactions'),
       (2, 'send_messages'), (2, 'read_messages'), (2, 'manage_messages'), (2, 'manage_channels'),
       (2, 'manage_roles'), (2, 'kick_members'), (2, 'ban_members'), (2, 'manage_invites'),
       (2, 'manage_server'), (2, 'attach_files'), (2, 'add_reactions'), (2, 'mention_everyone'),
       (2, 'view_audit_log'), (2, 'administrator');

-- Full-text search over the normalised copy (api.md §3.9): external content, kept in sync by
-- triggers. The `ascii` tokenizer only splits on the single spaces the application wrote, so the
-- index holds exactly the application's tokens and agrees with PostgreSQL's tsvector.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    search_text, content = 'messages', content_rowid = 'id', tokenize = 'ascii'
);
CREATE TRIGGER messages_fts_after_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER messages_fts_after_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, search_text)
    VALUES ('delete', old.id, old.search_text);
END;
CREATE TRIGGER messages_fts_after_update AFTER UPDATE OF search_text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, search_text)
    VALUES ('delete', old.id, old.search_text);
    INSERT INTO messages_fts (rowid, search_text) VALUES (new.id, new.search_text);
END;
