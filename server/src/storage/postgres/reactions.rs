//! ReactionStore: one reaction per user per message.

use async_trait::async_trait;

use super::{LOCK_REACTION_NS, PostgresBackend, advisory_xact_lock};
use crate::storage::{
    Entity, MessageId, ReactionChange, ReactionStore, Reactor, ReactorPage, StorageError, StorageResult, Timestamp,
    UserId,
};

/// The advisory-lock key of one (message, user) pair. Collisions only serialise unrelated
/// toggles, never break correctness.
fn reaction_lock_key(message: MessageId, user: UserId) -> i64 {
    LOCK_REACTION_NS ^ message.0.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64) ^ user.0.rotate_left(32)
}

#[async_trait]
impl ReactionStore for PostgresBackend {
    async fn toggle_reaction(&self, message: MessageId, user: UserId, emoji: &str) -> StorageResult<ReactionChange> {
        let mut tx = self.pool.begin().await?;
        advisory_xact_lock(&mut tx, reaction_lock_key(message, user)).await?;
        let exists =
            sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1) AS "exists!""#, message.0)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            return Err(StorageError::NotFound(Entity::Message));
        }
        let current = sqlx::query!(
            "SELECT id, emoji FROM reactions WHERE message_id = $1 AND user_id = $2 FOR UPDATE",
            message.0,
            user.0
        )
        .fetch_optional(&mut *tx)
        .await?;
        let mut change = ReactionChange::default();
        if let Some(current) = current {
            sqlx::query!("DELETE FROM reactions WHERE id = $1", current.id).execute(&mut *tx).await?;
            let same = current.emoji == emoji;
            change.removed = Some(current.emoji);
            if same {
                tx.commit().await?;
                return Ok(change);
            }
        }
        // A replacement is a new row, so the emoji's order reflects when it was chosen.
        sqlx::query!(
            "INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES ($1, $2, $3, $4)",
            message.0,
            user.0,
            emoji,
            Timestamp::now().as_datetime()
        )
        .execute(&mut *tx)
        .await?;
        change.added = Some(emoji.to_owned());
        tx.commit().await?;
        Ok(change)
    }

    async fn remove_reaction(&self, message: MessageId, user: UserId) -> StorageResult<Option<String>> {
        let emoji = sqlx::query_scalar!(
            "DELETE FROM reactions WHERE message_id = $1 AND user_id = $2 RETURNING emoji",
            message.0,
            user.0
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(emoji)
    }

    async fn list_reactors(
        &self,
        message: MessageId,
        emoji: &str,
        before: Option<UserId>,
        limit: u32,
    ) -> StorageResult<ReactorPage> {
        let mut conn = self.pool.acquire().await?;
        let users = sqlx::query_as!(
            Reactor,
            r#"SELECT r.user_id AS "user_id: UserId", u.display_name
               FROM reactions r JOIN users u ON u.id = r.user_id
               WHERE r.message_id = $1 AND r.emoji = $2 AND ($3::int8 IS NULL OR r.user_id < $3)
               ORDER BY r.user_id DESC LIMIT $4"#,
            message.0,
            emoji,
            before.map(|b| b.0),
            i64::from(limit)
        )
        .fetch_all(&mut *conn)
        .await?;
        let total = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM reactions WHERE message_id = $1 AND emoji = $2"#,
            message.0,
            emoji
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(ReactorPage { users, total })
    }
}
