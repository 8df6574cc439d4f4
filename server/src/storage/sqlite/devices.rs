use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::SqliteBackend;
use crate::storage::{
    DeviceKey, DeviceKeyId, DevicePermissions, DeviceRegistration, DeviceRevocation, DeviceStore, Entity, NewDeviceKey,
    PublicKey, SessionId, Signature, StorageError, StorageResult, Timestamp, UserId,
};

async fn load_device(conn: &mut SqliteConnection, device_pubkey: &PublicKey) -> StorageResult<Option<DeviceKey>> {
    let key = device_pubkey.as_bytes();
    let row = sqlx::query!(
        r#"SELECT id AS "id!: DeviceKeyId", device_pubkey AS "device_pubkey!: PublicKey", user_id AS "user_id!: UserId",
                  device_name AS "device_name!: String", permissions AS "permissions!: i64",
                  issued_at AS "issued_at!: Timestamp", expires_at AS "expires_at?: Timestamp",
                  certificate AS "certificate!: Vec<u8>", signature AS "signature!: Signature",
                  created_at AS "created_at!: Timestamp", revoked_at AS "revoked_at?: Timestamp"
           FROM device_keys WHERE device_pubkey = ?1"#,
        key
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| DeviceKey {
        id: r.id,
        device_pubkey: r.device_pubkey,
        user_id: r.user_id,
        device_name: r.device_name,
        permissions: DevicePermissions::from_bits_retain(r.permissions),
        issued_at: r.issued_at,
        expires_at: r.expires_at,
        certificate: r.certificate,
        signature: r.signature,
        created_at: r.created_at,
        revoked_at: r.revoked_at,
    }))
}

#[async_trait]
impl DeviceStore for SqliteBackend {
    async fn get_device_key(&self, device_pubkey: &PublicKey) -> StorageResult<Option<DeviceKey>> {
        let mut conn = self.pool.acquire().await?;
        load_device(&mut conn, device_pubkey).await
    }

    async fn register_device_key(&self, new: NewDeviceKey) -> StorageResult<DeviceRegistration> {
        let now = Timestamp::now().as_micros();
        let key = new.device_pubkey.as_bytes();
        let permissions = new.permissions.bits();
        let issued_at = new.issued_at.as_micros();
        let expires_at = new.expires_at.map(Timestamp::as_micros);
        let signature = new.signature.as_bytes();
        let mut tx = self.begin_write().await?;
        let outcome: fn(DeviceKey) -> DeviceRegistration = match load_device(&mut tx, &new.device_pubkey).await? {
            Some(existing) if existing.revoked_at.is_some() => {
                return Ok(DeviceRegistration::Revoked);
            }
            Some(existing) if existing.user_id != new.user_id => {
                return Ok(DeviceRegistration::OwnedByOther);
            }
            Some(existing) if new.issued_at <= existing.issued_at => {
                return Ok(DeviceRegistration::NotNewer);
            }
            Some(_) => {
                sqlx::query!(
                    "UPDATE device_keys SET device_name = ?1, permissions = ?2, issued_at = ?3, expires_at = ?4,
                                            certificate = ?5, signature = ?6
                     WHERE device_pubkey = ?7",
                    new.device_name,
                    permissions,
                    issued_at,
                    expires_at,
                    new.certificate,
                    signature,
                    key
                )
                .execute(&mut *tx)
                .await?;
                DeviceRegistration::Recertified
            }
            None => {
                sqlx::query!(
                    "INSERT INTO device_keys (device_pubkey, user_id, device_name, permissions, issued_at, expires_at,
                                              certificate, signature, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    key,
                    new.user_id,
                    new.device_name,
                    permissions,
                    issued_at,
                    expires_at,
                    new.certificate,
                    signature,
                    now
                )
                .execute(&mut *tx)
                .await?;
                DeviceRegistration::Created
            }
        };
        let device = load_device(&mut tx, &new.device_pubkey).await?.ok_or(StorageError::NotFound(Entity::Device))?;
        tx.commit().await?;
        Ok(outcome(device))
    }

    async fn list_device_keys(&self, user: UserId, now: Timestamp) -> StorageResult<Vec<DeviceKey>> {
        let now = now.as_micros();
        let rows = sqlx::query!(
            r#"SELECT id AS "id!: DeviceKeyId", device_pubkey AS "device_pubkey!: PublicKey", user_id AS "user_id!: UserId",
                      device_name AS "device_name!: String", permissions AS "permissions!: i64",
                      issued_at AS "issued_at!: Timestamp", expires_at AS "expires_at?: Timestamp",
                      certificate AS "certificate!: Vec<u8>", signature AS "signature!: Signature",
                      created_at AS "created_at!: Timestamp", revoked_at AS "revoked_at?: Timestamp"
               FROM device_keys
               WHERE user_id = ?1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)
               ORDER BY created_at, id"#,
            user,
            now
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeviceKey {
                id: r.id,
                device_pubkey: r.device_pubkey,
                user_id: r.user_id,
                device_name: r.device_name,
                permissions: DevicePermissions::from_bits_retain(r.permissions),
                issued_at: r.issued_at,
                expires_at: r.expires_at,
                certificate: r.certificate,
                signature: r.signature,
                created_at: r.created_at,
                revoked_at: r.revoked_at,
            })
            .collect())
    }

    async fn revoke_device_key(
        &self,
        user: UserId,
        device_pubkey: &PublicKey,
    ) -> StorageResult<Option<DeviceRevocation>> {
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        let Some(existing) = load_device(&mut tx, device_pubkey).await? else {
            return Ok(None);
        };
        if existing.user_id != user {
            return Ok(None);
        }
        sqlx::query!("UPDATE device_keys SET revoked_at = COALESCE(revoked_at, ?1) WHERE id = ?2", now, existing.id)
            .execute(&mut *tx)
            .await?;
        let mut ended_sessions = sqlx::query_scalar!(
            r#"DELETE FROM sessions WHERE device_key_id = ?1 RETURNING id AS "id!: SessionId""#,
            existing.id
        )
        .fetch_all(&mut *tx)
        .await?;
        ended_sessions.sort();
        let device = load_device(&mut tx, device_pubkey).await?.ok_or(StorageError::NotFound(Entity::Device))?;
        tx.commit().await?;
        Ok(Some(DeviceRevocation { device, ended_sessions }))
    }
}
