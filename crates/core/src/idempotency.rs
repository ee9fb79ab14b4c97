//! `Idempotency-Key` on uploads (draft-ietf-httpapi-idempotency-key-header):
//! the key as the draft writes it (a Structured Field string, `"…"`), the
//! payload's fingerprint, and the record kept for a key while it lives.
//!
//! The record lives in an [`crate::ports::OnceStore`] (Redis, with a TTL)
//! because two requests racing with one key must not both win, and the
//! key-value store has no atomic insert on every host.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::id::JobId;

/// The longest key accepted, in characters between the quotes.
pub const MAX_KEY_CHARS: usize = 255;

/// A well-formed `Idempotency-Key` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why a header value is not a key.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "an Idempotency-Key is a quoted string of 1 to {MAX_KEY_CHARS} printable ASCII characters, e.g. \"8e03978e-40d5-43e8-bc93-6894a57f9324\""
)]
pub struct MalformedKey;

impl IdempotencyKey {
    /// Parses a header value: an sf-string (RFC 8941 §3.3.3), `\"` and `\\`
    /// escapes allowed, surrounding spaces ignored.
    ///
    /// # Errors
    /// [`MalformedKey`].
    pub fn parse(header: &str) -> Result<Self, MalformedKey> {
        let inner = header
            .trim_matches(' ')
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .ok_or(MalformedKey)?;
        let mut key = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped @ ('"' | '\\')) => key.push(escaped),
                    _ => return Err(MalformedKey),
                },
                '"' => return Err(MalformedKey),
                ' '..='~' => key.push(c),
                _ => return Err(MalformedKey),
            }
        }
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
            return Err(MalformedKey);
        }
        Ok(Self(key))
    }

    /// A fixed-length name for the key's record (the key itself may hold
    /// any printable character).
    pub fn record_name(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The key as the client sent it, quoted again for a response header.
    pub fn header_value(&self) -> String {
        format!("\"{}\"", self.0.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The SHA-256 of what a request asked for, hex: the image's bytes (for a
/// multipart upload the file's, since clients draw a new boundary for every
/// request, retries included).
pub fn fingerprint(payload: &[u8]) -> String {
    hex::encode(Sha256::digest(payload))
}

/// The [`fingerprint`] of a payload with its recipients (`callback_url`,
/// `notify_email`): the payload's own fingerprint when there are none, so
/// keys recorded before recipients existed still match.
pub fn fingerprint_with(payload: &[u8], recipients: &crate::notify::Recipients) -> String {
    with_recipients(fingerprint(payload), recipients)
}

/// [`fingerprint_with`] from the payload's [`fingerprint`], computed as it
/// arrived.
pub fn with_recipients(plain: String, recipients: &crate::notify::Recipients) -> String {
    if recipients.is_empty() {
        return plain;
    }
    let mut hasher = Sha256::new();
    hasher.update(plain.as_bytes());
    hasher.update(serde_json::to_vec(recipients).unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// What is kept under a key while it lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The payload's [`fingerprint`].
    pub fingerprint: String,
    /// The answer given, once the first request has finished; `None` while
    /// it is still in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<FirstAnswer>,
}

/// The `202` the first request with a key got, to give again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstAnswer {
    /// The job it created.
    pub job: JobId,
    /// The `Retry-After` it carried.
    pub retry_after_secs: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_a_quoted_printable_string_with_escapes() {
        let key = IdempotencyKey::parse("\"8e03978e-40d5-43e8-bc93-6894a57f9324\"").expect("valid");
        assert_eq!(
            key.header_value(),
            "\"8e03978e-40d5-43e8-bc93-6894a57f9324\""
        );
        let escaped = IdempotencyKey::parse(r#" "a\"b\\c" "#).expect("escapes");
        assert_eq!(escaped.header_value(), r#""a\"b\\c""#);
        for bad in [
            "abc",
            "\"\"",
            "\"a",
            "\"a\"b\"",
            "\"caf\u{e9}\"",
            "\"a\\n\"",
            "\"tab\there\"",
        ] {
            assert_eq!(IdempotencyKey::parse(bad), Err(MalformedKey), "{bad:?}");
        }
        let long = format!("\"{}\"", "k".repeat(MAX_KEY_CHARS + 1));
        assert_eq!(IdempotencyKey::parse(&long), Err(MalformedKey));
    }

    #[test]
    fn equal_keys_share_a_record_and_different_payloads_differ_in_fingerprint() {
        let a = IdempotencyKey::parse("\"k-1\"").expect("valid");
        let b = IdempotencyKey::parse("\"k-1\"").expect("valid");
        assert_eq!(a.record_name(), b.record_name());
        assert_eq!(a.record_name().len(), 64);
        assert_ne!(fingerprint(b"one"), fingerprint(b"two"));
    }
}
