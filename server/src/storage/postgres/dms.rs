//! DmStore: two-user DM channels (a `channels` row of kind 'dm', a `dms` row and two
//! `dm_participants` rows).

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::PostgresBackend;
use super::messages::{insert_message, reload};
use crate::storage::{
    ChannelId, ContentHash, Dm, DmChannel, DmOpened, DmSent, DmStore, DmUser, Entity, PublicKey, StorageError,
    StorageResult, Timestamp, UserId,
};

/// A DM channel row from one participant's side, before it becomes a [`DmChannel`].
struct DmChannelRow {
    channel_id: ChannelId,
    user_id: UserId,
    pubkey: PublicKey,
    display_name: Option<String>,
    avatar_hash: Option<ContentHash>,
    created_at: Timestamp,
    last_message_at: Option<Timestamp>,
    last_read_at: Option<Timestamp>,
}

impl From<DmChannelRow> for DmChannel {
    fn from(r: DmChannelRow) -> DmChannel {
        DmChannel {
            channel_id: r.channel_id,
            recipient: DmUser {
                user_id: r.user_id,
                pubkey: r.pubkey,
                display_name: r.display_name,
                avatar_hash: r.avatar_hash,
            },
            created_at: r.created_at,
            last_message_at: r.last_message_at,
            last_read_at: r.last_read_at,
        }
    }
}

async fn dm_channel(conn: &mut PgConnection, channel: ChannelId, viewer: UserId) -> StorageResult<Option<DmChannel>> {
    let row = sqlx::query_as!(
        DmChannelRow,
        r#"SELECT d.channel_id AS "channel_id: ChannelId", u.id AS "user_id: UserId", u.pubkey AS "pubkey: PublicKey",
                  u.display_name, u.avatar_hash AS "avatar_hash: ContentHash", d.created_at AS "created_at: Timestamp",
                  d.last_message_at AS "last_message_at: Timestamp", p.last_read_at AS "last_read_at: Timestamp"
           FROM dms d
           JOIN dm_participants p ON p.channel_id = d.channel_id AND p.user_id = $2
           JOIN users u ON u.id = CASE WHEN d.user_low = $2 THEN d.user_high ELSE d.user_low END
           WHERE d.channel_id = $1"#,
        channel.0,
        viewer.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(DmChannel::from))
}

#[async_trait]
impl DmStore for PostgresBackend {
    async fn open_dm(&self, user: UserId, recipient: UserId) -> StorageResult<DmOpened> {
        if user == recipient {
            return Err(StorageError::InvalidInput("cannot open a DM with yourself".into()));
        }
        let (low, high) = if user < recipient { (user, recipient) } else { (recipient, user) };
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;

        let existing = sqlx::query_scalar!(
            r#"SELECT channel_id AS "channel_id: ChannelId" FROM dms WHERE user_low = $1 AND user_high = $2"#,
            low.0,
            high.0
        )
        .fetch_optional(&mut *tx)
        .await?;
        let (channel, created) = match existing {
            Some(channel) => (channel, false),
            None => {
                let channel = sqlx::query_scalar!(
                    r#"INSERT INTO channels (kind, name, topic, category_id, position, created_at, updated_at)
                       VALUES ('dm', NULL, NULL, NULL, 0, $1, $1) RETURNING id AS "id: ChannelId""#,
                    now.as_datetime()
                )
                .fetch_one(&mut *tx)
                .await?;
                // The pair key decides a race: the loser waits for the winner's commit, inserts
                // nothing, drops its channel row and uses the winner's DM.
                let won = sqlx::query_scalar!(
                    "INSERT INTO dms (channel_id, user_low, user_high, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_low, user_high) DO NOTHING RETURNING channel_id",
                    channel.0,
                    low.0,
                    high.0,
                    now.as_datetime()
                )
                .fetch_optional(&mut *tx)
                .await?;
                if won.is_some() {
                    sqlx::query!(
                        "INSERT INTO dm_participants (channel_id, user_id, is_open, last_read_at)
                         VALUES ($1, $2, TRUE, NULL), ($1, $3, TRUE, NULL)",
                        channel.0,
                        low.0,
                        high.0
                    )
                    .execute(&mut *tx)
                    .await?;
                    (channel, true)
                } else {
                    sqlx::query!("DELETE FROM channels WHERE id = $1", channel.0).execute(&mut *tx).await?;
                    let channel = sqlx::query_scalar!(
                        r#"SELECT channel_id AS "channel_id: ChannelId" FROM dms WHERE user_low = $1 AND user_high = $2"#,
                        low.0,
                        high.0
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StorageError::NotFound(Entity::Dm))?;
                    (channel, false)
                }
            }
        };
        if !created {
            sqlx::query!(
                "UPDATE dm_participants SET is_open = TRUE WHERE channel_id = $1 AND user_id = $2",
                channel.0,
                user.0
            )
            .execute(&mut *tx)
            .await?;
        }
        let dm = dm_channel(&mut tx, channel, user).await?.ok_or(StorageError::NotFound(Entity::Dm))?;
        tx.commit().await?;
        Ok(DmOpened { dm, created })
    }

