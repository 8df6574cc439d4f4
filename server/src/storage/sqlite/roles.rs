use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::SqliteBackend;
use super::rows::{json_ids, json_strings, load_role, load_roles};
use crate::storage::{
    ChannelId, Entity, NewRole, Override, Permissions, Role, RoleId, RolePatch, RoleStore, StorageError, StorageResult,
    Timestamp, UserId,
};

/// Replaces the role's permission rows by one row per flag set.
async fn write_permissions(conn: &mut SqliteConnection, role: RoleId, permissions: Permissions) -> StorageResult<()> {
    sqlx::query!("DELETE FROM role_permissions WHERE role_id = ?1", role).execute(&mut *conn).await?;
    let names = json_strings(permissions.stored_names());
    sqlx::query!("INSERT INTO role_permissions (role_id, permission) SELECT ?1, value FROM json_each(?2)", role, names)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[async_trait]
impl RoleStore for SqliteBackend {
    async fn list_roles(&self) -> StorageResult<Vec<Role>> {
        let mut conn = self.pool.acquire().await?;
        load_roles(&mut conn, None).await
    }

    async fn get_role(&self, id: RoleId) -> StorageResult<Option<Role>> {
        let mut conn = self.pool.acquire().await?;
        load_role(&mut conn, id).await
    }

    async fn create_role(&self, new: NewRole) -> StorageResult<Role> {
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        let id = sqlx::query_scalar!(
            r#"INSERT INTO roles (name, color, position, is_builtin, created_at, updated_at)
               VALUES (?1, ?2, ?3, 0, ?4, ?4) RETURNING id AS "id!: RoleId""#,
            new.name,
            new.color,
            new.position,
            now
        )
        .fetch_one(&mut *tx)
        .await?;
        write_permissions(&mut tx, id, new.permissions).await?;
        let role = load_role(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::Role))?;
        tx.commit().await?;
        Ok(role)
    }

    async fn update_role(&self, id: RoleId, patch: RolePatch) -> StorageResult<Role> {
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        let current = load_role(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::Role))?;
        if current.is_builtin {
            if patch.position.is_some_and(|p| p != current.position) {
                return Err(StorageError::InvalidInput("built-in role positions cannot be changed".into()));
            }
            if id != RoleId::EVERYONE && patch.permissions.is_some_and(|p| p != current.permissions) {
                return Err(StorageError::InvalidInput(format!("{} permissions cannot be modified", current.name)));
            }
        }
        let set_color = patch.color.is_some();
        let color = patch.color.flatten();
        sqlx::query!(
            "UPDATE roles SET name = COALESCE(?1, name),
                              color = CASE WHEN ?2 THEN ?3 ELSE color END,
                              position = COALESCE(?4, position),
                              updated_at = ?5
             WHERE id = ?6",
            patch.name,
            set_color,
            color,
            patch.position,
            now,
            id
        )
        .execute(&mut *tx)
        .await?;
        if let Some(permissions) = patch.permissions {
            write_permissions(&mut tx, id, permissions).await?;
        }
        let role = load_role(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::Role))?;
        tx.commit().await?;
        Ok(role)
    }

    async fn delete_role(&self, id: RoleId) -> StorageResult<bool> {
        let mut tx = self.begin_write().await?;
        let builtin = sqlx::query_scalar!(r#"SELECT is_builtin AS "is_builtin!: bool" FROM roles WHERE id = ?1"#, id)
            .fetch_optional(&mut *tx)
            .await?;
        match builtin {
            None => return Ok(false),
            Some(true) => {
                return Err(StorageError::InvalidInput("built-in roles cannot be deleted".into()));
            }
            Some(false) => {}
        }
        // Assignments, overrides and permission rows go by cascade; invites granting the role
        // are set to grant nothing. Spelled out so the result does not depend on the pragma.
        sqlx::query!("DELETE FROM member_roles WHERE role_id = ?1", id).execute(&mut *tx).await?;
        sqlx::query!("DELETE FROM channel_permission_overrides WHERE role_id = ?1", id).execute(&mut *tx).await?;
        sqlx::query!("DELETE FROM role_permissions WHERE role_id = ?1", id).execute(&mut *tx).await?;
        sqlx::query!("UPDATE invites SET grant_role_id = NULL WHERE grant_role_id = ?1", id).execute(&mut *tx).await?;
        let removed = sqlx::query!("DELETE FROM roles WHERE id = ?1", id).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(removed > 0)
    }

    async fn assign_role(&self, user: UserId, role: RoleId) -> StorageResult<()> {
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        let member = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM members WHERE user_id = ?1) AS "present!: bool""#,
            user
        )
        .fetch_one(&mut *tx)
        .await?;
        if !member {
            return Err(StorageError::NotFound(Entity::Member));
        }
        let role_exists =
            sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM roles WHERE id = ?1) AS "present!: bool""#, role)
                .fetch_one(&mut *tx)
                .await?;
        if !role_exists {
            return Err(StorageError::NotFound(Entity::Role));
        }
        sqlx::query!("INSERT INTO member_roles (user_id, role_id, assigned_at) VALUES (?1, ?2, ?3)", user, role, now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn unassign_role(&self, user: UserId, role: RoleId) -> StorageResult<bool> {
        let mut tx = self.begin_write().await?;
        if role == RoleId::ADMIN {
            super::keep_an_admin(&mut tx, user).await?;
        }
        let removed = sqlx::query!("DELETE FROM member_roles WHERE user_id = ?1 AND role_id = ?2", user, role)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(removed > 0)
    }

    async fn member_roles(&self, user: UserId) -> StorageResult<Vec<Role>> {
        let mut conn = self.pool.acquire().await?;
        let ids =
            sqlx::query_scalar!(r#"SELECT role_id AS "role_id!: i64" FROM member_roles WHERE user_id = ?1"#, user)
                .fetch_all(&mut *conn)
                .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        load_roles(&mut conn, Some(json_ids(ids))).await
    }

    async fn list_overrides(&self, channel: ChannelId) -> StorageResult<Vec<Override>> {
        let rows = sqlx::query!(
            r#"SELECT channel_id AS "channel_id!: ChannelId", role_id AS "role_id!: RoleId",
                      allow_bits AS "allow_bits!: i64", deny_bits AS "deny_bits!: i64"
               FROM channel_permission_overrides WHERE channel_id = ?1 ORDER BY role_id"#,
            channel
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Override {
                channel_id: r.channel_id,
                role_id: r.role_id,
                allow: Permissions::from_bits_retain(r.allow_bits),
                deny: Permissions::from_bits_retain(r.deny_bits),
            })
            .collect())
    }

    async fn put_override(&self, o: Override) -> StorageResult<Override> {
        let allow = o.allow.bits();
        let deny = o.deny.bits();
        sqlx::query!(
            "INSERT INTO channel_permission_overrides (channel_id, role_id, allow_bits, deny_bits)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (channel_id, role_id) DO UPDATE SET allow_bits = excluded.allow_bits,
                                                            deny_bits = excluded.deny_bits",
            o.channel_id,
            o.role_id,
            allow,
            deny
        )
        .execute(&self.pool)
        .await?;
        Ok(o)
    }

    async fn delete_override(&self, channel: ChannelId, role: RoleId) -> StorageResult<bool> {
        let removed = sqlx::query!(
            "DELETE FROM channel_permission_overrides WHERE channel_id = ?1 AND role_id = ?2",
            channel,
            role
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(removed > 0)
    }
}
