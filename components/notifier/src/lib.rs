//! The Redis-triggered notifier. A message on the notify channel is only a
//! doorbell: the notifier claims due jobs from its own durable queue and
//! sends each job's due notices, signed webhooks (Standard Webhooks) and
//! e-mail through an HTTP e-mail API, recording every attempt before it is
//! made (`darkroom_core::notify`).
//!
//! Why a component of its own: it alone reaches the receivers' hosts
//! (`webhook_allowed_hosts`, `https://*:443` by default) and the e-mail API
//! (`email_outbound`); the processor, which decodes hostile bytes, still
//! reaches only Redis and the object store. And a receiver that takes its
//! full 15 s never holds up processing, since Spin's Redis trigger handles
//! one message at a time per process.

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
fn send_notices(_doorbell: bytes::Bytes) -> anyhow::Result<()> {
    darkroom_spin::work::drain_notifications(BUDGET)?;
    Ok(())
}
