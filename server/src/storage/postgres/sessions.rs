//! SessionStore: login challenges and sessions.

use async_trait::async_trait;

use super::PostgresBackend;
use crate::storage::{
    Challenge, DeviceKeyId, NewSession, Nonce, PublicKey, Session, SessionId, SessionStore, StorageResult, Timestamp,
    TokenHash, UserId,
};

#[async_trait]
impl SessionStore for PostgresBackend {
    async fn put_challenge(
        &self,
        pubkey: &PublicKey,
        nonce: Nonce,
        is_bot: bool,
        expires_at: Timestamp,
    ) -> StorageResult<()> {
        sqlx::query!(
            "INSERT INTO auth_challenges (pubkey, nonce, is_bot, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (pubkey) DO UPDATE SET nonce = EXCLUDED.nonce, is_bot = EXCLUDED.is_bot,
                                                created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at",
            pubkey.as_bytes(),
            nonce.as_bytes(),
            is_bot,
            Timestamp::now().as_datetime(),
            expires_at.as_datetime()
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_challenge(&self, pubkey: &PublicKey, now: Timestamp) -> StorageResult<Option<Challenge>> {
        // One statement: single use on every process. An expired challenge is consumed too.
        let challenge = sqlx::query_as!(
            Challenge,
            r#"DELETE FROM auth_challenges WHERE pubkey = $1
               RETURNING pubkey AS "pubkey: PublicKey", nonce AS "nonce: Nonce", is_bot,
                         created_at AS "created_at: Timestamp", expires_at AS "expires_at: Timestamp""#,
            pubkey.as_bytes()
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(challenge.filter(|c| c.expires_at > now))
    }

    async fn purge_expired_challenges(&self, now: Timestamp) -> StorageResult<u64> {
        let purged = sqlx::query!("DELETE FROM auth_challenges WHERE expires_at <= $1", now.as_datetime())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(purged)
    }

    async fn create_session(&self, new: NewSession) -> StorageResult<Session> {
        let session = sqlx::query_as!(
            Session,
            r#"WITH s AS (
                   INSERT INTO sessions (token_hash, user_id, device_key_id, is_read_only, created_at, expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   RETURNING *
               )
               SELECT s.id AS "id!: SessionId", s.token_hash AS "token_hash!: TokenHash", s.user_id AS "user_id!: UserId",
                      s.device_key_id AS "device_key_id?: DeviceKeyId", d.device_pubkey AS "device_pubkey?: PublicKey",
                      s.is_read_only AS "is_read_only!", s.created_at AS "created_at!: Timestamp",
                      s.expires_at AS "expires_at!: Timestamp"
               FROM s LEFT JOIN device_keys d ON d.id = s.device_key_id"#,
            new.token_hash.as_bytes(),
            new.user_id.0,
            new.device_key_id.map(|d| d.0),
            new.is_read_only,
            Timestamp::now().as_datetime(),
            new.expires_at.as_datetime()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(session)
    }

    async fn get_session(&self, token_hash: &TokenHash) -> StorageResult<Option<Session>> {
        let session = sqlx::query_as!(
            Session,
            r#"SELECT s.id AS "id: SessionId", s.token_hash AS "token_hash: TokenHash", s.user_id AS "user_id: UserId",
                      s.device_key_id AS "device_key_id: DeviceKeyId", d.device_pubkey AS "device_pubkey?: PublicKey",
                      s.is_read_only, s.created_at AS "created_at: Timestamp", s.expires_at AS "expires_at: Timestamp"
               FROM sessions s LEFT JOIN device_keys d ON d.id = s.device_key_id
               WHERE s.token_hash = $1"#,
            token_hash.as_bytes()
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(session)
    }

    async fn delete_session(&self, id: SessionId) -> StorageResult<bool> {
        let removed =
            sqlx::query!("DELETE FROM sessions WHERE id = $1", id.0).execute(&self.pool).await?.rows_affected();
        Ok(removed > 0)
    }

    async fn delete_user_sessions(&self, user: UserId) -> StorageResult<Vec<SessionId>> {
        let mut ids =
            sqlx::query_scalar!(r#"DELETE FROM sessions WHERE user_id = $1 RETURNING id AS "id: SessionId""#, user.0)
                .fetch_all(&self.pool)
                .await?;
        ids.sort();
        Ok(ids)
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StorageResult<u64> {
        let purged = sqlx::query!("DELETE FROM sessions WHERE expires_at <= $1", now.as_datetime())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(purged)
    }
}
