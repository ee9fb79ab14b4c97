//! The zero-setup blob store: blobs kept in the key-value store, split into
//! chunks of at most [`CHUNK_BYTES`] because hosted key-value stores refuse
//! values over 1 MB and one Spin host call cannot move more than 128 MiB.
//!
//! Layout: the chunks go in first, then a manifest; the manifest is the
//! commit point, so a reader never sees a half-written blob, and a missing
//! or inconsistent chunk is reported as an error rather than served.
//!
//! A composed blob (an original without its metadata, [`BlobStore::compose`])
//! has a manifest that lists segments: ranges of its own chunks and of the
//! source blob's, so the copy of a 57 MB PNG costs a few hundred bytes of
//! its own, not 57 MB written again. Its own chunks are its to delete; the
//! source's chunks stay the source's (a job's outputs are deleted before
//! its original).

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::keys::{self, BlobKey};
use crate::pipeline::Piece;
use crate::ports::{BlobMeta, BlobReader, BlobStore, BlobWriter, KeyValue, PortError};

/// The largest value written to the key-value store.
pub const CHUNK_BYTES: usize = 1_000_000;

#[derive(Serialize, Deserialize)]
struct Manifest {
    #[serde(flatten)]
    meta: BlobMeta,
    /// The blob's own chunks.
    chunks: u32,
    /// A composed blob's contents, in order; none: its own chunks, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    segments: Option<Vec<Segment>>,
}

/// A range of a chunk.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Segment {
    /// The blob whose chunk it is; none: the composed blob's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    of: Option<String>,
    chunk: u32,
    start: u32,
    end: u32,
}

/// A [`BlobStore`] over any [`KeyValue`].
pub struct KvBlobStore<'a, K: ?Sized> {
    kv: &'a K,
}

impl<'a, K: KeyValue + ?Sized> KvBlobStore<'a, K> {
    /// Keeps blobs in `kv`.
    pub const fn new(kv: &'a K) -> Self {
        Self { kv }
    }

    fn manifest(&self, key: &BlobKey) -> Result<Option<Manifest>, PortError> {
        let Some(raw) = self.kv.get(&keys::blob_manifest(key))? else {
            return Ok(None);
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| PortError::new(format!("blob {key}: damaged manifest: {e}")))
    }

    fn delete_chunks(&self, key: &BlobKey, chunks: u32) -> Result<(), PortError> {
        (0..chunks).try_for_each(|n| self.kv.delete(&keys::blob_chunk(key, n)))
    }
}

/// A strong entity tag for `bytes`: the first 128 bits of their SHA-256.
pub fn etag(bytes: &[u8]) -> String {
    let mut tag = Etag::default();
    tag.update(bytes);
    tag.finish()
}

/// [`etag`] of bytes that arrive in pieces.
#[derive(Default)]
pub struct Etag(Sha256);

impl Etag {
    /// Takes the next piece.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The tag, quoted.
    pub fn finish(self) -> String {
        format!("\"{}\"", hex::encode(&self.0.finalize()[..16]))
    }
}

/// A blob going into the key-value store a chunk at a time: full chunks
/// are written as they fill (straight from the caller's bytes when they
/// can be), so at most one chunk is held.
struct KvBlobWriter<'a, K: ?Sized> {
    store: &'a KvBlobStore<'a, K>,
    key: BlobKey,
    content_type: String,
    pending: Vec<u8>,
    chunks: u32,
    size: u64,
    etag: Etag,
    old_chunks: u32,
}

impl<K: KeyValue + ?Sized> KvBlobWriter<'_, K> {
    fn set_chunk(&mut self, chunk: &[u8]) -> Result<(), PortError> {
        self.store
            .kv
            .set(&keys::blob_chunk(&self.key, self.chunks), chunk)?;
        self.chunks = self
            .chunks
            .checked_add(1)
            .ok_or_else(|| PortError::new(format!("blob {}: too large", self.key)))?;
        Ok(())
    }
}

