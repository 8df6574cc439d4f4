//! SessionStore: login challenges and sessions.

use async_trait::async_trait;

use super::{PostgresBackend, load};
use crate::storage::assemble::{self, AuthRoleRow, SessionAuthRow};
use crate::storage::{
    Challenge, ContentHash, DeviceKeyId, NewSession, Nonce, PublicKey, Role, RoleId, Session, SessionAuth, SessionId,
    SessionStore, StorageResult, Timestamp, TokenHash, UserId,
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

    async fn get_session_auth(&self, token_hash: &TokenHash) -> StorageResult<Option<SessionAuth>> {
        // One row per role of interest (held, or @everyone); a non-member gets one row, no role.
        let rows = sqlx::query!(
            r#"SELECT s.id AS "session_id!: SessionId", s.token_hash AS "token_hash!: TokenHash",
                      s.user_id AS "user_id!: UserId", s.device_key_id AS "device_key_id?: DeviceKeyId",
                      d.device_pubkey AS "device_pubkey?: PublicKey", s.is_read_only AS "is_read_only!",
                      s.created_at AS "session_created_at!: Timestamp", s.expires_at AS "expires_at!: Timestamp",
                      u.pubkey AS "pubkey!: PublicKey", u.display_name AS "display_name?",
                      u.avatar_hash AS "avatar_hash?: ContentHash", u.is_bot AS "is_bot!",
                      u.created_at AS "user_created_at!: Timestamp", m.joined_at AS "joined_at?: Timestamp",
                      r.id AS "role_id?: RoleId", r.name AS "role_name?", r.color AS "role_color?",
                      r.position AS "role_position?", r.is_builtin AS "role_is_builtin?",
                      r.created_at AS "role_created_at?: Timestamp", r.updated_at AS "role_updated_at?: Timestamp",
                      ARRAY(SELECT rp.permission FROM role_permissions rp WHERE rp.role_id = r.id)
                          AS "role_permissions!: Vec<String>",
                      EXISTS (SELECT 1 FROM member_roles mr WHERE mr.user_id = s.user_id AND mr.role_id = r.id)
                          AS "role_held!"
               FROM sessions s
               JOIN users u ON u.id = s.user_id
               LEFT JOIN device_keys d ON d.id = s.device_key_id
               LEFT JOIN members m ON m.user_id = s.user_id
               LEFT JOIN roles r ON m.user_id IS NOT NULL
                   AND (r.id = $2 OR r.id IN (SELECT mr.role_id FROM member_roles mr WHERE mr.user_id = s.user_id))
               WHERE s.token_hash = $1
               ORDER BY r.position DESC, r.id"#,
            token_hash.as_bytes(),
            RoleId::EVERYONE.0
        )
        .fetch_all(&self.pool)
        .await?;
        let rows = rows
            .into_iter()
            .map(|r| {
                let role_columns =
                    (r.role_id, r.role_name, r.role_position, r.role_is_builtin, r.role_created_at, r.role_updated_at);
                let role = match role_columns {
                    (Some(id), Some(name), Some(position), Some(is_builtin), Some(created_at), Some(updated_at)) => {
                        Some(AuthRoleRow {
                            role: Role {
                                id,
                                name,
                                color: r.role_color,
                                permissions: load::permissions_from_names(&r.role_permissions),
                                position,
                                is_builtin,
                                created_at,
                                updated_at,
                            },
                            held: r.role_held,
                        })
                    }
                    _ => None,
                };
                SessionAuthRow {
                    session_id: r.session_id,
                    token_hash: r.token_hash,
                    user_id: r.user_id,
                    device_key_id: r.device_key_id,
                    device_pubkey: r.device_pubkey,
                    is_read_only: r.is_read_only,
                    session_created_at: r.session_created_at,
                    expires_at: r.expires_at,
                    pubkey: r.pubkey,
                    display_name: r.display_name,
                    avatar_hash: r.avatar_hash,
                    is_bot: r.is_bot,
                    user_created_at: r.user_created_at,
                    joined_at: r.joined_at,
                    role,
                }
            })
            .collect();
        Ok(assemble::session_auth(rows))
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
