use async_trait::async_trait;

use super::SqliteBackend;
use super::rows::load_thread;
use crate::storage::{
    ChannelId, Entity, MessageId, StorageError, StorageResult, Thread, ThreadId, ThreadStore, Timestamp, UserId,
};

#[async_trait]
impl ThreadStore for SqliteBackend {
    async fn create_thread(&self, parent: MessageId, creator: UserId) -> StorageResult<(Thread, bool)> {
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        let message = sqlx::query!(
            r#"SELECT m.channel_id AS "channel_id!: ChannelId", m.thread_id AS "thread_id?: ThreadId",
                      c.kind AS "kind!: String"
               FROM messages m JOIN channels c ON c.id = m.channel_id
               WHERE m.id = ?1"#,
            parent
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StorageError::NotFound(Entity::Message))?;
        if message.thread_id.is_some() {
            return Err(StorageError::InvalidInput("a thread reply cannot have a thread".into()));
        }
        if message.kind != "text" {
            return Err(StorageError::InvalidInput("a direct message cannot have a thread".into()));
        }
        let existing =
            sqlx::query_scalar!(r#"SELECT id AS "id!: ThreadId" FROM threads WHERE parent_message_id = ?1"#, parent)
                .fetch_optional(&mut *tx)
                .await?;
        let (id, created) = match existing {
            Some(id) => (id, false),
            None => {
                let id = sqlx::query_scalar!(
                    r#"INSERT INTO threads (channel_id, parent_message_id, creator_id, created_at, reply_count)
                       VALUES (?1, ?2, ?3, ?4, 0) RETURNING id AS "id!: ThreadId""#,
                    message.channel_id,
                    parent,
                    creator,
                    now
                )
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query!(
                    "INSERT INTO thread_followers (thread_id, user_id, followed_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (thread_id, user_id) DO NOTHING",
                    id,
                    creator,
                    now
                )
                .execute(&mut *tx)
                .await?;
                (id, true)
            }
        };
        let thread = load_thread(&mut tx, id, Some(creator)).await?.ok_or(StorageError::NotFound(Entity::Thread))?;
        tx.commit().await?;
        Ok((thread, created))
    }

    async fn get_thread(&self, id: ThreadId, viewer: Option<UserId>) -> StorageResult<Option<Thread>> {
        let mut conn = self.pool.acquire().await?;
        load_thread(&mut conn, id, viewer).await
    }

    async fn follow_thread(&self, id: ThreadId, user: UserId) -> StorageResult<()> {
        let now = Timestamp::now().as_micros();
        let inserted = sqlx::query!(
            "INSERT INTO thread_followers (thread_id, user_id, followed_at)
             SELECT id, ?2, ?3 FROM threads WHERE id = ?1
             ON CONFLICT (thread_id, user_id) DO NOTHING",
            id,
            user,
            now
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            let exists =
                sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM threads WHERE id = ?1) AS "present!: bool""#, id)
                    .fetch_one(&self.pool)
                    .await?;
            if !exists {
                return Err(StorageError::NotFound(Entity::Thread));
            }
        }
        Ok(())
    }

    async fn unfollow_thread(&self, id: ThreadId, user: UserId) -> StorageResult<bool> {
        let removed = sqlx::query!("DELETE FROM thread_followers WHERE thread_id = ?1 AND user_id = ?2", id, user)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    async fn mark_thread_read(&self, id: ThreadId, user: UserId) -> StorageResult<bool> {
        let now = Timestamp::now().as_micros();
        let updated = sqlx::query!(
            "UPDATE thread_followers SET last_read_at = ?1 WHERE thread_id = ?2 AND user_id = ?3",
            now,
            id,
            user
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }
}