impl<K: KeyValue + ?Sized> BlobWriter for KvBlobWriter<'_, K> {
    fn write(&mut self, mut bytes: &[u8]) -> Result<(), PortError> {
        self.etag.update(bytes);
        self.size += bytes.len() as u64;
        if !self.pending.is_empty() {
            let n = (CHUNK_BYTES - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.pending.len() < CHUNK_BYTES {
                return Ok(());
            }
            let full = std::mem::take(&mut self.pending);
            self.set_chunk(&full)?;
        }
        while bytes.len() >= CHUNK_BYTES {
            let (chunk, rest) = bytes.split_at(CHUNK_BYTES);
            self.set_chunk(chunk)?;
            bytes = rest;
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<BlobMeta, PortError> {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            if let Err(e) = self.set_chunk(&last) {
                return Err(undone(e, self.abort()));
            }
        }
        let meta = BlobMeta {
            size: self.size,
            content_type: std::mem::take(&mut self.content_type),
            etag: std::mem::take(&mut self.etag).finish(),
        };
        let manifest = Manifest {
            meta: meta.clone(),
            chunks: self.chunks,
            segments: None,
        };
        let raw = serde_json::to_vec(&manifest).map_err(PortError::new)?;
        if let Err(e) = self.store.kv.set(&keys::blob_manifest(&self.key), &raw) {
            return Err(undone(e, self.abort()));
        }
        (self.chunks..self.old_chunks)
            .try_for_each(|n| self.store.kv.delete(&keys::blob_chunk(&self.key, n)))?;
        Ok(meta)
    }

    fn abort(self: Box<Self>) -> Result<(), PortError> {
        self.store.delete_chunks(&self.key, self.chunks)
    }
}

/// The segments of a plain blob's chunks that hold `range` of it.
fn shared(source: &BlobKey, range: std::ops::Range<usize>) -> Result<Vec<Segment>, PortError> {
    let mut segments = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let n = at / CHUNK_BYTES;
        let end = ((n + 1) * CHUNK_BYTES).min(range.end);
        segments.push(Segment {
            of: Some(source.as_str().to_owned()),
            chunk: to_u32(n)?,
            start: to_u32(at - n * CHUNK_BYTES)?,
            end: to_u32(end - n * CHUNK_BYTES)?,
        });
        at = end;
    }
    Ok(segments)
}

fn to_u32(n: usize) -> Result<u32, PortError> {
    u32::try_from(n).map_err(|_| PortError::new("a blob too large"))
}

/// `e`, with a failed clean-up after it said too (the orphaned chunks are
/// then unreachable without a manifest).
fn undone(e: PortError, cleanup: Result<(), PortError>) -> PortError {
    match cleanup {
        Ok(()) => e,
        Err(cleanup) => PortError::new(format!("{e}; cleaning up also failed: {cleanup}")),
    }
}

