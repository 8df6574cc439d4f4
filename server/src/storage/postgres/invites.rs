//! InviteStore: invite codes and joining through them.

use async_trait::async_trait;

use super::members::add_member;
use super::{PostgresBackend, load};
use crate::storage::{
    Entity, Invite, InviteJoin, InviteStore, NewInvite, RoleId, StorageError, StorageResult, Timestamp, UserId,
};

#[async_trait]
impl InviteStore for PostgresBackend {
    async fn create_invite(&self, new: NewInvite) -> StorageResult<Invite> {
        let invite = sqlx::query_as!(
            Invite,
            r#"INSERT INTO invites (code, created_by, grant_role_id, max_uses, use_count, expires_at, created_at)
               VALUES ($1, $2, $3, $4, 0, $5, $6)
               RETURNING code, created_by AS "created_by: UserId", grant_role_id AS "grant_role_id: RoleId",
                         max_uses, use_count, expires_at AS "expires_at: Timestamp", created_at AS "created_at: Timestamp""#,
            new.code,
            new.created_by.0,
            new.grant_role_id.map(|r| r.0),
            new.max_uses,
            new.expires_at.map(Timestamp::as_datetime),
            Timestamp::now().as_datetime()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(invite)
    }

    async fn get_invite(&self, code: &str) -> StorageResult<Option<Invite>> {
        let invite = sqlx::query_as!(
            Invite,
            r#"SELECT code, created_by AS "created_by: UserId", grant_role_id AS "grant_role_id: RoleId",
                      max_uses, use_count, expires_at AS "expires_at: Timestamp", created_at AS "created_at: Timestamp"
               FROM invites WHERE code = $1"#,
            code
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(invite)
    }

    async fn list_active_invites(&self, now: Timestamp) -> StorageResult<Vec<Invite>> {
        let invites = sqlx::query_as!(
            Invite,
            r#"SELECT code, created_by AS "created_by: UserId", grant_role_id AS "grant_role_id: RoleId",
                      max_uses, use_count, expires_at AS "expires_at: Timestamp", created_at AS "created_at: Timestamp"
               FROM invites
               WHERE (expires_at IS NULL OR expires_at > $1) AND (max_uses = 0 OR use_count < max_uses)
               ORDER BY created_at DESC, code DESC"#,
            now.as_datetime()
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(invites)
    }

    async fn delete_invite(&self, code: &str) -> StorageResult<bool> {
        let removed =
            sqlx::query!("DELETE FROM invites WHERE code = $1", code).execute(&self.pool).await?.rows_affected();
        Ok(removed > 0)
    }

    async fn join_via_invite(&self, code: &str, user: UserId, now: Timestamp) -> StorageResult<InviteJoin> {
        let mut tx = self.pool.begin().await?;
        // The member row first: a concurrent join of the same user waits here, and a member
        // consumes nothing.
        if !add_member(&mut tx, user, now).await? {
            let exists =
                sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM invites WHERE code = $1) AS "exists!""#, code)
                    .fetch_one(&mut *tx)
                    .await?;
            let member = load::member(&mut tx, user).await?.ok_or(StorageError::NotFound(Entity::Member))?;
            tx.rollback().await?;
            return Ok(if exists { InviteJoin::AlreadyMember(member) } else { InviteJoin::NotFound });
        }
        // One conditional update consumes a use: no read-then-write race between processes.
        let consumed = sqlx::query!(
            r#"UPDATE invites SET use_count = use_count + 1
               WHERE code = $1 AND (expires_at IS NULL OR expires_at > $2) AND (max_uses = 0 OR use_count < max_uses)
               RETURNING grant_role_id AS "grant_role_id: RoleId""#,
            code,
            now.as_datetime()
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(consumed) = consumed else {
            tx.rollback().await?;
            let invite = sqlx::query!(
                r#"SELECT expires_at AS "expires_at: Timestamp", max_uses, use_count FROM invites WHERE code = $1"#,
                code
            )
            .fetch_optional(&self.pool)
            .await?;
            return Ok(match invite {
                None => InviteJoin::NotFound,
                Some(i) if i.expires_at.is_some_and(|at| at <= now) => InviteJoin::Expired,
                Some(_) => InviteJoin::Exhausted,
            });
        };
        if let Some(role) = consumed.grant_role_id {
            sqlx::query!(
                "INSERT INTO member_roles (user_id, role_id, assigned_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                user.0,
                role.0,
                now.as_datetime()
            )
            .execute(&mut *tx)
            .await?;
        }
        let member = load::member(&mut tx, user).await?.ok_or(StorageError::NotFound(Entity::Member))?;
        tx.commit().await?;
        Ok(InviteJoin::Joined(member))
    }

    async fn purge_expired_invites(&self, now: Timestamp) -> StorageResult<u64> {
        let purged =
            sqlx::query!("DELETE FROM invites WHERE expires_at IS NOT NULL AND expires_at <= $1", now.as_datetime())
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(purged)
    }
}
