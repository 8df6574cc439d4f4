use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::SqliteBackend;
use super::rows::{MessageRow, hydrate_messages, json_ids, load_message};
use crate::storage::assemble;
use crate::storage::search;
use crate::storage::{
    Attachment, ChannelId, Conflict, ContentHash, Entity, Message, MessageId, MessagePage, MessageScope, MessageStore,
    NewMessage, PageCursor, SearchPage, SearchQuery, StorageError, StorageResult, ThreadId, Timestamp, UserId,
};

/// The most matches `total_estimate` counts.
const TOTAL_ESTIMATE_CAP: i64 = 1000;

/// Inserts a message row (content and its normalised search text) and returns its id.
pub(super) async fn insert_message(
    conn: &mut SqliteConnection,
    channel: ChannelId,
    thread: Option<ThreadId>,
    author: UserId,
    content: &str,
    created_at: Timestamp,
) -> StorageResult<MessageId> {
    let search_text = search::normalise(content);
    let created_at = created_at.as_micros();
    Ok(sqlx::query_scalar!(
        r#"INSERT INTO messages (channel_id, author_id, thread_id, content, search_text, created_at)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id AS "id!: MessageId""#,
        channel,
        author,
        thread,
        content,
        search_text,
        created_at
    )
    .fetch_one(&mut *conn)
    .await?)
}

