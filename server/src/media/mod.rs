//! Media blobs behind `object_store` (a local directory, or an S3-compatible bucket), addressed
//! by the SHA-256 of their bytes (api.md §3.5).
//!
//! Uploads are streamed to a temporary object while they are hashed and measured, so memory does
//! not grow with file size; only once every file of a request has passed its checks is each one
//! moved to its content key (unless that key already exists: deduplication). The caller records
//! the metadata rows after the move, so a row never exists without its blob.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{
    BackoffConfig, GetOptions, GetRange, GetResult, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart,
};
use sha2::{Digest, Sha256};

use crate::config::{MediaConfig, MediaProvider};
use crate::storage::ContentHash;

pub mod check;
mod temporaries;

pub use temporaries::{Temporary, spawn_sweeper};

/// How many leading bytes of an upload are kept for type detection and image dimensions.
pub const HEAD_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("file exceeds maximum size of {limit} bytes")]
    TooLarge { limit: u64 },
    /// Refused by the caller's check of the first bytes (e.g. a disallowed type).
    #[error("{0}")]
    Rejected(String),
    /// Reading the request body failed.
    #[error("invalid upload body: {0}")]
    Body(String),
    #[error("media store unavailable")]
    Unavailable(#[source] object_store::Error),
}

/// An upload written to a temporary object, not yet at its content key.
#[derive(Debug)]
pub struct Staged {
    temp: ObjectPath,
    pub hash: ContentHash,
    pub size: u64,
    /// The first [`HEAD_BYTES`] bytes (all of a shorter file).
    pub head: Vec<u8>,
}

/// S3 credentials, read once at startup from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the
/// optional `AWS_SESSION_TOKEN` (api.md §7.1), never from the configuration file. Never printed:
/// `Debug` shows no key material.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl S3Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> S3Credentials {
        S3Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// What a store of `provider` needs: the environment's credentials for S3, none for disk.
    pub fn for_provider(provider: MediaProvider) -> Option<S3Credentials> {
        match provider {
            MediaProvider::S3 => S3Credentials::from_env(),
            MediaProvider::Local => None,
        }
    }

    /// The credentials in the process environment, when both keys are set and not empty.
    pub fn from_env() -> Option<S3Credentials> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Some(S3Credentials {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Credentials(***)")
    }
}

