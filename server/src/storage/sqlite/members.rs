use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::SqliteBackend;
use super::rows::{load_member, load_members};
use crate::storage::{
    AllowlistEntry, Ban, BotApproval, Entity, Joined, Member, MemberStore, NewBan, PublicKey, RoleId, StorageError,
    StorageResult, Timestamp, UserId,
};

/// Adds the member row and the @everyone assignment unless the user is a member already.
/// Returns whether it joined now. Runs inside the caller's transaction.
pub(super) async fn add_member(conn: &mut SqliteConnection, user: UserId, now: Timestamp) -> StorageResult<bool> {
    let now = now.as_micros();
    let inserted = sqlx::query!(
        "INSERT INTO members (user_id, joined_at) VALUES (?1, ?2) ON CONFLICT (user_id) DO NOTHING",
        user,
        now
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    sqlx::query!(
        "INSERT INTO member_roles (user_id, role_id, assigned_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, role_id) DO NOTHING",
        user,
        RoleId::EVERYONE,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// Removes the member's roles and membership; true if it was a member.
/// Removes the roles and membership of `user`, unless it is the last member holding @admin
/// (Conflict(LastAdmin)). Runs inside the caller's write transaction.
async fn remove_member(conn: &mut SqliteConnection, user: UserId) -> StorageResult<bool> {
    super::keep_an_admin(conn, user).await?;
    sqlx::query!("DELETE FROM member_roles WHERE user_id = ?1", user).execute(&mut *conn).await?;
    let removed =
        sqlx::query!("DELETE FROM members WHERE user_id = ?1", user).execute(&mut *conn).await?.rows_affected();
    Ok(removed > 0)
}

/// Removes roles, membership and every session of the user.
async fn kick_in(conn: &mut SqliteConnection, user: UserId) -> StorageResult<bool> {
    let was_member = remove_member(conn, user).await?;
    sqlx::query!("DELETE FROM sessions WHERE user_id = ?1", user).execute(&mut *conn).await?;
    Ok(was_member)
}

async fn load_joined(conn: &mut SqliteConnection, user: UserId, newly_joined: bool) -> StorageResult<Joined> {
    let member: Member = load_member(conn, user).await?.ok_or(StorageError::NotFound(Entity::Member))?;
    Ok(Joined { member, newly_joined })
}

async fn bot_approval(conn: &mut SqliteConnection, user: UserId) -> StorageResult<Option<BotApproval>> {
    Ok(sqlx::query_as!(
        BotApproval,
        r#"SELECT b.user_id AS "user_id!: UserId", u.pubkey AS "pubkey!: PublicKey",
                  b.requested_at AS "requested_at!: Timestamp", b.approved_by AS "approved_by?: UserId",
                  b.approved_at AS "approved_at?: Timestamp", b.revoked_at AS "revoked_at?: Timestamp",
                  b.note AS "note?: String"
           FROM bot_approvals b JOIN users u ON u.id = b.user_id
           WHERE b.user_id = ?1"#,
        user
    )
    .fetch_optional(&mut *conn)
    .await?)
}

#[async_trait]
impl MemberStore for SqliteBackend {
    async fn join(&self, user: UserId) -> StorageResult<Joined> {
        let mut tx = self.begin_write().await?;
        let newly_joined = add_member(&mut tx, user, Timestamp::now()).await?;
        let joined = load_joined(&mut tx, user, newly_joined).await?;
        tx.commit().await?;
        Ok(joined)
    }

    async fn leave(&self, user: UserId) -> StorageResult<bool> {
        let mut tx = self.begin_write().await?;
        let was_member = remove_member(&mut tx, user).await?;
        tx.commit().await?;
        Ok(was_member)
    }

    async fn kick(&self, user: UserId) -> StorageResult<bool> {
        let mut tx = self.begin_write().await?;
        let was_member = kick_in(&mut tx, user).await?;
        tx.commit().await?;
        Ok(was_member)
    }

    async fn get_member(&self, user: UserId) -> StorageResult<Option<Member>> {
        let mut conn = self.pool.acquire().await?;
        load_member(&mut conn, user).await
    }

    async fn list_members(&self) -> StorageResult<Vec<Member>> {
        let mut conn = self.pool.acquire().await?;
        load_members(&mut conn, None).await
    }

    async fn member_count(&self) -> StorageResult<i64> {
        Ok(sqlx::query_scalar!(r#"/* sqlite */ SELECT COUNT(*) AS "count!: i64" FROM members"#)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn ban(&self, ban: NewBan) -> StorageResult<(Ban, Option<UserId>)> {
        let now = Timestamp::now();
        let now_micros = now.as_micros();
        let pubkey = ban.pubkey.as_bytes();
        let mut tx = self.begin_write().await?;
        sqlx::query!(
            "INSERT INTO bans (pubkey, banned_by, reason, banned_at) VALUES (?1, ?2, ?3, ?4)",
            pubkey,
            ban.banned_by,
            ban.reason,
            now_micros
        )
        .execute(&mut *tx)
        .await?;
        let target = sqlx::query_scalar!(r#"SELECT id AS "id!: UserId" FROM users WHERE pubkey = ?1"#, pubkey)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(user) = target {
            kick_in(&mut tx, user).await?;
        }
        tx.commit().await?;
        Ok((Ban { pubkey: ban.pubkey, banned_by: ban.banned_by, reason: ban.reason, banned_at: now }, target))
    }

    async fn unban(&self, pubkey: &PublicKey) -> StorageResult<bool> {
        let pubkey = pubkey.as_bytes();
        let removed =
            sqlx::query!("DELETE FROM bans WHERE pubkey = ?1", pubkey).execute(&self.pool).await?.rows_affected();
        Ok(removed > 0)
    }

    async fn is_banned(&self, pubkey: &PublicKey) -> StorageResult<bool> {
        let pubkey = pubkey.as_bytes();
        Ok(sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM bans WHERE pubkey = ?1) AS "banned!: bool""#, pubkey)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn list_bans(&self) -> StorageResult<Vec<Ban>> {
        Ok(sqlx::query_as!(
            Ban,
            r#"/* sqlite */ SELECT pubkey AS "pubkey!: PublicKey", banned_by AS "banned_by!: UserId",
                      reason AS "reason?: String", banned_at AS "banned_at!: Timestamp"
               FROM bans ORDER BY banned_at DESC, rowid DESC"#
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn allowlist_add(&self, pubkey: &PublicKey, added_by: UserId) -> StorageResult<AllowlistEntry> {
        let now = Timestamp::now();
        let now_micros = now.as_micros();
        let key = pubkey.as_bytes();
        sqlx::query!(
            "INSERT INTO allowlist (pubkey, added_by, added_at) VALUES (?1, ?2, ?3)",
            key,
            added_by,
            now_micros
        )
        .execute(&self.pool)
        .await?;
        Ok(AllowlistEntry { pubkey: *pubkey, added_by, added_at: now })
    }

    async fn allowlist_remove(&self, pubkey: &PublicKey) -> StorageResult<bool> {
        let pubkey = pubkey.as_bytes();
        let removed =
            sqlx::query!("DELETE FROM allowlist WHERE pubkey = ?1", pubkey).execute(&self.pool).await?.rows_affected();
        Ok(removed > 0)
    }

    async fn allowlist_contains(&self, pubkey: &PublicKey) -> StorageResult<bool> {
        let pubkey = pubkey.as_bytes();
        Ok(sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM allowlist WHERE pubkey = ?1) AS "present!: bool""#,
            pubkey
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn list_allowlist(&self) -> StorageResult<Vec<AllowlistEntry>> {
        Ok(sqlx::query_as!(
            AllowlistEntry,
            r#"/* sqlite */ SELECT pubkey AS "pubkey!: PublicKey", added_by AS "added_by!: UserId",
                      added_at AS "added_at!: Timestamp"
               FROM allowlist ORDER BY added_at, rowid"#
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn list_pending_bots(&self) -> StorageResult<Vec<BotApproval>> {
        Ok(sqlx::query_as!(
            BotApproval,
            r#"/* sqlite */ SELECT b.user_id AS "user_id!: UserId", u.pubkey AS "pubkey!: PublicKey",
                      b.requested_at AS "requested_at!: Timestamp", b.approved_by AS "approved_by?: UserId",
                      b.approved_at AS "approved_at?: Timestamp", b.revoked_at AS "revoked_at?: Timestamp",
                      b.note AS "note?: String"
               FROM bot_approvals b JOIN users u ON u.id = b.user_id
               WHERE b.approved_at IS NULL AND b.revoked_at IS NULL
               ORDER BY b.requested_at, b.user_id"#
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn get_bot_approval(&self, user: UserId) -> StorageResult<Option<BotApproval>> {
        let mut conn = self.pool.acquire().await?;
        bot_approval(&mut conn, user).await
    }

    async fn approve_bot(
        &self,
        user: UserId,
        by: UserId,
        note: Option<String>,
    ) -> StorageResult<(BotApproval, Joined)> {
        let now = Timestamp::now();
        let now_micros = now.as_micros();
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query!(
            "UPDATE bot_approvals SET approved_by = ?1, approved_at = ?2, revoked_at = NULL, note = ?3
             WHERE user_id = ?4",
            by,
            now_micros,
            note,
            user
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StorageError::NotFound(Entity::Bot));
        }
        let newly_joined = add_member(&mut tx, user, now).await?;
        let approval = bot_approval(&mut tx, user).await?.ok_or(StorageError::NotFound(Entity::Bot))?;
        let joined = load_joined(&mut tx, user, newly_joined).await?;
        tx.commit().await?;
        Ok((approval, joined))
    }

    async fn revoke_bot(&self, user: UserId) -> StorageResult<BotApproval> {
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query!(
            "UPDATE bot_approvals SET revoked_at = COALESCE(revoked_at, ?1) WHERE user_id = ?2",
            now,
            user
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StorageError::NotFound(Entity::Bot));
        }
        let approval = bot_approval(&mut tx, user).await?.ok_or(StorageError::NotFound(Entity::Bot))?;
        tx.commit().await?;
        Ok(approval)
    }
}
