//! The Redis-triggered processor. A message on the queue channel is only a
//! doorbell: the processor claims due jobs from the durable queue, one at a
//! time under a lease, and works them until none is due or its time budget
//! is spent. Nothing in the message is trusted or even needed.

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
fn work_queue(_doorbell: bytes::Bytes) -> anyhow::Result<()> {
    // The error's own text names the cause (Spin logs only the outermost
    // context of an anyhow chain).
    darkroom_spin::work::drain_queue(BUDGET)?;
    Ok(())
}
