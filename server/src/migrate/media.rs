//! Copying media blobs between two stores (local directory ⇄ S3). Each blob is streamed from the
//! source store into a temporary object of the target store while it is hashed, and moved to its
//! content key only when its SHA-256 is the one the `media` row names; a blob already present in
//! the target (a resumed run) is left alone, because it only got there through that check.

use crate::config::{MediaConfig, MediaProvider};
use crate::media::{Blobs, S3Credentials};
use crate::storage::ContentHash;

/// Opens the store `config` describes, naming `what` (which side) in errors.
pub async fn open_store(config: &MediaConfig, what: &str) -> eyre::Result<Blobs> {
    let credentials = match config.provider {
        MediaProvider::Local => None,
        MediaProvider::S3 => Some(S3Credentials::from_env().ok_or_else(|| {
            eyre::eyre!("the {what} media store is S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        })?),
    };
    Blobs::from_config(config, credentials.as_ref()).await.map_err(|e| eyre::eyre!("{what} media store: {e:#}"))
}

/// What happened to one blob.
#[derive(Debug, PartialEq, Eq)]
pub enum Copied {
    /// Streamed, verified and stored: this many bytes.
    Bytes(u64),
    /// Already in the target.
    Present,
    /// Not in the source store.
    Missing,
}

/// Copies the blob `hash` from `source` to `target`, verifying its SHA-256 on arrival.
pub async fn copy_blob(source: &Blobs, target: &Blobs, hash: &str) -> eyre::Result<Copied> {
    let expected =
        ContentHash::parse(hash).ok_or_else(|| eyre::eyre!("media row has an invalid content hash {hash:?}"))?;
    if target.exists(&expected).await.map_err(|e| eyre::eyre!("target media store: {e}"))? {
        return Ok(Copied::Present);
    }
    let Some(stream) = source.open(&expected, None).await.map_err(|e| eyre::eyre!("source media store: {e}"))? else {
        return Ok(Copied::Missing);
    };
    let staged = target
        .stage(stream, u64::MAX, |_| Ok(()))
        .await
        .map_err(|e| eyre::eyre!("copying media {hash} to the target store: {e}"))?;
    if staged.hash != expected {
        target.discard(&staged).await;
        eyre::bail!("media {hash}: the source store's bytes hash to {}, not to their name", staged.hash.as_str());
    }
    target.commit(&staged).await.map_err(|e| eyre::eyre!("storing media {hash} in the target store: {e}"))?;
    Ok(Copied::Bytes(staged.size))
}
