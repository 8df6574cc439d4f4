//! Profiles and avatars (api.md §3.14).

use std::io::Cursor;

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use bytes::Bytes;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, parse_pubkey, unprocessable};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path};
use super::session::AuthedMember;
use crate::bus::Audience;
use crate::media::BlobError;
use crate::storage::{self, NewMedia, User};

/// The largest avatar file accepted.
pub const AVATAR_MAX_BYTES: usize = 2 * 1024 * 1024;
/// The avatar upload request limit: the file plus room for multipart framing.
pub const AVATAR_BODY_LIMIT: usize = AVATAR_MAX_BYTES + 64 * 1024;
/// Avatars are resized to fill this square.
pub const AVATAR_SIZE: u32 = 256;
const MAX_DISPLAY_NAME_CHARS: usize = 32;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(update_profile)).routes(routes!(get_profile)).merge(
        OpenApiRouter::new().routes(routes!(put_avatar, delete_avatar)).layer(DefaultBodyLimit::max(AVATAR_BODY_LIMIT)),
    )
}

/// MEMBER_UPDATE to everyone.
async fn publish_member_update(state: &AppState, user: &User) {
    let data = serde_json::json!({
        "user_id": user.id,
        "pubkey": user.pubkey,
        "display_name": user.display_name,
        "avatar_hash": user.avatar_hash,
    });
    state.publish(Audience::All, "MEMBER_UPDATE", data).await;
}

/// The caller's profile after `user` changed.
fn own_profile(user: User, member: storage::Member) -> dto::Profile {
    dto::Profile::new(user, Some(member))
}

#[derive(Deserialize, ToSchema)]
pub struct ProfilePatch {
    /// Trimmed; 1–32 characters.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Sets the caller's display name (trimmed, 1 to 32 characters); MEMBER_UPDATE to everyone.
#[utoipa::path(patch, path = "/profile", tag = "profiles", request_body = ProfilePatch,
    security(("bearer" = [])),
    responses((status = 200, body = dto::Profile), (status = 400), (status = 403, description = "membership required")))]
pub async fn update_profile(
    auth: AuthedMember,
    State(state): State<AppState>,
    Json(body): Json<ProfilePatch>,
) -> ApiResult<axum::Json<dto::Profile>> {
    let Some(name) = body.display_name else {
        let user = auth.member.user.clone();
        return Ok(axum::Json(own_profile(user, auth.member)));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(bad_request("display name must not be empty"));
    }
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(bad_request("display name must be at most 32 characters"));
    }
    let user = state.storage.set_display_name(auth.user_id(), Some(name.to_owned())).await?;
    publish_member_update(&state, &user).await;
    Ok(axum::Json(own_profile(user, auth.member)))
}

fn multipart_error(err: MultipartError) -> ApiError {
    if super::middleware::upload_stalled(&err) {
        super::middleware::upload_timed_out()
    } else if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large (limit {AVATAR_BODY_LIMIT} bytes)"),
        )
    } else {
        bad_request(format!("invalid multipart body: {}", err.body_text()))
    }
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "avatar exceeds maximum size of 2 MiB")
}

/// The image format of an avatar: from its bytes, falling back to the part's Content-Type.
fn avatar_format(bytes: &[u8], content_type: Option<&str>) -> ApiResult<ImageFormat> {
    let unsupported = || ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "avatar must be PNG, JPEG or WebP");
    let mime = match crate::media::sniff_mime(bytes) {
        Some(mime) => mime.to_owned(),
        None => content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).unwrap_or_default(),
    };
    match mime.as_str() {
        "image/png" => Ok(ImageFormat::Png),
        "image/jpeg" => Ok(ImageFormat::Jpeg),
        "image/webp" => Ok(ImageFormat::WebP),
        _ => Err(unsupported()),
    }
}

fn mime_of(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg => "image/jpeg",
        _ => "image/webp",
    }
}

