//! Device delegation certificates: registration, device-key logins, revocation (api.md §2.5, §3.2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use decentcom::auth::DeviceCertificate;
use decentcom::storage::{DevicePermissions, PublicKey};
use ed25519_dalek::{Signer, SigningKey};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::api_tests;
use crate::auth::try_login;
use crate::support::{Client, TestServer, pubkey_of};

api_tests!(
    register_list_and_revoke,
    device_login_with_a_certificate_registers_the_key,
    registration_checks,
    login_certificate_checks,
);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A certificate signed by `signer` (normally the master) as JSON.
fn cert_signed_by(
    signer: &SigningKey,
    master: &SigningKey,
    device: &SigningKey,
    issued_at: i64,
    expires_at: Option<i64>,
    permissions: DevicePermissions,
    name: &str,
) -> Value {
    let cert = DeviceCertificate {
        master_pubkey: PublicKey(master.verifying_key().to_bytes()),
        device_pubkey: PublicKey(device.verifying_key().to_bytes()),
        issued_at,
        expires_at,
        permissions,
        device_name: name.to_owned(),
    };
    let signature = BASE64.encode(signer.sign(&cert.canonical_bytes()).to_bytes());
    let names: Vec<&str> =
        [("sign_auth", DevicePermissions::SIGN_AUTH), ("sign_messages", DevicePermissions::SIGN_MESSAGES)]
            .into_iter()
            .filter(|(_, p)| permissions.contains(*p))
            .map(|(n, _)| n)
            .collect();
    json!({
        "device_pubkey": pubkey_of(device),
        "device_name": name,
        "issued_at": rfc3339(issued_at),
        "expires_at": expires_at.map(rfc3339),
        "permissions": names,
        "master_pubkey": pubkey_of(master),
        "signature": signature,
    })
}

