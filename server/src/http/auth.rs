//! Authentication (api.md §2, §3.2): challenge, verify (master and device-key logins), logout, me.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, forbidden};
use super::devices::{self, CertificateJson, CertificateProblem, ParsedCertificate};
use super::error::{ApiError, ApiResult};
use super::extract::Json;
use super::gateway::close;
use super::members;
use super::session::Authed;
use crate::auth;
use crate::bus::BusMessage;
use crate::config::MembershipMode;
use crate::storage::{
    Conflict, DeviceKey, DevicePermissions, DeviceRegistration, NewSession, NewUser, PublicKey, StorageError,
    Timestamp, User, UserId,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(challenge)).routes(routes!(verify)).routes(routes!(logout)).routes(routes!(me))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

#[derive(Deserialize, ToSchema)]
pub struct ChallengeRequest {
    /// base58 public key that will sign (master or device key).
    pub pubkey: String,
    #[serde(default)]
    pub is_bot: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct ChallengeResponse {
    pub challenge: String,
}

/// Issues a single-use challenge (valid 300 s) for `pubkey`.
#[utoipa::path(post, path = "/auth/challenge", tag = "auth", request_body = ChallengeRequest,
    responses((status = 200, body = ChallengeResponse), (status = 400)))]
pub async fn challenge(
    State(state): State<AppState>,
    Json(body): Json<ChallengeRequest>,
) -> ApiResult<axum::Json<ChallengeResponse>> {
    let pubkey = auth::parse_public_key(&body.pubkey).ok_or_else(|| bad_request("invalid public key format"))?;
    let is_bot = body.is_bot.unwrap_or(false);
    let nonce = auth::new_nonce();
    let expires_at = Timestamp::now().plus_seconds(auth::CHALLENGE_TTL_SECONDS);
    state.storage.put_challenge(&pubkey, nonce, is_bot, expires_at).await?;
    Ok(axum::Json(ChallengeResponse { challenge: auth::challenge_text(&nonce, is_bot) }))
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyRequest {
    pub pubkey: String,
    /// base64 signature of the challenge text.
    pub signature: String,
    #[serde(default)]
    pub delegation_certificate: Option<CertificateJson>,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    pub token: String,
    #[schema(value_type = String)]
    pub user_id: UserId,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    pub is_read_only: bool,
    #[schema(value_type = Option<String>)]
    pub device_pubkey: Option<PublicKey>,
}

/// How the signing key resolved to an identity (api.md §2.3 step 4).
enum Login {
    Master,
    /// A presented certificate; `existing` is the key's registration, if any.
    Certificate {
        cert: Box<ParsedCertificate>,
        existing: Option<DeviceKey>,
    },
    /// A registered device key without a certificate in the request.
    StoredDevice(DeviceKey),
}

/// Verifies the signature of a challenge and opens a session.
#[utoipa::path(post, path = "/auth/verify", tag = "auth", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse), (status = 400), (status = 401), (status = 403)))]
pub async fn verify(
    State(state): State<AppState>,
    Json(body): Json<VerifyRequest>,
) -> ApiResult<axum::Json<VerifyResponse>> {
    // 1. Formats.
    let pubkey = auth::parse_public_key(&body.pubkey).ok_or_else(|| bad_request("invalid public key format"))?;
    let signature = auth::parse_signature(&body.signature).ok_or_else(|| bad_request("invalid signature format"))?;
    let cert = body.delegation_certificate.as_ref().map(devices::parse_certificate).transpose()?;

    // 2. The challenge, taken atomically (single use even if a later step fails).
    let now = Timestamp::now();
    let challenge = state
        .storage
        .take_challenge(&pubkey, now)
        .await?
        .ok_or_else(|| unauthorized("challenge not found or expired"))?;

    // 3. The signature over the rebuilt challenge text.
    let text = auth::challenge_text(&challenge.nonce, challenge.is_bot);
    if !auth::verify(&pubkey, text.as_bytes(), &signature) {
        return Err(unauthorized("signature verification failed"));
    }

    // 4. The identity key.
    let login = match cert {
        Some(cert) => {
            if cert.cert.device_pubkey != pubkey {
                return Err(unauthorized("certificate does not match the signing key"));
            }
            match devices::check_certificate(&cert, now) {
                Ok(()) => {}
                Err(CertificateProblem::BadSignature | CertificateProblem::SameKey) => {
                    return Err(unauthorized("invalid delegation certificate"));
                }
                Err(CertificateProblem::NotYetValid) => {
                    return Err(unauthorized("delegation certificate not yet valid"));
                }
                Err(CertificateProblem::Expired) => return Err(unauthorized("delegation certificate expired")),
            }
            if !cert.cert.permissions.contains(DevicePermissions::SIGN_AUTH) {
                return Err(forbidden("device key is not permitted to sign in"));
            }
            let existing = state.storage.get_device_key(&pubkey).await?;
            if let Some(device) = &existing {
                if device.revoked_at.is_some() {
                    return Err(unauthorized("device key revoked"));
                }
                let master = state.storage.get_user_by_pubkey(&cert.cert.master_pubkey).await?;
                if master.is_none_or(|m| m.id != device.user_id) {
                    return Err(unauthorized("device key belongs to another user"));
                }
            }
            if state.storage.get_user_by_pubkey(&pubkey).await?.is_some() {
                return Err(unauthorized("key is a user identity"));
            }
            Login::Certificate { cert: Box::new(cert), existing }
        }
        None => match state.storage.get_device_key(&pubkey).await? {
            Some(device) => {
                if device.revoked_at.is_some() {
                    return Err(unauthorized("device key revoked"));
                }
                if device.expires_at.is_some_and(|e| e <= now) {
                    return Err(unauthorized("delegation certificate expired"));
                }
                if !device.permissions.contains(DevicePermissions::SIGN_AUTH) {
                    return Err(forbidden("device key is not permitted to sign in"));
                }
                Login::StoredDevice(device)
            }
            None => Login::Master,
        },
    };

    // 5. The user (created at first login).
    let user = match &login {
        Login::Master => find_or_register(&state, pubkey, challenge.is_bot).await?,
        Login::Certificate { cert, .. } => find_or_register(&state, cert.cert.master_pubkey, challenge.is_bot).await?,
        Login::StoredDevice(device) => state.storage.get_user(device.user_id).await?.ok_or_else(ApiError::internal)?,
    };

    // The device key in force for this login (registered now if needed).
    let device = match login {
        Login::Master => None,
        Login::StoredDevice(device) => Some(device),
        Login::Certificate { cert, existing } => {
            let newer = existing.as_ref().is_none_or(|d| d.issued_at < cert.issued_at);
            if newer {
                match state.storage.register_device_key(cert.new_device_key(user.id)).await? {
                    DeviceRegistration::Created(device) => {
                        devices::publish_device_add(&state, device.clone()).await;
                        Some(device)
                    }
                    DeviceRegistration::Recertified(device) => Some(device),
                    DeviceRegistration::NotNewer => state.storage.get_device_key(&pubkey).await?,
                    DeviceRegistration::OwnedByOther => return Err(unauthorized("device key belongs to another user")),
                    DeviceRegistration::Revoked => return Err(unauthorized("device key revoked")),
                }
            } else {
                existing
            }
        }
    };

    // 6. Read-only for a bot without an approval.
    let is_read_only =
        user.is_bot && !state.storage.get_bot_approval(user.id).await?.is_some_and(|approval| approval.is_approved());

    // 7. The session.
    let ttl = i64::try_from(state.config.auth.session_ttl_seconds).unwrap_or(i64::MAX / 2_000_000);
    let mut expires_at = now.plus_seconds(ttl.min(100 * 365 * 86_400));
    if let Some(device_expiry) = device.as_ref().and_then(|d| d.expires_at) {
        expires_at = expires_at.min(device_expiry);
    }
    let mut attempts = 0;
    let (token, session) = loop {
        let (token, token_hash) = auth::new_session_token();
        let new = NewSession {
            token_hash,
            user_id: user.id,
            device_key_id: device.as_ref().map(|d| d.id),
            is_read_only,
            expires_at,
        };
        match state.storage.create_session(new).await {
            Ok(session) => break (token, session),
            Err(StorageError::Conflict(Conflict::SessionToken)) if attempts < 3 => attempts += 1,
            Err(err) => return Err(err.into()),
        }
    };
    Ok(axum::Json(VerifyResponse {
        token,
        user_id: user.id,
        expires_at: session.expires_at,
        is_read_only,
        device_pubkey: device.map(|d| d.device_pubkey),
    }))
}

/// The user with identity `pubkey`, registering it at first login (api.md §2.3 step 5).
async fn find_or_register(state: &AppState, pubkey: PublicKey, is_bot: bool) -> ApiResult<User> {
    if let Some(user) = state.storage.get_user_by_pubkey(&pubkey).await? {
        return Ok(user);
    }
    let mode = state.config.membership_mode();
    // Closed mode refuses new keys — except the very first user, who becomes the admin in every
    // mode (api.md §5.5); otherwise a server started closed could never get an administrator.
    if mode == MembershipMode::Closed && state.storage.member_count().await? > 0 {
        return Err(forbidden("registration is disabled while membership mode is closed"));
    }
    let new = NewUser { pubkey, is_bot, open_membership: mode == MembershipMode::Open };
    match state.storage.register_user(new).await {
        Ok(registration) => {
            if let Some(member) = registration.member {
                members::publish_member_join(state, member).await;
            }
            Ok(registration.user)
        }
        // A concurrent first login of the same key won: use its user.
        Err(StorageError::Conflict(Conflict::UserPubkey)) => {
            state.storage.get_user_by_pubkey(&pubkey).await?.ok_or_else(ApiError::internal)
        }
        Err(err) => Err(err.into()),
    }
}

/// Ends the current session and closes the gateway connections opened with it (4003).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204)))]
pub async fn logout(Authed(session): Authed, State(state): State<AppState>) -> ApiResult<StatusCode> {
    state.storage.delete_session(session.id).await?;
    state
        .events
        .publish(BusMessage::CloseSessions {
            sessions: vec![session.id],
            code: close::SESSION_REVOKED,
            reason: "logged out".into(),
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    #[schema(value_type = String)]
    pub user_id: UserId,
}

/// The user the session belongs to.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me)))]
pub async fn me(Authed(session): Authed) -> axum::Json<Me> {
    axum::Json(Me { user_id: session.user_id })
}
