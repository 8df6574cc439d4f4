//! MediaStore: content-addressed media rows and recorded uploads.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

pub async fn put_media_round_trips_and_first_uploader_wins(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let new = NewMedia {
        content_hash: hash(1),
        object_key: format!("prefix/{}", hash(1)),
        bucket: Some("bucket-é".into()),
        size_bytes: 0,
        mime_type: "image/webp".into(),
        uploaded_by: Some(a.id),
    };
    let before = Timestamp::now();
    let m = s.put_media(new.clone()).await.unwrap();
    let after = Timestamp::now();
    assert_eq!(m.content_hash, hash(1));
    assert_eq!(m.object_key, new.object_key);
    assert_eq!(m.bucket.as_deref(), Some("bucket-é"));
    assert_eq!(m.size_bytes, 0);
    assert_eq!(m.mime_type, "image/webp");
    assert_eq!(m.uploaded_by, Some(a.id));
    assert_between(m.uploaded_at, before, after);
    assert_eq!(s.get_media(&hash(1)).await.unwrap(), Some(m.clone()));

    let second = s
        .put_media(NewMedia { mime_type: "application/pdf".into(), uploaded_by: Some(b.id), bucket: None, ..new })
        .await
        .unwrap();
    assert_eq!(second, m, "the first uploader and type win");
    assert_eq!(s.get_media(&hash(1)).await.unwrap(), Some(m));

    let anonymous = s.put_media(NewMedia { uploaded_by: None, ..new_media(2, None) }).await.unwrap();
    assert_eq!((anonymous.uploaded_by, anonymous.bucket.as_deref()), (None, None));
    assert_eq!(s.get_media(&hash(2)).await.unwrap(), Some(anonymous));
}

pub async fn get_media_unknown_is_none(s: &dyn Storage) {
    assert_eq!(s.get_media(&hash(42)).await.unwrap(), None);
}

pub async fn record_uploads_creates_media_and_unlinked_attachments_in_order(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    let existing = media(s, 3, Some(a.id)).await;

    let files = vec![
        NewAttachment { filename: "Фото 📷.png".into(), ..new_attachment(ch.id, a.id, 1, "") },
        NewAttachment {
            filename: "report.pdf".into(),
            mime_type: "application/pdf".into(),
            width: None,
            height: None,
            ..new_attachment(ch.id, a.id, 2, "")
        },
        NewAttachment { filename: "same-bytes-again.png".into(), ..new_attachment(ch.id, a.id, 1, "") },
        NewAttachment { filename: "old.png".into(), ..new_attachment(ch.id, a.id, 3, "") },
    ];
    let before = Timestamp::now();
    let recorded = s
        .record_uploads(vec![new_media(1, Some(a.id)), new_media(2, Some(a.id)), new_media(3, None)], files.clone())
        .await
        .unwrap();
    let after = Timestamp::now();

    assert_eq!(recorded.len(), 4);
    assert!(recorded.windows(2).all(|w| w[0].id < w[1].id), "one attachment per file, in order");
    for (att, file) in recorded.iter().zip(&files) {
        assert_eq!(att.message_id, None);
        assert_eq!(att.channel_id, ch.id);
        assert_eq!(att.uploader_id, a.id);
        assert_eq!(att.filename, file.filename);
        assert_eq!(att.content_hash, file.content_hash);
        assert_eq!(att.size, file.size);
        assert_eq!(att.mime_type, file.mime_type);
        assert_eq!((att.width, att.height), (file.width, file.height));
        assert_between(att.created_at, before, after);
        assert_eq!(s.get_attachment(att.id).await.unwrap(), Some(att.clone()));
    }
    assert_eq!(s.get_media(&hash(1)).await.unwrap().unwrap().size_bytes, new_media(1, None).size_bytes);
    assert!(s.get_media(&hash(2)).await.unwrap().is_some());
    assert_eq!(s.get_media(&hash(3)).await.unwrap(), Some(existing), "an existing media row is kept");
}

pub async fn record_uploads_with_unknown_media_is_invalid_reference_and_atomic(s: &dyn Storage) {
    let a = admin(s).await;
    let ch = channel(s, "general").await;
    // the second file names a hash that neither exists nor is in this batch
    let result = s
        .record_uploads(
            vec![new_media(1, Some(a.id))],
            vec![new_attachment(ch.id, a.id, 1, "ok.png"), new_attachment(ch.id, a.id, 2, "dangling.png")],
        )
        .await;
    expect_invalid_reference(result);
    assert_eq!(s.get_media(&hash(1)).await.unwrap(), None, "nothing recorded");
    // the next upload gets the first attachment id that was not used
    let next = upload(s, ch.id, a.id, 5).await;
    assert_eq!(s.get_attachment(AttachmentId(next.id.0 - 1)).await.unwrap(), None);
}

pub async fn get_attachment_unknown_is_none(s: &dyn Storage) {
    assert_eq!(s.get_attachment(AttachmentId(9_999)).await.unwrap(), None);
}
