//! The capabilities the domain needs from the outside world. Each is a thin
//! bytes-in, bytes-out trait; key naming, serialization and rules stay in
//! this crate. Implementations: `darkroom-spin` (Spin) and [`crate::testing`]
//! (in memory).
//!
//! wasm components are single-threaded, so no `Send`/`Sync` bounds.

use thiserror::Error;

use crate::time::Timestamp;

/// A backend did not do what was asked (unreachable, refused, I/O error).
/// The domain treats every such failure as transient.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct PortError(String);

impl PortError {
    /// Wraps a backend's own error message.
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self(message.to_string())
    }
}

/// A key-value store (Spin's `key_value::Store`).
pub trait KeyValue {
    /// The value under `key`, if any.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be read.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError>;

    /// Stores `value` under `key`, replacing any value.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be written; the old value may or may not remain.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), PortError>;

    /// Removes `key`; removing a missing key succeeds.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be written.
    fn delete(&self, key: &str) -> Result<(), PortError>;
}

/// A blob's metadata.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlobMeta {
    /// Size in bytes.
    pub size: u64,
    /// Media type the blob is served with.
    pub content_type: String,
    /// A strong entity tag, quoted as HTTP wants it.
    pub etag: String,
}

/// A blob and its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// Metadata.
    pub meta: BlobMeta,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// Object storage: the key-value default ([`crate::blob::KvBlobStore`]) or S3.
pub trait BlobStore {
    /// Stores `bytes` under `key`, replacing any blob there.
    ///
    /// # Errors
    /// [`PortError`]; a failed put leaves no readable blob behind.
    fn put(
        &self,
        key: &crate::keys::BlobKey,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<BlobMeta, PortError>;

    /// The blob under `key`, if it exists.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be read or the blob is damaged.
    fn get(&self, key: &crate::keys::BlobKey) -> Result<Option<Blob>, PortError>;

    /// Removes the blob; removing a missing blob succeeds.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be written.
    fn delete(&self, key: &crate::keys::BlobKey) -> Result<(), PortError>;
}

/// The current time.
pub trait Clock {
    /// Now.
    fn now(&self) -> Timestamp;

    /// Waits for `d` (a processor waiting for a retry that is nearly due).
    fn sleep(&self, d: std::time::Duration);
}

/// Randomness, for retry jitter.
pub trait Random {
    /// A number in `[0, 1)`.
    fn unit(&self) -> f64;
}
