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

/// An open blob: its metadata at once, its contents piece by piece, so a
/// large blob can be served without holding all of it in memory. A piece
/// that cannot be read, or contents that do not add up to `meta.size`, end
/// the iteration with an error.
pub struct BlobReader<'a> {
    /// Metadata.
    pub meta: BlobMeta,
    pieces: Box<dyn Iterator<Item = Result<Vec<u8>, PortError>> + 'a>,
}

impl<'a> BlobReader<'a> {
    /// A reader of `pieces`, which must add up to `meta.size` bytes; the
    /// reader checks that and reports a shortfall or excess as an error.
    pub fn new(
        meta: BlobMeta,
        pieces: impl Iterator<Item = Result<Vec<u8>, PortError>> + 'a,
    ) -> Self {
        let expected = meta.size;
        let mut seen = 0_u64;
        let mut done = false;
        let mut pieces = pieces;
        let checked = std::iter::from_fn(move || {
            if done {
                return None;
            }
            let next = match pieces.next() {
                Some(Ok(piece)) => {
                    seen += piece.len() as u64;
                    if seen <= expected {
                        return Some(Ok(piece));
                    }
                    Err(PortError::new(format!(
                        "blob longer than its recorded {expected} bytes"
                    )))
                }
                Some(Err(e)) => Err(e),
                None if seen == expected => return None,
                None => Err(PortError::new(format!(
                    "blob ends after {seen} of its recorded {expected} bytes"
                ))),
            };
            done = true;
            Some(next)
        });
        Self {
            meta,
            pieces: Box::new(checked),
        }
    }

    /// Reads the rest into memory.
    ///
    /// # Errors
    /// [`PortError`] when a piece cannot be read or the size is wrong.
    pub fn read_all(self) -> Result<Blob, PortError> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.meta.size).unwrap_or(0));
        for piece in self.pieces {
            bytes.extend_from_slice(&piece?);
        }
        Ok(Blob {
            meta: self.meta,
            bytes,
        })
    }
}

impl Iterator for BlobReader<'_> {
    type Item = Result<Vec<u8>, PortError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.pieces.next()
    }
}

impl std::fmt::Debug for BlobReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// A blob being written piece by piece, so that a large upload is stored
/// as it arrives and never held whole. Nothing is readable under its key
/// until [`BlobWriter::finish`]; an aborted writer leaves nothing behind.
pub trait BlobWriter {
    /// Appends `bytes`.
    ///
    /// # Errors
    /// [`PortError`]; the writer should then be aborted.
    fn write(&mut self, bytes: &[u8]) -> Result<(), PortError>;

    /// Makes the blob readable, whole.
    ///
    /// # Errors
    /// [`PortError`]; a failed finish leaves no readable blob behind (what
    /// it wrote is removed again as far as the store lets it).
    fn finish(self: Box<Self>) -> Result<BlobMeta, PortError>;

    /// Removes what has been written.
    ///
    /// # Errors
    /// [`PortError`] when the store refuses the clean-up.
    fn abort(self: Box<Self>) -> Result<(), PortError>;
}

/// Object storage: the key-value default ([`crate::blob::KvBlobStore`]) or S3.
pub trait BlobStore {
    /// Begins a blob under `key`, written piece by piece, replacing any
    /// blob there once finished.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn create<'a>(
        &'a self,
        key: &crate::keys::BlobKey,
        content_type: &str,
    ) -> Result<Box<dyn BlobWriter + 'a>, PortError>;

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

    /// Stores under `key` a copy made of `pieces`: ranges of the blob under
    /// `source`, whose bytes are `source_bytes`, and bytes of the copy's own
    /// (an original without its metadata). By default the bytes are written
    /// out; a store that can keeps the ranges as references to the source's
    /// storage, so that the copy costs only its own bytes. The source must
    /// then be removed after the copy, never before (a job's outputs are
    /// removed before its original).
    ///
    /// # Errors
    /// [`PortError`]; a failed compose leaves no readable blob behind.
    fn compose(
        &self,
        key: &crate::keys::BlobKey,
        content_type: &str,
        source: &crate::keys::BlobKey,
        source_bytes: &[u8],
        pieces: &[crate::pipeline::Piece],
    ) -> Result<BlobMeta, PortError> {
        let _ = source;
        write_out(self, key, content_type, source_bytes, pieces)
    }

    /// The blob under `key`, if it exists, opened for reading piece by piece.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be read or the blob is damaged;
    /// errors met later come out of the reader.
    fn open(&self, key: &crate::keys::BlobKey) -> Result<Option<BlobReader<'_>>, PortError>;

    /// What the blob under `key` is, if it exists, without reading it (for
    /// `HEAD` and conditional requests). By default opened and not read.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be read.
    fn stat(&self, key: &crate::keys::BlobKey) -> Result<Option<BlobMeta>, PortError> {
        Ok(self.open(key)?.map(|reader| reader.meta))
    }

    /// The whole blob under `key`, if it exists.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be read or the blob is damaged.
    fn get(&self, key: &crate::keys::BlobKey) -> Result<Option<Blob>, PortError> {
        self.open(key)?.map(BlobReader::read_all).transpose()
    }

    /// Removes the blob; removing a missing blob succeeds.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be written.
    fn delete(&self, key: &crate::keys::BlobKey) -> Result<(), PortError>;
}

/// [`BlobStore::compose`] by writing every piece's bytes.
///
/// # Errors
/// [`PortError`]; what was written is removed again.
pub fn write_out<S: BlobStore + ?Sized>(
    store: &S,
    key: &crate::keys::BlobKey,
    content_type: &str,
    source_bytes: &[u8],
    pieces: &[crate::pipeline::Piece],
) -> Result<BlobMeta, PortError> {
    if let [piece] = pieces {
        return store.put(key, content_type, piece.bytes(source_bytes));
    }
    let mut writer = store.create(key, content_type)?;
    match pieces
        .iter()
        .try_for_each(|p| writer.write(p.bytes(source_bytes)))
    {
        Ok(()) => writer.finish(),
        Err(e) => match writer.abort() {
            Ok(()) => Err(e),
            Err(cleanup) => Err(PortError::new(format!(
                "{e}; cleaning up also failed: {cleanup}"
            ))),
        },
    }
}

/// A store of short-lived records with an atomic insert (Redis `SET NX PX`):
/// of two racing inserts of one key, exactly one wins.
pub trait OnceStore {
    /// Stores `value` under `key` for `ttl` unless the key exists;
    /// `Ok(true)` when this call stored it.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn insert_new(
        &self,
        key: &str,
        value: &[u8],
        ttl: std::time::Duration,
    ) -> Result<bool, PortError>;

    /// The value under `key`, if it exists and has not expired.
    ///
    /// # Errors
    /// [`PortError`].
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError>;

    /// Replaces the value of an existing `key`, keeping its expiry.
    ///
    /// # Errors
    /// [`PortError`].
    fn replace(&self, key: &str, value: &[u8]) -> Result<(), PortError>;

    /// Removes `key`; removing a missing key succeeds.
    ///
    /// # Errors
    /// [`PortError`].
    fn remove(&self, key: &str) -> Result<(), PortError>;
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
