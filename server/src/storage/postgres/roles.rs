//! RoleStore: roles with their permission rows, assignments and channel overrides.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::PostgresBackend;
use super::load::{self, RoleRow, permission_names};
use crate::storage::{
    ChannelId, Entity, NewRole, Override, Permissions, Role, RoleId, RolePatch, RoleStore, StorageError, StorageResult,
    Timestamp, UserId,
};

/// Replaces a role's permission rows with `permissions`.
async fn write_permissions(conn: &mut PgConnection, role: RoleId, permissions: Permissions) -> StorageResult<()> {
    sqlx::query!("DELETE FROM role_permissions WHERE role_id = $1", role.0).execute(&mut *conn).await?;
    sqlx::query!(
        "INSERT INTO role_permissions (role_id, permission) SELECT $1::int8, unnest($2::text[])",
        role.0,
        &permission_names(permissions)
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl RoleStore for PostgresBackend {
    async fn list_roles(&self) -> StorageResult<Vec<Role>> {
        let rows = sqlx::query_as!(
            RoleRow,
            r#"/* pg */
               SELECT r.id AS "id: RoleId", r.name, r.color,
                      ARRAY(SELECT rp.permission FROM role_permissions rp WHERE rp.role_id = r.id) AS "permissions!: Vec<String>",
                      r.position, r.is_builtin, r.created_at AS "created_at: Timestamp", r.updated_at AS "updated_at: Timestamp"
               FROM roles r ORDER BY r.position DESC, r.id"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Role::from).collect())
    }

    async fn get_role(&self, id: RoleId) -> StorageResult<Option<Role>> {
        let mut conn = self.pool.acquire().await?;
        load::role(&mut conn, id).await
    }

    async fn create_role(&self, new: NewRole) -> StorageResult<Role> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query_scalar!(
            r#"INSERT INTO roles (name, color, position, is_builtin, created_at, updated_at)
               VALUES ($1, $2, $3, FALSE, $4, $4) RETURNING id AS "id: RoleId""#,
            new.name,
            new.color,
            new.position,
            now.as_datetime()
        )
        .fetch_one(&mut *tx)
        .await?;
        write_permissions(&mut tx, id, new.permissions).await?;
        let role = load::role(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::Role))?;
        tx.commit().await?;
        Ok(role)
    }

    async fn update_role(&self, id: RoleId, patch: RolePatch) -> StorageResult<Role> {
        let mut tx = self.pool.begin().await?;
        let current = sqlx::query!("SELECT position, is_builtin FROM roles WHERE id = $1 FOR UPDATE", id.0)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StorageError::NotFound(Entity::Role))?;
        if current.is_builtin {
            if patch.position.is_some_and(|p| p != current.position) {
                return Err(StorageError::InvalidInput("built-in role positions cannot be changed".into()));
            }
            if id != RoleId::EVERYONE && patch.permissions.is_some() {
                let stored = load::role(&mut tx, id).await?.map(|r| r.permissions);
                if patch.permissions != stored {
                    return Err(StorageError::InvalidInput("@admin permissions cannot be modified".into()));
                }
            }
        }
        let (set_color, color) = match patch.color {
            Some(color) => (true, color),
            None => (false, None),
        };
        sqlx::query!(
            "UPDATE roles SET name = COALESCE($2, name),
                              color = CASE WHEN $3 THEN $4 ELSE color END,
                              position = COALESCE($5, position),
                              updated_at = $6
             WHERE id = $1",
            id.0,
            patch.name,
            set_color,
            color,
            patch.position,
            Timestamp::now().as_datetime()
        )
        .execute(&mut *tx)
        .await?;
        if let Some(permissions) = patch.permissions {
            write_permissions(&mut tx, id, permissions).await?;
        }
        let role = load::role(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::Role))?;
        tx.commit().await?;
        Ok(role)
    }

    async fn delete_role(&self, id: RoleId) -> StorageResult<bool> {
        let mut tx = self.pool.begin().await?;
        let builtin = sqlx::query_scalar!("SELECT is_builtin FROM roles WHERE id = $1 FOR UPDATE", id.0)
            .fetch_optional(&mut *tx)
            .await?;
        match builtin {
            None => return Ok(false),
            Some(true) => {
                return Err(StorageError::InvalidInput("built-in roles cannot be deleted".into()));
            }
            Some(false) => {}
        }
        // Assignments, permission rows and overrides cascade; invites granting it grant nothing.
        sqlx::query!("DELETE FROM roles WHERE id = $1", id.0).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn assign_role(&self, user: UserId, role: RoleId) -> StorageResult<()> {
        let result = sqlx::query!(
            "INSERT INTO member_roles (user_id, role_id, assigned_at) VALUES ($1, $2, $3)",
            user.0,
            role.0,
            Timestamp::now().as_datetime()
        )
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(match StorageError::from(err) {
                StorageError::InvalidReference(Some("member_roles_user_id_fkey")) => {
                    StorageError::NotFound(Entity::Member)
                }
                StorageError::InvalidReference(Some("member_roles_role_id_fkey")) => {
                    StorageError::NotFound(Entity::Role)
                }
                other => other,
            }),
        }
    }

    async fn unassign_role(&self, user: UserId, role: RoleId) -> StorageResult<bool> {
        let mut tx = self.pool.begin().await?;
        if role == RoleId::ADMIN {
            super::keep_an_admin(&mut tx, user).await?;
        }
        let removed = sqlx::query!("DELETE FROM member_roles WHERE user_id = $1 AND role_id = $2", user.0, role.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(removed > 0)
    }

    async fn member_roles(&self, user: UserId) -> StorageResult<Vec<Role>> {
        let rows = sqlx::query_as!(
            RoleRow,
            r#"SELECT r.id AS "id: RoleId", r.name, r.color,
                      ARRAY(SELECT rp.permission FROM role_permissions rp WHERE rp.role_id = r.id) AS "permissions!: Vec<String>",
                      r.position, r.is_builtin, r.created_at AS "created_at: Timestamp", r.updated_at AS "updated_at: Timestamp"
               FROM member_roles mr JOIN roles r ON r.id = mr.role_id
               WHERE mr.user_id = $1
               ORDER BY r.position DESC, r.id"#,
            user.0
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Role::from).collect())
    }

    async fn list_overrides(&self, channel: ChannelId) -> StorageResult<Vec<Override>> {
        let rows = sqlx::query!(
            r#"SELECT channel_id AS "channel_id: ChannelId", role_id AS "role_id: RoleId", allow_bits, deny_bits
               FROM channel_permission_overrides WHERE channel_id = $1 ORDER BY role_id"#,
            channel.0
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Override {
                channel_id: r.channel_id,
                role_id: r.role_id,
                allow: Permissions::from_bits_truncate(r.allow_bits),
                deny: Permissions::from_bits_truncate(r.deny_bits),
            })
            .collect())
    }

    async fn put_override(&self, o: Override) -> StorageResult<Override> {
        let row = sqlx::query!(
            r#"INSERT INTO channel_permission_overrides (channel_id, role_id, allow_bits, deny_bits)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (channel_id, role_id) DO UPDATE SET allow_bits = EXCLUDED.allow_bits,
                                                              deny_bits = EXCLUDED.deny_bits
               RETURNING channel_id AS "channel_id: ChannelId", role_id AS "role_id: RoleId", allow_bits, deny_bits"#,
            o.channel_id.0,
            o.role_id.0,
            o.allow.bits(),
            o.deny.bits()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Override {
            channel_id: row.channel_id,
            role_id: row.role_id,
            allow: Permissions::from_bits_truncate(row.allow_bits),
            deny: Permissions::from_bits_truncate(row.deny_bits),
        })
    }

    async fn delete_override(&self, channel: ChannelId, role: RoleId) -> StorageResult<bool> {
        let removed = sqlx::query!(
            "DELETE FROM channel_permission_overrides WHERE channel_id = $1 AND role_id = $2",
            channel.0,
            role.0
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(removed > 0)
    }
}
