//! DeviceStore: device delegation certificates, re-certification, revocation.

use decentcom::storage::*;
use pretty_assertions::assert_eq;

use crate::fixtures::*;

/// Certificate-like bytes containing every byte value, varied by `issued`.
fn certificate(issued: i64) -> Vec<u8> {
    let mut bytes = b"decentcom-device-cert\x01".to_vec();
    bytes.extend(issued.to_be_bytes());
    bytes.extend(0u8..=255);
    bytes.extend([0x00, 0x00, 0xff, 0xff]);
    bytes
}

fn signature(seed: u8) -> Signature {
    let mut bytes = [0u8; 64];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_add((i as u8).wrapping_mul(31));
    }
    bytes[0] = 0x00;
    bytes[63] = 0xff;
    Signature(bytes)
}

/// A device certificate issued `issued` seconds after 2026-01-01, with a microsecond part.
pub fn new_device(pubkey: PublicKey, user: UserId, issued: i64) -> NewDeviceKey {
    let base = ts("2026-01-01T00:00:00.000001Z");
    NewDeviceKey {
        device_pubkey: pubkey,
        user_id: user,
        device_name: "Laptop 💻".into(),
        permissions: DevicePermissions::SIGN_AUTH,
        issued_at: base.plus_seconds(issued),
        expires_at: None,
        certificate: certificate(issued),
        signature: signature(issued as u8),
    }
}

fn expect_created(r: DeviceRegistration) -> DeviceKey {
    match r {
        DeviceRegistration::Created(d) => d,
        other => panic!("expected Created, got {other:?}"),
    }
}

pub async fn register_device_key_creates_and_round_trips_bytes(s: &dyn Storage) {
    let a = admin(s).await;
    let new = NewDeviceKey {
        device_pubkey: PublicKey([0xff; 32]),
        user_id: a.id,
        device_name: "טלפון e\u{301} 📱".into(),
        permissions: DevicePermissions::SIGN_AUTH | DevicePermissions::SIGN_MESSAGES,
        issued_at: ts("2026-04-10T00:00:00.123456Z"),
        expires_at: Some(ts("2027-04-10T00:00:00.000001Z")),
        certificate: certificate(1),
        signature: Signature([0xff; 64]),
    };
    let before = Timestamp::now();
    let device = expect_created(s.register_device_key(new.clone()).await.unwrap());
    let after = Timestamp::now();
    assert_eq!(device.device_pubkey, PublicKey([0xff; 32]));
    assert_eq!(device.user_id, a.id);
    assert_eq!(device.device_name, new.device_name);
    assert_eq!(device.permissions, DevicePermissions::SIGN_AUTH | DevicePermissions::SIGN_MESSAGES);
    assert_eq!(device.issued_at, new.issued_at);
    assert_eq!(device.expires_at, new.expires_at);
    assert_eq!(device.certificate, new.certificate, "certificate bytes exactly");
    assert_eq!(device.signature.as_bytes(), [0xff; 64].as_slice());
    assert_between(device.created_at, before, after);
    assert_eq!(device.revoked_at, None);
    assert_eq!(s.get_device_key(&PublicKey([0xff; 32])).await.unwrap(), Some(device.clone()));

    let zeros = NewDeviceKey {
        device_pubkey: PublicKey([0x00; 32]),
        signature: Signature([0x00; 64]),
        certificate: vec![0x00; 109],
        ..new
    };
    let second = expect_created(s.register_device_key(zeros).await.unwrap());
    assert_ne!(second.id, device.id);
    assert_eq!(second.certificate, vec![0x00; 109]);
    assert_eq!(second.signature, Signature([0x00; 64]));
    assert_eq!(s.get_device_key(&PublicKey([0x00; 32])).await.unwrap(), Some(second));
    assert_eq!(s.get_device_key(&key(77)).await.unwrap(), None);
}

