//! Device delegation certificates (api.md §2.5, §3.2): register, list and revoke device keys.
//! The certificate parsing and checks here are shared with `POST /auth/verify`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{Datelike, Timelike};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, conflict, forbidden, parse_pubkey};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path};
use super::gateway::close;
use super::session::{Authed, AuthedMaster};
use crate::auth::{self, DeviceCertificate};
use crate::bus::{Audience, BusMessage};
use crate::storage::{
    DeviceKey, DevicePermissions, DeviceRegistration, NewDeviceKey, PublicKey, Signature, Timestamp, UserId,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register_device, list_devices)).routes(routes!(revoke_device))
}

/// A delegation certificate as JSON: the master key's signature over the certificate's canonical bytes.
#[derive(Deserialize, ToSchema)]
pub struct CertificateJson {
    pub device_pubkey: String,
    pub device_name: String,
    /// RFC 3339, whole seconds.
    pub issued_at: String,
    /// RFC 3339, whole seconds; absent or null = never expires.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Distinct names among `sign_auth`, `sign_messages`.
    pub permissions: Vec<String>,
    pub master_pubkey: String,
    /// base64 Ed25519 signature by `master_pubkey` over the canonical bytes.
    pub signature: String,
}

/// A certificate whose fields are well-formed (not yet checked against keys or the clock).
#[derive(Clone, Debug)]
pub struct ParsedCertificate {
    pub cert: DeviceCertificate,
    pub signature: Signature,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

impl ParsedCertificate {
    pub fn new_device_key(&self, user_id: UserId) -> NewDeviceKey {
        NewDeviceKey {
            device_pubkey: self.cert.device_pubkey,
            user_id,
            device_name: self.cert.device_name.clone(),
            permissions: self.cert.permissions,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            certificate: self.cert.canonical_bytes(),
            signature: self.signature,
        }
    }
}

/// A certificate timestamp: RFC 3339 with an offset, whole seconds, within 1970..=9999 (UTC).
fn parse_cert_time(field: &str, raw: &str) -> ApiResult<(i64, Timestamp)> {
    let invalid = || bad_request(format!("invalid timestamp: {field}"));
    let at = chrono::DateTime::parse_from_rfc3339(raw).map_err(|_| invalid())?.with_timezone(&chrono::Utc);
    if at.nanosecond() != 0 || !(1970..=9999).contains(&at.year()) {
        return Err(invalid());
    }
    Ok((at.timestamp(), Timestamp::from_datetime(at)))
}

/// Field rules of api.md §2.5; every failure is a 400 naming the field.
pub fn parse_certificate(json: &CertificateJson) -> ApiResult<ParsedCertificate> {
    let key = |field: &str, raw: &str| -> ApiResult<PublicKey> {
        auth::parse_public_key(raw).ok_or_else(|| bad_request(format!("invalid public key format: {field}")))
    };
    let device_pubkey = key("device_pubkey", &json.device_pubkey)?;
    let master_pubkey = key("master_pubkey", &json.master_pubkey)?;
    let signature = auth::parse_signature(&json.signature)
        .ok_or_else(|| bad_request("invalid signature format: delegation_certificate.signature"))?;
    if !(1..=64).contains(&json.device_name.len()) {
        return Err(bad_request("device_name must be 1 to 64 bytes"));
    }
    let (issued_secs, issued_at) = parse_cert_time("issued_at", &json.issued_at)?;
    let (expires_secs, expires_at) = match &json.expires_at {
        Some(raw) => {
            let (secs, at) = parse_cert_time("expires_at", raw)?;
            (Some(secs), Some(at))
        }
        None => (None, None),
    };
    if expires_secs.is_some_and(|e| e <= issued_secs) {
        return Err(bad_request("expires_at must be after issued_at"));
    }
    let mut permissions = DevicePermissions::empty();
    for name in &json.permissions {
        let flag = match name.as_str() {
            "sign_auth" => DevicePermissions::SIGN_AUTH,
            "sign_messages" => DevicePermissions::SIGN_MESSAGES,
            other => return Err(bad_request(format!("invalid permissions: unknown permission {other}"))),
        };
        if permissions.contains(flag) {
            return Err(bad_request(format!("invalid permissions: duplicate permission {name}")));
        }
        permissions |= flag;
    }
    Ok(ParsedCertificate {
        cert: DeviceCertificate {
            master_pubkey,
            device_pubkey,
            issued_at: issued_secs,
            expires_at: expires_secs,
            permissions,
            device_name: json.device_name.clone(),
        },
        signature,
        issued_at,
        expires_at,
    })
}

/// Why a well-formed certificate is refused (api.md §2.5 checks, in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateProblem {
    BadSignature,
    SameKey,
    NotYetValid,
    Expired,
}

