use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::SqliteBackend;
use super::members::add_member;
use super::rows::load_member;
use crate::storage::{
    Entity, Invite, InviteJoin, InviteStore, NewInvite, RoleId, StorageError, StorageResult, Timestamp, UserId,
};

async fn load_invite(conn: &mut SqliteConnection, code: &str) -> StorageResult<Option<Invite>> {
    Ok(sqlx::query_as!(
        Invite,
        r#"SELECT code AS "code!: String", created_by AS "created_by!: UserId", grant_role_id AS "grant_role_id?: RoleId",
                  max_uses AS "max_uses!: i64", use_count AS "use_count!: i64", expires_at AS "expires_at?: Timestamp",
                  created_at AS "created_at!: Timestamp"
           FROM invites WHERE code = ?1"#,
        code
    )
    .fetch_optional(&mut *conn)
    .await?)
}

#[async_trait]
impl InviteStore for SqliteBackend {
    async fn create_invite(&self, new: NewInvite) -> StorageResult<Invite> {
        let now = Timestamp::now();
        let now_micros = now.as_micros();
        let expires_at = new.expires_at.map(Timestamp::as_micros);
        sqlx::query!(
            "INSERT INTO invites (code, created_by, grant_role_id, max_uses, use_count, expires_at, created_at)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
            new.code,
            new.created_by,
            new.grant_role_id,
            new.max_uses,
            expires_at,
            now_micros
        )
        .execute(&self.pool)
        .await?;
        Ok(Invite {
            code: new.code,
            created_by: new.created_by,
            grant_role_id: new.grant_role_id,
            max_uses: new.max_uses,
            use_count: 0,
            expires_at: new.expires_at,
            created_at: now,
        })
    }

    async fn get_invite(&self, code: &str) -> StorageResult<Option<Invite>> {
        let mut conn = self.pool.acquire().await?;
        load_invite(&mut conn, code).await
    }

    async fn list_active_invites(&self, now: Timestamp) -> StorageResult<Vec<Invite>> {
        let now = now.as_micros();
        Ok(sqlx::query_as!(
            Invite,
            r#"SELECT code AS "code!: String", created_by AS "created_by!: UserId", grant_role_id AS "grant_role_id?: RoleId",
                      max_uses AS "max_uses!: i64", use_count AS "use_count!: i64", expires_at AS "expires_at?: Timestamp",
                      created_at AS "created_at!: Timestamp"
               FROM invites
               WHERE (expires_at IS NULL OR expires_at > ?1) AND (max_uses = 0 OR use_count < max_uses)
               ORDER BY created_at DESC, rowid DESC"#,
            now
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_invite(&self, code: &str) -> StorageResult<bool> {
        let removed =
            sqlx::query!("DELETE FROM invites WHERE code = ?1", code).execute(&self.pool).await?.rows_affected();
        Ok(removed > 0)
    }

    async fn join_via_invite(&self, code: &str, user: UserId, now: Timestamp) -> StorageResult<InviteJoin> {
        let now_micros = now.as_micros();
        let mut tx = self.begin_write().await?;
        let Some(invite) = load_invite(&mut tx, code).await? else {
            return Ok(InviteJoin::NotFound);
        };
        if let Some(member) = load_member(&mut tx, user).await? {
            return Ok(InviteJoin::AlreadyMember(member));
        }
        // The conditional update is the consumption; the checks after it only name the reason.
        let consumed = sqlx::query!(
            "UPDATE invites SET use_count = use_count + 1
             WHERE code = ?1 AND (expires_at IS NULL OR expires_at > ?2) AND (max_uses = 0 OR use_count < max_uses)",
            code,
            now_micros
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if consumed == 0 {
            if invite.expires_at.is_some_and(|at| at <= now) {
                return Ok(InviteJoin::Expired);
            }
            return Ok(InviteJoin::Exhausted);
        }
        add_member(&mut tx, user, Timestamp::now()).await?;
        if let Some(role) = invite.grant_role_id {
            let assigned_at = Timestamp::now().as_micros();
            sqlx::query!(
                "INSERT INTO member_roles (user_id, role_id, assigned_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, role_id) DO NOTHING",
                user,
                role,
                assigned_at
            )
            .execute(&mut *tx)
            .await?;
        }
        let member = load_member(&mut tx, user).await?.ok_or(StorageError::NotFound(Entity::Member))?;
        tx.commit().await?;
        Ok(InviteJoin::Joined(member))
    }

    async fn purge_expired_invites(&self, now: Timestamp) -> StorageResult<u64> {
        let now = now.as_micros();
        Ok(sqlx::query!("DELETE FROM invites WHERE expires_at IS NOT NULL AND expires_at <= ?1", now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
