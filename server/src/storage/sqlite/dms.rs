use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::SqliteBackend;
use super::messages::insert_message;
use super::rows::load_message;
use crate::storage::{
    ChannelId, ContentHash, Dm, DmChannel, DmOpened, DmSent, DmStore, DmUser, Entity, PublicKey, StorageError,
    StorageResult, Timestamp, UserId,
};

/// The DM channel `channel` as `user` sees it (None unless `user` participates).
async fn load_dm_channel(
    conn: &mut SqliteConnection,
    channel: ChannelId,
    user: UserId,
) -> StorageResult<Option<DmChannel>> {
    let row = sqlx::query!(
        r#"SELECT d.channel_id AS "channel_id!: ChannelId", d.created_at AS "created_at!: Timestamp",
                  d.last_message_at AS "last_message_at?: Timestamp", p.last_read_at AS "last_read_at?: Timestamp",
                  u.id AS "user_id!: UserId", u.pubkey AS "pubkey!: PublicKey", u.display_name AS "display_name?: String",
                  u.avatar_hash AS "avatar_hash?: ContentHash"
           FROM dm_participants p
           JOIN dms d ON d.channel_id = p.channel_id
           JOIN users u ON u.id = CASE WHEN d.user_low = p.user_id THEN d.user_high ELSE d.user_low END
           WHERE p.channel_id = ?1 AND p.user_id = ?2"#,
        channel,
        user
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| DmChannel {
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
    }))
}

async fn load_dm(conn: &mut SqliteConnection, channel: ChannelId) -> StorageResult<Option<Dm>> {
    let row = sqlx::query!(
        r#"SELECT channel_id AS "channel_id!: ChannelId", user_low AS "user_low!: UserId", user_high AS "user_high!: UserId",
                  created_at AS "created_at!: Timestamp", last_message_at AS "last_message_at?: Timestamp"
           FROM dms WHERE channel_id = ?1"#,
        channel
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| Dm {
        channel_id: r.channel_id,
        participants: [r.user_low, r.user_high],
        created_at: r.created_at,
        last_message_at: r.last_message_at,
    }))
}

#[async_trait]
impl DmStore for SqliteBackend {
    async fn open_dm(&self, user: UserId, recipient: UserId) -> StorageResult<DmOpened> {
        if user == recipient {
            return Err(StorageError::InvalidInput("cannot open a DM with yourself".into()));
        }
        let (low, high) = if user < recipient { (user, recipient) } else { (recipient, user) };
        let now = Timestamp::now().as_micros();
        // IMMEDIATE: the lookup and the insert are serialised, so a pair gets one channel.
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query_scalar!(
            r#"SELECT channel_id AS "channel_id!: ChannelId" FROM dms WHERE user_low = ?1 AND user_high = ?2"#,
            low,
            high
        )
        .fetch_optional(&mut *tx)
        .await?;
        let (channel, created) = match existing {
            Some(channel) => {
                sqlx::query!(
                    "UPDATE dm_participants SET is_open = 1 WHERE channel_id = ?1 AND user_id = ?2",
                    channel,
                    user
                )
                .execute(&mut *tx)
                .await?;
                (channel, false)
            }
            None => {
                let channel = sqlx::query_scalar!(
                    r#"INSERT INTO channels (kind, name, topic, category_id, position, created_at, updated_at)
                       VALUES ('dm', NULL, NULL, NULL, 0, ?1, ?1) RETURNING id AS "id!: ChannelId""#,
                    now
                )
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query!(
                    "INSERT INTO dms (channel_id, user_low, user_high, created_at) VALUES (?1, ?2, ?3, ?4)",
                    channel,
                    low,
                    high,
                    now
                )
                .execute(&mut *tx)
                .await?;
                sqlx::query!(
                    "INSERT INTO dm_participants (channel_id, user_id, is_open) VALUES (?1, ?2, 1), (?1, ?3, 1)",
                    channel,
                    low,
                    high
                )
                .execute(&mut *tx)
                .await?;
                (channel, true)
            }
        };
        let dm = load_dm_channel(&mut tx, channel, user).await?.ok_or(StorageError::NotFound(Entity::Dm))?;
        tx.commit().await?;
        Ok(DmOpened { dm, created })
    }

    async fn get_dm(&self, channel: ChannelId) -> StorageResult<Option<Dm>> {
        let mut conn = self.pool.acquire().await?;
        load_dm(&mut conn, channel).await
    }

    async fn list_dms(&self, user: UserId) -> StorageResult<Vec<DmChannel>> {
        let rows = sqlx::query!(
            r#"SELECT d.channel_id AS "channel_id!: ChannelId", d.created_at AS "created_at!: Timestamp",
                      d.last_message_at AS "last_message_at?: Timestamp", p.last_read_at AS "last_read_at?: Timestamp",
                      u.id AS "user_id!: UserId", u.pubkey AS "pubkey!: PublicKey", u.display_name AS "display_name?: String",
                      u.avatar_hash AS "avatar_hash?: ContentHash"
               FROM dm_participants p
               JOIN dms d ON d.channel_id = p.channel_id
               JOIN users u ON u.id = CASE WHEN d.user_low = p.user_id THEN d.user_high ELSE d.user_low END
               WHERE p.user_id = ?1 AND p.is_open = 1
               ORDER BY d.last_message_at IS NULL, d.last_message_at DESC, d.created_at DESC, d.channel_id DESC"#,
            user
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DmChannel {
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
            })
            .collect())
    }

    async fn hide_dm(&self, channel: ChannelId, user: UserId) -> StorageResult<bool> {
        let updated = sqlx::query!(
            "UPDATE dm_participants SET is_open = 0 WHERE channel_id = ?1 AND user_id = ?2",
            channel,
            user
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn send_dm_message(&self, channel: ChannelId, author: UserId, content: String) -> StorageResult<DmSent> {
        let now = Timestamp::now();
        let now_micros = now.as_micros();
        let mut tx = self.begin_write().await?;
        let dm = load_dm(&mut tx, channel).await?.ok_or(StorageError::NotFound(Entity::Dm))?;
        if !dm.has_participant(author) {
            return Err(StorageError::InvalidInput("not a participant in this DM".into()));
        }
        let reopened_for = sqlx::query_scalar!(
            r#"SELECT user_id AS "user_id!: UserId" FROM dm_participants
               WHERE channel_id = ?1 AND is_open = 0 ORDER BY user_id"#,
            channel
        )
        .fetch_all(&mut *tx)
        .await?;
        let id = insert_message(&mut tx, channel, None, author, &content, now).await?;
        sqlx::query!("UPDATE dms SET last_message_at = ?1 WHERE channel_id = ?2", now_micros, channel)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("UPDATE dm_participants SET is_open = 1 WHERE channel_id = ?1", channel).execute(&mut *tx).await?;
        sqlx::query!(
            "UPDATE dm_participants SET last_read_at = ?1 WHERE channel_id = ?2 AND user_id = ?3",
            now_micros,
            channel,
            author
        )
        .execute(&mut *tx)
        .await?;
        let message = load_message(&mut tx, id, Some(author)).await?.ok_or(StorageError::NotFound(Entity::Message))?;
        tx.commit().await?;
        Ok(DmSent { message, reopened_for })
    }

    async fn mark_dm_read(&self, channel: ChannelId, user: UserId) -> StorageResult<()> {
        let now = Timestamp::now().as_micros();
        sqlx::query!(
            "UPDATE dm_participants SET last_read_at = ?1 WHERE channel_id = ?2 AND user_id = ?3",
            now,
            channel,
            user
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
