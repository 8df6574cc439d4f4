//! Temporary uploads: where an upload's bytes live until every file of its request has passed
//! its checks, and how what a crash or an outage leaves of them is found and removed.
//!
//! Every temporary lives under `<prefix>tmp/`. On local disk it is a file (object_store writes a
//! multipart upload to a staging file beside it), so a stale one is a file whose modification time
//! is old. On S3 an unfinished multipart upload is not an object at all, and S3-compatible servers
//! need not list them (s3s-fs does not): each upload therefore leaves a small marker object
//! `<prefix>tmp/<name>.multipart` holding its upload id for as long as it runs, rewritten while a
//! long upload goes on. A stale marker names an upload to abort. Removing a temporary twice is
//! harmless, so every process may sweep at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{MultipartId, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, PutResult, UploadPart};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{BlobError, Blobs};

/// The suffix of the marker of an S3 multipart upload.
const MARKER_SUFFIX: &str = ".multipart";

/// A temporary found by [`Blobs::stale_temporaries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Temporary {
    /// The key (S3) or the path under the media directory (local), for reports.
    pub name: String,
    pub bytes: u64,
    pub age: Duration,
    what: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    LocalFile(PathBuf),
    Object(ObjectPath),
    /// The marker of an unfinished multipart upload of `upload` (its parts' bytes are unknown).
    Multipart {
        marker: ObjectPath,
        upload: ObjectPath,
    },
}

impl Blobs {
    /// The key prefix of temporary uploads.
    pub(super) fn temp_prefix(&self) -> String {
        format!("{}tmp/", self.prefix)
    }

    /// Temporaries (files, objects, unfinished multipart uploads) older than `older_than`.
    pub async fn stale_temporaries(&self, older_than: Duration) -> Result<Vec<Temporary>, BlobError> {
        match &self.local_root {
            Some(root) => {
                let dir = root.join("tmp");
                tokio::task::spawn_blocking(move || stale_files(&dir, older_than))
                    .await
                    .map_err(|e| BlobError::Unavailable(object_store::Error::JoinError { source: e }))?
            }
            None => self.stale_objects(older_than).await,
        }
    }

    async fn stale_objects(&self, older_than: Duration) -> Result<Vec<Temporary>, BlobError> {
        let prefix = ObjectPath::from(self.temp_prefix());
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(BlobError::Unavailable)?;
        let now = chrono::Utc::now();
        let mut out = Vec::new();
        for meta in objects {
            let age = (now - meta.last_modified).to_std().unwrap_or_default();
            if age < older_than {
                continue;
            }
            let name = meta.location.to_string();
            let what = match name.strip_suffix(MARKER_SUFFIX) {
                Some(upload) => Kind::Multipart { marker: meta.location.clone(), upload: ObjectPath::from(upload) },
                None => Kind::Object(meta.location.clone()),
            };
            out.push(Temporary { name, bytes: meta.size, age, what });
        }
        Ok(out)
    }

    /// Removes one temporary (aborting its multipart upload); one already gone is not an error.
    pub async fn remove_temporary(&self, temporary: &Temporary) -> Result<(), BlobError> {
        let gone = |result: object_store::Result<()>| match result {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(BlobError::Unavailable(err)),
        };
        match &temporary.what {
            Kind::LocalFile(path) => match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(err) => {
                    Err(BlobError::Unavailable(object_store::Error::Generic { store: "local", source: Box::new(err) }))
                }
            },
            Kind::Object(path) => gone(self.store.delete(path).await),
            Kind::Multipart { marker, upload } => {
                if let Some(s3) = &self.s3 {
                    let id: Option<bytes::Bytes> = match self.store.get(marker).await {
                        Ok(got) => Some(got.bytes().await.map_err(BlobError::Unavailable)?),
                        Err(object_store::Error::NotFound { .. }) => None,
                        Err(err) => return Err(BlobError::Unavailable(err)),
                    };
                    if let Some(id) = id {
                        let id = String::from_utf8_lossy(&id).into_owned();
                        gone(s3.abort_multipart(upload, &id).await)?;
                    }
                }
                gone(self.store.delete(marker).await)
            }
        }
    }

    /// Removes every temporary older than `older_than`; returns what was removed (an error on
    /// one is logged and the others still go).
    pub async fn sweep(&self, older_than: Duration) -> Result<Vec<Temporary>, BlobError> {
        let mut removed = Vec::new();
        for temporary in self.stale_temporaries(older_than).await? {
            match self.remove_temporary(&temporary).await {
                Ok(()) => removed.push(temporary),
                Err(err) => tracing::warn!(temporary = %temporary.name, error = %err, "cannot remove a stale upload"),
            }
        }
        Ok(removed)
    }

    /// A multipart upload to the temporary `path` that leaves a marker while it runs (S3), or a
    /// plain one (local disk, where a crash leaves a file the sweep finds by its age).
    pub(super) async fn start_upload(&self, path: &ObjectPath) -> Result<Box<dyn MultipartUpload>, BlobError> {
        match &self.s3 {
            Some(s3) => {
                let id = s3.create_multipart(path).await.map_err(BlobError::Unavailable)?;
                let marker = ObjectPath::from(format!("{path}{MARKER_SUFFIX}"));
                let tracked = Tracked {
                    s3: s3.clone(),
                    path: path.clone(),
                    marker,
                    id,
                    next_part: 0,
                    parts: Arc::new(Mutex::new(Vec::new())),
                    refresh_every: self.stale_after / 3,
                    refreshed: tokio::time::Instant::now(),
                };
                if let Err(err) = tracked.write_marker().await {
                    let _ = s3.abort_multipart(path, &tracked.id).await;
                    return Err(BlobError::Unavailable(err));
                }
                Ok(Box::new(tracked))
            }
            None => self.store.put_multipart(path).await.map_err(BlobError::Unavailable),
        }
    }
}

