//! Smoke tests of the SQLite backend (the conformance suite in server/tests/conformance/ is the
//! real specification check).

use std::time::Duration;

use super::SqliteBackend;
use crate::storage::search::parse_query;
use crate::storage::*;

async fn backend() -> (tempfile::TempDir, SqliteBackend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = PoolSettings {
        max_connections: 4,
        min_connections: 0,
        acquire_timeout: Duration::from_secs(5),
        idle_timeout: None,
        statement_timeout: None,
    };
    let backend = SqliteBackend::open(&dir.path().join("nested/db.sqlite"), &settings).await.expect("open");
    (dir, backend)
}

fn key(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

async fn user(db: &SqliteBackend, n: u8) -> UserId {
    db.register_user(NewUser { pubkey: key(n), is_bot: false, open_membership: true }).await.expect("register").user.id
}

#[tokio::test]
async fn registration_membership_and_roles() {
    let (_dir, db) = backend().await;
    db.ping().await.unwrap();
    let first = db.register_user(NewUser { pubkey: key(1), is_bot: false, open_membership: false }).await.unwrap();
    assert!(first.is_first_user);
    let member = first.member.unwrap();
    assert_eq!(member.roles.iter().map(|r| r.id).collect::<Vec<_>>(), vec![RoleId::ADMIN, RoleId::EVERYONE]);
    let closed = db.register_user(NewUser { pubkey: key(2), is_bot: false, open_membership: false }).await.unwrap();
    assert!(closed.member.is_none() && !closed.is_first_user);
    let bot = db.register_user(NewUser { pubkey: key(3), is_bot: true, open_membership: true }).await.unwrap();
    assert!(bot.member.is_none());
    assert_eq!(db.list_pending_bots().await.unwrap().len(), 1);
    let (approval, joined) = db.approve_bot(bot.user.id, first.user.id, Some("ok".into())).await.unwrap();
    assert!(approval.is_approved() && joined.newly_joined);
    assert!(matches!(
        db.register_user(NewUser { pubkey: key(1), is_bot: false, open_membership: true }).await,
        Err(StorageError::Conflict(Conflict::UserPubkey))
    ));

    let roles = db.list_roles().await.unwrap();
    assert_eq!(roles[0].permissions, Permissions::all());
    assert_eq!(roles[1].permissions.bits(), 1539);
    let role = db
        .create_role(NewRole { name: "mod".into(), color: None, permissions: Permissions::KICK_MEMBERS, position: 5 })
        .await
        .unwrap();
    assert!(matches!(db.assign_role(closed.user.id, role.id).await, Err(StorageError::NotFound(Entity::Member))));
    db.join(closed.user.id).await.unwrap();
    db.assign_role(closed.user.id, role.id).await.unwrap();
    assert!(matches!(
        db.assign_role(closed.user.id, role.id).await,
        Err(StorageError::Conflict(Conflict::RoleAssigned))
    ));
    let updated = db
        .update_role(
            role.id,
            RolePatch {
                color: Some(Some("#fff".into())),
                permissions: Some(Permissions::BAN_MEMBERS),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.permissions, Permissions::BAN_MEMBERS);
    assert_eq!(updated.color.as_deref(), Some("#fff"));
    assert!(db.update_role(RoleId::ADMIN, RolePatch { position: Some(3), ..Default::default() }).await.is_err());
    assert!(db.delete_role(RoleId::EVERYONE).await.is_err());
    assert_eq!(db.member_roles(closed.user.id).await.unwrap().len(), 2);
    assert!(db.delete_role(role.id).await.unwrap());
    assert_eq!(db.member_count().await.unwrap(), 3);

    let (ban, kicked) = db.ban(NewBan { pubkey: key(2), banned_by: first.user.id, reason: None }).await.unwrap();
    assert_eq!(kicked, Some(closed.user.id));
    assert_eq!(ban.pubkey, key(2));
    assert!(db.is_banned(&key(2)).await.unwrap());
    assert!(matches!(
        db.ban(NewBan { pubkey: key(2), banned_by: first.user.id, reason: None }).await,
        Err(StorageError::Conflict(Conflict::AlreadyBanned))
    ));
    assert_eq!(db.member_count().await.unwrap(), 2);
}

#[tokio::test]
async fn messages_threads_reactions_search() {
    let (_dir, db) = backend().await;
    let alice = user(&db, 1).await;
    let bob = user(&db, 2).await;
    let general = db.ensure_default_channel("general").await.unwrap().unwrap();
    assert!(db.ensure_default_channel("general").await.unwrap().is_none());
    let other = db
        .create_channel(NewChannel { name: "other".into(), topic: None, category: Some("cat".into()), position: 1 })
        .await
        .unwrap();
    assert_eq!(other.category.as_deref(), Some("cat"));
    assert!(matches!(db.delete_category("cat").await, Err(StorageError::Conflict(Conflict::CategoryInUse))));
    let other = db
        .update_channel(
            other.id,
            ChannelPatch { category: Some(None), topic: Some(Some("t".into())), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(other.category, None);
    assert_eq!(other.topic.as_deref(), Some("t"));
    db.delete_category("cat").await.unwrap();

    let hash = ContentHash::parse(&"a".repeat(64)).unwrap();
    let media = NewMedia {
        content_hash: hash.clone(),
        object_key: "k".into(),
        bucket: None,
        size_bytes: 3,
        mime_type: "text/plain".into(),
        uploaded_by: Some(alice),
    };
    let att = NewAttachment {
        channel_id: general.id,
        uploader_id: alice,
        filename: "a.txt".into(),
        content_hash: hash.clone(),
        size: 3,
        mime_type: "text/plain".into(),
        width: None,
        height: None,
    };
    let recorded = db.record_uploads(vec![media.clone(), media], vec![att.clone(), att]).await.unwrap();
    assert_eq!(recorded.len(), 2);

    let mut ids = Vec::new();
    for i in 0..5 {
        let m = db
            .create_message(NewMessage {
                channel_id: general.id,
                thread_id: None,
                author_id: alice,
                content: format!("Hello rusty world {i}"),
                attachment_ids: if i == 0 { vec![recorded[0].id] } else { vec![] },
            })
            .await
            .unwrap();
        ids.push(m.id);
    }
    // A used attachment is unavailable, and nothing is stored.
    let err = db
        .create_message(NewMessage {
            channel_id: general.id,
            thread_id: None,
            author_id: alice,
            content: "x".into(),
            attachment_ids: vec![recorded[1].id, recorded[0].id],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict(Conflict::AttachmentUnavailable(id)) if id == recorded[0].id));
    assert!(db.get_attachment(recorded[1].id).await.unwrap().unwrap().message_id.is_none());

    let page = db.list_messages(MessageScope::Channel(general.id), PageCursor::Latest, 2, Some(alice)).await.unwrap();
    assert_eq!(page.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[4], ids[3]]);
    assert!(page.has_more);
    let page = db.list_messages(MessageScope::Channel(general.id), PageCursor::After(ids[2]), 5, None).await.unwrap();
    assert_eq!(page.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[3], ids[4]]);
    assert!(!page.has_more);
    let first = db.get_message(ids[0], None).await.unwrap().unwrap();
    assert_eq!(first.attachments.len(), 1);

    assert_eq!(db.toggle_reaction(ids[0], alice, "👍").await.unwrap().added.as_deref(), Some("👍"));
    db.toggle_reaction(ids[0], bob, "🎉").await.unwrap();
    let change = db.toggle_reaction(ids[0], alice, "🎉").await.unwrap();
    assert_eq!(change, ReactionChange { removed: Some("👍".into()), added: Some("🎉".into()) });
    let m = db.get_message(ids[0], Some(bob)).await.unwrap().unwrap();
    assert_eq!(m.reactions, vec![ReactionSummary { emoji: "🎉".into(), count: 2, me: true }]);
    let reactors = db.list_reactors(ids[0], "🎉", None, 1).await.unwrap();
    assert_eq!(reactors.total, 2);
    assert_eq!(reactors.users[0].user_id, bob);
    assert_eq!(db.remove_reaction(ids[0], bob).await.unwrap().as_deref(), Some("🎉"));

    let (thread, created) = db.create_thread(ids[1], bob).await.unwrap();
    assert!(created && thread.is_following && thread.follower_count == 1);
    let (again, created) = db.create_thread(ids[1], alice).await.unwrap();
    assert!(!created && again.id == thread.id);
    let reply = db
        .create_message(NewMessage {
            channel_id: general.id,
            thread_id: Some(thread.id),
            author_id: alice,
            content: "rust reply".into(),
            attachment_ids: vec![],
        })
        .await
        .unwrap();
    assert!(matches!(db.create_thread(reply.id, alice).await, Err(StorageError::InvalidInput(_))));
    let t = db.get_thread(thread.id, Some(alice)).await.unwrap().unwrap();
    assert_eq!((t.reply_count, t.follower_count, t.is_following), (1, 2, true));
    let parent = db.get_message(ids[1], None).await.unwrap().unwrap();
    assert_eq!(parent.thread.unwrap().reply_count, 1);
    let page = db.list_messages(MessageScope::Thread(thread.id), PageCursor::Latest, 10, None).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert!(db.mark_thread_read(thread.id, alice).await.unwrap());

    let edited = db.edit_message(ids[2], "completely different".into()).await.unwrap();
    assert!(edited.edited_at.is_some());
    assert!(db.delete_message(ids[0]).await.unwrap());
    assert!(!db.delete_message(ids[0]).await.unwrap());
    assert!(matches!(db.edit_message(ids[0], "x".into()).await, Err(StorageError::Conflict(Conflict::MessageDeleted))));
    let deleted = db.get_message(ids[0], None).await.unwrap().unwrap();
    assert!(deleted.deleted && deleted.content.is_empty() && deleted.attachments.is_empty());

    let query = |q: &str, cursor: Option<MessageId>, limit: u32| SearchQuery {
        terms: parse_query(q).unwrap(),
        channel_ids: vec![general.id],
        author_id: None,
        created_before: None,
        created_after: None,
        cursor,
        limit,
        viewer: None,
    };
    let found = db.search_messages(query("rust*", None, 2)).await.unwrap();
    // 1, 3, 4 (0 deleted, 2 edited) and the reply.
    assert_eq!(found.total_estimate, 4);
    assert_eq!(found.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![reply.id, ids[4]]);
    assert!(found.has_more);
    let next = db.search_messages(query("rust*", Some(ids[4]), 2)).await.unwrap();
    assert_eq!(next.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[3], ids[1]]);
    assert!(!next.has_more);
    assert_eq!(db.search_messages(query("rust", None, 10)).await.unwrap().total_estimate, 1);
    assert_eq!(db.search_messages(query("different", None, 10)).await.unwrap().messages.len(), 1);

    assert!(db.delete_channel(general.id).await.unwrap());
    assert!(db.get_message(ids[1], None).await.unwrap().is_none());
    assert_eq!(db.search_messages(query("rust*", None, 10)).await.unwrap().total_estimate, 0);
}

#[tokio::test]
async fn dms_invites_sessions_devices() {
    let (_dir, db) = backend().await;
    let alice = user(&db, 1).await;
    let bob =
        db.register_user(NewUser { pubkey: key(2), is_bot: false, open_membership: false }).await.unwrap().user.id;

    let opened = db.open_dm(bob, alice).await.unwrap();
    assert!(opened.created && opened.dm.recipient.user_id == alice);
    assert!(!db.open_dm(alice, bob).await.unwrap().created);
    assert!(db.hide_dm(opened.dm.channel_id, alice).await.unwrap());
    assert!(db.list_dms(alice).await.unwrap().is_empty());
    let sent = db.send_dm_message(opened.dm.channel_id, bob, "hi".into()).await.unwrap();
    assert_eq!(sent.reopened_for, vec![alice]);
    let listed = db.list_dms(alice).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_message_at.is_some());
    assert_eq!(db.channel_kind(opened.dm.channel_id).await.unwrap(), Some(ChannelKind::Dm));
    assert!(db.get_channel(opened.dm.channel_id).await.unwrap().is_none());

    let now = Timestamp::now();
    db.create_invite(NewInvite {
        code: "abcdefgh".into(),
        created_by: alice,
        grant_role_id: None,
        max_uses: 1,
        expires_at: None,
    })
    .await
    .unwrap();
    assert!(matches!(
        db.create_invite(NewInvite {
            code: "abcdefgh".into(),
            created_by: alice,
            grant_role_id: None,
            max_uses: 1,
            expires_at: None
        })
        .await,
        Err(StorageError::Conflict(Conflict::InviteCode))
    ));
    assert!(matches!(
        db.create_invite(NewInvite {
            code: "zzzzzzzz".into(),
            created_by: alice,
            grant_role_id: Some(RoleId(99)),
            max_uses: 1,
            expires_at: None
        })
        .await,
        Err(StorageError::InvalidReference(_))
    ));
    assert!(matches!(db.join_via_invite("abcdefgh", alice, now).await.unwrap(), InviteJoin::AlreadyMember(_)));
    assert!(matches!(db.join_via_invite("abcdefgh", bob, now).await.unwrap(), InviteJoin::Joined(_)));
    let carol =
        db.register_user(NewUser { pubkey: key(3), is_bot: false, open_membership: false }).await.unwrap().user.id;
    assert_eq!(db.join_via_invite("abcdefgh", carol, now).await.unwrap(), InviteJoin::Exhausted);
    assert_eq!(db.join_via_invite("nope0000", carol, now).await.unwrap(), InviteJoin::NotFound);
    assert!(db.list_active_invites(now).await.unwrap().is_empty());

    db.put_challenge(&key(1), Nonce([7; 32]), false, now.plus_seconds(60)).await.unwrap();
    assert!(db.take_challenge(&key(1), now).await.unwrap().is_some());
    assert!(db.take_challenge(&key(1), now).await.unwrap().is_none());

    let device = NewDeviceKey {
        device_pubkey: key(9),
        user_id: alice,
        device_name: "Laptop".into(),
        permissions: DevicePermissions::SIGN_AUTH,
        issued_at: Timestamp::from_micros(1_000_000).unwrap(),
        expires_at: None,
        certificate: vec![1, 2, 3],
        signature: Signature([5; 64]),
    };
    assert!(matches!(db.register_device_key(device.clone()).await.unwrap(), DeviceRegistration::Created(_)));
    assert_eq!(db.register_device_key(device.clone()).await.unwrap(), DeviceRegistration::NotNewer);
    let dk = db.get_device_key(&key(9)).await.unwrap().unwrap();
    let session = db
        .create_session(NewSession {
            token_hash: TokenHash([1; 32]),
            user_id: alice,
            device_key_id: Some(dk.id),
            is_read_only: false,
            expires_at: now.plus_seconds(60),
        })
        .await
        .unwrap();
    assert_eq!(session.device_pubkey, Some(key(9)));
    assert_eq!(db.get_session(&TokenHash([1; 32])).await.unwrap(), Some(session.clone()));
    let revoked = db.revoke_device_key(alice, &key(9)).await.unwrap().unwrap();
    assert_eq!(revoked.ended_sessions, vec![session.id]);
    assert!(db.list_device_keys(alice, now).await.unwrap().is_empty());
    assert_eq!(db.register_device_key(device).await.unwrap(), DeviceRegistration::Revoked);
}