/// The media store of this server.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    provider: MediaProvider,
    prefix: String,
    bucket: Option<String>,
    /// The S3 client, for pre-signed URLs and multipart uploads (None for the local provider).
    s3: Option<Arc<AmazonS3>>,
    /// The media directory (local provider only).
    local_root: Option<std::path::PathBuf>,
    presign_ttl: Duration,
    /// Age past which a temporary upload counts as left behind (`stale_upload_seconds`).
    stale_after: Duration,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("provider", &self.provider)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Blobs {
    /// A local directory (created if missing), with the default staleness of temporaries.
    pub fn local(dir: &std::path::Path) -> Result<Blobs, BlobError> {
        Self::local_with(dir, Duration::from_secs(MediaConfig::default().stale_upload_seconds))
    }

    fn local_with(dir: &std::path::Path, stale_after: Duration) -> Result<Blobs, BlobError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            BlobError::Unavailable(object_store::Error::Generic { store: "local", source: Box::new(e) })
        })?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(BlobError::Unavailable)?;
        Ok(Blobs {
            store: Arc::new(store),
            provider: MediaProvider::Local,
            prefix: String::new(),
            bucket: None,
            s3: None,
            local_root: Some(dir.to_owned()),
            presign_ttl: Duration::ZERO,
            stale_after,
        })
    }

    /// The store described by `[storage.media]`. For S3, `credentials` are required (the caller
    /// reads them from the environment, [`S3Credentials::from_env`]) and the bucket must answer a
    /// request (a LIST under the key prefix) before the server starts.
    pub async fn from_config(config: &MediaConfig, credentials: Option<&S3Credentials>) -> eyre::Result<Blobs> {
        match config.provider {
            MediaProvider::Local => Blobs::local_with(&config.path, Duration::from_secs(config.stale_upload_seconds))
                .map_err(|e| eyre::eyre!("cannot use the media directory {}: {e}", config.path.display())),
            MediaProvider::S3 => Blobs::s3(config, credentials).await,
        }
    }

    async fn s3(config: &MediaConfig, credentials: Option<&S3Credentials>) -> eyre::Result<Blobs> {
        let bucket = config
            .bucket
            .clone()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| eyre::eyre!("storage.media.bucket is required when provider = \"s3\""))?;
        let endpoint = match &config.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("https://s3.{}.amazonaws.com", config.region),
        };
        let credentials = credentials.ok_or_else(|| {
            eyre::eyre!(
                "missing S3 credentials: storage.media.provider = \"s3\" needs AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY in the environment"
            )
        })?;
        let mut builder = AmazonS3Builder::new()
            // First: the client options replace any set before them (allow_http among them).
            .with_client_options(object_store::ClientOptions::new().with_connect_timeout(Duration::from_secs(2)))
            .with_bucket_name(&bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key)
            // A store that is down fails a request within seconds (503) instead of minutes.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(5),
            });
        if let Some(token) = &credentials.session_token {
            builder = builder.with_token(token);
        }
        if config.endpoint.is_some() {
            builder = builder.with_endpoint(&endpoint);
        }
        let s3 =
            Arc::new(builder.build().map_err(|e| {
                eyre::eyre!("cannot configure the media store: bucket \"{bucket}\" at {endpoint}: {e}")
            })?);

        // Startup check: the bucket answers (api.md §7.3). A LIST under the temporary-upload
        // prefix touches few keys.
        let probe = ObjectPath::from(format!("{}tmp", config.prefix));
        if let Err(err) = s3.list_with_delimiter(Some(&probe)).await {
            let reason = match err {
                object_store::Error::NotFound { .. } => "no such bucket (404)".to_owned(),
                err => err.to_string(),
            };
            eyre::bail!("media store unreachable: bucket \"{bucket}\" at {endpoint}: {reason}");
        }
        tracing::info!(bucket = %bucket, endpoint = %endpoint, "media store ready (s3)");
        Ok(Blobs {
            store: s3.clone(),
            provider: MediaProvider::S3,
            prefix: config.prefix.clone(),
            bucket: Some(bucket),
            s3: Some(s3),
            local_root: None,
            presign_ttl: Duration::from_secs(config.presign_ttl_seconds),
            stale_after: Duration::from_secs(config.stale_upload_seconds),
        })
    }

    pub fn provider(&self) -> MediaProvider {
        self.provider
    }

    pub fn bucket(&self) -> Option<&str> {
        self.bucket.as_deref()
    }

    /// Age past which a temporary upload counts as left behind.
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// Whether the store answers: the media directory exists, or the bucket answers a HEAD.
    pub async fn check(&self) -> Result<(), BlobError> {
        if let Some(root) = &self.local_root {
            return match tokio::fs::metadata(root).await {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(unavailable_local(std::io::Error::other("not a directory"))),
                Err(err) => Err(unavailable_local(err)),
            };
        }
        let probe = ObjectPath::from(format!("{}health-probe", self.temp_prefix()));
        match self.store.head(&probe).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(BlobError::Unavailable(err)),
        }
    }

    /// The object key of a blob: `<prefix><hash>`.
    pub fn object_key(&self, hash: &ContentHash) -> String {
        format!("{}{}", self.prefix, hash)
    }

    fn path(&self, hash: &ContentHash) -> ObjectPath {
        ObjectPath::from(self.object_key(hash))
    }

    /// Streams `body` to a temporary object while hashing it. Stops reading as soon as the size
    /// passes `max_size`; `check_head` sees the first bytes once (at most 12, or fewer for a
    /// shorter file) and may refuse the upload. On any error the temporary object is removed.
    pub async fn stage<S, E>(
        &self,
        mut body: S,
        max_size: u64,
        mut check_head: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<Staged, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let temp = ObjectPath::from(format!("{}{}", self.temp_prefix(), hex::encode(rand::random::<[u8; 16]>())));
        let upload = self.start_upload(&temp).await?;
        // Aborts the multipart upload if this future is dropped half-way (client gone, shutdown).
        let mut guard = AbortOnDrop(Some(WriteMultipart::new(upload)));
        let writer = guard.0.as_mut().expect("present until finished");
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut head = Vec::new();
        let mut head_checked = false;

        let outcome: Result<(), BlobError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
                size += chunk.len() as u64;
                if size > max_size {
                    return Err(BlobError::TooLarge { limit: max_size });
                }
                if head.len() < HEAD_BYTES {
                    let take = (HEAD_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                if !head_checked && head.len() >= 12 {
                    head_checked = true;
                    check_head(&head[..12]).map_err(BlobError::Rejected)?;
                }
                hasher.update(&chunk);
                writer.wait_for_capacity(4).await.map_err(BlobError::Unavailable)?;
                writer.put(chunk);
            }
            if !head_checked && !head.is_empty() {
                check_head(&head).map_err(BlobError::Rejected)?;
            }
            Ok(())
        }
        .await;

        let writer = guard.0.take().expect("present until finished");
        if let Err(err) = outcome {
            let _ = writer.abort().await;
            let _ = self.store.delete(&temp).await;
            return Err(err);
        }
        if let Err(err) = writer.finish().await {
            let _ = self.store.delete(&temp).await;
            return Err(BlobError::Unavailable(err));
        }
        Ok(Staged { temp, hash: ContentHash::from_digest(hasher.finalize().into()), size, head })
    }

    /// Moves a staged blob to its content key, or drops it when that blob already exists.
    pub async fn commit(&self, staged: &Staged) -> Result<(), BlobError> {
        let dest = self.path(&staged.hash);
        match self.store.head(&dest).await {
            Ok(_) => {
                let _ = self.store.delete(&staged.temp).await;
                Ok(())
            }
            Err(object_store::Error::NotFound { .. }) => {
                self.store.rename(&staged.temp, &dest).await.map_err(BlobError::Unavailable)
            }
            Err(err) => Err(BlobError::Unavailable(err)),
        }
    }

    /// Removes a staged blob that will not be committed.
    pub async fn discard(&self, staged: &Staged) {
        if let Err(err) = self.store.delete(&staged.temp).await {
            tracing::warn!(error = %err, "could not remove a temporary upload");
        }
    }

    /// Stores small in-memory bytes (avatars, the server icon) at their content key.
    pub async fn put_bytes(&self, bytes: Bytes) -> Result<ContentHash, BlobError> {
        let hash = ContentHash::from_digest(Sha256::digest(&bytes).into());
        let dest = self.path(&hash);
        match self.store.head(&dest).await {
            Ok(_) => Ok(hash),
            Err(object_store::Error::NotFound { .. }) => {
                self.store.put(&dest, bytes.into()).await.map_err(BlobError::Unavailable)?;
                Ok(hash)
            }
            Err(err) => Err(BlobError::Unavailable(err)),
        }
    }

    /// Reads a blob, or a byte range of it.
    pub async fn get(&self, hash: &ContentHash, range: Option<Range<u64>>) -> Result<GetResult, object_store::Error> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        self.store.get_opts(&self.path(hash), options).await
    }

    /// Whether the blob exists.
    pub async fn exists(&self, hash: &ContentHash) -> Result<bool, object_store::Error> {
        match self.store.head(&self.path(hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

fn unavailable_local(err: std::io::Error) -> BlobError {
    BlobError::Unavailable(object_store::Error::Generic { store: "local", source: Box::new(err) })
}

/// Aborts a multipart upload that was neither finished nor aborted (its future was dropped).
struct AbortOnDrop(Option<WriteMultipart>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = writer.abort().await;
            });
        }
    }
}

