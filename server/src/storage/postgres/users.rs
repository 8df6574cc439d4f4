//! UserStore: registration (with the first-user bootstrap) and profiles.

use async_trait::async_trait;

use super::{LOCK_FIRST_USER, PostgresBackend, advisory_xact_lock, load, members::add_member};
use crate::storage::{
    ContentHash, Entity, NewUser, PublicKey, Registration, RoleId, StorageError, StorageResult, Timestamp, User,
    UserId, UserStore,
};

#[async_trait]
impl UserStore for PostgresBackend {
    async fn register_user(&self, new: NewUser) -> StorageResult<Registration> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        // Serialises registrations so that exactly one user is ever the first.
        advisory_xact_lock(&mut tx, LOCK_FIRST_USER).await?;
        let is_first_user = !sqlx::query_scalar!(r#"/* pg */ SELECT EXISTS (SELECT 1 FROM users) AS "exists!""#)
            .fetch_one(&mut *tx)
            .await?;
        let user = sqlx::query_as!(
            User,
            r#"INSERT INTO users (pubkey, display_name, avatar_hash, is_bot, created_at)
               VALUES ($1, NULL, NULL, $2, $3)
               RETURNING id AS "id: UserId", pubkey AS "pubkey: PublicKey", display_name,
                         avatar_hash AS "avatar_hash: ContentHash", is_bot, created_at AS "created_at: Timestamp""#,
            new.pubkey.as_bytes(),
            new.is_bot,
            now.as_datetime()
        )
        .fetch_one(&mut *tx)
        .await?;

        let becomes_member = is_first_user || (!new.is_bot && new.open_membership);
        if becomes_member {
            add_member(&mut tx, user.id, now).await?;
            if is_first_user {
                sqlx::query!(
                    "INSERT INTO member_roles (user_id, role_id, assigned_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    user.id.0,
                    RoleId::ADMIN.0,
                    now.as_datetime()
                )
                .execute(&mut *tx)
                .await?;
            }
        } else if new.is_bot {
            sqlx::query!(
                "INSERT INTO bot_approvals (user_id, requested_at) VALUES ($1, $2)",
                user.id.0,
                now.as_datetime()
            )
            .execute(&mut *tx)
            .await?;
        }
        let member = if becomes_member { load::member(&mut tx, user.id).await? } else { None };
        tx.commit().await?;
        Ok(Registration { user, member, is_first_user })
    }

    async fn get_user(&self, id: UserId) -> StorageResult<Option<User>> {
        let mut conn = self.pool.acquire().await?;
        load::user(&mut conn, id).await
    }

    async fn get_user_by_pubkey(&self, pubkey: &PublicKey) -> StorageResult<Option<User>> {
        let user = sqlx::query_as!(
            User,
            r#"SELECT id AS "id: UserId", pubkey AS "pubkey: PublicKey", display_name,
                      avatar_hash AS "avatar_hash: ContentHash", is_bot, created_at AS "created_at: Timestamp"
               FROM users WHERE pubkey = $1"#,
            pubkey.as_bytes()
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(user)
    }

    async fn set_display_name(&self, id: UserId, name: Option<String>) -> StorageResult<User> {
        sqlx::query_as!(
            User,
            r#"UPDATE users SET display_name = $2 WHERE id = $1
               RETURNING id AS "id: UserId", pubkey AS "pubkey: PublicKey", display_name,
                         avatar_hash AS "avatar_hash: ContentHash", is_bot, created_at AS "created_at: Timestamp""#,
            id.0,
            name
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound(Entity::User))
    }

    async fn set_avatar(&self, id: UserId, avatar: Option<ContentHash>) -> StorageResult<User> {
        sqlx::query_as!(
            User,
            r#"UPDATE users SET avatar_hash = $2 WHERE id = $1
               RETURNING id AS "id: UserId", pubkey AS "pubkey: PublicKey", display_name,
                         avatar_hash AS "avatar_hash: ContentHash", is_bot, created_at AS "created_at: Timestamp""#,
            id.0,
            avatar.as_ref().map(ContentHash::as_str)
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound(Entity::User))
    }
}