/// Files under the local temporary directory not modified for `older_than`.
fn stale_files(dir: &Path, older_than: Duration) -> Result<Vec<Temporary>, BlobError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(BlobError::Unavailable(object_store::Error::Generic { store: "local", source: Box::new(err) }));
        }
    };
    let now = SystemTime::now();
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
        if age >= older_than {
            let name = format!("tmp/{}", entry.file_name().to_string_lossy());
            out.push(Temporary { name, bytes: meta.len(), age, what: Kind::LocalFile(entry.path()) });
        }
    }
    Ok(out)
}

/// An S3 multipart upload whose id is known (object_store keeps it private in its own
/// implementation), so that a marker can name it.
#[derive(Debug)]
struct Tracked {
    s3: Arc<AmazonS3>,
    path: ObjectPath,
    marker: ObjectPath,
    id: MultipartId,
    next_part: usize,
    parts: Arc<Mutex<Vec<(usize, PartId)>>>,
    /// A long upload rewrites its marker this often, so that it never looks stale.
    refresh_every: Duration,
    refreshed: tokio::time::Instant,
}

impl Tracked {
    async fn write_marker(&self) -> object_store::Result<()> {
        self.s3.put(&self.marker, PutPayload::from(self.id.clone().into_bytes())).await.map(|_| ())
    }
}

#[async_trait]
impl MultipartUpload for Tracked {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (s3, path, id, parts) = (self.s3.clone(), self.path.clone(), self.id.clone(), self.parts.clone());
        let index = self.next_part;
        self.next_part += 1;
        let refresh = self.refreshed.elapsed() >= self.refresh_every;
        if refresh {
            self.refreshed = tokio::time::Instant::now();
        }
        let marker = refresh.then(|| (self.marker.clone(), PutPayload::from(self.id.clone().into_bytes())));
        Box::pin(async move {
            if let Some((marker, payload)) = marker {
                s3.put(&marker, payload).await?;
            }
            let part = s3.put_part(&path, &id, index, data).await?;
            parts.lock().await.push((index, part));
            Ok(())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let mut parts = std::mem::take(&mut *self.parts.lock().await);
        parts.sort_by_key(|(index, _)| *index);
        let done =
            self.s3.complete_multipart(&self.path, &self.id, parts.into_iter().map(|(_, p)| p).collect()).await?;
        let _ = self.s3.delete(&self.marker).await;
        Ok(done)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.s3.abort_multipart(&self.path, &self.id).await?;
        let _ = self.s3.delete(&self.marker).await;
        Ok(())
    }
}

/// Sweeps stale temporaries now and then every `every` until `stop` (api.md §1.7; several
/// processes may sweep at once).
pub fn spawn_sweeper(blobs: Blobs, every: Duration, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match blobs.sweep(blobs.stale_after).await {
                Ok(removed) if removed.is_empty() => {}
                Ok(removed) => tracing::info!(
                    removed = removed.len(),
                    bytes = removed.iter().map(|t| t.bytes).sum::<u64>(),
                    "removed stale temporary uploads"
                ),
                Err(err) => tracing::warn!(error = %err, "cannot sweep temporary uploads; retrying later"),
            }
        }
    });
}
