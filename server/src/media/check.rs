//! `decentcom media check`: every media row against its blob, and every blob against the rows.
//!
//! A row whose blob is missing, of the wrong size or (with `--verify-hashes`) of the wrong content
//! is data loss to look into: it is reported, never touched. A blob no row refers to (an upload
//! interrupted between storing its blob and its row) and a stale temporary upload are leftovers:
//! `--repair` removes them. A blob without a row that is younger than
//! `storage.media.stale_upload_seconds` may belong to an upload finishing right now, so it is
//! left alone whatever the options. Objects whose names are not content hashes are not ours
//! (a bucket may be shared) and are ignored.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

use super::{BlobError, Blobs, Temporary};
use crate::storage::{ContentHash, Storage};

/// Exit codes of `decentcom media check` (also in its `--help`).
pub const EXIT_CLEAN: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_BROKEN_ROWS: u8 = 3;
pub const EXIT_LEFTOVERS: u8 = 4;

/// Media rows read per query.
const ROWS_PER_PAGE: i64 = 1000;

/// What the command line asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub verify_hashes: bool,
    pub repair: bool,
}

/// A blob in the store: its size and age.
#[derive(Clone, Copy, Debug)]
struct Blob {
    size: u64,
    age: Duration,
}

/// A row whose blob is not what the row says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broken {
    Missing,
    WrongSize { expected: u64, found: u64 },
    WrongHash { found: ContentHash },
}

/// Everything the check found (and, with `--repair`, removed).
#[derive(Debug, Default)]
pub struct Report {
    pub rows: u64,
    pub row_bytes: u64,
    pub blobs: u64,
    pub hashes_verified: u64,
    pub broken: Vec<(ContentHash, Broken)>,
    pub orphans: Vec<(ContentHash, u64)>,
    /// Blobs without a row, too young to call orphans.
    pub recent_unreferenced: Vec<(ContentHash, u64)>,
    pub stale: Vec<Temporary>,
    pub removed_orphans: u64,
    pub removed_stale: u64,
}

impl Report {
    /// The command's exit code for this report. (A removal that fails stops the run with an
    /// error instead, exit 1.)
    pub fn exit_code(&self, options: Options) -> u8 {
        let leftovers = !self.orphans.is_empty() || !self.stale.is_empty();
        if !self.broken.is_empty() {
            EXIT_BROKEN_ROWS
        } else if leftovers && !options.repair {
            EXIT_LEFTOVERS
        } else {
            EXIT_CLEAN
        }
    }
}

/// Runs the check (and the repair) against a server's database and media store.
pub async fn run(storage: &dyn Storage, blobs: &Blobs, options: Options) -> Result<Report, CheckError> {
    let mut report = Report::default();
    let mut store = blobs.list_blobs().await?;
    report.blobs = store.len() as u64;

    let mut after: Option<ContentHash> = None;
    loop {
        let page = storage.list_media(after.as_ref(), ROWS_PER_PAGE).await.map_err(CheckError::Database)?;
        for row in &page {
            report.rows += 1;
            let expected = u64::try_from(row.size_bytes).unwrap_or(0);
            report.row_bytes += expected;
            let broken = match store.remove(&row.content_hash) {
                None => Some(Broken::Missing),
                Some(blob) if blob.size != expected => Some(Broken::WrongSize { expected, found: blob.size }),
                Some(_) if options.verify_hashes => {
                    report.hashes_verified += 1;
                    match blobs.hash_blob(&row.content_hash).await? {
                        Some(found) if found == row.content_hash => None,
                        Some(found) => Some(Broken::WrongHash { found }),
                        None => Some(Broken::Missing),
                    }
                }
                Some(_) => None,
            };
            if let Some(broken) = broken {
                report.broken.push((row.content_hash.clone(), broken));
            }
        }
        match page.last() {
            Some(last) if page.len() as i64 == ROWS_PER_PAGE => after = Some(last.content_hash.clone()),
            _ => break,
        }
    }

    for (hash, blob) in store {
        if blob.age >= blobs.stale_after() {
            report.orphans.push((hash, blob.size));
        } else {
            report.recent_unreferenced.push((hash, blob.size));
        }
    }
    report.stale = blobs.stale_temporaries(blobs.stale_after()).await?;

    if options.repair {
        let mut orphans = Vec::new();
        for (hash, size) in std::mem::take(&mut report.orphans) {
            // Checked again just before: a row may have arrived since the listing.
            if storage.get_media(&hash).await.map_err(CheckError::Database)?.is_none() {
                blobs.delete_blob(&hash).await?;
                report.removed_orphans += 1;
                orphans.push((hash, size));
            }
        }
        report.orphans = orphans;
        for temporary in &report.stale {
            blobs.remove_temporary(temporary).await?;
            report.removed_stale += 1;
        }
    }
    Ok(report)
}

