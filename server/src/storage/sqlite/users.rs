use async_trait::async_trait;

use super::SqliteBackend;
use super::rows::{load_member, load_user};
use crate::storage::{
    ContentHash, Entity, NewUser, PublicKey, Registration, RoleId, StorageError, StorageResult, Timestamp, User,
    UserId, UserStore,
};

#[async_trait]
impl UserStore for SqliteBackend {
    async fn register_user(&self, new: NewUser) -> StorageResult<Registration> {
        let now = Timestamp::now().as_micros();
        // IMMEDIATE takes the write lock before the count, so exactly one registration ever sees
        // an empty users table.
        let mut tx = self.begin_write().await?;
        let is_first_user =
            sqlx::query_scalar!(r#"/* sqlite */ SELECT NOT EXISTS (SELECT 1 FROM users) AS "empty!: bool""#)
                .fetch_one(&mut *tx)
                .await?;
        let pubkey = new.pubkey.as_bytes();
        let id = sqlx::query_scalar!(
            r#"INSERT INTO users (pubkey, display_name, avatar_hash, is_bot, created_at)
               VALUES (?1, NULL, NULL, ?2, ?3) RETURNING id AS "id!: UserId""#,
            pubkey,
            new.is_bot,
            now
        )
        .fetch_one(&mut *tx)
        .await?;

        let becomes_member = is_first_user || (!new.is_bot && new.open_membership);
        if becomes_member {
            sqlx::query!("INSERT INTO members (user_id, joined_at) VALUES (?1, ?2)", id, now).execute(&mut *tx).await?;
            sqlx::query!(
                "INSERT INTO member_roles (user_id, role_id, assigned_at) VALUES (?1, ?2, ?3)",
                id,
                RoleId::EVERYONE,
                now
            )
            .execute(&mut *tx)
            .await?;
            if is_first_user {
                sqlx::query!(
                    "INSERT INTO member_roles (user_id, role_id, assigned_at) VALUES (?1, ?2, ?3)",
                    id,
                    RoleId::ADMIN,
                    now
                )
                .execute(&mut *tx)
                .await?;
            }
        } else if new.is_bot {
            sqlx::query!("INSERT INTO bot_approvals (user_id, requested_at) VALUES (?1, ?2)", id, now)
                .execute(&mut *tx)
                .await?;
        }

        let user = load_user(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::User))?;
        let member = if becomes_member { load_member(&mut tx, id).await? } else { None };
        tx.commit().await?;
        Ok(Registration { user, member, is_first_user })
    }

    async fn get_user(&self, id: UserId) -> StorageResult<Option<User>> {
        let mut conn = self.pool.acquire().await?;
        load_user(&mut conn, id).await
    }

    async fn get_user_by_pubkey(&self, pubkey: &PublicKey) -> StorageResult<Option<User>> {
        let pubkey = pubkey.as_bytes();
        Ok(sqlx::query_as!(
            User,
            r#"SELECT id AS "id!: UserId", pubkey AS "pubkey!: PublicKey", display_name,
                      avatar_hash AS "avatar_hash?: ContentHash", is_bot AS "is_bot!: bool",
                      created_at AS "created_at!: Timestamp"
               FROM users WHERE pubkey = ?1"#,
            pubkey
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn set_display_name(&self, id: UserId, name: Option<String>) -> StorageResult<User> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query!("UPDATE users SET display_name = ?1 WHERE id = ?2", name, id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(StorageError::NotFound(Entity::User));
        }
        let user = load_user(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::User))?;
        tx.commit().await?;
        Ok(user)
    }

    async fn set_avatar(&self, id: UserId, avatar: Option<ContentHash>) -> StorageResult<User> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query!("UPDATE users SET avatar_hash = ?1 WHERE id = ?2", avatar, id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(StorageError::NotFound(Entity::User));
        }
        let user = load_user(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::User))?;
        tx.commit().await?;
        Ok(user)
    }
}
