//! An upload received piece by piece: each piece is judged
//! ([`Arriving`]) and written to the blob store as it comes, so an upload
//! never holds the whole file, whatever `max_upload_bytes` is. The original
//! goes under a new job's key; the job itself is recorded only once every
//! check has passed ([`crate::service::accept_received`]).
//!
//! All or nothing: a [`Receiving`] dropped before it finishes, a refused
//! upload, and a [`Received`] original that no job takes, are removed again.

use sha2::{Digest, Sha256};

use crate::format::{Arriving, ImageInfo, Limits};
use crate::id::JobId;
use crate::keys::BlobKey;
use crate::ports::{BlobStore, BlobWriter, PortError};
use crate::service::AcceptError;

/// An upload being received.
pub struct Receiving<'a> {
    blobs: &'a dyn BlobStore,
    id: JobId,
    arriving: Arriving,
    /// The first bytes, until they tell the format (and so the blob's
    /// media type).
    pending: Vec<u8>,
    writer: Option<Box<dyn BlobWriter + 'a>>,
    /// The file's SHA-256 so far, when its fingerprint is wanted.
    digest: Option<Sha256>,
}

impl<'a> Receiving<'a> {
    /// Receives an upload held to `limits` into `blobs`, as a new job's
    /// original.
    pub fn new(blobs: &'a dyn BlobStore, limits: Limits) -> Self {
        Self::with_digest(blobs, limits, None)
    }

    /// As [`Receiving::new`], also taking the file's fingerprint (what an
    /// `Idempotency-Key` is held to; a hash of every byte, so only when
    /// there is a key).
    pub fn fingerprinted(blobs: &'a dyn BlobStore, limits: Limits) -> Self {
        Self::with_digest(blobs, limits, Some(Sha256::new()))
    }

    fn with_digest(blobs: &'a dyn BlobStore, limits: Limits, digest: Option<Sha256>) -> Self {
        Self {
            blobs,
            id: JobId::new_random(),
            arriving: Arriving::new(limits),
            pending: Vec::new(),
            writer: None,
            digest,
        }
    }

    /// Takes the next piece.
    ///
    /// # Errors
    /// [`AcceptError::Invalid`] as soon as the bytes so far break a rule
    /// (over the size limit, not an image, too many pixels);
    /// [`AcceptError::Storage`] when the piece cannot be stored.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), AcceptError> {
        self.arriving.push(bytes)?;
        if let Some(digest) = &mut self.digest {
            digest.update(bytes);
        }
        if let Some(writer) = &mut self.writer {
            return writer.write(bytes).map_err(AcceptError::Storage);
        }
        self.pending.extend_from_slice(bytes);
        if self.arriving.format().is_some() {
            self.open()?;
        }
        Ok(())
    }

    /// The whole upload, judged and stored.
    ///
    /// # Errors
    /// [`AcceptError::Invalid`] when the whole file breaks a rule (frames,
    /// memory, an unreadable header); [`AcceptError::Storage`].
    pub fn finish(mut self) -> Result<Received<'a>, AcceptError> {
        let arriving = std::mem::replace(&mut self.arriving, Arriving::new(Limits::default()));
        let info = arriving.finish()?;
        if self.writer.is_none() {
            self.open()?;
        }
        let writer = self
            .writer
            .take()
            .ok_or_else(|| AcceptError::Storage(PortError::new("the original was never opened")))?;
        writer.finish().map_err(AcceptError::Storage)?;
        Ok(Received {
            blobs: self.blobs,
            id: self.id,
            info,
            fingerprint: self.digest.take().map(|d| hex::encode(d.finalize())),
            kept: false,
        })
    }

    /// Begins the original and writes the bytes held so far.
    fn open(&mut self) -> Result<(), AcceptError> {
        let format = self
            .arriving
            .format()
            .ok_or(crate::format::InvalidImage::UnsupportedFormat)?;
        let mut writer = self
            .blobs
            .create(&BlobKey::original(self.id), format.mime())
            .map_err(AcceptError::Storage)?;
        let first = std::mem::take(&mut self.pending);
        let written = writer.write(&first);
        self.writer = Some(writer);
        written.map_err(AcceptError::Storage)
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Best effort: the request is over; a store that refuses leaves
            // unreadable chunks (no manifest) or an unfinished multipart
            // upload, which S3 lifecycle rules expire.
            drop(writer.abort());
        }
    }
}

/// An original stored and judged, waiting for its job to be recorded;
/// removed again if dropped untaken.
pub struct Received<'a> {
    blobs: &'a dyn BlobStore,
    id: JobId,
    info: ImageInfo,
    fingerprint: Option<String>,
    kept: bool,
}

impl Received<'_> {
    /// The job the original is stored for.
    pub const fn id(&self) -> JobId {
        self.id
    }

    /// What the image is.
    pub const fn info(&self) -> ImageInfo {
        self.info
    }

    /// The SHA-256 of the file, hex (an `Idempotency-Key`'s payload), if
    /// it was received [`Receiving::fingerprinted`].
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// The original now belongs to a job: it is no longer removed on drop.
    /// The caller removes it itself if recording the job fails.
    pub(crate) fn keep(mut self) -> (JobId, ImageInfo) {
        self.kept = true;
        (self.id, self.info)
    }
}

