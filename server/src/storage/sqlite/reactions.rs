use async_trait::async_trait;

use super::SqliteBackend;
use crate::storage::{
    Entity, MessageId, ReactionChange, ReactionStore, Reactor, ReactorPage, StorageError, StorageResult, Timestamp,
    UserId,
};

#[async_trait]
impl ReactionStore for SqliteBackend {
    async fn toggle_reaction(&self, message: MessageId, user: UserId, emoji: &str) -> StorageResult<ReactionChange> {
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        let exists =
            sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1) AS "present!: bool""#, message)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            return Err(StorageError::NotFound(Entity::Message));
        }
        let current = sqlx::query_scalar!(
            r#"SELECT emoji AS "emoji!: String" FROM reactions WHERE message_id = ?1 AND user_id = ?2"#,
            message,
            user
        )
        .fetch_optional(&mut *tx)
        .await?;
        let mut change = ReactionChange::default();
        if let Some(old) = current {
            sqlx::query!("DELETE FROM reactions WHERE message_id = ?1 AND user_id = ?2", message, user)
                .execute(&mut *tx)
                .await?;
            let same = old == emoji;
            change.removed = Some(old);
            if same {
                tx.commit().await?;
                return Ok(change);
            }
        }
        // A replacement is a new row, so the new emoji orders by this reaction, not the old one.
        sqlx::query!(
            "INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES (?1, ?2, ?3, ?4)",
            message,
            user,
            emoji,
            now
        )
        .execute(&mut *tx)
        .await?;
        change.added = Some(emoji.to_owned());
        tx.commit().await?;
        Ok(change)
    }

    async fn remove_reaction(&self, message: MessageId, user: UserId) -> StorageResult<Option<String>> {
        Ok(sqlx::query_scalar!(
            r#"DELETE FROM reactions WHERE message_id = ?1 AND user_id = ?2 RETURNING emoji AS "emoji!: String""#,
            message,
            user
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn list_reactors(
        &self,
        message: MessageId,
        emoji: &str,
        before: Option<UserId>,
        limit: u32,
    ) -> StorageResult<ReactorPage> {
        let limit = i64::from(limit);
        let mut conn = self.pool.acquire().await?;
        let users = sqlx::query_as!(
            Reactor,
            r#"SELECT r.user_id AS "user_id!: UserId", u.display_name AS "display_name?: String"
               FROM reactions r JOIN users u ON u.id = r.user_id
               WHERE r.message_id = ?1 AND r.emoji = ?2 AND (?3 IS NULL OR r.user_id < ?3)
               ORDER BY r.user_id DESC LIMIT ?4"#,
            message,
            emoji,
            before,
            limit
        )
        .fetch_all(&mut *conn)
        .await?;
        let total = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "count!: i64" FROM reactions WHERE message_id = ?1 AND emoji = ?2"#,
            message,
            emoji
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(ReactorPage { users, total })
    }
}