#[tokio::test]
async fn concurrent_first_logins_make_one_first_user() {
    let (_dir, db) = backend().await;
    let db = std::sync::Arc::new(db);
    let mut handles = Vec::new();
    for n in 1..=8u8 {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            db.register_user(NewUser { pubkey: key(n), is_bot: false, open_membership: false }).await
        }));
    }
    let mut firsts = 0;
    for h in handles {
        if h.await.unwrap().unwrap().is_first_user {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1);
}

#[tokio::test]
async fn schema_snapshot_reads_tables() {
    let (_dir, db) = backend().await;
    let snapshot = db.schema_snapshot().await.unwrap();
    assert!(!snapshot.tables.contains_key("_sqlx_migrations"));
    assert!(!snapshot.tables.keys().any(|t| t.starts_with("messages_fts") || t.starts_with("sqlite_")));
    let members = &snapshot.tables["members"];
    assert_eq!(members.primary_key, vec!["user_id".to_owned()]);
    assert_eq!(members.columns["joined_at"].ty, schema::ColumnType::Timestamp);
    let messages = &snapshot.tables["messages"];
    assert!(messages.indexes.iter().any(|i| i.partial && i.columns == ["channel_id", "id"]));
    let roles = &snapshot.tables["member_roles"];
    assert_eq!(roles.foreign_keys.len(), 2);
    assert!(snapshot.tables["users"].indexes.iter().any(|i| i.unique && i.columns == ["pubkey"]));
}

#[tokio::test]
async fn a_newer_schema_refuses_to_open() {
    let (dir, db) = backend().await;
    // A runtime statement: the scratch database the macros check against has no
    // `_sqlx_migrations` table (it is built by scripts/scratch-db.sh, not by sqlx).
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99999, 'from the future', 1, x'00', 0)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    db.pool.close().await;
    let settings = PoolSettings {
        max_connections: 1,
        min_connections: 0,
        acquire_timeout: Duration::from_secs(5),
        idle_timeout: None,
        statement_timeout: None,
    };
    match SqliteBackend::open(&dir.path().join("nested/db.sqlite"), &settings).await {
        Err(OpenError::NewerSchema { version: 99999 }) => {}
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("opened a database from a newer binary"),
    }
}
