//! MemberStore: membership, kicks and bans, the allowlist and bot approvals.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::{PostgresBackend, load};
use crate::storage::{
    AllowlistEntry, Ban, BotApproval, Entity, Joined, Member, MemberStore, NewBan, PublicKey, RoleId, StorageError,
    StorageResult, Timestamp, UserId,
};

/// Adds the member row and the @everyone assignment; false (and nothing changed) for a member.
pub(super) async fn add_member(conn: &mut PgConnection, user: UserId, now: Timestamp) -> StorageResult<bool> {
    let inserted = sqlx::query_scalar!(
        r#"INSERT INTO members (user_id, joined_at) VALUES ($1, $2)
           ON CONFLICT (user_id) DO NOTHING RETURNING user_id"#,
        user.0,
        now.as_datetime()
    )
    .fetch_optional(&mut *conn)
    .await?
    .is_some();
    if inserted {
        sqlx::query!(
            "INSERT INTO member_roles (user_id, role_id, assigned_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            user.0,
            RoleId::EVERYONE.0,
            now.as_datetime()
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(inserted)
}

/// Adds the member (if needed) and loads it, in the caller's transaction.
async fn join_in(conn: &mut PgConnection, user: UserId) -> StorageResult<Joined> {
    let newly_joined = add_member(conn, user, Timestamp::now()).await?;
    let member = load::member(conn, user).await?.ok_or(StorageError::NotFound(Entity::User))?;
    Ok(Joined { member, newly_joined })
}

/// Removes roles and membership (roles go with the member row: ON DELETE CASCADE).
/// Removes the membership (and, by cascade, the roles) of `user`, unless it is the last member
/// holding @admin (Conflict(LastAdmin)). Runs inside the caller's transaction.
async fn remove_member(conn: &mut PgConnection, user: UserId) -> StorageResult<bool> {
    super::keep_an_admin(conn, user).await?;
    let removed =
        sqlx::query!("DELETE FROM members WHERE user_id = $1", user.0).execute(&mut *conn).await?.rows_affected();
    Ok(removed > 0)
}

async fn delete_sessions(conn: &mut PgConnection, user: UserId) -> StorageResult<()> {
    sqlx::query!("DELETE FROM sessions WHERE user_id = $1", user.0).execute(&mut *conn).await?;
    Ok(())
}

#[async_trait]
impl MemberStore for PostgresBackend {
    async fn join(&self, user: UserId) -> StorageResult<Joined> {
        let mut tx = self.pool.begin().await?;
        let joined = join_in(&mut tx, user).await?;
        tx.commit().await?;
        Ok(joined)
    }

    async fn leave(&self, user: UserId) -> StorageResult<bool> {
        let mut tx = self.pool.begin().await?;
        let was_member = remove_member(&mut tx, user).await?;
        tx.commit().await?;
        Ok(was_member)
    }

    async fn kick(&self, user: UserId) -> StorageResult<bool> {
        let mut tx = self.pool.begin().await?;
        let was_member = remove_member(&mut tx, user).await?;
        delete_sessions(&mut tx, user).await?;
        tx.commit().await?;
        Ok(was_member)
    }

    async fn get_member(&self, user: UserId) -> StorageResult<Option<Member>> {
        let mut conn = self.pool.acquire().await?;
        load::member(&mut conn, user).await
    }

    async fn list_members(&self) -> StorageResult<Vec<Member>> {
        let mut conn = self.pool.acquire().await?;
        load::all_members(&mut conn).await
    }

    async fn member_count(&self) -> StorageResult<i64> {
        let count =
            sqlx::query_scalar!(r#"/* pg */ SELECT count(*) AS "count!" FROM members"#).fetch_one(&self.pool).await?;
        Ok(count)
    }

    async fn ban(&self, ban: NewBan) -> StorageResult<(Ban, Option<UserId>)> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let stored = sqlx::query_as!(
            Ban,
            r#"INSERT INTO bans (pubkey, banned_by, reason, banned_at) VALUES ($1, $2, $3, $4)
               RETURNING pubkey AS "pubkey: PublicKey", banned_by AS "banned_by: UserId", reason,
                         banned_at AS "banned_at: Timestamp""#,
            ban.pubkey.as_bytes(),
            ban.banned_by.0,
            ban.reason,
            now.as_datetime()
        )
        .fetch_one(&mut *tx)
        .await?;
        let target =
            sqlx::query_scalar!(r#"SELECT id AS "id: UserId" FROM users WHERE pubkey = $1"#, ban.pubkey.as_bytes())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(user) = target {
            remove_member(&mut tx, user).await?;
            delete_sessions(&mut tx, user).await?;
        }
        tx.commit().await?;
        Ok((stored, target))
    }

    async fn unban(&self, pubkey: &PublicKey) -> StorageResult<bool> {
        let removed = sqlx::query!("DELETE FROM bans WHERE pubkey = $1", pubkey.as_bytes())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    async fn is_banned(&self, pubkey: &PublicKey) -> StorageResult<bool> {
        let banned = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM bans WHERE pubkey = $1) AS "banned!""#,
            pubkey.as_bytes()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(banned)
    }

    async fn list_bans(&self) -> StorageResult<Vec<Ban>> {
        let bans = sqlx::query_as!(
            Ban,
            r#"/* pg */
               SELECT pubkey AS "pubkey: PublicKey", banned_by AS "banned_by: UserId", reason,
                      banned_at AS "banned_at: Timestamp"
               FROM bans ORDER BY banned_at DESC, pubkey DESC"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(bans)
    }

    async fn allowlist_add(&self, pubkey: &PublicKey, added_by: UserId) -> StorageResult<AllowlistEntry> {
        let entry = sqlx::query_as!(
            AllowlistEntry,
            r#"INSERT INTO allowlist (pubkey, added_by, added_at) VALUES ($1, $2, $3)
               RETURNING pubkey AS "pubkey: PublicKey", added_by AS "added_by: UserId", added_at AS "added_at: Timestamp""#,
            pubkey.as_bytes(),
            added_by.0,
            Timestamp::now().as_datetime()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(entry)
    }

    async fn allowlist_remove(&self, pubkey: &PublicKey) -> StorageResult<bool> {
        let removed = sqlx::query!("DELETE FROM allowlist WHERE pubkey = $1", pubkey.as_bytes())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    async fn allowlist_contains(&self, pubkey: &PublicKey) -> StorageResult<bool> {
        let present = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM allowlist WHERE pubkey = $1) AS "present!""#,
            pubkey.as_bytes()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(present)
    }

    async fn list_allowlist(&self) -> StorageResult<Vec<AllowlistEntry>> {
        let entries = sqlx::query_as!(
            AllowlistEntry,
            r#"/* pg */
               SELECT pubkey AS "pubkey: PublicKey", added_by AS "added_by: UserId", added_at AS "added_at: Timestamp"
               FROM allowlist ORDER BY added_at, pubkey"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(entries)
    }

    async fn list_pending_bots(&self) -> StorageResult<Vec<BotApproval>> {
        let bots = sqlx::query_as!(
            BotApproval,
            r#"/* pg */
               SELECT b.user_id AS "user_id: UserId", u.pubkey AS "pubkey: PublicKey",
                      b.requested_at AS "requested_at: Timestamp", b.approved_by AS "approved_by: UserId",
                      b.approved_at AS "approved_at: Timestamp", b.revoked_at AS "revoked_at: Timestamp", b.note
               FROM bot_approvals b JOIN users u ON u.id = b.user_id
               WHERE b.approved_at IS NULL AND b.revoked_at IS NULL
               ORDER BY b.requested_at, b.user_id"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(bots)
    }

    async fn get_bot_approval(&self, user: UserId) -> StorageResult<Option<BotApproval>> {
        let bot = sqlx::query_as!(
            BotApproval,
            r#"SELECT b.user_id AS "user_id: UserId", u.pubkey AS "pubkey: PublicKey",
                      b.requested_at AS "requested_at: Timestamp", b.approved_by AS "approved_by: UserId",
                      b.approved_at AS "approved_at: Timestamp", b.revoked_at AS "revoked_at: Timestamp", b.note
               FROM bot_approvals b JOIN users u ON u.id = b.user_id
               WHERE b.user_id = $1"#,
            user.0
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(bot)
    }

    async fn approve_bot(
        &self,
        user: UserId,
        by: UserId,
        note: Option<String>,
    ) -> StorageResult<(BotApproval, Joined)> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let approval = sqlx::query_as!(
            BotApproval,
            r#"UPDATE bot_approvals b
               SET approved_by = $2, approved_at = $3, revoked_at = NULL, note = $4
               FROM users u
               WHERE b.user_id = $1 AND u.id = b.user_id
               RETURNING b.user_id AS "user_id: UserId", u.pubkey AS "pubkey: PublicKey",
                         b.requested_at AS "requested_at: Timestamp", b.approved_by AS "approved_by: UserId",
                         b.approved_at AS "approved_at: Timestamp", b.revoked_at AS "revoked_at: Timestamp", b.note"#,
            user.0,
            by.0,
            now.as_datetime(),
            note
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StorageError::NotFound(Entity::Bot))?;
        let joined = join_in(&mut tx, user).await?;
        tx.commit().await?;
        Ok((approval, joined))
    }

    async fn revoke_bot(&self, user: UserId) -> StorageResult<BotApproval> {
        sqlx::query_as!(
            BotApproval,
            r#"UPDATE bot_approvals b
               SET revoked_at = COALESCE(b.revoked_at, $2)
               FROM users u
               WHERE b.user_id = $1 AND u.id = b.user_id
               RETURNING b.user_id AS "user_id: UserId", u.pubkey AS "pubkey: PublicKey",
                         b.requested_at AS "requested_at: Timestamp", b.approved_by AS "approved_by: UserId",
                         b.approved_at AS "approved_at: Timestamp", b.revoked_at AS "revoked_at: Timestamp", b.note"#,
            user.0,
            Timestamp::now().as_datetime()
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound(Entity::Bot))
    }
}
