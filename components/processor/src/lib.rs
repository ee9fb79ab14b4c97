//! The Redis-triggered processor. A message on the queue channel is only a
//! doorbell: the processor claims due jobs from the durable queue, one at a
//! time under a lease, and works them until none is due or its time budget
//! is spent. Nothing in the message is trusted or even needed.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use std::time::Duration;

use anyhow::Context as _;
use darkroom_core::service::{self, Ports, ProcessOutcome, Worker};
use darkroom_spin::clock::{SystemClock, SystemRandom};
use darkroom_spin::config;
use darkroom_spin::queue::RedisQueue;
use darkroom_spin::store::SpinKv;
use spin_sdk::redis_component;

/// How long one invocation keeps working: under the 30 s that hosted
/// platforms allow a handler.
const BUDGET: Duration = Duration::from_secs(25);

#[redis_component]
fn work_queue(_doorbell: bytes::Bytes) -> anyhow::Result<()> {
    let limits = config::limits().context("reading limits")?;
    let policy = config::retry_policy().context("reading the retry policy")?;
    let queue_config = config::queue().context("reading the queue settings")?;
    let kv = SpinKv::open_default()?;
    let blobs = darkroom_spin::store::blob_store(&kv).context("opening the blob store")?;
    let queue = RedisQueue::connect(&queue_config.redis_url, &queue_config.channel)?;
    let worker = Worker {
        ports: Ports {
            kv: &kv,
            blobs: blobs.as_ref(),
            clock: &SystemClock,
        },
        queue: &queue,
        random: &SystemRandom,
        policy,
        limits,
    };
    service::drain(worker, BUDGET, |outcome| match outcome {
        Ok(ProcessOutcome::Completed(job)) => eprintln!(
            "darkroom: job {} completed (attempt {})",
            job.id, job.attempts
        ),
        Ok(ProcessOutcome::Failed(job)) => {
            eprintln!("darkroom: job {} failed: {:?}", job.id, job.state)
        }
        Ok(ProcessOutcome::Retrying(job)) => {
            eprintln!("darkroom: job {} will be retried: {:?}", job.id, job.state)
        }
        Ok(ProcessOutcome::Skipped { id, state }) => {
            eprintln!("darkroom: job {id} is {state}; nothing to do")
        }
        Ok(ProcessOutcome::Unknown(id)) => {
            eprintln!("darkroom: job {id} does not exist; dropped from the queue")
        }
        Err(e) => {
            eprintln!("darkroom: a claimed job could not be worked (its lease will lapse): {e}")
        }
    })
    .context("working the queue")?;
    Ok(())
}
