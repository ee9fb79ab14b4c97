//! The durable work queue (a port) and the rules around it: retry backoff
//! and the wait estimate behind `Retry-After`.
//!
//! Spin's Redis trigger is pub/sub: at most once, and every subscriber gets
//! every message. So a message is only a doorbell. The work lives in a
//! durable queue from which a processor *claims* a job under a lease; a
//! claim is atomic, so one job has one worker at a time, and a lapsed lease
//! (the worker died) makes the job claimable again.

use std::time::Duration;

use crate::id::JobId;
use crate::ports::PortError;
use crate::time::Timestamp;

/// A durable queue of job ids (Redis sorted sets in `darkroom-spin`).
pub trait Queue {
    /// Adds `id`, due at `at` (now for a new job), and rings the doorbell.
    ///
    /// # Errors
    /// [`PortError`] when the job may not be in the queue.
    fn enqueue(&self, id: JobId, at: Timestamp) -> Result<(), PortError>;

    /// Takes the next job due at `now`, leased until `lease_until`: no other
    /// claim returns it until it is acked, deferred or the lease lapses.
    /// Jobs whose lease lapsed are returned to the queue first.
    ///
    /// # Errors
    /// [`PortError`] when the queue cannot be reached.
    fn claim(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<JobId>, PortError>;

    /// Removes `id` for good (completed, or failed permanently).
    ///
    /// # Errors
    /// [`PortError`]; the job's lease will then lapse and it will be claimed
    /// again, which processing tolerates.
    fn ack(&self, id: JobId) -> Result<(), PortError>;

    /// Releases `id` back to the queue, due at `at` (a retry).
    ///
    /// # Errors
    /// [`PortError`]; as for [`Queue::ack`], the lease lapsing recovers.
    fn defer(&self, id: JobId, at: Timestamp) -> Result<(), PortError>;

    /// Removes `id` and lists it as a dead letter (retries exhausted).
    ///
    /// # Errors
    /// [`PortError`].
    fn dead_letter(&self, id: JobId, now: Timestamp) -> Result<(), PortError>;

    /// The dead letters, oldest first.
    ///
    /// # Errors
    /// [`PortError`].
    fn dead_letters(&self) -> Result<Vec<JobId>, PortError>;

    /// Adds `member` ([`crate::keys::catalogue_member`]) to the catalogue
    /// operators page through.
    ///
    /// # Errors
    /// [`PortError`].
    fn catalogue_add(&self, member: &str) -> Result<(), PortError>;

    /// Removes `member` from the catalogue.
    ///
    /// # Errors
    /// [`PortError`].
    fn catalogue_remove(&self, member: &str) -> Result<(), PortError>;

    /// Up to `n` catalogue members that sort before `before` (all when
    /// `None`), greatest first: newest jobs first.
    ///
    /// # Errors
    /// [`PortError`].
    fn catalogue_before(&self, before: Option<&str>, n: usize) -> Result<Vec<String>, PortError>;

    /// Up to `n` catalogue members that sort after `after` (all when
    /// `None`), least first: oldest jobs first.
    ///
    /// # Errors
    /// [`PortError`].
    fn catalogue_after(&self, after: Option<&str>, n: usize) -> Result<Vec<String>, PortError>;

    /// Takes `id` out of the queue if it is waiting there (not leased):
    /// `Ok(true)` when it was, after which no processor can claim it.
    ///
    /// # Errors
    /// [`PortError`].
    fn withdraw(&self, id: JobId) -> Result<bool, PortError>;

    /// Removes every trace of `id`: waiting, leased or dead-lettered.
    ///
    /// # Errors
    /// [`PortError`].
    fn forget(&self, id: JobId) -> Result<(), PortError>;

    /// Puts `id` back, due at `at`, unless the queue already holds it
    /// (waiting or leased), and rings the doorbell if it did. `Ok(true)` when
    /// it was missing: the queue lost it (a Redis restarted without
    /// persistence, a flushed database) while its record still says it is
    /// waiting or processing.
    ///
    /// # Errors
    /// [`PortError`].
    fn restore(&self, id: JobId, at: Timestamp) -> Result<bool, PortError>;

    /// Rings the doorbell without adding work: processors look for due and
    /// lapsed jobs.
    ///
    /// # Errors
    /// [`PortError`].
    fn ring(&self) -> Result<(), PortError>;

    /// The earliest time a claim may return a job: the first due time of a
    /// waiting job, or the first expiry of a lease (a job whose worker
    /// failed it comes back then); `None` when the queue is empty.
    ///
    /// # Errors
    /// [`PortError`].
    fn next_due(&self) -> Result<Option<Timestamp>, PortError>;

    /// What the wait estimate needs.
    ///
    /// # Errors
    /// [`PortError`].
    fn stats(&self) -> Result<QueueStats, PortError>;

    /// Folds one job's processing time into the running average.
    ///
    /// # Errors
    /// [`PortError`].
    fn record_duration(&self, took: Duration) -> Result<(), PortError>;
}

/// A snapshot of the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueStats {
    /// Jobs waiting or leased.
    pub depth: u64,
    /// Processors listening for the doorbell.
    pub workers: u64,
    /// Recent average processing time of one job, if any job has finished.
    pub average_job: Option<Duration>,
}

