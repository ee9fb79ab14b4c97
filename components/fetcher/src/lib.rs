//! The Redis-triggered fetcher, for jobs ingested by URL. A message on the
//! fetch channel is only a doorbell: the fetcher claims due jobs from its
//! own durable queue, fetches each source (every redirect re-checked, the
//! body abandoned past `max_upload_bytes`, the bytes sniffed), stores it as
//! the original and hands the job on to the processor's queue.
//!
//! Why a component of its own rather than a step of the processor: it is
//! the only component whose `allowed_outbound_hosts` reach beyond Redis and
//! the object store (`ingest_outbound`, `https://*:443` by default), so a
//! flaw in an image decoder, which runs in the processor, can never be
//! turned into requests to the internet or the cloud's metadata service;
//! and a slow source (up to `fetch_timeout_seconds`) never holds up the
//! processing of uploads, since Spin's Redis trigger handles one message
//! at a time per process.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use std::time::Duration;

use spin_sdk::redis_component;

/// How long one invocation keeps working: under the 30 s that hosted
/// platforms allow a handler.
const BUDGET: Duration = Duration::from_secs(25);

#[redis_component]
fn fetch_sources(_doorbell: bytes::Bytes) -> anyhow::Result<()> {
    darkroom_spin::work::drain_fetches(BUDGET)?;
    Ok(())
}