impl<K: KeyValue + ?Sized> BlobStore for KvBlobStore<'_, K> {
    fn create<'a>(
        &'a self,
        key: &BlobKey,
        content_type: &str,
    ) -> Result<Box<dyn BlobWriter + 'a>, PortError> {
        // Only to delete chunks an earlier, larger blob leaves past the new
        // end. If it cannot be read (or is damaged) the put is still correct;
        // at worst those unreachable chunks stay behind.
        let old_chunks = self.manifest(key).ok().flatten().map_or(0, |m| m.chunks);
        Ok(Box::new(KvBlobWriter {
            store: self,
            key: key.clone(),
            content_type: content_type.to_owned(),
            pending: Vec::new(),
            chunks: 0,
            size: 0,
            etag: Etag::default(),
            old_chunks,
        }))
    }

    fn put(&self, key: &BlobKey, content_type: &str, bytes: &[u8]) -> Result<BlobMeta, PortError> {
        let mut writer = self.create(key, content_type)?;
        if let Err(e) = writer.write(bytes) {
            return Err(undone(e, writer.abort()));
        }
        writer.finish()
    }

    fn compose(
        &self,
        key: &BlobKey,
        content_type: &str,
        source: &BlobKey,
        source_bytes: &[u8],
        pieces: &[Piece],
    ) -> Result<BlobMeta, PortError> {
        // Only ranges of a plain blob holding exactly those bytes are
        // referred to; anything else is written out.
        let plain = |m: &Manifest| m.segments.is_none() && m.meta.size == source_bytes.len() as u64;
        let shares = pieces.iter().any(|p| matches!(p, Piece::Kept(_)));
        if !shares || !self.manifest(source)?.is_some_and(|m| plain(&m)) {
            return crate::ports::write_out(self, key, content_type, source_bytes, pieces);
        }
        let old_chunks = self.manifest(key).ok().flatten().map_or(0, |m| m.chunks);
        let (mut segments, mut own, mut tag, mut size) = (Vec::new(), 0_u32, Etag::default(), 0);
        let mut write = || -> Result<(), PortError> {
            for piece in pieces {
                let bytes = piece.bytes(source_bytes);
                tag.update(bytes);
                size += bytes.len() as u64;
                match piece {
                    Piece::Kept(range) => segments.extend(shared(source, range.clone())?),
                    Piece::Own(bytes) => {
                        for part in bytes.chunks(CHUNK_BYTES) {
                            self.kv.set(&keys::blob_chunk(key, own), part)?;
                            segments.push(Segment {
                                of: None,
                                chunk: own,
                                start: 0,
                                end: to_u32(part.len())?,
                            });
                            own += 1;
                        }
                    }
                }
            }
            Ok(())
        };
        let written = write();
        let meta = BlobMeta {
            size,
            content_type: content_type.to_owned(),
            etag: tag.finish(),
        };
        let manifest = Manifest {
            meta: meta.clone(),
            chunks: own,
            segments: Some(segments),
        };
        let committed = written.and_then(|()| {
            let raw = serde_json::to_vec(&manifest).map_err(PortError::new)?;
            self.kv.set(&keys::blob_manifest(key), &raw)
        });
        if let Err(e) = committed {
            return Err(undone(e, self.delete_chunks(key, own)));
        }
        (own..old_chunks).try_for_each(|n| self.kv.delete(&keys::blob_chunk(key, n)))?;
        Ok(meta)
    }

    fn open(&self, key: &BlobKey) -> Result<Option<BlobReader<'_>>, PortError> {
        let Some(Manifest {
            meta,
            chunks,
            segments,
        }) = self.manifest(key)?
        else {
            return Ok(None);
        };
        let key = key.clone();
        if let Some(segments) = segments {
            let pieces = segments.into_iter().map(move |s| {
                let of = s.of.map_or_else(|| key.clone(), BlobKey::stored);
                let chunk = self.kv.get(&keys::blob_chunk(&of, s.chunk))?;
                let range = usize::try_from(s.start).unwrap_or(usize::MAX)
                    ..usize::try_from(s.end).unwrap_or(usize::MAX);
                match chunk {
                    Some(chunk) if range == (0..chunk.len()) => Ok(chunk),
                    Some(chunk) if range.start <= range.end && range.end <= chunk.len() => {
                        Ok(chunk[range].to_vec())
                    }
                    _ => Err(PortError::new(format!(
                        "blob {key}: chunk {} of {of} is missing or short",
                        s.chunk
                    ))),
                }
            });
            return Ok(Some(BlobReader::new(meta, pieces)));
        }
        let pieces = (0..chunks).map(move |n| {
            self.kv.get(&keys::blob_chunk(&key, n))?.ok_or_else(|| {
                PortError::new(format!("blob {key}: chunk {n} of {chunks} is missing"))
            })
        });
        Ok(Some(BlobReader::new(meta, pieces)))
    }

    fn delete(&self, key: &BlobKey) -> Result<(), PortError> {
        let Some(manifest) = self.manifest(key)? else {
            return Ok(());
        };
        self.kv.delete(&keys::blob_manifest(key))?;
        self.delete_chunks(key, manifest.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::JobId;
    use crate::testing::MemoryKv;

    fn key() -> BlobKey {
        BlobKey::original(JobId::new_random())
    }

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_blob_larger_than_a_chunk_is_split_and_read_back_whole() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let key = key();
        let data = bytes(2 * CHUNK_BYTES + 17);
        let meta = store.put(&key, "image/png", &data).expect("put");
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(kv.len(), 4, "three chunks and a manifest");
        assert!(kv.values().all(|v| v.len() <= CHUNK_BYTES));
        let blob = store.get(&key).expect("get").expect("exists");
        assert_eq!(blob.bytes, data);
        assert_eq!(blob.meta.content_type, "image/png");
        assert_eq!(blob.meta.etag, etag(&data));
    }

    #[test]
    fn an_empty_blob_has_no_chunks_and_reads_back_empty() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let key = key();
        store.put(&key, "image/png", b"").expect("put");
        assert_eq!(store.get(&key).expect("get").expect("exists").bytes, b"");
    }

    #[test]
    fn overwriting_with_a_smaller_blob_leaves_no_stale_chunks() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let key = key();
        store
            .put(&key, "a/b", &bytes(3 * CHUNK_BYTES))
            .expect("put big");
        store.put(&key, "a/b", &bytes(10)).expect("put small");
        assert_eq!(kv.len(), 2);
        assert_eq!(
            store.get(&key).expect("get").expect("exists").bytes,
            bytes(10)
        );
    }

    #[test]
    fn delete_removes_every_chunk_and_the_manifest() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let key = key();
        store
            .put(&key, "a/b", &bytes(CHUNK_BYTES + 1))
            .expect("put");
        store.delete(&key).expect("delete");
        assert_eq!(kv.len(), 0);
        assert_eq!(store.get(&key).expect("get"), None);
        store
            .delete(&key)
            .expect("deleting a missing blob succeeds");
    }

    #[test]
    fn a_missing_chunk_is_an_error_not_a_short_read() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let key = key();
        store
            .put(&key, "a/b", &bytes(CHUNK_BYTES + 1))
            .expect("put");
        kv.delete(&keys::blob_chunk(&key, 1)).expect("delete chunk");
        let err = store.get(&key).expect_err("damaged");
        assert!(err.to_string().contains("chunk 1 of 2 is missing"), "{err}");
    }

    #[test]
    fn a_failed_put_leaves_nothing_readable_behind() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let key = key();
        kv.fail_sets_after(1);
        store
            .put(&key, "a/b", &bytes(2 * CHUNK_BYTES))
            .expect_err("store fails");
        kv.heal();
        assert_eq!(store.get(&key).expect("get"), None);
        assert_eq!(kv.len(), 0, "the chunk that was written is removed again");
    }

    #[test]
    fn an_opened_blob_is_read_one_chunk_at_a_time() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let key = key();
        let original = bytes(2 * CHUNK_BYTES + 5);
        store.put(&key, "a/b", &original).expect("put");
        let reader = store.open(&key).expect("open").expect("exists");
        assert_eq!(reader.meta.size, original.len() as u64);
        let pieces: Vec<Vec<u8>> = reader.map(|p| p.expect("piece")).collect();
        assert_eq!(
            pieces.iter().map(Vec::len).collect::<Vec<_>>(),
            [CHUNK_BYTES, CHUNK_BYTES, 5]
        );
        assert_eq!(pieces.concat(), original);
    }

    #[test]
    fn a_chunk_lost_after_opening_ends_the_read_with_an_error() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let key = key();
        store
            .put(&key, "a/b", &bytes(CHUNK_BYTES + 1))
            .expect("put");
        let mut reader = store.open(&key).expect("open").expect("exists");
        assert!(reader.next().expect("first piece").is_ok());
        kv.delete(&keys::blob_chunk(&key, 1)).expect("delete chunk");
        let err = reader.next().expect("an error").expect_err("missing chunk");
        assert!(err.to_string().contains("chunk 1 of 2 is missing"), "{err}");
        assert!(reader.next().is_none(), "nothing after the error");
    }

    #[test]
    fn a_reader_reports_contents_shorter_or_longer_than_the_recorded_size() {
        let meta = |size| BlobMeta {
            size,
            content_type: "a/b".to_owned(),
            etag: "\"x\"".to_owned(),
        };
        let pieces = || [Ok(vec![1, 2]), Ok(vec![3])].into_iter();
        let short = BlobReader::new(meta(4), pieces()).read_all();
        assert!(
            short
                .expect_err("short")
                .to_string()
                .contains("ends after 3 of"),
            "short"
        );
        let long = BlobReader::new(meta(2), pieces()).read_all();
        assert!(
            long.expect_err("long").to_string().contains("longer than"),
            "long"
        );
        let exact = BlobReader::new(meta(3), pieces())
            .read_all()
            .expect("exact");
        assert_eq!(exact.bytes, [1, 2, 3]);
    }

    #[test]
    fn a_blob_written_in_pieces_is_kept_a_chunk_at_a_time_and_reads_back_whole() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let key = key();
        let data = bytes(3 * CHUNK_BYTES + 11);
        let mut writer = store.create(&key, "image/png").expect("create");
        for (n, piece) in data.chunks(CHUNK_BYTES / 3 + 7).enumerate() {
            writer.write(piece).expect("write");
            assert!(
                kv.len() <= (n + 1) * (CHUNK_BYTES / 3 + 7) / CHUNK_BYTES,
                "only full chunks are written, no manifest yet"
            );
        }
        assert_eq!(
            store.get(&key).expect("get"),
            None,
            "unreadable until finished"
        );
        let meta = writer.finish().expect("finish");
        assert_eq!(meta.etag, etag(&data));
        assert_eq!(kv.len(), 5, "four chunks and a manifest");
        assert_eq!(store.get(&key).expect("get").expect("exists").bytes, data);
    }

    #[test]
    fn an_aborted_or_failed_writer_leaves_nothing_behind() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let key = key();
        let mut writer = store.create(&key, "a/b").expect("create");
        writer.write(&bytes(2 * CHUNK_BYTES + 1)).expect("write");
        assert_eq!(kv.len(), 2);
        writer.abort().expect("abort");
        assert_eq!(kv.len(), 0);
        let mut writer = store.create(&key, "a/b").expect("create");
        writer.write(&bytes(CHUNK_BYTES + 1)).expect("write");
        kv.fail_sets_after(0);
        writer.finish().expect_err("the last chunk is refused");
        kv.heal();
        assert_eq!(kv.len(), 0, "the first chunk is removed again");
        assert_eq!(store.get(&key).expect("get"), None);
    }

    #[test]
    fn a_composed_blob_refers_to_its_sources_chunks_and_stores_only_its_own_bytes() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let source = key();
        let original = bytes(3 * CHUNK_BYTES + 500);
        store.put(&source, "image/png", &original).expect("put");
        let stored_before: usize = kv.values().map(|v| v.len()).sum();
        // Across chunk boundaries, with a gap and bytes of its own.
        let pieces = [
            Piece::Own(b"head".to_vec()),
            Piece::Kept(10..CHUNK_BYTES + 20),
            Piece::Kept(CHUNK_BYTES + 30..3 * CHUNK_BYTES + 500),
            Piece::Own(vec![0x3B]),
        ];
        let expected: Vec<u8> = pieces
            .iter()
            .flat_map(|p| p.bytes(&original))
            .copied()
            .collect();
        let copy = key();
        let meta = store
            .compose(&copy, "image/png", &source, &original, &pieces)
            .expect("composed");
        assert_eq!(meta.size, expected.len() as u64);
        assert_eq!(meta.etag, etag(&expected));
        let stored_after: usize = kv.values().map(|v| v.len()).sum();
        assert!(
            stored_after - stored_before < 2_000,
            "{} bytes stored for the copy",
            stored_after - stored_before
        );
        let read = store.get(&copy).expect("get").expect("exists");
        assert_eq!(read.bytes, expected);
        // The copy goes first, and leaves its source whole.
        store.delete(&copy).expect("delete");
        assert_eq!(
            store.get(&source).expect("get").expect("exists").bytes,
            original
        );
        store.delete(&source).expect("delete");
        assert_eq!(kv.len(), 0, "{:?}", kv.keys());
    }

    #[test]
    fn a_copy_of_a_source_that_is_not_plain_or_not_those_bytes_is_written_out() {
        let kv = MemoryKv::default();
        let store = KvBlobStore::new(&kv);
        let source = key();
        let original = bytes(CHUNK_BYTES + 10);
        store.put(&source, "a/b", &original).expect("put");
        let pieces = [Piece::Kept(0..5), Piece::Own(vec![1, 2])];
        // Other bytes than the source's: written out.
        let other = bytes(CHUNK_BYTES + 11);
        let copy = key();
        store
            .compose(&copy, "a/b", &source, &other, &pieces)
            .expect("composed");
        store.delete(&source).expect("delete");
        let read = store.get(&copy).expect("get").expect("exists");
        assert_eq!(read.bytes, [&other[..5], &[1, 2]].concat());
        // A composed blob as a source: written out too.
        let source = key();
        store.put(&source, "a/b", &original).expect("put");
        let composed = key();
        store
            .compose(&composed, "a/b", &source, &original, &pieces)
            .expect("composed");
        let composed_bytes = store.get(&composed).expect("get").expect("exists").bytes;
        let second = key();
        store
            .compose(
                &second,
                "a/b",
                &composed,
                &composed_bytes,
                &[Piece::Kept(0..7), Piece::Own(vec![9])],
            )
            .expect("composed");
        store.delete(&composed).expect("delete");
        store.delete(&source).expect("delete");
        assert_eq!(
            store.get(&second).expect("get").expect("exists").bytes,
            [&original[..5], &[1, 2, 9]].concat()
        );
    }
}