    async fn get_dm(&self, channel: ChannelId) -> StorageResult<Option<Dm>> {
        let row = sqlx::query!(
            r#"SELECT channel_id AS "channel_id: ChannelId", user_low AS "user_low: UserId", user_high AS "user_high: UserId",
                      created_at AS "created_at: Timestamp", last_message_at AS "last_message_at: Timestamp"
               FROM dms WHERE channel_id = $1"#,
            channel.0
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Dm {
            channel_id: r.channel_id,
            participants: [r.user_low, r.user_high],
            created_at: r.created_at,
            last_message_at: r.last_message_at,
        }))
    }

    async fn list_dms(&self, user: UserId) -> StorageResult<Vec<DmChannel>> {
        let rows = sqlx::query_as!(
            DmChannelRow,
            r#"SELECT d.channel_id AS "channel_id: ChannelId", u.id AS "user_id: UserId", u.pubkey AS "pubkey: PublicKey",
                      u.display_name, u.avatar_hash AS "avatar_hash: ContentHash", d.created_at AS "created_at: Timestamp",
                      d.last_message_at AS "last_message_at: Timestamp", p.last_read_at AS "last_read_at: Timestamp"
               FROM dm_participants p
               JOIN dms d ON d.channel_id = p.channel_id
               JOIN users u ON u.id = CASE WHEN d.user_low = $1 THEN d.user_high ELSE d.user_low END
               WHERE p.user_id = $1 AND p.is_open
               ORDER BY d.last_message_at DESC NULLS LAST, d.created_at DESC, d.channel_id DESC"#,
            user.0
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(DmChannel::from).collect())
    }

    async fn hide_dm(&self, channel: ChannelId, user: UserId) -> StorageResult<bool> {
        let updated = sqlx::query!(
            "UPDATE dm_participants SET is_open = FALSE WHERE channel_id = $1 AND user_id = $2",
            channel.0,
            user.0
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn send_dm_message(&self, channel: ChannelId, author: UserId, content: String) -> StorageResult<DmSent> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query_scalar!("SELECT channel_id FROM dms WHERE channel_id = $1 FOR UPDATE", channel.0)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Err(StorageError::NotFound(Entity::Dm));
        }
        let id = insert_message(&mut tx, channel, None, author, &content, now).await?;
        sqlx::query!("UPDATE dms SET last_message_at = $2 WHERE channel_id = $1", channel.0, now.as_datetime())
            .execute(&mut *tx)
            .await?;
        let mut reopened_for = sqlx::query_scalar!(
            r#"UPDATE dm_participants SET is_open = TRUE WHERE channel_id = $1 AND NOT is_open
               RETURNING user_id AS "user_id: UserId""#,
            channel.0
        )
        .fetch_all(&mut *tx)
        .await?;
        reopened_for.sort();
        sqlx::query!(
            "UPDATE dm_participants SET last_read_at = $3 WHERE channel_id = $1 AND user_id = $2",
            channel.0,
            author.0,
            now.as_datetime()
        )
        .execute(&mut *tx)
        .await?;
        let message = reload(&mut tx, id, None).await?;
        tx.commit().await?;
        Ok(DmSent { message, reopened_for })
    }

    async fn mark_dm_read(&self, channel: ChannelId, user: UserId) -> StorageResult<()> {
        sqlx::query!(
            "UPDATE dm_participants SET last_read_at = $3 WHERE channel_id = $1 AND user_id = $2",
            channel.0,
            user.0,
            Timestamp::now().as_datetime()
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
