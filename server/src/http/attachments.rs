//! `POST /api/v1/channels/{channel_id}/attachments` (api.md §3.5 "Upload procedure").
//!
//! The multipart body is read part by part; each part streams into a temporary object of the
//! media store while it is hashed and measured ([`crate::media::Blobs::stage`]), so memory does
//! not grow with file size. Only when every part has passed its checks are the blobs moved to
//! their content keys and the rows recorded in one transaction; on any failure every temporary
//! object of the request is removed and nothing is recorded.

use axum::extract::multipart::MultipartError;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use futures::TryStreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::common::{bad_request, forbidden, text_channel, unprocessable};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::Path;
use super::middleware::{upload_stalled, upload_timed_out};
use super::session::AuthedMember;
use crate::media::{BlobError, Staged, clean_filename, declared_mime, image_dimensions, upload_mime};
use crate::permissions::has;
use crate::storage::{ChannelId, NewAttachment, NewMedia, Permissions};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upload))
}

/// At most this many file parts per request (api.md §1.7).
pub const MAX_PARTS: usize = 10;
/// The request cap is `content.max_file_size` plus this much (api.md §1.7).
pub const REQUEST_OVERHEAD: u64 = 1024 * 1024;

/// One staged part and what the rows will say about it.
struct Upload {
    staged: Staged,
    filename: String,
    mime: String,
    width: Option<i64>,
    height: Option<i64>,
}

/// Uploads files to a channel; they stay unlinked until a message claims them.
#[utoipa::path(post, path = "/channels/{channel_id}/attachments", tag = "attachments",
    params(("channel_id" = String, Path, description = "a text channel id")),
    request_body(content_type = "multipart/form-data",
        description = "every part is a file; at most 10 parts; each at most content.max_file_size bytes"),
    security(("bearer" = [])),
    responses(
        (status = 201, body = [dto::Attachment], description = "the attachments, in part order"),
        (status = 400, description = "invalid multipart body / no files provided / at most 10 files per request"),
        (status = 403, description = "file uploads are disabled on this server / missing permission"),
        (status = 404, description = "channel not found"),
        (status = 413, description = "file exceeds maximum size / request body too large"),
        (status = 415, description = "expected multipart/form-data / file type not allowed"),
        (status = 422, description = "file must not be empty"),
        (status = 503, description = "database or media store unavailable"),
    ))]
pub async fn upload(
    member: AuthedMember,
    State(state): State<AppState>,
    Path(channel_id): Path<ChannelId>,
    mut request: Request,
) -> ApiResult<(StatusCode, axum::Json<Vec<dto::Attachment>>)> {
    if !state.config.features.file_uploads {
        return Err(forbidden("file uploads are disabled on this server"));
    }
    text_channel(&state, channel_id).await?;
    let bits = member.in_channel(&state, channel_id).await?;
    if !has(bits, Permissions::SEND_MESSAGES) {
        return Err(forbidden("missing send_messages permission"));
    }
    if !has(bits, Permissions::ATTACH_FILES) {
        return Err(forbidden("missing attach_files permission"));
    }

    let is_multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected multipart/form-data"));
    }
    let limit =
        usize::try_from(state.config.content.max_file_size.saturating_add(REQUEST_OVERHEAD)).unwrap_or(usize::MAX);
    DefaultBodyLimit::max(limit).apply(&mut request);
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| bad_request(format!("invalid multipart body: {}", e.body_text())))?;

    let mut uploads = Vec::new();
    let outcome = match stage_parts(&state, &mut multipart, limit, &mut uploads).await {
        Ok(()) => commit(&state, &uploads).await,
        Err(err) => Err(err),
    };
    if let Err(err) = outcome {
        for upload in &uploads {
            state.media.discard(&upload.staged).await;
        }
        return Err(err);
    }

    let uploader = member.user_id();
    let mut media: Vec<NewMedia> = Vec::new();
    for upload in &uploads {
        if media.iter().all(|m| m.content_hash != upload.staged.hash) {
            media.push(NewMedia {
                object_key: state.media.object_key(&upload.staged.hash),
                bucket: state.media.bucket().map(str::to_owned),
                content_hash: upload.staged.hash.clone(),
                size_bytes: size_i64(upload.staged.size),
                mime_type: upload.mime.clone(),
                uploaded_by: Some(uploader),
            });
        }
    }
    let attachments = uploads
        .into_iter()
        .map(|u| NewAttachment {
            channel_id,
            uploader_id: uploader,
            filename: u.filename,
            content_hash: u.staged.hash.clone(),
            size: size_i64(u.staged.size),
            mime_type: u.mime,
            width: u.width,
            height: u.height,
        })
        .collect();
    let recorded = state.storage.record_uploads(media, attachments).await?;
    Ok((StatusCode::CREATED, axum::Json(recorded.into_iter().map(Into::into).collect())))
}