/// A pre-signed URL a client is redirected to instead of being streamed the bytes (S3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub location: String,
    /// For `Cache-Control: private, max-age=<n>`.
    pub max_age_seconds: u64,
}

/// The bytes of a blob (or of a range of it), streamed.
pub type BlobStream = futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>;

impl Blobs {
    /// Where to send a client for this blob, when the provider serves media itself (S3: a
    /// pre-signed GET URL with the type and disposition signed into it); `None` means the server
    /// streams the bytes ([`Blobs::open`]). The local provider always streams.
    pub async fn redirect_for(&self, hash: &ContentHash, mime: &str) -> Result<Option<Redirect>, BlobError> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        let options = SignedUrlOptions::default()
            .with_query([("response-content-type", mime), ("response-content-disposition", content_disposition(mime))]);
        let url = s3
            .signed_url_opts(object_store::signer::Method::GET, &self.path(hash), self.presign_ttl, &options)
            .await
            .map_err(BlobError::Unavailable)?;
        Ok(Some(Redirect { location: url.to_string(), max_age_seconds: self.presign_ttl.as_secs() / 2 }))
    }

    /// Opens a blob, or a byte range of it, as a stream (`None` when the blob is missing).
    pub async fn open(&self, hash: &ContentHash, range: Option<Range<u64>>) -> Result<Option<BlobStream>, BlobError> {
        match self.get(hash, range).await {
            Ok(result) => Ok(Some(result.into_stream().map(|chunk| chunk.map_err(std::io::Error::other)).boxed())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(BlobError::Unavailable(err)),
        }
    }
}

/// The stored name of an uploaded file (api.md §3.5 step 1): directory components removed,
/// trimmed, at most 255 characters; `unnamed` when absent or empty.
pub fn clean_filename(raw: Option<&str>) -> String {
    let base = raw.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("").trim();
    let name: String = base.chars().take(255).collect();
    let name = name.trim().to_owned();
    if name.is_empty() { "unnamed".to_owned() } else { name }
}

