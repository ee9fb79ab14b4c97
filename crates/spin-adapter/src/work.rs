//! Working the durable queues, for the components that drive work: the
//! Redis-triggered `processor`, `fetcher` and `notifier` (`spin.toml`), and the
//! `worker` and `fetch-worker` behind private routes that the HTTP-only
//! profile (`spin.http-only.toml`) reaches by service chaining after an
//! upload or an overdue status read has been answered. They build the same
//! ports, drain within a budget and log each outcome the same way; only the
//! trigger and the queue differ.

use std::time::Duration;

use darkroom_core::pipeline::Optimize;
use darkroom_core::ports::PortError;
use darkroom_core::service::{self, Fetch, Ports, ProcessError, ProcessOutcome, Worker};
use thiserror::Error;

use crate::clock::{SystemClock, SystemRandom};
use crate::config::{self, ConfigError};
use crate::queue::AllQueues;
use crate::store::SpinKv;

/// Why a drain could not start or was cut short.
#[derive(Debug, Error)]
pub enum WorkError {
    /// A setting is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key-value store or the blob store cannot be opened.
    #[error("storage unavailable: {0}")]
    Storage(PortError),
    /// The queue cannot be reached (or storage refused several jobs in a row).
    #[error("the queue cannot be worked: {0}")]
    Queue(PortError),
}

impl From<WorkError> for crate::problem::ApiError {
    fn from(e: WorkError) -> Self {
        match e {
            WorkError::Config(e) => Self::Config(e),
            WorkError::Storage(e) => Self::StorageUnavailable(e),
            WorkError::Queue(e) => Self::QueueUnavailable(e),
        }
    }
}

/// Drains due jobs until none is due or `budget` is spent, logging every
/// outcome to stderr; returns how many jobs were handled.
///
/// # Errors
/// [`WorkError`]; an unreachable queue ends the drain at once, never a loop.
pub fn drain_queue(budget: Duration) -> Result<usize, WorkError> {
    let limits = config::limits()?;
    let policy = config::retry_policy()?;
    let queue_config = config::queue()?;
    let subscriptions = config::subscriptions()?;
    let kv = SpinKv::open_default().map_err(WorkError::Storage)?;
    let blobs = crate::store::blob_store_for(&kv, config::blob_store()?)
        .map_err(|e| WorkError::Storage(PortError::new(e)))?;
    let queues = AllQueues::connect(&queue_config).map_err(WorkError::Queue)?;
    let worker = Worker {
        ports: Ports {
            kv: &kv,
            blobs: blobs.as_ref(),
            clock: &SystemClock,
        },
        queue: &queues.jobs,
        random: &SystemRandom,
        policy,
        limits,
        optimize: config::optimize()?,
        notify: queues.notifying(&subscriptions).notify,
    };
    service::drain(worker, budget, log_outcome).map_err(WorkError::Queue)
}

/// Drains the fetcher's queue: fetches each due source, stores it as the
/// original and hands the job on to the processor's queue (which rings its
/// doorbell). Returns how many jobs were handled.
///
/// # Errors
/// As for [`drain_queue`].
pub fn drain_fetches(budget: Duration) -> Result<usize, WorkError> {
    let limits = config::limits()?;
    let policy = config::retry_policy()?;
    let rules = config::ingest_rules()?;
    let timeout = config::fetch_timeout()?;
    let queue_config = config::queue()?;
    let subscriptions = config::subscriptions()?;
    let kv = SpinKv::open_default().map_err(WorkError::Storage)?;
    let blobs = crate::store::blob_store_for(&kv, config::blob_store()?)
        .map_err(|e| WorkError::Storage(PortError::new(e)))?;
    let queues = AllQueues::connect(&queue_config).map_err(WorkError::Queue)?;
    let worker = Worker {
        ports: Ports {
            kv: &kv,
            blobs: blobs.as_ref(),
            clock: &SystemClock,
        },
        queue: &queues.fetches,
        random: &SystemRandom,
        policy,
        limits,
        // Fetching stores the original; the processor makes the outputs.
        optimize: Optimize::Lossless,
        notify: queues.notifying(&subscriptions).notify,
    };
    let fetch = Fetch {
        http: &crate::fetch::WasiSourceHttp,
        rules: &rules,
        timeout,
        next: &queues.jobs,
    };
    service::drain_fetches(worker, fetch, budget, log_outcome).map_err(WorkError::Queue)
}