pub async fn register_device_key_recertifies_only_with_newer_certificate(s: &dyn Storage) {
    let a = admin(s).await;
    let original = expect_created(s.register_device_key(new_device(key(10), a.id, 100)).await.unwrap());

    assert_eq!(
        s.register_device_key(new_device(key(10), a.id, 100)).await.unwrap(),
        DeviceRegistration::NotNewer,
        "same issued_at"
    );
    assert_eq!(
        s.register_device_key(new_device(key(10), a.id, 50)).await.unwrap(),
        DeviceRegistration::NotNewer,
        "older"
    );
    assert_eq!(s.get_device_key(&key(10)).await.unwrap(), Some(original.clone()), "unchanged");

    let newer = NewDeviceKey {
        device_name: "Renamed".into(),
        permissions: DevicePermissions::SIGN_MESSAGES,
        expires_at: Some(ts("2030-01-01T00:00:00Z")),
        ..new_device(key(10), a.id, 200)
    };
    let recertified = match s.register_device_key(newer.clone()).await.unwrap() {
        DeviceRegistration::Recertified(d) => d,
        other => panic!("expected Recertified, got {other:?}"),
    };
    assert_eq!(recertified.id, original.id);
    assert_eq!(recertified.device_pubkey, key(10));
    assert_eq!(recertified.user_id, a.id);
    assert_eq!(recertified.device_name, "Renamed");
    assert_eq!(recertified.permissions, DevicePermissions::SIGN_MESSAGES);
    assert_eq!(recertified.issued_at, newer.issued_at);
    assert_eq!(recertified.expires_at, newer.expires_at);
    assert_eq!(recertified.certificate, newer.certificate);
    assert_eq!(recertified.signature, newer.signature);
    assert_eq!(recertified.revoked_at, None);
    assert_eq!(s.get_device_key(&key(10)).await.unwrap(), Some(recertified));
    // one microsecond newer is newer
    let micro = NewDeviceKey { issued_at: Timestamp::from_micros(newer.issued_at.as_micros() + 1).unwrap(), ..newer };
    assert!(matches!(s.register_device_key(micro).await.unwrap(), DeviceRegistration::Recertified(_)));
}

pub async fn register_device_key_owned_by_other_user(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let device = expect_created(s.register_device_key(new_device(key(10), a.id, 100)).await.unwrap());
    assert_eq!(s.register_device_key(new_device(key(10), b.id, 500)).await.unwrap(), DeviceRegistration::OwnedByOther);
    assert_eq!(s.get_device_key(&key(10)).await.unwrap(), Some(device));
    assert_eq!(s.list_device_keys(b.id, Timestamp::now()).await.unwrap(), vec![]);
}

pub async fn revoked_device_key_cannot_be_registered_again(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    expect_created(s.register_device_key(new_device(key(10), a.id, 100)).await.unwrap());
    let revoked = s.revoke_device_key(a.id, &key(10)).await.unwrap().expect("revoked");
    assert_eq!(s.register_device_key(new_device(key(10), a.id, 900)).await.unwrap(), DeviceRegistration::Revoked);
    assert_eq!(s.register_device_key(new_device(key(10), a.id, 100)).await.unwrap(), DeviceRegistration::Revoked);
    let by_other = s.register_device_key(new_device(key(10), b.id, 900)).await.unwrap();
    assert!(
        matches!(by_other, DeviceRegistration::Revoked | DeviceRegistration::OwnedByOther),
        "another user can never take a revoked key: {by_other:?}"
    );
    assert_eq!(s.get_device_key(&key(10)).await.unwrap(), Some(revoked.device));
}

pub async fn list_device_keys_excludes_revoked_and_expired_oldest_first(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let now = ts("2028-01-01T00:00:00Z");
    let first = expect_created(s.register_device_key(new_device(key(1), a.id, 10)).await.unwrap());
    tick().await;
    let _expired = s
        .register_device_key(NewDeviceKey {
            expires_at: Some(ts("2027-12-31T23:59:59.999999Z")),
            ..new_device(key(2), a.id, 10)
        })
        .await
        .unwrap();
    tick().await;
    let _revoked = s.register_device_key(new_device(key(3), a.id, 10)).await.unwrap();
    s.revoke_device_key(a.id, &key(3)).await.unwrap().unwrap();
    tick().await;
    let later = expect_created(
        s.register_device_key(NewDeviceKey {
            expires_at: Some(ts("2028-01-01T00:00:00.000001Z")),
            ..new_device(key(4), a.id, 10)
        })
        .await
        .unwrap(),
    );
    tick().await;
    let _others = s.register_device_key(new_device(key(5), b.id, 10)).await.unwrap();

    assert_eq!(s.list_device_keys(a.id, now).await.unwrap(), vec![first.clone(), later]);
    assert_eq!(s.list_device_keys(a.id, ts("2029-01-01T00:00:00Z")).await.unwrap(), vec![first]);
    assert_eq!(s.list_device_keys(b.id, now).await.unwrap().len(), 1);
}