/// A part's declared `Content-Type`, lowercased without parameters (None when absent or empty).
pub fn declared_mime(content_type: Option<&str>) -> Option<String> {
    let essence = content_type?.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    (!essence.is_empty()).then_some(essence)
}

/// The type of an upload (api.md §3.5 step 3): from its first bytes, else the declared type,
/// else `application/octet-stream`.
pub fn upload_mime(head: &[u8], declared: Option<&str>) -> String {
    match sniff_mime(head) {
        Some(mime) => mime.to_owned(),
        None => declared.unwrap_or("application/octet-stream").to_owned(),
    }
}

/// The MIME type decided from a file's first bytes (api.md §3.5 step 3), if they are one of the
/// recognised signatures.
pub fn sniff_mime(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else if head.starts_with(b"%PDF") {
        Some("application/pdf")
    } else {
        None
    }
}

/// Width and height from an image header, without decoding (None if unreadable or not an image).
/// A side beyond `i32::MAX` counts as unreadable: no valid PNG, JPEG, GIF or WebP has one (PNG
/// stops at 2^31 − 1, the others far lower), and the original SDK decodes dimensions as i32, so
/// one forged header would make every message page that lists the file undecodable for it.
pub fn image_dimensions(mime: &str, head: &[u8]) -> Option<(i64, i64)> {
    if !matches!(mime, "image/png" | "image/jpeg" | "image/gif" | "image/webp") {
        return None;
    }
    let size = imagesize::blob_size(head).ok()?;
    let side = |n: usize| i32::try_from(n).ok().map(i64::from);
    Some((side(size.width)?, side(size.height)?))
}

/// `inline` for types browsers display safely, `attachment` for everything else.
pub fn content_disposition(mime: &str) -> &'static str {
    match mime {
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "video/mp4" | "video/webm" | "audio/mpeg"
        | "audio/ogg" => "inline",
        _ => "attachment",
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn chunks(parts: Vec<&'static [u8]>) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Unpin {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
    }

    fn temp_objects(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("tmp")).map(|d| d.count()).unwrap_or(0)
    }

    #[tokio::test]
    async fn staged_uploads_are_hashed_committed_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        let staged = blobs.stage(chunks(vec![b"hello ", b"world"]), 100, |_| Ok(())).await.unwrap();
        assert_eq!(staged.size, 11);
        assert_eq!(staged.hash.as_str(), "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(staged.head, b"hello world");
        blobs.commit(&staged).await.unwrap();
        let again = blobs.stage(chunks(vec![b"hello world"]), 100, |_| Ok(())).await.unwrap();
        blobs.commit(&again).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join(staged.hash.as_str())).unwrap(), b"hello world");
        assert_eq!(temp_objects(dir.path()), 0);
        let got = blobs.get(&staged.hash, Some(6..11)).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"world");
    }

    #[tokio::test]
    async fn too_large_or_rejected_uploads_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        let err = blobs.stage(chunks(vec![b"0123456789", b"0123456789"]), 15, |_| Ok(())).await.unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 15 }), "{err:?}");
        let err = blobs.stage(chunks(vec![b"%PDF-1.7 and more"]), 100, |_| Err("no pdf".into())).await.unwrap_err();
        assert!(matches!(err, BlobError::Rejected(ref m) if m == "no pdf"), "{err:?}");
        assert_eq!(temp_objects(dir.path()), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count(), 0);
    }

    #[test]
    fn filenames_and_declared_types() {
        assert_eq!(clean_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_filename(Some("C:\\Users\\me\\ report.pdf ")), "report.pdf");
        assert_eq!(clean_filename(Some("  ")), "unnamed");
        assert_eq!(clean_filename(Some("dir/")), "unnamed");
        assert_eq!(clean_filename(None), "unnamed");
        assert_eq!(clean_filename(Some(&"é".repeat(300))).chars().count(), 255);
        assert_eq!(declared_mime(Some("Text/Plain; charset=utf-8")).as_deref(), Some("text/plain"));
        assert_eq!(declared_mime(Some(" ; x")), None);
        assert_eq!(upload_mime(b"%PDF-1.4", Some("text/plain")), "application/pdf");
        assert_eq!(upload_mime(b"hello", Some("text/plain")), "text/plain");
        assert_eq!(upload_mime(b"hello", None), "application/octet-stream");
    }

    #[test]
    fn sniffing_and_dispositions() {
        assert_eq!(sniff_mime(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_mime(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_mime(b"GIF89a"), Some("image/gif"));
        assert_eq!(sniff_mime(b"plain text"), None);
        assert_eq!(content_disposition("image/png"), "inline");
        assert_eq!(content_disposition("text/html"), "attachment");
    }
}
