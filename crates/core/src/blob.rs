//! The zero-setup blob store: blobs kept in the key-value store, split into
//! chunks of at most [`CHUNK_BYTES`] because hosted key-value stores refuse
//! values over 1 MB and one Spin host call cannot move more than 128 MiB.
//!
//! Layout: the chunks go in first, then a manifest; the manifest is the
//! commit point, so a reader never sees a half-written blob, and a missing
//! or inconsistent chunk is reported as an error rather than served.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{self, BlobKey};
use crate::ports::{BlobMeta, BlobReader, BlobStore, KeyValue, PortError};

/// The largest value written to the key-value store.
pub const CHUNK_BYTES: usize = 1_000_000;

#[derive(Serialize, Deserialize)]
struct Manifest {
    #[serde(flatten)]
    meta: BlobMeta,
    chunks: u32,
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
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

impl<K: KeyValue + ?Sized> BlobStore for KvBlobStore<'_, K> {
    fn put(&self, key: &BlobKey, content_type: &str, bytes: &[u8]) -> Result<BlobMeta, PortError> {
        // Only to delete chunks an earlier, larger blob leaves past the new
        // end. If it cannot be read (or is damaged) the put is still correct;
        // at worst those unreachable chunks stay behind.
        let old = self.manifest(key).ok().flatten();
        let chunks = u32::try_from(bytes.len().div_ceil(CHUNK_BYTES))
            .map_err(|_| PortError::new(format!("blob {key}: too large")))?;
        let written = bytes
            .chunks(CHUNK_BYTES)
            .zip(0..)
            .try_for_each(|(chunk, n)| self.kv.set(&keys::blob_chunk(key, n), chunk));
        if let Err(e) = written {
            // Best effort: a failing store may refuse this too, and then the
            // orphaned chunks are unreachable without a manifest.
            if let Err(cleanup) = self.delete_chunks(key, chunks) {
                return Err(PortError::new(format!(
                    "{e}; cleaning up also failed: {cleanup}"
                )));
            }
            return Err(e);
        }
        let meta = BlobMeta {
            size: bytes.len() as u64,
            content_type: content_type.to_owned(),
            etag: etag(bytes),
        };
        let manifest = Manifest {
            meta: meta.clone(),
            chunks,
        };
        let raw = serde_json::to_vec(&manifest).map_err(PortError::new)?;
        self.kv.set(&keys::blob_manifest(key), &raw)?;
        if let Some(old) = old.filter(|old| old.chunks > chunks) {
            (chunks..old.chunks).try_for_each(|n| self.kv.delete(&keys::blob_chunk(key, n)))?;
        }
        Ok(meta)
    }

    fn open(&self, key: &BlobKey) -> Result<Option<BlobReader<'_>>, PortError> {
        let Some(Manifest { meta, chunks }) = self.manifest(key)? else {
            return Ok(None);
        };
        let key = key.clone();
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
}