/// Why the check could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("database: {0}")]
    Database(#[source] crate::storage::StorageError),
    #[error("media store: {0}")]
    Media(#[from] BlobError),
}

impl Blobs {
    /// Every blob of this store (objects named `<prefix><sha256 hex>`; temporaries and objects of
    /// other names excluded).
    async fn list_blobs(&self) -> Result<BTreeMap<ContentHash, Blob>, BlobError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.trim_end_matches('/')));
        let now = chrono::Utc::now();
        let mut listing = self.store.list(prefix.as_ref());
        let mut out = BTreeMap::new();
        while let Some(meta) = listing.try_next().await.map_err(BlobError::Unavailable)? {
            let key = meta.location.to_string();
            let Some(hash) = key.strip_prefix(&self.prefix).and_then(ContentHash::parse) else {
                continue;
            };
            let age = (now - meta.last_modified).to_std().unwrap_or_default();
            out.insert(hash, Blob { size: meta.size, age });
        }
        Ok(out)
    }

    /// The SHA-256 of a blob's bytes, read in full (`None` when it is missing).
    async fn hash_blob(&self, hash: &ContentHash) -> Result<Option<ContentHash>, BlobError> {
        let Some(mut stream) = self.open(hash, None).await? else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                BlobError::Unavailable(object_store::Error::Generic { store: "media", source: Box::new(e) })
            })?;
            hasher.update(&chunk);
        }
        Ok(Some(ContentHash::from_digest(hasher.finalize().into())))
    }

    async fn delete_blob(&self, hash: &ContentHash) -> Result<(), BlobError> {
        match self.store.delete(&self.path(hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(BlobError::Unavailable(err)),
        }
    }
}

/// The report as the operator reads it.
pub fn render(report: &Report, options: Options, stale_after: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "media rows: {} ({})", report.rows, bytes(report.row_bytes));
    let _ = writeln!(out, "blobs in the store: {}", report.blobs);
    if options.verify_hashes {
        let _ = writeln!(out, "content hashes verified: {}", report.hashes_verified);
    }
    let _ = writeln!(out, "rows whose blob is missing or wrong: {}", report.broken.len());
    for (hash, broken) in &report.broken {
        let what = match broken {
            Broken::Missing => "missing".to_owned(),
            Broken::WrongSize { expected, found } => format!("wrong size: {found} bytes, the row says {expected}"),
            Broken::WrongHash { found } => format!("wrong content: its SHA-256 is {found}"),
        };
        let _ = writeln!(out, "  {hash}  {what}");
    }
    let orphan_bytes: u64 = report.orphans.iter().map(|(_, size)| size).sum();
    let _ = writeln!(out, "orphan blobs (no row refers to them): {} ({})", report.orphans.len(), bytes(orphan_bytes));
    for (hash, size) in &report.orphans {
        let _ = writeln!(out, "  {hash}  {}", bytes(*size));
    }
    if !report.recent_unreferenced.is_empty() {
        let _ = writeln!(
            out,
            "blobs without a row, younger than {} s (an upload may be finishing; left alone): {}",
            stale_after.as_secs(),
            report.recent_unreferenced.len()
        );
    }
    let stale_bytes: u64 = report.stale.iter().map(|t| t.bytes).sum();
    let _ = writeln!(
        out,
        "stale temporary uploads (older than {} s): {} ({})",
        stale_after.as_secs(),
        report.stale.len(),
        bytes(stale_bytes)
    );
    for temporary in &report.stale {
        let _ = writeln!(out, "  {}  {}, {} s old", temporary.name, bytes(temporary.bytes), temporary.age.as_secs());
    }
    if options.repair {
        let _ = writeln!(
            out,
            "repaired: removed {} orphan blob(s) ({}) and {} stale temporary upload(s) ({})",
            report.removed_orphans,
            bytes(orphan_bytes),
            report.removed_stale,
            bytes(stale_bytes)
        );
    }
    let verdict = match report.exit_code(options) {
        EXIT_CLEAN => "clean",
        EXIT_BROKEN_ROWS => "rows refer to missing or wrong blobs (never repaired: restore them from a backup)",
        _ => "leftovers found (run with --repair to remove them)",
    };
    let _ = writeln!(out, "result: {verdict}");
    out
}

fn bytes(n: u64) -> String {
    format!("{n} bytes")
}
