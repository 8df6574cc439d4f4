use async_trait::async_trait;

use super::SqliteBackend;
use crate::storage::{
    Challenge, DeviceKeyId, Entity, NewSession, Nonce, PublicKey, Session, SessionId, SessionStore, StorageError,
    StorageResult, Timestamp, TokenHash, UserId,
};

#[async_trait]
impl SessionStore for SqliteBackend {
    async fn put_challenge(
        &self,
        pubkey: &PublicKey,
        nonce: Nonce,
        is_bot: bool,
        expires_at: Timestamp,
    ) -> StorageResult<()> {
        let pubkey = pubkey.as_bytes();
        let nonce = nonce.as_bytes();
        let now = Timestamp::now().as_micros();
        let expires_at = expires_at.as_micros();
        sqlx::query!(
            "INSERT INTO auth_challenges (pubkey, nonce, is_bot, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (pubkey) DO UPDATE SET nonce = excluded.nonce, is_bot = excluded.is_bot,
                                              created_at = excluded.created_at, expires_at = excluded.expires_at",
            pubkey,
            nonce,
            is_bot,
            now,
            expires_at
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_challenge(&self, pubkey: &PublicKey, now: Timestamp) -> StorageResult<Option<Challenge>> {
        let key = pubkey.as_bytes();
        let taken = sqlx::query_as!(
            Challenge,
            r#"DELETE FROM auth_challenges WHERE pubkey = ?1
               RETURNING pubkey AS "pubkey!: PublicKey", nonce AS "nonce!: Nonce", is_bot AS "is_bot!: bool",
                         created_at AS "created_at!: Timestamp", expires_at AS "expires_at!: Timestamp""#,
            key
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.filter(|c| c.expires_at > now))
    }

    async fn purge_expired_challenges(&self, now: Timestamp) -> StorageResult<u64> {
        let now = now.as_micros();
        Ok(sqlx::query!("DELETE FROM auth_challenges WHERE expires_at <= ?1", now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn create_session(&self, new: NewSession) -> StorageResult<Session> {
        let now = Timestamp::now().as_micros();
        let token_hash = new.token_hash.as_bytes();
        let expires_at = new.expires_at.as_micros();
        let id = sqlx::query_scalar!(
            r#"INSERT INTO sessions (token_hash, user_id, device_key_id, is_read_only, created_at, expires_at)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id AS "id!: SessionId""#,
            token_hash,
            new.user_id,
            new.device_key_id,
            new.is_read_only,
            now,
            expires_at
        )
        .fetch_one(&self.pool)
        .await?;
        sqlx::query_as!(
            Session,
            r#"SELECT s.id AS "id!: SessionId", s.token_hash AS "token_hash!: TokenHash", s.user_id AS "user_id!: UserId",
                      s.device_key_id AS "device_key_id?: DeviceKeyId", d.device_pubkey AS "device_pubkey?: PublicKey",
                      s.is_read_only AS "is_read_only!: bool", s.created_at AS "created_at!: Timestamp",
                      s.expires_at AS "expires_at!: Timestamp"
               FROM sessions s LEFT JOIN device_keys d ON d.id = s.device_key_id
               WHERE s.id = ?1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound(Entity::Session))
    }

    async fn get_session(&self, token_hash: &TokenHash) -> StorageResult<Option<Session>> {
        let token_hash = token_hash.as_bytes();
        Ok(sqlx::query_as!(
            Session,
            r#"SELECT s.id AS "id!: SessionId", s.token_hash AS "token_hash!: TokenHash", s.user_id AS "user_id!: UserId",
                      s.device_key_id AS "device_key_id?: DeviceKeyId", d.device_pubkey AS "device_pubkey?: PublicKey",
                      s.is_read_only AS "is_read_only!: bool", s.created_at AS "created_at!: Timestamp",
                      s.expires_at AS "expires_at!: Timestamp"
               FROM sessions s LEFT JOIN device_keys d ON d.id = s.device_key_id
               WHERE s.token_hash = ?1"#,
            token_hash
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn delete_session(&self, id: SessionId) -> StorageResult<bool> {
        let removed = sqlx::query!("DELETE FROM sessions WHERE id = ?1", id).execute(&self.pool).await?.rows_affected();
        Ok(removed > 0)
    }

    async fn delete_user_sessions(&self, user: UserId) -> StorageResult<Vec<SessionId>> {
        let mut ids =
            sqlx::query_scalar!(r#"DELETE FROM sessions WHERE user_id = ?1 RETURNING id AS "id!: SessionId""#, user)
                .fetch_all(&self.pool)
                .await?;
        ids.sort();
        Ok(ids)
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StorageResult<u64> {
        let now = now.as_micros();
        Ok(sqlx::query!("DELETE FROM sessions WHERE expires_at <= ?1", now).execute(&self.pool).await?.rows_affected())
    }
}