#[async_trait]
impl MessageStore for SqliteBackend {
    async fn create_messages_batch(&self, channel: ChannelId, messages: Vec<(UserId, String)>) -> StorageResult<u64> {
        // One statement for the whole batch: rows travel as a JSON array of
        // [author, content, search_text] and json_each yields them in array order, so ids follow
        // the input order.
        let rows: Vec<(i64, &str, String)> =
            messages.iter().map(|(author, content)| (author.0, content.as_str(), search::normalise(content))).collect();
        let rows = serde_json::to_string(&rows).map_err(|e| StorageError::InvalidInput(e.to_string()))?;
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        let exists =
            sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM channels WHERE id = ?1) AS "present!: bool""#, channel)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            return Err(StorageError::NotFound(Entity::Channel));
        }
        let inserted = sqlx::query!(
            "INSERT INTO messages (channel_id, author_id, content, search_text, created_at)
             SELECT ?1, value ->> 0, value ->> 1, value ->> 2, ?2 FROM json_each(?3) ORDER BY key",
            channel,
            now,
            rows
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted)
    }

    async fn create_message(&self, new: NewMessage) -> StorageResult<Message> {
        let now = Timestamp::now();
        let now_micros = now.as_micros();
        let mut tx = self.begin_write().await?;

        // A reply lives in its thread's channel.
        let (channel, id) = match new.thread_id {
            Some(thread) => {
                let channel = sqlx::query_scalar!(
                    r#"SELECT channel_id AS "channel_id!: ChannelId" FROM threads WHERE id = ?1"#,
                    thread
                )
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StorageError::NotFound(Entity::Thread))?;
                (channel, insert_message(&mut tx, channel, new.thread_id, new.author_id, &new.content, now).await?)
            }
            None => {
                // Inserted only if the channel exists: one statement instead of a check and an insert.
                let search_text = search::normalise(&new.content);
                let id = sqlx::query_scalar!(
                    r#"INSERT INTO messages (channel_id, author_id, thread_id, content, search_text, created_at)
                       SELECT c.id, ?2, NULL, ?3, ?4, ?5 FROM channels c WHERE c.id = ?1
                       RETURNING id AS "id!: MessageId""#,
                    new.channel_id,
                    new.author_id,
                    new.content,
                    search_text,
                    now_micros
                )
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StorageError::NotFound(Entity::Channel))?;
                (new.channel_id, id)
            }
        };

        let mut attachments = Vec::with_capacity(new.attachment_ids.len());
        for attachment in &new.attachment_ids {
            let linked = sqlx::query_as!(
                Attachment,
                r#"UPDATE attachments SET message_id = ?1
                   WHERE id = ?2 AND uploader_id = ?3 AND channel_id = ?4
                     AND message_id IS NULL AND deleted_at IS NULL
                   RETURNING id AS "id!: _", message_id AS "message_id?: MessageId", channel_id AS "channel_id!: ChannelId",
                             uploader_id AS "uploader_id!: UserId", filename AS "filename!",
                             content_hash AS "content_hash!: ContentHash", size_bytes AS "size!", mime_type AS "mime_type!",
                             width, height, created_at AS "created_at!: Timestamp""#,
                id,
                attachment,
                new.author_id,
                channel
            )
            .fetch_optional(&mut *tx)
            .await?;
            match linked {
                Some(linked) => attachments.push(linked),
                // Dropping the transaction rolls everything back.
                None => return Err(StorageError::Conflict(Conflict::AttachmentUnavailable(*attachment))),
            }
        }

        if let Some(thread) = new.thread_id {
            sqlx::query!(
                "UPDATE threads SET reply_count = reply_count + 1, last_reply_at = ?1, last_reply_author_id = ?2
                 WHERE id = ?3",
                now_micros,
                new.author_id,
                thread
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "INSERT INTO thread_followers (thread_id, user_id, followed_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (thread_id, user_id) DO NOTHING",
                thread,
                new.author_id,
                now_micros
            )
            .execute(&mut *tx)
            .await?;
        }

        tx.commit().await?;
        // A new message has no reactions and no thread yet: it is built from what was written.
        Ok(assemble::new_message(id, channel, new.author_id, new.thread_id, new.content, now, attachments))
    }

    async fn get_message(&self, id: MessageId, viewer: Option<UserId>) -> StorageResult<Option<Message>> {
        let mut conn = self.pool.acquire().await?;
        load_message(&mut conn, id, viewer).await
    }

    async fn list_messages(
        &self,
        scope: MessageScope,
        cursor: PageCursor,
        limit: u32,
        viewer: Option<UserId>,
    ) -> StorageResult<MessagePage> {
        let fetch = i64::from(limit) + 1;
        let mut conn = self.pool.acquire().await?;
        let mut rows = match (scope, cursor) {
            (MessageScope::Channel(channel), PageCursor::Latest | PageCursor::Before(_)) => {
                let before = match cursor {
                    PageCursor::Before(id) => id.0,
                    _ => i64::MAX,
                };
                sqlx::query_as!(
                    MessageRow,
                    r#"SELECT id AS "id!: MessageId", channel_id AS "channel_id!: ChannelId", author_id AS "author_id!: UserId",
                              thread_id AS "thread_id?: ThreadId", content AS "content!", created_at AS "created_at!: Timestamp",
                              edited_at AS "edited_at?: Timestamp", deleted_at AS "deleted_at?: Timestamp"
                       FROM messages
                       WHERE channel_id = ?1 AND thread_id IS NULL AND id < ?2
                       ORDER BY id DESC LIMIT ?3"#,
                    channel,
                    before,
                    fetch
                )
                .fetch_all(&mut *conn)
                .await?
            }
            (MessageScope::Channel(channel), PageCursor::After(after)) => {
                sqlx::query_as!(
                    MessageRow,
                    r#"SELECT id AS "id!: MessageId", channel_id AS "channel_id!: ChannelId", author_id AS "author_id!: UserId",
                              thread_id AS "thread_id?: ThreadId", content AS "content!", created_at AS "created_at!: Timestamp",
                              edited_at AS "edited_at?: Timestamp", deleted_at AS "deleted_at?: Timestamp"
                       FROM messages
                       WHERE channel_id = ?1 AND thread_id IS NULL AND id > ?2
                       ORDER BY id ASC LIMIT ?3"#,
                    channel,
                    after,
                    fetch
                )
                .fetch_all(&mut *conn)
                .await?
            }
            (MessageScope::Thread(thread), PageCursor::Latest | PageCursor::Before(_)) => {
                let before = match cursor {
                    PageCursor::Before(id) => id.0,
                    _ => i64::MAX,
                };
                sqlx::query_as!(
                    MessageRow,
                    r#"SELECT id AS "id!: MessageId", channel_id AS "channel_id!: ChannelId", author_id AS "author_id!: UserId",
                              thread_id AS "thread_id?: ThreadId", content AS "content!", created_at AS "created_at!: Timestamp",
                              edited_at AS "edited_at?: Timestamp", deleted_at AS "deleted_at?: Timestamp"
                       FROM messages
                       WHERE thread_id = ?1 AND id < ?2
                       ORDER BY id DESC LIMIT ?3"#,
                    thread,
                    before,
                    fetch
                )
                .fetch_all(&mut *conn)
                .await?
            }
            (MessageScope::Thread(thread), PageCursor::After(after)) => {
                sqlx::query_as!(
                    MessageRow,
                    r#"SELECT id AS "id!: MessageId", channel_id AS "channel_id!: ChannelId", author_id AS "author_id!: UserId",
                              thread_id AS "thread_id?: ThreadId", content AS "content!", created_at AS "created_at!: Timestamp",
                              edited_at AS "edited_at?: Timestamp", deleted_at AS "deleted_at?: Timestamp"
                       FROM messages
                       WHERE thread_id = ?1 AND id > ?2
                       ORDER BY id ASC LIMIT ?3"#,
                    thread,
                    after,
                    fetch
                )
                .fetch_all(&mut *conn)
                .await?
            }
        };
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let messages = hydrate_messages(&mut conn, rows, viewer).await?;
        Ok(MessagePage { messages, has_more })
    }

    async fn edit_message(&self, id: MessageId, content: String) -> StorageResult<Message> {
        let now = Timestamp::now().as_micros();
        let search_text = search::normalise(&content);
        let mut tx = self.begin_write().await?;
        let state =
            sqlx::query_scalar!(r#"SELECT deleted_at IS NOT NULL AS "deleted!: bool" FROM messages WHERE id = ?1"#, id)
                .fetch_optional(&mut *tx)
                .await?;
        match state {
            None => return Err(StorageError::NotFound(Entity::Message)),
            Some(true) => return Err(StorageError::Conflict(Conflict::MessageDeleted)),
            Some(false) => {}
        }
        sqlx::query!(
            "UPDATE messages SET content = ?1, search_text = ?2, edited_at = ?3 WHERE id = ?4",
            content,
            search_text,
            now,
            id
        )
        .execute(&mut *tx)
        .await?;
        let message = load_message(&mut tx, id, None).await?.ok_or(StorageError::NotFound(Entity::Message))?;
        tx.commit().await?;
        Ok(message)
    }

    async fn delete_message(&self, id: MessageId) -> StorageResult<bool> {
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        let state =
            sqlx::query_scalar!(r#"SELECT deleted_at IS NOT NULL AS "deleted!: bool" FROM messages WHERE id = ?1"#, id)
                .fetch_optional(&mut *tx)
                .await?;
        match state {
            None => return Err(StorageError::NotFound(Entity::Message)),
            Some(true) => return Ok(false),
            Some(false) => {}
        }
        sqlx::query!("UPDATE messages SET content = '', search_text = '', deleted_at = ?1 WHERE id = ?2", now, id)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("UPDATE attachments SET deleted_at = ?1 WHERE message_id = ?2 AND deleted_at IS NULL", now, id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn search_messages(&self, query: SearchQuery) -> StorageResult<SearchPage> {
        if query.terms.is_empty() || query.channel_ids.is_empty() {
            return Ok(SearchPage { messages: Vec::new(), has_more: false, total_estimate: 0 });
        }
        let expression = search::fts5_match(&query.terms);
        let channels = json_ids(query.channel_ids.iter().map(|c| c.0));
        let before = query.created_before.map(Timestamp::as_micros);
        let after = query.created_after.map(Timestamp::as_micros);
        let fetch = i64::from(query.limit) + 1;
        let mut conn = self.pool.acquire().await?;

        // Ordered and bounded by the FTS table's rowid (= the message id), not by `m.id`: FTS5
        // then yields its matches newest first and stops after the page, where `ORDER BY m.id`
        // collected every match into a temporary B-tree to sort them (issue #21).
        let mut rows = sqlx::query_as!(
            MessageRow,
            r#"SELECT m.id AS "id!: MessageId", m.channel_id AS "channel_id!: ChannelId", m.author_id AS "author_id!: UserId",
                      m.thread_id AS "thread_id?: ThreadId", m.content AS "content!", m.created_at AS "created_at!: Timestamp",
                      m.edited_at AS "edited_at?: Timestamp", m.deleted_at AS "deleted_at?: Timestamp"
               FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
               WHERE messages_fts MATCH ?1
                 AND m.channel_id IN (SELECT value FROM json_each(?2))
                 AND m.deleted_at IS NULL
                 AND (?3 IS NULL OR m.author_id = ?3)
                 AND (?4 IS NULL OR m.created_at < ?4)
                 AND (?5 IS NULL OR m.created_at > ?5)
                 AND messages_fts.rowid < COALESCE(?6, 9223372036854775807)
               ORDER BY messages_fts.rowid DESC LIMIT ?7"#,
            expression,
            channels,
            query.author_id,
            before,
            after,
            query.cursor,
            fetch
        )
        .fetch_all(&mut *conn)
        .await?;

        let total_estimate = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "count!: i64" FROM (
                   SELECT 1 FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
                   WHERE messages_fts MATCH ?1
                     AND m.channel_id IN (SELECT value FROM json_each(?2))
                     AND m.deleted_at IS NULL
                     AND (?3 IS NULL OR m.author_id = ?3)
                     AND (?4 IS NULL OR m.created_at < ?4)
                     AND (?5 IS NULL OR m.created_at > ?5)
                   LIMIT ?6)"#,
            expression,
            channels,
            query.author_id,
            before,
            after,
            TOTAL_ESTIMATE_CAP
        )
        .fetch_one(&mut *conn)
        .await?;

        let has_more = rows.len() > query.limit as usize;
        rows.truncate(query.limit as usize);
        let messages = hydrate_messages(&mut conn, rows, query.viewer).await?;
        Ok(SearchPage { messages, has_more, total_estimate })
    }
}