fn cert(master: &SigningKey, device: &SigningKey, issued_at: i64, expires_at: Option<i64>) -> Value {
    cert_signed_by(master, master, device, issued_at, expires_at, DevicePermissions::SIGN_AUTH, "Laptop")
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn client_with(server: &TestServer, token: &Value) -> Client {
    let mut client = server.anonymous();
    client.token = Some(token.as_str().unwrap().to_owned());
    client
}

async fn register_list_and_revoke(server: TestServer) {
    let master = server.login(1).await;
    let mut gateway = server.gateway(master.token()).await;
    let device = key(2);
    let issued = now() - 60;
    let resp = master
        .post("/api/v1/devices", json!({"delegation_certificate": cert(&master.key, &device, issued, None)}))
        .await;
    assert_eq!(resp.status, 201, "{:?}", resp.body);
    let created_at = resp.body["created_at"].clone();
    assert_eq!(
        resp.body,
        json!({
            "device_pubkey": pubkey_of(&device),
            "device_name": "Laptop",
            "permissions": ["sign_auth"],
            "issued_at": format!("{}.000000Z", rfc3339(issued).trim_end_matches('Z')),
            "expires_at": null,
            "created_at": created_at,
        })
    );
    let event = gateway.expect_op("DEVICE_ADD").await;
    assert_eq!(event["d"]["device_pubkey"], pubkey_of(&device).as_str());

    let list = master.get("/api/v1/devices").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["devices"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["devices"][0], resp.body);

    // The registered device key logs in without presenting its certificate.
    let login = try_login(&server, &device, false, None).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert_eq!(login.body["user_id"], master.user_id.as_str());
    assert_eq!(login.body["device_pubkey"], pubkey_of(&device).as_str());
    let device_client = client_with(&server, &login.body["token"]);
    let me = device_client.get("/api/v1/auth/me").await;
    assert_eq!(me.body["user_id"], master.user_id.as_str());
    assert_eq!(device_client.get("/api/v1/devices").await.status, 200);
    let mut device_gateway = server.gateway(device_client.token.as_deref().unwrap()).await;

    // Device sessions cannot manage devices.
    let refused = device_client
        .post("/api/v1/devices", json!({"delegation_certificate": cert(&master.key, &key(3), issued, None)}))
        .await;
    assert_eq!((refused.status, refused.error()), (403, "device sessions cannot manage devices"));
    let refused = device_client.delete(&format!("/api/v1/devices/{}", pubkey_of(&device))).await;
    assert_eq!((refused.status, refused.error()), (403, "device sessions cannot manage devices"));

    // Revocation ends the device's sessions; repeats answer 204.
    let bad = master.delete("/api/v1/devices/nope").await;
    assert_eq!((bad.status, bad.error()), (400, "invalid public key format"));
    let unknown = master.delete(&format!("/api/v1/devices/{}", pubkey_of(&key(9)))).await;
    assert_eq!((unknown.status, unknown.error()), (404, "device not found"));
    let other = server.login(5).await;
    let not_theirs = other.delete(&format!("/api/v1/devices/{}", pubkey_of(&device))).await;
    assert_eq!((not_theirs.status, not_theirs.error()), (404, "device not found"));

    let revoked = master.delete(&format!("/api/v1/devices/{}", pubkey_of(&device))).await;
    assert_eq!(revoked.status, 204);
    let event = gateway.expect_op("DEVICE_REVOKE").await;
    assert_eq!(event["d"], json!({"device_pubkey": pubkey_of(&device)}));
    assert_eq!(device_gateway.expect_close().await, 4003);
    assert_eq!(device_client.get("/api/v1/auth/me").await.status, 401);
    assert_eq!(master.get("/api/v1/auth/me").await.status, 200);
    assert_eq!(master.delete(&format!("/api/v1/devices/{}", pubkey_of(&device))).await.status, 204);
    assert_eq!(master.get("/api/v1/devices").await.body, json!({"devices": []}));

    // A revoked key can never be used or registered again.
    let login = try_login(&server, &device, false, None).await;
    assert_eq!((login.status, login.error()), (401, "device key revoked"));
    let login = try_login(&server, &device, false, Some(cert(&master.key, &device, now(), None))).await;
    assert_eq!((login.status, login.error()), (401, "device key revoked"));
    let again = master
        .post("/api/v1/devices", json!({"delegation_certificate": cert(&master.key, &device, now(), None)}))
        .await;
    assert_eq!((again.status, again.error()), (409, "device key revoked"));
}

async fn device_login_with_a_certificate_registers_the_key(server: TestServer) {
    let master = server.login(1).await;
    let device = key(2);
    let expires = now() + 3600;
    let login = try_login(&server, &device, false, Some(cert(&master.key, &device, now() - 10, Some(expires)))).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert_eq!(login.body["user_id"], master.user_id.as_str());
    assert_eq!(login.body["device_pubkey"], pubkey_of(&device).as_str());
    // The session ends no later than the certificate.
    let session_end = chrono::DateTime::parse_from_rfc3339(login.body["expires_at"].as_str().unwrap()).unwrap();
    assert!(session_end.timestamp() <= expires);

    let devices = master.get("/api/v1/devices").await;
    assert_eq!(devices.body["devices"].as_array().unwrap().len(), 1);
    assert_eq!(devices.body["devices"][0]["expires_at"], format!("{}.000000Z", rfc3339(expires).trim_end_matches('Z')));

    // A newer certificate presented at login replaces the stored one.
    let renamed =
        cert_signed_by(&master.key, &master.key, &device, now(), None, DevicePermissions::all(), "Renamed laptop");
    let login = try_login(&server, &device, false, Some(renamed)).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    let devices = master.get("/api/v1/devices").await;
    assert_eq!(devices.body["devices"][0]["device_name"], "Renamed laptop");
    assert_eq!(devices.body["devices"][0]["permissions"], json!(["sign_auth", "sign_messages"]));

    // A device key of a master that never logged in creates that master's user.
    let new_master = key(3);
    let new_device = key(4);
    let login = try_login(&server, &new_device, false, Some(cert(&new_master, &new_device, now(), None))).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    let master_login = try_login(&server, &new_master, false, None).await;
    assert_eq!(master_login.body["user_id"], login.body["user_id"]);
}

async fn registration_checks(server: TestServer) {
    let master = server.login(1).await;
    let other = server.login(3).await;
    let device = key(2);
    let t = now() - 60;
    let post = |client: Client, body: Value| async move { client.post("/api/v1/devices", body).await };
    let with_cert = |c: Value| json!({"delegation_certificate": c});

    // Field rules: 400.
    let mut bad_key = cert(&master.key, &device, t, None);
    bad_key["device_pubkey"] = json!("abc");
    let mut bad_name = cert(&master.key, &device, t, None);
    bad_name["device_name"] = json!("");
    let mut fraction = cert(&master.key, &device, t, None);
    fraction["issued_at"] = json!("2026-04-10T00:00:00.5Z");
    let mut unknown_permission = cert(&master.key, &device, t, None);
    unknown_permission["permissions"] = json!(["sign_auth", "fly"]);
    let mut duplicate_permission = cert(&master.key, &device, t, None);
    duplicate_permission["permissions"] = json!(["sign_auth", "sign_auth"]);
    let mut bad_signature_format = cert(&master.key, &device, t, None);
    bad_signature_format["signature"] = json!("AAAA");
    let backwards = cert(&master.key, &device, t, Some(t - 1));
    for (c, field) in [
        (bad_key, "device_pubkey"),
        (bad_name, "device_name"),
        (fraction, "issued_at"),
        (unknown_permission, "permissions"),
        (duplicate_permission, "permissions"),
        (bad_signature_format, "signature"),
        (backwards, "expires_at"),
    ] {
        let resp = post(master.client.clone(), with_cert(c)).await;
        assert_eq!(resp.status, 400, "{field}: {:?}", resp.body);
        assert!(resp.error().contains(field), "{field}: {}", resp.error());
    }
    let missing = post(master.client.clone(), json!({})).await;
    assert_eq!(missing.status, 422);

    let resp = post(other.client.clone(), with_cert(cert(&master.key, &device, t, None))).await;
    assert_eq!((resp.status, resp.error()), (403, "certificate master key does not match the authenticated user"));
    let forged = cert_signed_by(&key(9), &master.key, &device, t, None, DevicePermissions::SIGN_AUTH, "x");
    let resp = post(master.client.clone(), with_cert(forged)).await;
    assert_eq!((resp.status, resp.error()), (400, "certificate signature is invalid"));
    let resp = post(master.client.clone(), with_cert(cert(&master.key, &device, t - 100, Some(t)))).await;
    assert_eq!((resp.status, resp.error()), (400, "certificate has expired"));
    let resp = post(master.client.clone(), with_cert(cert(&master.key, &master.key, t, None))).await;
    assert_eq!((resp.status, resp.error()), (409, "key is a user identity"));
    let resp = post(master.client.clone(), with_cert(cert(&master.key, &other.key, t, None))).await;
    assert_eq!((resp.status, resp.error()), (409, "key is a user identity"));

    // Registered once; the same or an older certificate conflicts, a newer one re-certifies.
    assert_eq!(post(master.client.clone(), with_cert(cert(&master.key, &device, t, None))).await.status, 201);
    let resp = post(master.client.clone(), with_cert(cert(&master.key, &device, t, None))).await;
    assert_eq!((resp.status, resp.error()), (409, "device key already registered"));
    let resp = post(master.client.clone(), with_cert(cert(&master.key, &device, t + 1, None))).await;
    assert_eq!(resp.status, 201);
    // Another user cannot take the key.
    let resp = post(other.client.clone(), with_cert(cert(&other.key, &device, t + 5, None))).await;
    assert_eq!((resp.status, resp.error()), (409, "device key already registered"));
}

async fn login_certificate_checks(server: TestServer) {
    let master = server.login(1).await;
    let other = server.login(3).await;
    let device = key(2);
    let t = now() - 60;

    let wrong_device = try_login(&server, &device, false, Some(cert(&master.key, &key(8), t, None))).await;
    assert_eq!((wrong_device.status, wrong_device.error()), (401, "certificate does not match the signing key"));
    let forged = cert_signed_by(&key(9), &master.key, &device, t, None, DevicePermissions::SIGN_AUTH, "x");
    let resp = try_login(&server, &device, false, Some(forged)).await;
    assert_eq!((resp.status, resp.error()), (401, "invalid delegation certificate"));
    let resp = try_login(&server, &device, false, Some(cert(&master.key, &device, now() + 3600, None))).await;
    assert_eq!((resp.status, resp.error()), (401, "delegation certificate not yet valid"));
    let resp = try_login(&server, &device, false, Some(cert(&master.key, &device, t - 100, Some(t)))).await;
    assert_eq!((resp.status, resp.error()), (401, "delegation certificate expired"));
    let no_auth = cert_signed_by(&master.key, &master.key, &device, t, None, DevicePermissions::SIGN_MESSAGES, "x");
    let resp = try_login(&server, &device, false, Some(no_auth)).await;
    assert_eq!((resp.status, resp.error()), (403, "device key is not permitted to sign in"));
    let resp = try_login(&server, &other.key, false, Some(cert(&master.key, &other.key, t, None))).await;
    assert_eq!((resp.status, resp.error()), (401, "key is a user identity"));
    let mut malformed = cert(&master.key, &device, t, None);
    malformed["expires_at"] = json!("tomorrow");
    let resp = try_login(&server, &device, false, Some(malformed)).await;
    assert_eq!((resp.status, resp.error()), (400, "invalid timestamp: expires_at"));

    // Registered to the master; another master's certificate for it is refused.
    let ok = try_login(&server, &device, false, Some(cert(&master.key, &device, t, None))).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let resp = try_login(&server, &device, false, Some(cert(&other.key, &device, t + 10, None))).await;
    assert_eq!((resp.status, resp.error()), (401, "device key belongs to another user"));

    // A stored certificate that has expired refuses logins without a certificate.
    let short = key(4);
    let expiring = cert(&master.key, &short, now() - 10, Some(now() + 2));
    assert_eq!(master.post("/api/v1/devices", json!({"delegation_certificate": expiring})).await.status, 201);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let resp = try_login(&server, &short, false, None).await;
    assert_eq!((resp.status, resp.error()), (401, "delegation certificate expired"));
    // A stored certificate without sign_auth refuses logins too.
    let signer_only = key(6);
    let c = cert_signed_by(&master.key, &master.key, &signer_only, t, None, DevicePermissions::SIGN_MESSAGES, "x");
    assert_eq!(master.post("/api/v1/devices", json!({"delegation_certificate": c})).await.status, 201);
    let resp = try_login(&server, &signer_only, false, None).await;
    assert_eq!((resp.status, resp.error()), (403, "device key is not permitted to sign in"));
}