pub fn check_certificate(c: &ParsedCertificate, now: Timestamp) -> Result<(), CertificateProblem> {
    if !auth::verify(&c.cert.master_pubkey, &c.cert.canonical_bytes(), &c.signature) {
        return Err(CertificateProblem::BadSignature);
    }
    if c.cert.device_pubkey == c.cert.master_pubkey {
        return Err(CertificateProblem::SameKey);
    }
    if c.issued_at > now.plus_seconds(auth::CLOCK_SKEW_SECONDS) {
        return Err(CertificateProblem::NotYetValid);
    }
    if c.expires_at.is_some_and(|e| e <= now) {
        return Err(CertificateProblem::Expired);
    }
    Ok(())
}

/// DEVICE_ADD to the owner.
pub async fn publish_device_add(state: &AppState, device: DeviceKey) {
    let owner = device.user_id;
    state.publish(Audience::Users(vec![owner]), "DEVICE_ADD", dto::Device::from(device)).await;
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterDevice {
    pub delegation_certificate: CertificateJson,
}

/// Registers a device key for the caller, or re-certifies one of its keys with a later
/// `issued_at`.
#[utoipa::path(post, path = "/devices", tag = "devices", request_body = RegisterDevice,
    security(("bearer" = [])),
    responses((status = 201, body = dto::Device), (status = 400), (status = 403), (status = 409)))]
pub async fn register_device(
    AuthedMaster(session): AuthedMaster,
    State(state): State<AppState>,
    Json(body): Json<RegisterDevice>,
) -> ApiResult<impl IntoResponse> {
    let parsed = parse_certificate(&body.delegation_certificate)?;
    let user = state.storage.get_user(session.user_id).await?.ok_or_else(ApiError::internal)?;
    if parsed.cert.master_pubkey != user.pubkey {
        return Err(forbidden("certificate master key does not match the authenticated user"));
    }
    match check_certificate(&parsed, Timestamp::now()) {
        Ok(()) => {}
        Err(CertificateProblem::BadSignature) => return Err(bad_request("certificate signature is invalid")),
        Err(CertificateProblem::SameKey) => return Err(conflict("key is a user identity")),
        Err(CertificateProblem::NotYetValid) => return Err(bad_request("certificate is not yet valid")),
        Err(CertificateProblem::Expired) => return Err(bad_request("certificate has expired")),
    }
    if state.storage.get_user_by_pubkey(&parsed.cert.device_pubkey).await?.is_some() {
        return Err(conflict("key is a user identity"));
    }
    let device = match state.storage.register_device_key(parsed.new_device_key(user.id)).await? {
        DeviceRegistration::Created(d) | DeviceRegistration::Recertified(d) => d,
        DeviceRegistration::OwnedByOther | DeviceRegistration::NotNewer => {
            return Err(conflict("device key already registered"));
        }
        DeviceRegistration::Revoked => return Err(conflict("device key revoked")),
    };
    publish_device_add(&state, device.clone()).await;
    Ok((StatusCode::CREATED, axum::Json(dto::Device::from(device))))
}

#[derive(Serialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<dto::Device>,
}

/// The caller's devices that are neither revoked nor expired, oldest first.
#[utoipa::path(get, path = "/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = DeviceList)))]
pub async fn list_devices(Authed(session): Authed, State(state): State<AppState>) -> ApiResult<axum::Json<DeviceList>> {
    let devices = state.storage.list_device_keys(session.user_id, Timestamp::now()).await?;
    Ok(axum::Json(DeviceList { devices: devices.into_iter().map(Into::into).collect() }))
}

/// Revokes one of the caller's device keys: its sessions end and their gateway connections close.
#[utoipa::path(delete, path = "/devices/{device_pubkey}", tag = "devices",
    params(("device_pubkey" = String, Path, description = "base58 device public key")),
    security(("bearer" = [])),
    responses((status = 204), (status = 400), (status = 404, description = "device not found"), (status = 403, description = "device sessions cannot manage devices")))]
pub async fn revoke_device(
    AuthedMaster(session): AuthedMaster,
    State(state): State<AppState>,
    Path(device_pubkey): Path<String>,
) -> ApiResult<StatusCode> {
    let device_pubkey = parse_pubkey(&device_pubkey)?;
    let not_found = || ApiError::not_found("device not found");
    let before = state.storage.get_device_key(&device_pubkey).await?;
    let already_revoked = match &before {
        Some(d) if d.user_id == session.user_id => d.revoked_at.is_some(),
        _ => return Err(not_found()),
    };
    let revocation = state.storage.revoke_device_key(session.user_id, &device_pubkey).await?.ok_or_else(not_found)?;
    if !already_revoked {
        state
            .publish(
                Audience::Users(vec![session.user_id]),
                "DEVICE_REVOKE",
                serde_json::json!({ "device_pubkey": device_pubkey }),
            )
            .await;
    }
    if !revocation.ended_sessions.is_empty() {
        state
            .events
            .publish(BusMessage::CloseSessions {
                sessions: revocation.ended_sessions,
                code: close::SESSION_REVOKED,
                reason: "device revoked".into(),
            })
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}
