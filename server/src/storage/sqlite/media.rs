use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::SqliteBackend;
use crate::storage::{
    Attachment, AttachmentId, ChannelId, ContentHash, Entity, Media, MediaStore, MessageId, NewAttachment, NewMedia,
    StorageError, StorageResult, Timestamp, UserId,
};

/// Inserts the media row unless its hash exists (the first uploader and type win).
async fn insert_media(conn: &mut SqliteConnection, media: &NewMedia, now: i64) -> StorageResult<()> {
    sqlx::query!(
        "INSERT INTO media (content_hash, object_key, bucket, size_bytes, mime_type, uploaded_by, uploaded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (content_hash) DO NOTHING",
        media.content_hash,
        media.object_key,
        media.bucket,
        media.size_bytes,
        media.mime_type,
        media.uploaded_by,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn load_media(conn: &mut SqliteConnection, hash: &ContentHash) -> StorageResult<Option<Media>> {
    Ok(sqlx::query_as!(
        Media,
        r#"SELECT content_hash AS "content_hash!: ContentHash", object_key AS "object_key!: String",
                  bucket AS "bucket?: String", size_bytes AS "size_bytes!: i64", mime_type AS "mime_type!: String",
                  uploaded_by AS "uploaded_by?: UserId", uploaded_at AS "uploaded_at!: Timestamp"
           FROM media WHERE content_hash = ?1"#,
        hash
    )
    .fetch_optional(&mut *conn)
    .await?)
}

#[async_trait]
impl MediaStore for SqliteBackend {
    async fn put_media(&self, media: NewMedia) -> StorageResult<Media> {
        let now = Timestamp::now().as_micros();
        let mut tx = self.begin_write().await?;
        insert_media(&mut tx, &media, now).await?;
        let stored = load_media(&mut tx, &media.content_hash).await?.ok_or(StorageError::NotFound(Entity::Media))?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn get_media(&self, hash: &ContentHash) -> StorageResult<Option<Media>> {
        let mut conn = self.pool.acquire().await?;
        load_media(&mut conn, hash).await
    }

    async fn list_media(&self, after: Option<&ContentHash>, limit: i64) -> StorageResult<Vec<Media>> {
        let after = after.map_or("", ContentHash::as_str);
        Ok(sqlx::query_as!(
            Media,
            r#"SELECT content_hash AS "content_hash!: ContentHash", object_key AS "object_key!: String",
                      bucket AS "bucket?: String", size_bytes AS "size_bytes!: i64", mime_type AS "mime_type!: String",
                      uploaded_by AS "uploaded_by?: UserId", uploaded_at AS "uploaded_at!: Timestamp"
               FROM media WHERE content_hash > ?1 ORDER BY content_hash LIMIT ?2"#,
            after,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_uploads(
        &self,
        media: Vec<NewMedia>,
        attachments: Vec<NewAttachment>,
    ) -> StorageResult<Vec<Attachment>> {
        let now = Timestamp::now();
        let now_micros = now.as_micros();
        let mut tx = self.begin_write().await?;
        for m in &media {
            insert_media(&mut tx, m, now_micros).await?;
        }
        let mut recorded = Vec::with_capacity(attachments.len());
        for a in attachments {
            let id = sqlx::query_scalar!(
                r#"INSERT INTO attachments (message_id, channel_id, uploader_id, content_hash, filename, size_bytes,
                                            mime_type, width, height, created_at)
                   VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id AS "id!: AttachmentId""#,
                a.channel_id,
                a.uploader_id,
                a.content_hash,
                a.filename,
                a.size,
                a.mime_type,
                a.width,
                a.height,
                now_micros
            )
            .fetch_one(&mut *tx)
            .await?;
            recorded.push(Attachment {
                id,
                message_id: None,
                channel_id: a.channel_id,
                uploader_id: a.uploader_id,
                filename: a.filename,
                content_hash: a.content_hash,
                size: a.size,
                mime_type: a.mime_type,
                width: a.width,
                height: a.height,
                created_at: now,
            });
        }
        tx.commit().await?;
        Ok(recorded)
    }

    async fn get_attachment(&self, id: AttachmentId) -> StorageResult<Option<Attachment>> {
        Ok(sqlx::query_as!(
            Attachment,
            r#"SELECT id AS "id!: AttachmentId", message_id AS "message_id?: MessageId", channel_id AS "channel_id!: ChannelId",
                      uploader_id AS "uploader_id!: UserId", filename AS "filename!: String",
                      content_hash AS "content_hash!: ContentHash", size_bytes AS "size!: i64", mime_type AS "mime_type!: String",
                      width AS "width?: i64", height AS "height?: i64", created_at AS "created_at!: Timestamp"
               FROM attachments WHERE id = ?1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?)
    }
}
