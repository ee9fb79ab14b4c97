//! The Redis-triggered processor: each message on the queue channel names
//! one job, which is taken, processed and recorded as completed or failed.
//! It has no HTTP route; nothing in a message but the job id is trusted.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use anyhow::Context as _;
use darkroom_core::blob::KvBlobStore;
use darkroom_core::service::{self, Ports, ProcessOutcome};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::config;
use darkroom_spin::store::SpinKv;
use spin_sdk::redis_component;

#[redis_component]
fn process_job(message: bytes::Bytes) -> anyhow::Result<()> {
    let limits = config::limits().context("reading configuration")?;
    let kv = SpinKv::open_default()?;
    let blobs = KvBlobStore::new(&kv);
    let ports = Ports {
        kv: &kv,
        blobs: &blobs,
        clock: &SystemClock,
    };
    match service::process_message(ports, &message, limits)? {
        ProcessOutcome::Completed(job) => eprintln!("darkroom: job {} completed", job.id),
        ProcessOutcome::Failed(job) => {
            eprintln!("darkroom: job {} failed: {:?}", job.id, job.state)
        }
        ProcessOutcome::Skipped { id, state } => {
            eprintln!("darkroom: job {id} is {state}; message ignored")
        }
        ProcessOutcome::Unknown(id) => {
            eprintln!("darkroom: job {id} does not exist; message ignored")
        }
    }
    Ok(())
}
