//! ChannelStore: text channels and their categories.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::{LOCK_DEFAULT_CHANNEL, PostgresBackend, advisory_xact_lock};
use crate::storage::assemble::{self, ChannelAccessRow};
use crate::storage::{
    Category, CategoryId, Channel, ChannelAccess, ChannelId, ChannelKind, ChannelPatch, ChannelStore, Conflict, Entity,
    NewChannel, RoleId, StorageError, StorageResult, Timestamp,
};

/// The id of the category `name`, created if missing (race-safe: the upsert locks the row, so a
/// concurrent delete_category waits for this transaction).
async fn category_id(conn: &mut PgConnection, name: &str, now: Timestamp) -> StorageResult<i64> {
    let id = sqlx::query_scalar!(
        "INSERT INTO categories (name, position, created_at) VALUES ($1, 0, $2)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
         RETURNING id",
        name,
        now.as_datetime()
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

async fn load_channel(conn: &mut PgConnection, id: ChannelId) -> StorageResult<Option<Channel>> {
    let channel = sqlx::query_as!(
        Channel,
        r#"SELECT c.id AS "id: ChannelId", c.name AS "name!", c.topic, cat.name AS "category?",
                  c.position, c.created_at AS "created_at: Timestamp", c.updated_at AS "updated_at: Timestamp"
           FROM channels c LEFT JOIN categories cat ON cat.id = c.category_id
           WHERE c.id = $1 AND c.kind = 'text'"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(channel)
}

async fn insert_channel(conn: &mut PgConnection, new: &NewChannel, now: Timestamp) -> StorageResult<ChannelId> {
    let category = match &new.category {
        Some(name) => Some(category_id(conn, name, now).await?),
        None => None,
    };
    let id = sqlx::query_scalar!(
        r#"INSERT INTO channels (kind, name, topic, category_id, position, created_at, updated_at)
           VALUES ('text', $1, $2, $3, $4, $5, $5) RETURNING id AS "id: ChannelId""#,
        new.name,
        new.topic,
        category,
        new.position,
        now.as_datetime()
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

#[async_trait]
impl ChannelStore for PostgresBackend {
    async fn list_channels(&self) -> StorageResult<Vec<Channel>> {
        let channels = sqlx::query_as!(
            Channel,
            r#"/* pg */
               SELECT c.id AS "id: ChannelId", c.name AS "name!", c.topic, cat.name AS "category?",
                      c.position, c.created_at AS "created_at: Timestamp", c.updated_at AS "updated_at: Timestamp"
               FROM channels c LEFT JOIN categories cat ON cat.id = c.category_id
               WHERE c.kind = 'text'
               ORDER BY c.position, c.id"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(channels)
    }

    async fn get_channel(&self, id: ChannelId) -> StorageResult<Option<Channel>> {
        let mut conn = self.pool.acquire().await?;
        load_channel(&mut conn, id).await
    }

    async fn get_channel_access(&self, id: ChannelId) -> StorageResult<Option<ChannelAccess>> {
        let rows = sqlx::query!(
            r#"SELECT c.id AS "id!: ChannelId", c.name AS "name!", c.topic, cat.name AS "category?",
                      c.position AS "position!", c.created_at AS "created_at!: Timestamp",
                      c.updated_at AS "updated_at!: Timestamp", o.role_id AS "role_id?: RoleId",
                      o.allow_bits AS "allow_bits?", o.deny_bits AS "deny_bits?", r.position AS "role_position?"
               FROM channels c
               LEFT JOIN categories cat ON cat.id = c.category_id
               LEFT JOIN channel_permission_overrides o ON o.channel_id = c.id
               LEFT JOIN roles r ON r.id = o.role_id
               WHERE c.id = $1 AND c.kind = 'text'
               ORDER BY o.role_id"#,
            id.0
        )
        .fetch_all(&self.pool)
        .await?;
        let rows = rows
            .into_iter()
            .map(|r| ChannelAccessRow {
                channel: Channel {
                    id: r.id,
                    name: r.name,
                    topic: r.topic,
                    category: r.category,
                    position: r.position,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                },
                role_id: r.role_id,
                allow_bits: r.allow_bits,
                deny_bits: r.deny_bits,
                role_position: r.role_position,
            })
            .collect();
        Ok(assemble::channel_access(rows))
    }

    async fn channel_kind(&self, id: ChannelId) -> StorageResult<Option<ChannelKind>> {
        let kind =
            sqlx::query_scalar!("SELECT kind FROM channels WHERE id = $1", id.0).fetch_optional(&self.pool).await?;
        Ok(kind.and_then(|k| ChannelKind::parse(&k)))
    }

    async fn create_channel(&self, new: NewChannel) -> StorageResult<Channel> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let id = insert_channel(&mut tx, &new, now).await?;
        let channel = load_channel(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::Channel))?;
        tx.commit().await?;
        Ok(channel)
    }

    async fn update_channel(&self, id: ChannelId, patch: ChannelPatch) -> StorageResult<Channel> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let (set_category, category) = match &patch.category {
            Some(Some(name)) => (true, Some(category_id(&mut tx, name, now).await?)),
            Some(None) => (true, None),
            None => (false, None),
        };
        let (set_topic, topic) = match patch.topic {
            Some(topic) => (true, topic),
            None => (false, None),
        };
        let updated = sqlx::query_scalar!(
            "UPDATE channels SET name = COALESCE($2, name),
                                 topic = CASE WHEN $3 THEN $4 ELSE topic END,
                                 category_id = CASE WHEN $5 THEN $6 ELSE category_id END,
                                 position = COALESCE($7, position),
                                 updated_at = $8
             WHERE id = $1 AND kind = 'text'
             RETURNING id",
            id.0,
            patch.name,
            set_topic,
            topic,
            set_category,
            category,
            patch.position,
            now.as_datetime()
        )
        .fetch_optional(&mut *tx)
        .await?;
        if updated.is_none() {
            return Err(StorageError::NotFound(Entity::Channel));
        }
        let channel = load_channel(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::Channel))?;
        tx.commit().await?;
        Ok(channel)
    }

    async fn delete_channel(&self, id: ChannelId) -> StorageResult<bool> {
        // Messages, threads, attachments, reactions and overrides go with it (ON DELETE CASCADE).
        let removed = sqlx::query!("DELETE FROM channels WHERE id = $1 AND kind = 'text'", id.0)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    async fn ensure_default_channel(&self, name: &str) -> StorageResult<Option<Channel>> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        // Several processes may start at once: one decides at a time.
        advisory_xact_lock(&mut tx, LOCK_DEFAULT_CHANNEL).await?;
        let exists =
            sqlx::query_scalar!(r#"/* pg */ SELECT EXISTS (SELECT 1 FROM channels WHERE kind = 'text') AS "exists!""#)
                .fetch_one(&mut *tx)
                .await?;
        if exists {
            return Ok(None);
        }
        let new = NewChannel { name: name.to_owned(), topic: None, category: None, position: 0 };
        let id = insert_channel(&mut tx, &new, now).await?;
        let channel = load_channel(&mut tx, id).await?;
        tx.commit().await?;
        Ok(channel)
    }

    async fn list_categories(&self) -> StorageResult<Vec<Category>> {
        let categories = sqlx::query_as!(
            Category,
            r#"/* pg */
               SELECT id AS "id: CategoryId", name, position, created_at AS "created_at: Timestamp"
               FROM categories ORDER BY position, id"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(categories)
    }

    async fn delete_category(&self, name: &str) -> StorageResult<()> {
        // One statement: the RESTRICT foreign key refuses it while a channel uses the category.
        let result = sqlx::query_scalar!("DELETE FROM categories WHERE name = $1 RETURNING id", name)
            .fetch_optional(&self.pool)
            .await;
        match result {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StorageError::NotFound(Entity::Category)),
            Err(err) => Err(match StorageError::from(err) {
                StorageError::InvalidReference(_) => StorageError::Conflict(Conflict::CategoryInUse),
                other => other,
            }),
        }
    }
}