impl Drop for Received<'_> {
    fn drop(&mut self) {
        if !self.kept {
            drop(self.blobs.delete(&BlobKey::original(self.id)));
        }
    }
}

impl std::fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("id", &self.id)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{CHUNK_BYTES, KvBlobStore};
    use crate::format::InvalidImage;
    use crate::testing::{MemoryKv, encode_png, gradient, noise};

    fn received_in_pieces<'a>(
        blobs: &'a dyn BlobStore,
        bytes: &[u8],
        limits: Limits,
    ) -> Result<Received<'a>, AcceptError> {
        let mut receiving = Receiving::new(blobs, limits);
        for piece in bytes.chunks(64 << 10) {
            receiving.push(piece)?;
        }
        receiving.finish()
    }

    #[test]
    fn an_upload_is_stored_as_it_arrives_and_read_back_whole() {
        let kv = MemoryKv::default();
        let blobs = KvBlobStore::new(&kv);
        let png = encode_png(&noise(1000, 1000));
        assert!(png.len() > 2 * CHUNK_BYTES, "{}", png.len());
        let mut receiving = Receiving::fingerprinted(&blobs, Limits::default());
        let mut most_held = 0;
        for piece in png.chunks(64 << 10) {
            receiving.push(piece).expect("accepted");
            most_held = most_held.max(kv.len());
        }
        let full_chunks = png.len() / CHUNK_BYTES;
        assert_eq!(
            most_held, full_chunks,
            "full chunks are written while the body arrives"
        );
        let received = receiving.finish().expect("judged");
        assert_eq!(received.info().bytes, png.len() as u64);
        assert_eq!(
            received.fingerprint(),
            Some(crate::idempotency::fingerprint(&png).as_str())
        );
        let stored = blobs
            .get(&BlobKey::original(received.id()))
            .expect("read")
            .expect("stored");
        assert_eq!(stored.bytes, png);
        assert_eq!(stored.meta.content_type, "image/png");
        let _kept = received.keep();
        assert_eq!(kv.len(), full_chunks + 2, "the chunks and a manifest");
    }

    #[test]
    fn an_upload_refused_abandoned_or_never_taken_leaves_nothing_behind() {
        let kv = MemoryKv::default();
        let blobs = KvBlobStore::new(&kv);
        let png = encode_png(&noise(1000, 1000));
        // Over the size limit, found while arriving.
        let small = Limits {
            max_upload_bytes: CHUNK_BYTES as u64 + 10,
            ..Limits::default()
        };
        assert!(matches!(
            received_in_pieces(&blobs, &png, small),
            Err(AcceptError::Invalid(InvalidImage::TooLarge { .. }))
        ));
        assert!(kv.is_empty(), "{:?}", kv.keys());
        // Refused only once whole: the memory estimate needs the size.
        let tight = Limits {
            max_memory: 8 << 20,
            ..Limits::default()
        };
        assert!(matches!(
            received_in_pieces(&blobs, &png, tight),
            Err(AcceptError::Invalid(InvalidImage::TooMuchMemory { .. }))
        ));
        assert!(kv.is_empty(), "{:?}", kv.keys());
        // Abandoned mid-way (the client went away).
        let mut receiving = Receiving::new(&blobs, Limits::default());
        receiving
            .push(&png[..png.len() / 2])
            .expect("accepted so far");
        assert!(!kv.is_empty());
        drop(receiving);
        assert!(kv.is_empty(), "{:?}", kv.keys());
        // Stored and judged, but no job took it.
        let received = received_in_pieces(&blobs, &png, Limits::default()).expect("received");
        assert!(!kv.is_empty());
        drop(received);
        assert!(kv.is_empty(), "{:?}", kv.keys());
    }

    #[test]
    fn a_store_that_fails_mid_upload_is_a_storage_error_and_leaves_nothing() {
        let kv = MemoryKv::default();
        let blobs = KvBlobStore::new(&kv);
        let png = encode_png(&noise(1000, 1000));
        kv.fail_sets_after(1);
        assert!(matches!(
            received_in_pieces(&blobs, &png, Limits::default()),
            Err(AcceptError::Storage(_))
        ));
        kv.heal();
        assert!(kv.is_empty(), "{:?}", kv.keys());
    }

    #[test]
    fn an_upload_that_is_not_an_image_is_refused_before_anything_is_stored() {
        let kv = MemoryKv::default();
        let blobs = KvBlobStore::new(&kv);
        let mut receiving = Receiving::new(&blobs, Limits::default());
        let err = receiving
            .push(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
            .expect_err("refused");
        assert!(matches!(
            err,
            AcceptError::Invalid(InvalidImage::UnsupportedFormat)
        ));
        assert!(kv.is_empty());
        let png = encode_png(&gradient(30, 20, false));
        let received = received_in_pieces(&blobs, &png, Limits::default()).expect("small");
        assert_eq!((received.info().width, received.info().height), (30, 20));
    }
}