pub async fn revoke_device_key_deletes_only_its_sessions(s: &dyn Storage) {
    let a = admin(s).await;
    let laptop = expect_created(s.register_device_key(new_device(key(1), a.id, 10)).await.unwrap());
    let phone = expect_created(s.register_device_key(new_device(key(2), a.id, 10)).await.unwrap());
    let with_device = |token: u8, device: &DeviceKey| NewSession {
        token_hash: TokenHash([token; 32]),
        user_id: a.id,
        device_key_id: Some(device.id),
        is_read_only: false,
        expires_at: ts("2031-01-01T00:00:00Z"),
    };
    let l1 = s.create_session(with_device(1, &laptop)).await.unwrap();
    let l2 = s.create_session(with_device(2, &laptop)).await.unwrap();
    let p1 = s.create_session(with_device(3, &phone)).await.unwrap();
    let master = session(s, 4, a.id).await;

    let before = Timestamp::now();
    let revocation = s.revoke_device_key(a.id, &key(1)).await.unwrap().expect("own device");
    let after = Timestamp::now();
    assert_eq!(revocation.device.id, laptop.id);
    assert_between(revocation.device.revoked_at.expect("revoked_at set"), before, after);
    let mut ended = revocation.ended_sessions.clone();
    ended.sort();
    assert_eq!(ended, vec![l1.id, l2.id]);
    assert_eq!(s.get_session(&l1.token_hash).await.unwrap(), None);
    assert_eq!(s.get_session(&l2.token_hash).await.unwrap(), None);
    assert_eq!(s.get_session(&p1.token_hash).await.unwrap(), Some(p1));
    assert_eq!(s.get_session(&master.token_hash).await.unwrap(), Some(master));
    assert_eq!(s.get_device_key(&key(1)).await.unwrap(), Some(revocation.device.clone()));

    // revoked_at is set once
    tick().await;
    if let Some(again) = s.revoke_device_key(a.id, &key(1)).await.unwrap() {
        assert_eq!(again.device.revoked_at, revocation.device.revoked_at);
        assert_eq!(again.ended_sessions, vec![]);
    }
    assert_eq!(s.get_device_key(&key(1)).await.unwrap().unwrap().revoked_at, revocation.device.revoked_at);
}

pub async fn revoke_device_key_of_unknown_or_other_user_is_none(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let device = expect_created(s.register_device_key(new_device(key(1), a.id, 10)).await.unwrap());
    let sess = s
        .create_session(NewSession {
            token_hash: TokenHash([9; 32]),
            user_id: a.id,
            device_key_id: Some(device.id),
            is_read_only: false,
            expires_at: ts("2031-01-01T00:00:00Z"),
        })
        .await
        .unwrap();
    assert_eq!(s.revoke_device_key(b.id, &key(1)).await.unwrap(), None, "another user's key");
    assert_eq!(s.revoke_device_key(a.id, &key(2)).await.unwrap(), None, "unknown key");
    assert_eq!(s.get_device_key(&key(1)).await.unwrap(), Some(device));
    assert_eq!(s.get_session(&sess.token_hash).await.unwrap(), Some(sess));
}

pub async fn concurrent_registrations_of_one_key_create_it_once(s: &dyn Storage) {
    let a = admin(s).await;
    let b = member(s).await;
    let results = futures::future::join_all(
        (0..8).map(|i| s.register_device_key(new_device(key(10), if i % 2 == 0 { a.id } else { b.id }, 100))),
    )
    .await;
    let outcomes: Vec<DeviceRegistration> = results.into_iter().map(|r| r.expect("register_device_key")).collect();
    let created: Vec<&DeviceKey> = outcomes
        .iter()
        .filter_map(|o| match o {
            DeviceRegistration::Created(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "exactly one registration creates the key: {outcomes:?}");
    let owner = created[0].user_id;
    for o in &outcomes {
        match o {
            DeviceRegistration::Created(_) => {}
            DeviceRegistration::NotNewer => {}
            DeviceRegistration::OwnedByOther => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    let owner_calls = outcomes.len() / 2;
    assert_eq!(
        outcomes.iter().filter(|o| matches!(o, DeviceRegistration::OwnedByOther)).count(),
        outcomes.len() - owner_calls
    );
    assert_eq!(s.get_device_key(&key(10)).await.unwrap().unwrap().user_id, owner);
}