/// The assumed processing time before any job has finished.
const DEFAULT_JOB_TIME: Duration = Duration::from_secs(1);

/// Seconds a client should wait before asking again: the work ahead of it
/// spread over the listening processors, at least 1 s and at most 60 s.
pub fn estimate_wait_secs(stats: QueueStats) -> u32 {
    let per_job = stats.average_job.unwrap_or(DEFAULT_JOB_TIME).as_secs_f64();
    let rounds = stats.depth.max(1) as f64 / stats.workers.max(1) as f64;
    let secs = (per_job * rounds.ceil()).ceil();
    secs.clamp(1.0, 60.0) as u32
}

/// How failed attempts are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a job fails for good (1 = no retries).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles for each further one.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
    /// How long a processor may hold a job before others may take it over.
    pub lease: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            lease: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The backoff after attempt number `attempt` failed: exponential with
    /// full jitter (a uniform draw in `[0, min(max, base * 2^(attempt-1))]`),
    /// so that a burst of failures does not retry in lockstep.
    /// `unit` is a random draw in `[0, 1)`.
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << exp.min(31))
            .min(self.max_delay);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Whether another attempt is allowed after `attempts` have started.
    pub const fn may_retry(&self, attempts: u32) -> bool {
        attempts < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_scales_it() {
        let policy = RetryPolicy {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let ceilings: Vec<u64> = (1..=6)
            .map(|a| policy.backoff(a, 0.999_999).as_secs())
            .collect();
        assert_eq!(ceilings, [0, 1, 3, 7, 9, 9]); // just under 1, 2, 4, 8, 10, 10
        assert_eq!(policy.backoff(4, 0.0), Duration::ZERO);
        assert_eq!(policy.backoff(4, 0.5), Duration::from_secs(4));
        assert_eq!(
            policy.backoff(u32::MAX, 0.5),
            Duration::from_secs(5),
            "no overflow"
        );
    }

    #[test]
    fn retries_stop_at_max_attempts() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(policy.may_retry(2));
        assert!(!policy.may_retry(3));
    }

    #[test]
    fn the_wait_estimate_spreads_the_queue_over_the_workers() {
        let stats = |depth, workers, ms| QueueStats {
            depth,
            workers,
            average_job: Some(Duration::from_millis(ms)),
        };
        assert_eq!(estimate_wait_secs(stats(0, 1, 300)), 1, "at least a second");
        assert_eq!(estimate_wait_secs(stats(10, 1, 500)), 5);
        assert_eq!(estimate_wait_secs(stats(10, 2, 500)), 3);
        assert_eq!(
            estimate_wait_secs(stats(10, 0, 500)),
            5,
            "no worker counts as one"
        );
        assert_eq!(
            estimate_wait_secs(stats(10_000, 1, 500)),
            60,
            "at most a minute"
        );
        assert_eq!(estimate_wait_secs(QueueStats::default()), 1);
    }
}
