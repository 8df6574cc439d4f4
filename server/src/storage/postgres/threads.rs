//! ThreadStore: threads hanging off channel messages, and their followers.

use async_trait::async_trait;

use super::{PostgresBackend, load};
use crate::storage::{
    ChannelId, Entity, MessageId, StorageError, StorageResult, Thread, ThreadId, ThreadStore, Timestamp, UserId,
};

#[async_trait]
impl ThreadStore for PostgresBackend {
    async fn create_thread(&self, parent: MessageId, creator: UserId) -> StorageResult<(Thread, bool)> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let parent_row = sqlx::query!(
            r#"SELECT m.channel_id AS "channel_id: ChannelId", m.thread_id, c.kind
               FROM messages m JOIN channels c ON c.id = m.channel_id
               WHERE m.id = $1"#,
            parent.0
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StorageError::NotFound(Entity::Message))?;
        if parent_row.thread_id.is_some() {
            return Err(StorageError::InvalidInput("a thread reply cannot start a thread".into()));
        }
        if parent_row.kind != "text" {
            return Err(StorageError::InvalidInput("a direct message cannot start a thread".into()));
        }
        // Race-safe: concurrent creators wait on the unique parent key; the loser reads the winner's.
        let inserted = sqlx::query_scalar!(
            r#"INSERT INTO threads (channel_id, parent_message_id, creator_id, created_at)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (parent_message_id) DO NOTHING
               RETURNING id AS "id: ThreadId""#,
            parent_row.channel_id.0,
            parent.0,
            creator.0,
            now.as_datetime()
        )
        .fetch_optional(&mut *tx)
        .await?;
        let (id, created) = match inserted {
            Some(id) => {
                sqlx::query!(
                    "INSERT INTO thread_followers (thread_id, user_id, followed_at) VALUES ($1, $2, $3)
                     ON CONFLICT (thread_id, user_id) DO NOTHING",
                    id.0,
                    creator.0,
                    now.as_datetime()
                )
                .execute(&mut *tx)
                .await?;
                (id, true)
            }
            None => {
                let id = sqlx::query_scalar!(
                    r#"SELECT id AS "id: ThreadId" FROM threads WHERE parent_message_id = $1"#,
                    parent.0
                )
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StorageError::NotFound(Entity::Thread))?;
                (id, false)
            }
        };
        let thread = load::thread(&mut tx, id, Some(creator)).await?.ok_or(StorageError::NotFound(Entity::Thread))?;
        tx.commit().await?;
        Ok((thread, created))
    }

    async fn get_thread(&self, id: ThreadId, viewer: Option<UserId>) -> StorageResult<Option<Thread>> {
        let mut conn = self.pool.acquire().await?;
        load::thread(&mut conn, id, viewer).await
    }

    async fn follow_thread(&self, id: ThreadId, user: UserId) -> StorageResult<()> {
        let result = sqlx::query!(
            "INSERT INTO thread_followers (thread_id, user_id, followed_at) VALUES ($1, $2, $3)
             ON CONFLICT (thread_id, user_id) DO NOTHING",
            id.0,
            user.0,
            Timestamp::now().as_datetime()
        )
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(match StorageError::from(err) {
                StorageError::InvalidReference(Some("thread_followers_thread_id_fkey")) => {
                    StorageError::NotFound(Entity::Thread)
                }
                other => other,
            }),
        }
    }

    async fn unfollow_thread(&self, id: ThreadId, user: UserId) -> StorageResult<bool> {
        let removed = sqlx::query!("DELETE FROM thread_followers WHERE thread_id = $1 AND user_id = $2", id.0, user.0)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    async fn mark_thread_read(&self, id: ThreadId, user: UserId) -> StorageResult<bool> {
        let updated = sqlx::query!(
            "UPDATE thread_followers SET last_read_at = $3 WHERE thread_id = $1 AND user_id = $2",
            id.0,
            user.0,
            Timestamp::now().as_datetime()
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }
}
