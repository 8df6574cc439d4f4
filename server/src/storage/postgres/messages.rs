//! MessageStore: channel messages, thread replies, pages and full-text search.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::PostgresBackend;
use super::load;
use crate::storage::assemble::{self, MessageRow};
use crate::storage::search;
use crate::storage::{
    Attachment, AttachmentId, ChannelId, Conflict, ContentHash, Entity, Message, MessageId, MessagePage, MessageScope,
    MessageStore, NewMessage, PageCursor, SearchPage, SearchQuery, StorageError, StorageResult, ThreadId, Timestamp,
    UserId,
};

/// Most matches `total_estimate` counts.
const SEARCH_COUNT_CAP: i64 = 1000;

/// Inserts a message row (search_text = normalised content) and returns its id.
pub(super) async fn insert_message(
    conn: &mut PgConnection,
    channel: ChannelId,
    thread: Option<ThreadId>,
    author: UserId,
    content: &str,
    now: Timestamp,
) -> StorageResult<MessageId> {
    let id = sqlx::query_scalar!(
        r#"INSERT INTO messages (channel_id, author_id, thread_id, content, search_text, created_at)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id AS "id: MessageId""#,
        channel.0,
        author.0,
        thread.map(|t| t.0),
        content,
        search::normalise(content),
        now.as_datetime()
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// Loads a message that must exist (inside the transaction that wrote it).
pub(super) async fn reload(conn: &mut PgConnection, id: MessageId, viewer: Option<UserId>) -> StorageResult<Message> {
    load::message(conn, id, viewer).await?.ok_or(StorageError::NotFound(Entity::Message))
}

/// One page of a channel (DMs are channels) or of a thread, `fetch` rows from the cursor on.
///
/// Every query here is shaped so that walking its page index in order is the only plan without a
/// Sort, whatever PostgreSQL's statistics say (issue #21):
///
/// * The scope is a range, `channel_id >= $1 AND channel_id <= $1`, not `channel_id = $1`, and
///   the ORDER BY names both columns of the page index. An equality would make `channel_id` a
///   constant to the planner, so "ORDER BY id" could also be served by the primary key: after
///   `ANALYZE` of a busy community PostgreSQL walked `messages_pkey` backwards and filtered by
///   channel, reading every newer message of every other channel (13.7 ms for one page of a
///   quiet channel). Ordered by `(channel_id, id)`, only `messages_channel_page_idx` /
///   `messages_thread_page_idx` deliver the order; anything else pays a Sort.
/// * Without statistics (a database the server just created, autovacuum off) the planner guesses
///   a scope at a couple of rows. With the equality it then read the channel through a bitmap
///   scan and sorted it (10,000 rows in fact, 2.4 ms against 0.04 ms); with the range and the
///   two-column order the ordered walk is what it picks. `tests/page_plans.rs` pins every page
///   query on a skewed community, custom and generic plans, before and after `ANALYZE`. (A
///   channel that statistics show to hold a few dozen rows may still be sorted: that costs what
///   reading a few dozen rows costs.)
/// * The cursor is always a plain bound (`id < COALESCE($2, i64::MAX)`), never `($2 IS NULL OR
///   id < $2)`: an OR cannot be an index condition, so a generic plan (what a prepared statement
///   switches to after a few executions) would walk the channel from its newest message down to
///   the cursor instead of starting at the cursor.
async fn page_rows(
    conn: &mut PgConnection,
    scope: MessageScope,
    cursor: PageCursor,
    fetch: i64,
) -> StorageResult<Vec<MessageRow>> {
    let before = match cursor {
        PageCursor::Before(id) => Some(id.0),
        _ => None,
    };
    let rows = match (scope, cursor) {
        (MessageScope::Channel(channel), PageCursor::After(after)) => sqlx::query_as!(
            MessageRow,
            r#"SELECT id AS "id: MessageId", channel_id AS "channel_id: ChannelId", author_id AS "author_id: UserId",
                          content, created_at AS "created_at: Timestamp", edited_at AS "edited_at: Timestamp",
                          deleted_at AS "deleted_at: Timestamp", thread_id AS "thread_id: ThreadId"
                   FROM messages
                   WHERE channel_id >= $1 AND channel_id <= $1 AND thread_id IS NULL AND id > $2
                   ORDER BY channel_id ASC, id ASC LIMIT $3"#,
            channel.0,
            after.0,
            fetch
        )
        .fetch_all(&mut *conn)
        .await?,
        (MessageScope::Channel(channel), _) => sqlx::query_as!(
            MessageRow,
            r#"SELECT id AS "id: MessageId", channel_id AS "channel_id: ChannelId", author_id AS "author_id: UserId",
                          content, created_at AS "created_at: Timestamp", edited_at AS "edited_at: Timestamp",
                          deleted_at AS "deleted_at: Timestamp", thread_id AS "thread_id: ThreadId"
                   FROM messages
                   WHERE channel_id >= $1 AND channel_id <= $1 AND thread_id IS NULL
                     AND id < COALESCE($2::int8, 9223372036854775807)
                   ORDER BY channel_id DESC, id DESC LIMIT $3"#,
            channel.0,
            before,
            fetch
        )
        .fetch_all(&mut *conn)
        .await?,
        (MessageScope::Thread(thread), PageCursor::After(after)) => sqlx::query_as!(
            MessageRow,
            r#"SELECT id AS "id: MessageId", channel_id AS "channel_id: ChannelId", author_id AS "author_id: UserId",
                          content, created_at AS "created_at: Timestamp", edited_at AS "edited_at: Timestamp",
                          deleted_at AS "deleted_at: Timestamp", thread_id AS "thread_id: ThreadId"
                   FROM messages
                   WHERE thread_id >= $1 AND thread_id <= $1 AND id > $2
                   ORDER BY thread_id ASC, id ASC LIMIT $3"#,
            thread.0,
            after.0,
            fetch
        )
        .fetch_all(&mut *conn)
        .await?,
        (MessageScope::Thread(thread), _) => sqlx::query_as!(
            MessageRow,
            r#"SELECT id AS "id: MessageId", channel_id AS "channel_id: ChannelId", author_id AS "author_id: UserId",
                          content, created_at AS "created_at: Timestamp", edited_at AS "edited_at: Timestamp",
                          deleted_at AS "deleted_at: Timestamp", thread_id AS "thread_id: ThreadId"
                   FROM messages
                   WHERE thread_id >= $1 AND thread_id <= $1 AND id < COALESCE($2::int8, 9223372036854775807)
                   ORDER BY thread_id DESC, id DESC LIMIT $3"#,
            thread.0,
            before,
            fetch
        )
        .fetch_all(&mut *conn)
        .await?,
    };
    Ok(rows)
}

#[async_trait]
impl MessageStore for PostgresBackend {
    async fn create_messages_batch(&self, channel: ChannelId, messages: Vec<(UserId, String)>) -> StorageResult<u64> {
        // One statement for the whole batch: UNNEST of parallel arrays, inserted in input order.
        let authors: Vec<i64> = messages.iter().map(|(author, _)| author.0).collect();
        let search_texts: Vec<String> = messages.iter().map(|(_, content)| search::normalise(content)).collect();
        let contents: Vec<String> = messages.into_iter().map(|(_, content)| content).collect();
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1) AS "present!: bool""#,
            channel.0
        )
        .fetch_one(&mut *tx)
        .await?;
        if !exists {
            return Err(StorageError::NotFound(Entity::Channel));
        }
        let inserted = sqlx::query!(
            "INSERT INTO messages (channel_id, author_id, content, search_text, created_at)
             SELECT $1, t.author, t.content, t.search_text, $2
             FROM UNNEST($3::int8[], $4::text[], $5::text[]) WITH ORDINALITY AS t(author, content, search_text, n)
             ORDER BY t.n",
            channel.0,
            now.as_datetime(),
            &authors,
            &contents,
            &search_texts
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted)
    }

    async fn create_message(&self, new: NewMessage) -> StorageResult<Message> {
        let now = Timestamp::now();
        if new.thread_id.is_none() && new.attachment_ids.is_empty() {
            // The common case is one statement, so it needs no transaction: the row is inserted
            // only if the channel exists, and the message is built from what was written (a new
            // message has no reactions and no thread yet).
            let id = sqlx::query_scalar!(
                r#"INSERT INTO messages (channel_id, author_id, thread_id, content, search_text, created_at)
                   SELECT c.id, $2, NULL, $3, $4, $5 FROM channels c WHERE c.id = $1
                   RETURNING id AS "id: MessageId""#,
                new.channel_id.0,
                new.author_id.0,
                new.content,
                search::normalise(&new.content),
                now.as_datetime()
            )
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StorageError::NotFound(Entity::Channel))?;
            return Ok(assemble::new_message(id, new.channel_id, new.author_id, None, new.content, now, Vec::new()));
        }

        let mut tx = self.pool.begin().await?;
        let channel = match new.thread_id {
            Some(thread) => {
                // Locks the thread row: concurrent replies update its counters one at a time.
                sqlx::query_scalar!(
                    r#"SELECT channel_id AS "channel_id: ChannelId" FROM threads WHERE id = $1 FOR UPDATE"#,
                    thread.0
                )
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StorageError::NotFound(Entity::Thread))?
            }
            None => {
                sqlx::query_scalar!(r#"SELECT id AS "id: ChannelId" FROM channels WHERE id = $1"#, new.channel_id.0)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StorageError::NotFound(Entity::Channel))?
            }
        };
        let id = insert_message(&mut tx, channel, new.thread_id, new.author_id, &new.content, now).await?;

        let mut attachments = Vec::with_capacity(new.attachment_ids.len());
        for attachment in &new.attachment_ids {
            let linked = sqlx::query_as!(
                Attachment,
                r#"UPDATE attachments SET message_id = $1
                   WHERE id = $2 AND uploader_id = $3 AND channel_id = $4
                     AND message_id IS NULL AND deleted_at IS NULL
                   RETURNING id AS "id: AttachmentId", message_id AS "message_id: MessageId",
                             channel_id AS "channel_id: ChannelId", uploader_id AS "uploader_id: UserId", filename,
                             content_hash AS "content_hash: ContentHash", size_bytes AS size, mime_type, width, height,
                             created_at AS "created_at: Timestamp""#,
                id.0,
                attachment.0,
                new.author_id.0,
                channel.0
            )
            .fetch_optional(&mut *tx)
            .await?;
            match linked {
                Some(linked) => attachments.push(linked),
                // Dropping the transaction rolls everything back.
                None => {
                    return Err(StorageError::Conflict(Conflict::AttachmentUnavailable(AttachmentId(attachment.0))));
                }
            }
        }

        if let Some(thread) = new.thread_id {
            sqlx::query!(
                "UPDATE threads SET reply_count = reply_count + 1, last_reply_at = $2, last_reply_author_id = $3
                 WHERE id = $1",
                thread.0,
                now.as_datetime(),
                new.author_id.0
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "INSERT INTO thread_followers (thread_id, user_id, followed_at) VALUES ($1, $2, $3)
                 ON CONFLICT (thread_id, user_id) DO NOTHING",
                thread.0,
                new.author_id.0,
                now.as_datetime()
            )
            .execute(&mut *tx)
            .await?;
        }

        tx.commit().await?;
        Ok(assemble::new_message(id, channel, new.author_id, new.thread_id, new.content, now, attachments))
    }

    async fn get_message(&self, id: MessageId, viewer: Option<UserId>) -> StorageResult<Option<Message>> {
        let mut conn = self.pool.acquire().await?;
        load::message(&mut conn, id, viewer).await
    }

    async fn list_messages(
        &self,
        scope: MessageScope,
        cursor: PageCursor,
        limit: u32,
        viewer: Option<UserId>,
    ) -> StorageResult<MessagePage> {
        let limit = limit as usize;
        let mut conn = self.pool.acquire().await?;
        let mut rows = page_rows(&mut conn, scope, cursor, limit as i64 + 1).await?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let messages = load::hydrate(&mut conn, rows, viewer).await?;
        Ok(MessagePage { messages, has_more })
    }

    async fn edit_message(&self, id: MessageId, content: String) -> StorageResult<Message> {
        let mut tx = self.pool.begin().await?;
        let edited = sqlx::query_scalar!(
            "UPDATE messages SET content = $2, search_text = $3, edited_at = $4
             WHERE id = $1 AND deleted_at IS NULL RETURNING id",
            id.0,
            content,
            search::normalise(&content),
            Timestamp::now().as_datetime()
        )
        .fetch_optional(&mut *tx)
        .await?;
        if edited.is_none() {
            let exists =
                sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1) AS "exists!""#, id.0)
                    .fetch_one(&mut *tx)
                    .await?;
            return Err(if exists {
                StorageError::Conflict(Conflict::MessageDeleted)
            } else {
                StorageError::NotFound(Entity::Message)
            });
        }
        let message = reload(&mut tx, id, None).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn delete_message(&self, id: MessageId) -> StorageResult<bool> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query_scalar!(
            "UPDATE messages SET content = '', search_text = '', deleted_at = $2
             WHERE id = $1 AND deleted_at IS NULL RETURNING id",
            id.0,
            now.as_datetime()
        )
        .fetch_optional(&mut *tx)
        .await?;
        if deleted.is_none() {
            let exists =
                sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1) AS "exists!""#, id.0)
                    .fetch_one(&mut *tx)
                    .await?;
            return if exists { Ok(false) } else { Err(StorageError::NotFound(Entity::Message)) };
        }
        sqlx::query!(
            "UPDATE attachments SET deleted_at = $2 WHERE message_id = $1 AND deleted_at IS NULL",
            id.0,
            now.as_datetime()
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn search_messages(&self, query: SearchQuery) -> StorageResult<SearchPage> {
        if query.terms.is_empty() || query.channel_ids.is_empty() {
            return Ok(SearchPage { messages: Vec::new(), has_more: false, total_estimate: 0 });
        }
        let tsquery = search::tsquery(&query.terms);
        let channels: Vec<i64> = query.channel_ids.iter().map(|c| c.0).collect();
        let author = query.author_id.map(|a| a.0);
        let before = query.created_before.map(Timestamp::as_datetime);
        let after = query.created_after.map(Timestamp::as_datetime);
        let limit = query.limit as usize;

        let mut conn = self.pool.acquire().await?;
        // The matches are found first (GIN index or, for a term in nearly every message, a
        // sequential scan) and only then ordered newest first: a MATERIALIZED CTE has no ORDER
        // BY for the planner to serve from the primary key. Asked for "newest first, LIMIT n"
        // in one query, PostgreSQL with statistics walked `messages_pkey` backwards filtering
        // every message by term and channel, which reads the whole table for a rare term in a
        // quiet channel (issue #21). Here the cost is bounded by the number of matches. The
        // cursor applies to the matches, outside the CTE: inside, `id < cursor` let PostgreSQL
        // read the primary key from the first message up to the cursor, filtering by term.
        let mut rows = sqlx::query_as!(
            MessageRow,
            r#"WITH matches AS MATERIALIZED (
                   SELECT id FROM messages
                   WHERE search_vector @@ $1::text::tsquery
                     AND channel_id = ANY($2::int8[])
                     AND deleted_at IS NULL
                     AND ($3::int8 IS NULL OR author_id = $3)
                     AND ($4::timestamptz IS NULL OR created_at < $4)
                     AND ($5::timestamptz IS NULL OR created_at > $5)
               )
               SELECT m.id AS "id!: MessageId", m.channel_id AS "channel_id!: ChannelId",
                      m.author_id AS "author_id!: UserId", m.content AS "content!",
                      m.created_at AS "created_at!: Timestamp", m.edited_at AS "edited_at: Timestamp",
                      m.deleted_at AS "deleted_at: Timestamp", m.thread_id AS "thread_id: ThreadId"
               FROM messages m
               WHERE m.id IN (
                   SELECT id FROM matches WHERE id < COALESCE($6::int8, 9223372036854775807)
                   ORDER BY id DESC LIMIT $7
               )
               ORDER BY m.id DESC"#,
            tsquery,
            &channels,
            author,
            before,
            after,
            query.cursor.map(|c| c.0),
            limit as i64 + 1
        )
        .fetch_all(&mut *conn)
        .await?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);

        let total_estimate = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM (
                   SELECT 1 FROM messages
                   WHERE search_vector @@ $1::text::tsquery
                     AND channel_id = ANY($2::int8[])
                     AND deleted_at IS NULL
                     AND ($3::int8 IS NULL OR author_id = $3)
                     AND ($4::timestamptz IS NULL OR created_at < $4)
                     AND ($5::timestamptz IS NULL OR created_at > $5)
                   LIMIT $6
               ) AS matches"#,
            tsquery,
            &channels,
            author,
            before,
            after,
            SEARCH_COUNT_CAP
        )
        .fetch_one(&mut *conn)
        .await?;

        let messages = load::hydrate(&mut conn, rows, query.viewer).await?;
        Ok(SearchPage { messages, has_more, total_estimate })
    }
}