/// Decodes, resizes to fill 256×256 (Lanczos3, centre crop) and re-encodes in the same format.
pub fn process_avatar(bytes: &[u8], format: ImageFormat) -> Result<Vec<u8>, String> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| e.to_string())?;
    let resized = image.resize_to_fill(AVATAR_SIZE, AVATAR_SIZE, image::imageops::FilterType::Lanczos3);
    let encodable = match format {
        // JPEG has no alpha channel; WebP (lossless) takes 8-bit RGB(A).
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(resized.to_rgb8()),
        ImageFormat::WebP if resized.color().has_alpha() => DynamicImage::ImageRgba8(resized.to_rgba8()),
        ImageFormat::WebP => DynamicImage::ImageRgb8(resized.to_rgb8()),
        _ => resized,
    };
    let mut out = Cursor::new(Vec::new());
    encodable.write_to(&mut out, format).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// Sets the caller's avatar from the first part of a multipart body.
#[utoipa::path(put, path = "/profile/avatar", tag = "profiles",
    request_body(content_type = "multipart/form-data", description = "the first part is the image"),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Profile), (status = 400), (status = 413), (status = 415),
        (status = 422), (status = 503), (status = 403, description = "membership required")))]
pub async fn put_avatar(
    auth: AuthedMember,
    State(state): State<AppState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<axum::Json<dto::Profile>> {
    let mut multipart =
        multipart.map_err(|_| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected multipart/form-data"))?;
    let mut field =
        multipart.next_field().await.map_err(multipart_error)?.ok_or_else(|| bad_request("no files provided"))?;
    let content_type = field.content_type().map(str::to_owned);
    let mut data = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if data.len() + chunk.len() > AVATAR_MAX_BYTES {
            return Err(too_large());
        }
        data.extend_from_slice(&chunk);
    }
    let format = avatar_format(&data, content_type.as_deref())?;
    let encoded = tokio::task::spawn_blocking(move || process_avatar(&data, format))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| unprocessable(format!("avatar processing failed: {e}")))?;

    let size = encoded.len() as i64;
    let hash = state.media.put_bytes(Bytes::from(encoded)).await.map_err(|err| match err {
        BlobError::Unavailable(source) => {
            tracing::error!(error = %source, "media store unavailable");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "media store unavailable")
        }
        other => {
            tracing::error!(error = %other, "storing an avatar failed");
            ApiError::internal()
        }
    })?;
    state
        .storage
        .put_media(NewMedia {
            object_key: state.media.object_key(&hash),
            bucket: state.media.bucket().map(str::to_owned),
            content_hash: hash.clone(),
            size_bytes: size,
            mime_type: mime_of(format).to_owned(),
            uploaded_by: Some(auth.user_id()),
        })
        .await?;
    let user = state.storage.set_avatar(auth.user_id(), Some(hash)).await?;
    publish_member_update(&state, &user).await;
    Ok(axum::Json(own_profile(user, auth.member)))
}

/// Clears the caller's avatar (the blob is kept).
#[utoipa::path(delete, path = "/profile/avatar", tag = "profiles", security(("bearer" = [])),
    responses((status = 200, body = dto::Profile), (status = 403, description = "membership required")))]
pub async fn delete_avatar(auth: AuthedMember, State(state): State<AppState>) -> ApiResult<axum::Json<dto::Profile>> {
    let user = state.storage.set_avatar(auth.user_id(), None).await?;
    publish_member_update(&state, &user).await;
    Ok(axum::Json(own_profile(user, auth.member)))
}

/// Any user's profile (non-members too, with `joined_at` null).
#[utoipa::path(get, path = "/members/{pubkey}/profile", tag = "profiles",
    params(("pubkey" = String, Path, description = "base58 public key")),
    security(("bearer" = [])),
    responses((status = 200, body = dto::Profile), (status = 400), (status = 404), (status = 403, description = "membership required")))]
pub async fn get_profile(
    _auth: AuthedMember,
    State(state): State<AppState>,
    Path(pubkey): Path<String>,
) -> ApiResult<axum::Json<dto::Profile>> {
    let pubkey = parse_pubkey(&pubkey)?;
    let user = state.storage.get_user_by_pubkey(&pubkey).await?.ok_or_else(|| ApiError::not_found("user not found"))?;
    let member = state.storage.get_member(user.id).await?;
    Ok(axum::Json(dto::Profile::new(user, member)))
}
