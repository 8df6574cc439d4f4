//! MediaStore: content-addressed media rows and uploaded attachments.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::PostgresBackend;
use crate::storage::{
    Attachment, AttachmentId, ChannelId, ContentHash, Entity, Media, MediaStore, MessageId, NewAttachment, NewMedia,
    StorageError, StorageResult, Timestamp, UserId,
};

/// Inserts the media row unless its hash exists (the first uploader and type win).
async fn insert_media(conn: &mut PgConnection, media: &NewMedia, now: Timestamp) -> StorageResult<()> {
    sqlx::query!(
        "INSERT INTO media (content_hash, object_key, bucket, size_bytes, mime_type, uploaded_by, uploaded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (content_hash) DO NOTHING",
        media.content_hash.as_str(),
        media.object_key,
        media.bucket,
        media.size_bytes,
        media.mime_type,
        media.uploaded_by.map(|u| u.0),
        now.as_datetime()
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn load_media(conn: &mut PgConnection, hash: &ContentHash) -> StorageResult<Option<Media>> {
    let media = sqlx::query_as!(
        Media,
        r#"SELECT content_hash AS "content_hash: ContentHash", object_key, bucket, size_bytes, mime_type,
                  uploaded_by AS "uploaded_by: UserId", uploaded_at AS "uploaded_at: Timestamp"
           FROM media WHERE content_hash = $1"#,
        hash.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(media)
}

#[async_trait]
impl MediaStore for PostgresBackend {
    async fn put_media(&self, media: NewMedia) -> StorageResult<Media> {
        let mut conn = self.pool.acquire().await?;
        insert_media(&mut conn, &media, Timestamp::now()).await?;
        load_media(&mut conn, &media.content_hash).await?.ok_or(StorageError::NotFound(Entity::Media))
    }

    async fn get_media(&self, hash: &ContentHash) -> StorageResult<Option<Media>> {
        let mut conn = self.pool.acquire().await?;
        load_media(&mut conn, hash).await
    }

    async fn list_media(&self, after: Option<&ContentHash>, limit: i64) -> StorageResult<Vec<Media>> {
        let media = sqlx::query_as!(
            Media,
            r#"SELECT content_hash AS "content_hash: ContentHash", object_key, bucket, size_bytes, mime_type,
                      uploaded_by AS "uploaded_by: UserId", uploaded_at AS "uploaded_at: Timestamp"
               FROM media WHERE content_hash > $1 ORDER BY content_hash LIMIT $2"#,
            after.map_or("", ContentHash::as_str),
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(media)
    }

    async fn record_uploads(
        &self,
        media: Vec<NewMedia>,
        attachments: Vec<NewAttachment>,
    ) -> StorageResult<Vec<Attachment>> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        for m in &media {
            insert_media(&mut tx, m, now).await?;
        }
        let mut stored = Vec::with_capacity(attachments.len());
        for a in attachments {
            let attachment = sqlx::query_as!(
                Attachment,
                r#"INSERT INTO attachments (message_id, channel_id, uploader_id, content_hash, filename, size_bytes,
                                            mime_type, width, height, created_at)
                   VALUES (NULL, $1, $2, $3, $4, $5, $6, $7, $8, $9)
                   RETURNING id AS "id: AttachmentId", message_id AS "message_id: MessageId",
                             channel_id AS "channel_id: ChannelId", uploader_id AS "uploader_id: UserId", filename,
                             content_hash AS "content_hash: ContentHash", size_bytes AS size, mime_type, width, height,
                             created_at AS "created_at: Timestamp""#,
                a.channel_id.0,
                a.uploader_id.0,
                a.content_hash.as_str(),
                a.filename,
                a.size,
                a.mime_type,
                a.width,
                a.height,
                now.as_datetime()
            )
            .fetch_one(&mut *tx)
            .await?;
            stored.push(attachment);
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn get_attachment(&self, id: AttachmentId) -> StorageResult<Option<Attachment>> {
        let attachment = sqlx::query_as!(
            Attachment,
            r#"SELECT id AS "id: AttachmentId", message_id AS "message_id: MessageId",
                      channel_id AS "channel_id: ChannelId", uploader_id AS "uploader_id: UserId", filename,
                      content_hash AS "content_hash: ContentHash", size_bytes AS size, mime_type, width, height,
                      created_at AS "created_at: Timestamp"
               FROM attachments WHERE id = $1"#,
            id.0
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(attachment)
    }
}