/// Drains the notifier's queue: sends every due webhook and e-mail of each
/// claimed job, recording each attempt before it is made. Returns how many
/// jobs were handled.
///
/// # Errors
/// As for [`drain_queue`].
pub fn drain_notifications(budget: Duration) -> Result<usize, WorkError> {
    let policy = config::notify_policy()?;
    let subscriptions = config::subscriptions()?;
    let secrets = config::webhook_secrets()?;
    let email = config::email_api()?;
    let messages = crate::messages::Messages {
        base_url: config::public_base_url()?,
        from: config::email_from()?,
    };
    let queue_config = config::queue()?;
    let kv = SpinKv::open_default().map_err(WorkError::Storage)?;
    // Notices need no blobs: the job record has everything they say.
    let blobs = crate::store::blob_store_for(&kv, config::BlobStoreConfig::KeyValue)
        .map_err(|e| WorkError::Storage(PortError::new(e)))?;
    let queues = AllQueues::connect(&queue_config).map_err(WorkError::Queue)?;
    let notifier = darkroom_core::notify::Notifier {
        ports: Ports {
            kv: &kv,
            blobs: blobs.as_ref(),
            clock: &SystemClock,
        },
        queue: &queues.notices,
        random: &SystemRandom,
        policy,
        subscriptions: &subscriptions,
        secrets: &secrets,
        email: email.as_ref(),
        http: &crate::fetch::WasiSourceHttp,
        render: &messages,
    };
    darkroom_core::notify::drain_notices(notifier, budget, |outcome| match outcome {
        Ok(darkroom_core::notify::NotifyOutcome::Worked {
            id,
            delivered,
            retrying,
            stopped,
        }) => eprintln!(
            "darkroom: job {id}: {delivered} notices delivered, {retrying} to retry, {stopped} stopped"
        ),
        Ok(darkroom_core::notify::NotifyOutcome::Unknown(id)) => {
            eprintln!("darkroom: job {id} is gone; its notices dropped");
        }
        Err(e) => eprintln!("darkroom: notices could not be worked (the lease will lapse): {e}"),
    })
    .map_err(WorkError::Queue)
}

fn log_outcome(outcome: Result<ProcessOutcome, ProcessError>) {
    match outcome {
        Ok(ProcessOutcome::Completed(job)) => eprintln!(
            "darkroom: job {} completed (attempt {})",
            job.id, job.attempts
        ),
        Ok(ProcessOutcome::Failed(job)) => {
            eprintln!("darkroom: job {} failed: {:?}", job.id, job.state);
        }
        Ok(ProcessOutcome::Retrying(job)) => {
            eprintln!("darkroom: job {} will be retried: {:?}", job.id, job.state);
        }
        Ok(ProcessOutcome::Skipped { id, state }) => {
            eprintln!("darkroom: job {id} is {state}; nothing to do");
        }
        Ok(ProcessOutcome::Unknown(id)) => {
            eprintln!("darkroom: job {id} does not exist; dropped from the queue");
        }
        Ok(ProcessOutcome::Cancelled(job)) => {
            eprintln!("darkroom: job {} cancelled; its outputs removed", job.id);
        }
        Ok(ProcessOutcome::Fetched(job)) => {
            eprintln!(
                "darkroom: job {} fetched its original; queued for processing",
                job.id
            );
        }
        Ok(ProcessOutcome::Deleted(id)) => {
            eprintln!("darkroom: job {id} deleted; everything it owned removed");
        }
        Err(e) => {
            eprintln!("darkroom: a claimed job could not be worked (its lease will lapse): {e}");
        }
    }
}

/// Asks the worker at `url` (`worker_url`, a `*.spin.internal` address in
/// the HTTP-only profile) to drain the queue, and waits for it. Called after
/// the caller's own response is complete, so the client never waits for
/// it; a failure is only logged: the job stays queued for the next kick, a
/// status read or `/internal/sweep`.
pub async fn kick_worker(url: &str) {
    let request = spin_sdk::http::Request::post(url, Vec::<u8>::new()).build();
    match spin_sdk::http::send::<_, spin_sdk::http::Response>(request).await {
        Ok(response) if *response.status() < 300 => {}
        Ok(response) => eprintln!(
            "darkroom: the worker at {url} answered {}",
            response.status()
        ),
        Err(e) => eprintln!("darkroom: the worker at {url} could not be reached: {e}"),
    }
}