fn size_i64(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn store_unavailable(err: &BlobError) -> ApiError {
    tracing::error!(error = %err, "media store unavailable");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "media store unavailable")
}

fn multipart_error(err: &MultipartError, limit: usize) -> ApiError {
    if upload_stalled(err) {
        upload_timed_out()
    } else if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body too large (limit {limit} bytes)"))
    } else {
        bad_request(format!("invalid multipart body: {}", err.body_text()))
    }
}

/// Reads every part into a temporary object, checking each; `uploads` holds what was staged
/// (the caller discards it on error).
async fn stage_parts(
    state: &AppState,
    multipart: &mut Multipart,
    limit: usize,
    uploads: &mut Vec<Upload>,
) -> ApiResult<()> {
    let content = &state.config.content;
    let allowed = |mime: &str| {
        if content.allowed_file_types.is_empty()
            || content.allowed_file_types.iter().any(|t| t.eq_ignore_ascii_case(mime))
        {
            Ok(())
        } else {
            Err(format!("file type {mime} is not allowed"))
        }
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return Err(multipart_error(&err, limit)),
        };
        if uploads.len() == MAX_PARTS {
            return Err(bad_request(format!("at most {MAX_PARTS} files per request")));
        }
        // Part headers cannot carry U+0000 (the multipart parser refuses control bytes), so a
        // filename needs no NUL check.
        let filename = clean_filename(field.file_name());
        let declared = declared_mime(field.content_type());

        let mut body_error: Option<ApiError> = None;
        let mut mime: Option<String> = None;
        let result = {
            let body = field.map_err(|err| {
                let text = err.body_text();
                body_error = Some(multipart_error(&err, limit));
                text
            });
            let check_head = |head: &[u8]| {
                let decided = upload_mime(head, declared.as_deref());
                allowed(&decided)?;
                mime = Some(decided);
                Ok(())
            };
            state.media.stage(body, content.max_file_size, check_head).await
        };
        let staged = match result {
            Ok(staged) => staged,
            Err(BlobError::TooLarge { limit }) => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("file exceeds maximum size of {limit} bytes"),
                ));
            }
            Err(BlobError::Rejected(message)) => {
                return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message));
            }
            Err(BlobError::Body(detail)) => {
                return Err(body_error.unwrap_or_else(|| bad_request(format!("invalid multipart body: {detail}"))));
            }
            Err(err @ BlobError::Unavailable(_)) => return Err(store_unavailable(&err)),
        };
        // An empty part never reached the head check: its type comes from the declaration.
        let mime = mime.unwrap_or_else(|| upload_mime(&staged.head, declared.as_deref()));
        let (width, height) = image_dimensions(&mime, &staged.head).unzip();
        let empty = staged.size == 0;
        uploads.push(Upload { staged, filename, mime, width, height });
        if empty {
            let mime = &uploads[uploads.len() - 1].mime;
            allowed(mime).map_err(|message| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message))?;
            return Err(unprocessable("file must not be empty"));
        }
    }
    if uploads.is_empty() {
        return Err(bad_request("no files provided"));
    }
    Ok(())
}

/// Moves every staged blob to its content key (or drops it when that blob exists).
async fn commit(state: &AppState, uploads: &[Upload]) -> ApiResult<()> {
    for upload in uploads {
        state.media.commit(&upload.staged).await.map_err(|err| store_unavailable(&err))?;
    }
    Ok(())
}
