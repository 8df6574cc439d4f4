use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::SqliteBackend;
use super::rows::{load_channel, load_channels};
use crate::storage::assemble::{self, ChannelAccessRow};
use crate::storage::{
    Category, CategoryId, Channel, ChannelAccess, ChannelId, ChannelKind, ChannelPatch, ChannelStore, Conflict, Entity,
    NewChannel, RoleId, StorageError, StorageResult, Timestamp,
};

/// The id of the category named `name`, created if missing (one statement).
async fn category_id(conn: &mut SqliteConnection, name: &str, now: i64) -> StorageResult<CategoryId> {
    Ok(sqlx::query_scalar!(
        r#"INSERT INTO categories (name, position, created_at) VALUES (?1, 0, ?2)
           ON CONFLICT (name) DO UPDATE SET name = excluded.name
           RETURNING id AS "id!: CategoryId""#,
        name,
        now
    )
    .fetch_one(&mut *conn)
    .await?)
}

async fn insert_text_channel(conn: &mut SqliteConnection, new: &NewChannel) -> StorageResult<Channel> {
    let now = Timestamp::now().as_micros();
    let category = match &new.category {
        Some(name) => Some(category_id(conn, name, now).await?),
        None => None,
    };
    let id = sqlx::query_scalar!(
        r#"INSERT INTO channels (kind, name, topic, category_id, position, created_at, updated_at)
           VALUES ('text', ?1, ?2, ?3, ?4, ?5, ?5) RETURNING id AS "id!: ChannelId""#,
        new.name,
        new.topic,
        category,
        new.position,
        now
    )
    .fetch_one(&mut *conn)
    .await?;
    load_channel(conn, id).await?.ok_or(StorageError::NotFound(Entity::Channel))
}

#[async_trait]
impl ChannelStore for SqliteBackend {
    async fn list_channels(&self) -> StorageResult<Vec<Channel>> {
        let mut conn = self.pool.acquire().await?;
        load_channels(&mut conn, None).await
    }

    async fn get_channel(&self, id: ChannelId) -> StorageResult<Option<Channel>> {
        let mut conn = self.pool.acquire().await?;
        load_channel(&mut conn, id).await
    }

    async fn get_channel_access(&self, id: ChannelId) -> StorageResult<Option<ChannelAccess>> {
        let rows = sqlx::query!(
            r#"SELECT c.id AS "id!: ChannelId", c.name AS "name!: String", c.topic AS "topic?: String", cat.name AS "category?: String",
                      c.position AS "position!: i64", c.created_at AS "created_at!: Timestamp",
                      c.updated_at AS "updated_at!: Timestamp", o.role_id AS "role_id?: RoleId",
                      o.allow_bits AS "allow_bits?: i64", o.deny_bits AS "deny_bits?: i64", r.position AS "role_position?: i64"
               FROM channels c
               LEFT JOIN categories cat ON cat.id = c.category_id
               LEFT JOIN channel_permission_overrides o ON o.channel_id = c.id
               LEFT JOIN roles r ON r.id = o.role_id
               WHERE c.id = ?1 AND c.kind = 'text'
               ORDER BY o.role_id"#,
            id
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
        let kind = sqlx::query_scalar!(r#"SELECT kind AS "kind!: String" FROM channels WHERE id = ?1"#, id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(kind.as_deref().and_then(ChannelKind::parse))
    }

    async fn create_channel(&self, new: NewChannel) -> StorageResult<Channel> {
        let mut tx = self.begin_write().await?;
        let channel = insert_text_channel(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(channel)
    }

    async fn update_channel(&self, id: ChannelId, patch: ChannelPatch) -> StorageResult<Channel> {
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM channels WHERE id = ?1 AND kind = 'text') AS "present!: bool""#,
            id
        )
        .fetch_one(&mut *tx)
        .await?;
        if !exists {
            return Err(StorageError::NotFound(Entity::Channel));
        }
        let set_category = patch.category.is_some();
        let category = match patch.category.flatten() {
            Some(name) => Some(category_id(&mut tx, &name, now).await?),
            None => None,
        };
        let set_topic = patch.topic.is_some();
        let topic = patch.topic.flatten();
        sqlx::query!(
            "UPDATE channels SET name = COALESCE(?1, name),
                                 topic = CASE WHEN ?2 THEN ?3 ELSE topic END,
                                 category_id = CASE WHEN ?4 THEN ?5 ELSE category_id END,
                                 position = COALESCE(?6, position),
                                 updated_at = ?7
             WHERE id = ?8",
            patch.name,
            set_topic,
            topic,
            set_category,
            category,
            patch.position,
            now,
            id
        )
        .execute(&mut *tx)
        .await?;
        let channel = load_channel(&mut tx, id).await?.ok_or(StorageError::NotFound(Entity::Channel))?;
        tx.commit().await?;
        Ok(channel)
    }

    async fn delete_channel(&self, id: ChannelId) -> StorageResult<bool> {
        // Messages, threads, attachments, reactions and overrides go by ON DELETE CASCADE (the
        // full-text rows follow through the messages' delete trigger).
        let removed = sqlx::query!("DELETE FROM channels WHERE id = ?1 AND kind = 'text'", id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    async fn ensure_default_channel(&self, name: &str) -> StorageResult<Option<Channel>> {
        let mut tx = self.begin_write().await?;
        let any = sqlx::query_scalar!(
            r#"/* sqlite */ SELECT EXISTS (SELECT 1 FROM channels WHERE kind = 'text') AS "present!: bool""#
        )
        .fetch_one(&mut *tx)
        .await?;
        if any {
            return Ok(None);
        }
        let new = NewChannel { name: name.to_owned(), topic: None, category: None, position: 0 };
        let channel = insert_text_channel(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(Some(channel))
    }

    async fn list_categories(&self) -> StorageResult<Vec<Category>> {
        Ok(sqlx::query_as!(
            Category,
            r#"/* sqlite */ SELECT id AS "id!: CategoryId", name AS "name!: String", position AS "position!: i64",
                      created_at AS "created_at!: Timestamp"
               FROM categories ORDER BY position, id"#
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_category(&self, name: &str) -> StorageResult<()> {
        let mut tx = self.begin_write().await?;
        let id = sqlx::query_scalar!(r#"SELECT id AS "id!: CategoryId" FROM categories WHERE name = ?1"#, name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StorageError::NotFound(Entity::Category))?;
        let in_use = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM channels WHERE category_id = ?1) AS "used!: bool""#,
            id
        )
        .fetch_one(&mut *tx)
        .await?;
        if in_use {
            return Err(StorageError::Conflict(Conflict::CategoryInUse));
        }
        sqlx::query!("DELETE FROM categories WHERE id = ?1", id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
