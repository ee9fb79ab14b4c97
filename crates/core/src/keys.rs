//! The key layout, in one place, for both the key-value store and the blob
//! store. Keys are short and ASCII so they fit every host's key limits
//! (Fermyon Cloud: 255 bytes).
//!
//! | key | value |
//! |---|---|
//! | `job/{id}` | the [`crate::Job`] as JSON |
//! | `blob/{blob key}` | a blob's manifest (see [`crate::blob`]) |
//! | `blob/{blob key}#{n}` | the blob's n-th chunk, at most 1 MB |
//! | `request/{id}` | a pending cancel or delete (`cancel`, `delete`) of a job a processor may hold |
//! | `notices/{id}` | the job's webhook and e-mail notices ([`crate::notify::Notices`]), written by the notifier |
//! | `gone/{sha256 of url}` | an app-wide webhook endpoint that answered `410 Gone` |
//!
//! Blob keys: `original/{id}` and `derived/{id}/{variant}.{ext}`.
//!
//! The durable queue lives in Redis under `darkroom:{<channel>}:*` (see
//! [`QueueKeys`]); the braces make one Redis Cluster hash slot of them, which
//! the atomic multi-key scripts need.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::format::ImageFormat;
use crate::id::JobId;
use crate::pipeline::Variant;

/// The key-value key of a job record.
pub fn job(id: JobId) -> String {
    format!("job/{id}")
}

/// The name of an `Idempotency-Key`'s record in the
/// [`crate::ports::OnceStore`] (which adds its own namespace).
pub fn idempotency(key: &crate::idempotency::IdempotencyKey) -> String {
    format!("idempotency/{}", key.record_name())
}

/// Job `id`'s member in the catalogue: its creation time (13 digits of
/// milliseconds, so members sort by age) and its id.
pub fn catalogue_member(id: JobId, created: crate::time::Timestamp) -> String {
    format!("{:013}:{id}", created.unix_millis())
}

/// The creation time (unix ms) and job of a catalogue member, if it is one.
pub fn parse_catalogue_entry(member: &str) -> Option<(u64, JobId)> {
    let id = parse_catalogue_member(member)?;
    let millis = member.split_once(':')?.0.parse().ok()?;
    Some((millis, id))
}

/// The job a catalogue member (or a page token made of one) names; `None`
/// unless it is exactly what [`catalogue_member`] makes.
pub fn parse_catalogue_member(member: &str) -> Option<JobId> {
    let (millis, id) = member.split_once(':')?;
    if millis.len() != 13 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    JobId::parse(id).ok()
}

/// The key-value key of a pending cancel or delete of job `id`.
pub fn request(id: JobId) -> String {
    format!("request/{id}")
}

/// The key-value key of job `id`'s notices.
pub fn notices(id: JobId) -> String {
    format!("notices/{id}")
}

/// The key-value key marking the app-wide webhook endpoint `url` as gone
/// (it answered `410`); hashed, so any URL fits every host's key limit.
pub fn endpoint_gone(url: &str) -> String {
    use sha2::Digest as _;
    format!("gone/{}", hex::encode(sha2::Sha256::digest(url.as_bytes())))
}

/// Where a blob lives in a blob store. Built only from a [`JobId`] and fixed
/// names, so it is always a safe object key and URL path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlobKey(String);

impl BlobKey {
    /// A key as a composed blob's manifest names it (`blob`).
    pub(crate) const fn stored(key: String) -> Self {
        Self(key)
    }

    /// The uploaded original.
    pub fn original(id: JobId) -> Self {
        Self(format!("original/{id}"))
    }

    /// A derivative. The same job and variant always give the same key, so a
    /// re-run overwrites rather than adds.
    pub fn derivative(id: JobId, variant: Variant, format: ImageFormat) -> Self {
        Self(format!(
            "derived/{id}/{}.{}",
            variant.name(),
            format.extension()
        ))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key-value key of a blob's manifest.
pub fn blob_manifest(key: &BlobKey) -> String {
    format!("blob/{key}")
}

/// The key-value key of a blob's `n`-th chunk.
pub fn blob_chunk(key: &BlobKey, n: u32) -> String {
    format!("blob/{key}#{n}")
}

/// The Redis keys of the durable queue announced on `channel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueKeys {
    /// Sorted set: job id → when it is due (ms since the epoch).
    pub ready: String,
    /// Sorted set: job id → when its lease lapses.
    pub leases: String,
    /// Sorted set: job id → when it was dead-lettered.
    pub dead: String,
    /// String: running average processing time in ms.
    pub average_ms: String,
    /// Sorted set, every score 0: [`catalogue_member`]s, for operators'
    /// newest-first listing.
    pub catalogue: String,
}

impl QueueKeys {
    /// The keys for `channel`.
    pub fn for_channel(channel: &str) -> Self {
        let key = |name: &str| format!("darkroom:{{{channel}}}:{name}");
        Self {
            ready: key("ready"),
            leases: key("leases"),
            dead: key("dead"),
            average_ms: key("average-ms"),
            catalogue: key("catalogue"),
        }
    }

    /// Another record kept next to the queue (an idempotency record).
    pub fn namespaced(&self, name: &str) -> String {
        let prefix = self.ready.trim_end_matches("ready");
        format!("{prefix}{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let id = JobId::parse("0b7c7c52-3a7e-4a55-9b7e-2f0d6c1d9f10").expect("id");
        assert_eq!(job(id), "job/0b7c7c52-3a7e-4a55-9b7e-2f0d6c1d9f10");
        let original = BlobKey::original(id);
        assert_eq!(
            original.as_str(),
            "original/0b7c7c52-3a7e-4a55-9b7e-2f0d6c1d9f10"
        );
        let thumb = BlobKey::derivative(id, Variant::Thumbnail, ImageFormat::Jpeg);
        assert_eq!(
            thumb.as_str(),
            "derived/0b7c7c52-3a7e-4a55-9b7e-2f0d6c1d9f10/thumbnail.jpg"
        );
        assert_eq!(
            blob_manifest(&thumb),
            "blob/derived/0b7c7c52-3a7e-4a55-9b7e-2f0d6c1d9f10/thumbnail.jpg"
        );
        assert_eq!(
            blob_chunk(&original, 3),
            "blob/original/0b7c7c52-3a7e-4a55-9b7e-2f0d6c1d9f10#3"
        );
    }

    #[test]
    fn queue_keys_share_one_cluster_hash_slot_per_channel() {
        let keys = QueueKeys::for_channel("darkroom-jobs");
        assert_eq!(keys.ready, "darkroom:{darkroom-jobs}:ready");
        assert_eq!(keys.leases, "darkroom:{darkroom-jobs}:leases");
        assert_eq!(keys.dead, "darkroom:{darkroom-jobs}:dead");
        assert_eq!(keys.average_ms, "darkroom:{darkroom-jobs}:average-ms");
    }

    #[test]
    fn the_longest_key_fits_the_strictest_host_limit() {
        let id = JobId::new_random();
        let key = BlobKey::derivative(id, Variant::Thumbnail, ImageFormat::Webp);
        assert!(blob_chunk(&key, u32::MAX).len() <= 255);
    }
}
