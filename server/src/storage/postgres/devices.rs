//! DeviceStore: device keys certified by a master key.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::PostgresBackend;
use crate::storage::{
    DeviceKey, DeviceKeyId, DevicePermissions, DeviceRegistration, DeviceRevocation, DeviceStore, NewDeviceKey,
    PublicKey, SessionId, Signature, StorageResult, Timestamp, UserId,
};

/// A device_keys row; `permissions` is the stored bitmask.
struct DeviceRow {
    id: DeviceKeyId,
    device_pubkey: PublicKey,
    user_id: UserId,
    device_name: String,
    permissions: i64,
    issued_at: Timestamp,
    expires_at: Option<Timestamp>,
    certificate: Vec<u8>,
    signature: Signature,
    created_at: Timestamp,
    revoked_at: Option<Timestamp>,
}

impl From<DeviceRow> for DeviceKey {
    fn from(r: DeviceRow) -> DeviceKey {
        DeviceKey {
            id: r.id,
            device_pubkey: r.device_pubkey,
            user_id: r.user_id,
            device_name: r.device_name,
            permissions: DevicePermissions::from_bits_truncate(r.permissions),
            issued_at: r.issued_at,
            expires_at: r.expires_at,
            certificate: r.certificate,
            signature: r.signature,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

async fn device_for_update(conn: &mut PgConnection, device_pubkey: &PublicKey) -> StorageResult<Option<DeviceRow>> {
    let row = sqlx::query_as!(
        DeviceRow,
        r#"SELECT id AS "id: DeviceKeyId", device_pubkey AS "device_pubkey: PublicKey", user_id AS "user_id: UserId",
                  device_name, permissions, issued_at AS "issued_at: Timestamp", expires_at AS "expires_at: Timestamp",
                  certificate, signature AS "signature: Signature", created_at AS "created_at: Timestamp",
                  revoked_at AS "revoked_at: Timestamp"
           FROM device_keys WHERE device_pubkey = $1 FOR UPDATE"#,
        device_pubkey.as_bytes()
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row)
}

#[async_trait]
impl DeviceStore for PostgresBackend {
    async fn get_device_key(&self, device_pubkey: &PublicKey) -> StorageResult<Option<DeviceKey>> {
        let row = sqlx::query_as!(
            DeviceRow,
            r#"SELECT id AS "id: DeviceKeyId", device_pubkey AS "device_pubkey: PublicKey", user_id AS "user_id: UserId",
                      device_name, permissions, issued_at AS "issued_at: Timestamp", expires_at AS "expires_at: Timestamp",
                      certificate, signature AS "signature: Signature", created_at AS "created_at: Timestamp",
                      revoked_at AS "revoked_at: Timestamp"
               FROM device_keys WHERE device_pubkey = $1"#,
            device_pubkey.as_bytes()
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(DeviceKey::from))
    }

    async fn register_device_key(&self, new: NewDeviceKey) -> StorageResult<DeviceRegistration> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        // Insert-or-nothing first: concurrent first registrations of one key cannot both create it.
        let created = sqlx::query_as!(
            DeviceRow,
            r#"INSERT INTO device_keys (device_pubkey, user_id, device_name, permissions, issued_at, expires_at,
                                        certificate, signature, created_at, revoked_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)
               ON CONFLICT (device_pubkey) DO NOTHING
               RETURNING id AS "id: DeviceKeyId", device_pubkey AS "device_pubkey: PublicKey", user_id AS "user_id: UserId",
                         device_name, permissions, issued_at AS "issued_at: Timestamp", expires_at AS "expires_at: Timestamp",
                         certificate, signature AS "signature: Signature", created_at AS "created_at: Timestamp",
                         revoked_at AS "revoked_at: Timestamp""#,
            new.device_pubkey.as_bytes(),
            new.user_id.0,
            new.device_name,
            new.permissions.bits(),
            new.issued_at.as_datetime(),
            new.expires_at.map(Timestamp::as_datetime),
            new.certificate,
            new.signature.as_bytes(),
            now.as_datetime()
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = created {
            tx.commit().await?;
            return Ok(DeviceRegistration::Created(row.into()));
        }

        let Some(current) = device_for_update(&mut tx, &new.device_pubkey).await? else {
            // Deleted between the two statements (user removed): nothing to re-certify.
            tx.rollback().await?;
            return Ok(DeviceRegistration::OwnedByOther);
        };
        let outcome = if current.revoked_at.is_some() {
            DeviceRegistration::Revoked
        } else if current.user_id != new.user_id {
            DeviceRegistration::OwnedByOther
        } else if new.issued_at <= current.issued_at {
            DeviceRegistration::NotNewer
        } else {
            let row = sqlx::query_as!(
                DeviceRow,
                r#"UPDATE device_keys
                   SET device_name = $2, permissions = $3, issued_at = $4, expires_at = $5, certificate = $6,
                       signature = $7
                   WHERE id = $1
                   RETURNING id AS "id: DeviceKeyId", device_pubkey AS "device_pubkey: PublicKey", user_id AS "user_id: UserId",
                             device_name, permissions, issued_at AS "issued_at: Timestamp",
                             expires_at AS "expires_at: Timestamp", certificate, signature AS "signature: Signature",
                             created_at AS "created_at: Timestamp", revoked_at AS "revoked_at: Timestamp""#,
                current.id.0,
                new.device_name,
                new.permissions.bits(),
                new.issued_at.as_datetime(),
                new.expires_at.map(Timestamp::as_datetime),
                new.certificate,
                new.signature.as_bytes()
            )
            .fetch_one(&mut *tx)
            .await?;
            DeviceRegistration::Recertified(row.into())
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn list_device_keys(&self, user: UserId, now: Timestamp) -> StorageResult<Vec<DeviceKey>> {
        let rows = sqlx::query_as!(
            DeviceRow,
            r#"SELECT id AS "id: DeviceKeyId", device_pubkey AS "device_pubkey: PublicKey", user_id AS "user_id: UserId",
                      device_name, permissions, issued_at AS "issued_at: Timestamp", expires_at AS "expires_at: Timestamp",
                      certificate, signature AS "signature: Signature", created_at AS "created_at: Timestamp",
                      revoked_at AS "revoked_at: Timestamp"
               FROM device_keys
               WHERE user_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)
               ORDER BY created_at, id"#,
            user.0,
            now.as_datetime()
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(DeviceKey::from).collect())
    }

    async fn revoke_device_key(
        &self,
        user: UserId,
        device_pubkey: &PublicKey,
    ) -> StorageResult<Option<DeviceRevocation>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query_as!(
            DeviceRow,
            r#"UPDATE device_keys SET revoked_at = COALESCE(revoked_at, $3)
               WHERE device_pubkey = $1 AND user_id = $2
               RETURNING id AS "id: DeviceKeyId", device_pubkey AS "device_pubkey: PublicKey", user_id AS "user_id: UserId",
                         device_name, permissions, issued_at AS "issued_at: Timestamp", expires_at AS "expires_at: Timestamp",
                         certificate, signature AS "signature: Signature", created_at AS "created_at: Timestamp",
                         revoked_at AS "revoked_at: Timestamp""#,
            device_pubkey.as_bytes(),
            user.0,
            Timestamp::now().as_datetime()
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let mut ended_sessions = sqlx::query_scalar!(
            r#"DELETE FROM sessions WHERE device_key_id = $1 RETURNING id AS "id: SessionId""#,
            row.id.0
        )
        .fetch_all(&mut *tx)
        .await?;
        ended_sessions.sort();
        tx.commit().await?;
        Ok(Some(DeviceRevocation { device: row.into(), ended_sessions }))
    }
}
