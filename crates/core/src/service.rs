//! The use cases, written against the ports: accept an upload, report a
//! job's status, work the queue, open a job's file, re-drive a dead letter.
//! Components call exactly one of these and map the outcome to their
//! trigger's answer.

use std::time::Duration;

use thiserror::Error;

use crate::format::ImageInfo;
use crate::format::{ImageFormat, InvalidImage, Limits, inspect};
use crate::id::JobId;
use crate::idempotency::{self, FirstAnswer, IdempotencyKey, KeyRecord};
use crate::ingest::{self, IngestRules, RefusedUrl, SourceHttp};
use crate::job::{
    Failure, FailureCode, Job, JobState, Output, Outputs, Source, Stage, TransitionError,
};
use crate::keys::{self, BlobKey};
use crate::notify::{self, Notifying, Recipients};
use crate::pipeline::{self, Optimize, PipelineError, Rendition, Variant};
use crate::ports::{
    BlobMeta, BlobReader, BlobStore, Clock, KeyValue, OnceStore, PortError, Random,
};
use crate::queue::{Queue, RetryPolicy, estimate_wait_secs};
use crate::receive::{Received, Receiving};

/// How long past its due time a queued job may wait before a status read
/// rings the doorbell again (the doorbell may have been missed).
pub const OVERDUE_GRACE: Duration = Duration::from_secs(5);

/// Everything the use cases reach outside the domain through.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    /// Job records.
    pub kv: &'a dyn KeyValue,
    /// Originals and derivatives.
    pub blobs: &'a dyn BlobStore,
    /// The time.
    pub clock: &'a dyn Clock,
}

/// The two durable queues: jobs for the processor, and jobs ingested by
/// URL waiting for the fetcher (which alone may reach the internet).
#[derive(Clone, Copy)]
pub struct Queues<'a> {
    /// The processor's queue (`queue_channel`).
    pub jobs: &'a dyn Queue,
    /// The fetcher's queue (`fetch_channel`).
    pub fetches: &'a dyn Queue,
    /// The notifier's queue and who wants what; `None` where nothing rings it.
    pub notify: Option<Notifying<'a>>,
}

impl<'a> Queues<'a> {
    /// The queue that holds `job` while it waits or is worked.
    pub fn of(&self, job: &Job) -> &'a dyn Queue {
        if job.awaits_source() {
            self.fetches
        } else {
            self.jobs
        }
    }
}

/// How long a finished job is kept (`retention_hours`; `None` = forever).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

impl Retention {
    /// When `job` is removed: its end plus the retention, once it has finished.
    pub fn expires_at(self, job: &Job) -> Option<crate::time::Timestamp> {
        let keep = self.0?;
        job.state.is_finished().then(|| job.updated_at.plus(keep))
    }

    /// Whether `job` is past its retention at `now`.
    pub fn expired(self, job: &Job, now: crate::time::Timestamp) -> bool {
        self.expires_at(job).is_some_and(|at| at <= now)
    }
}

/// Why an upload was not accepted. Nothing is left behind in any case.
#[derive(Debug, Error)]
pub enum AcceptError {
    /// The upload is not an acceptable image.
    #[error(transparent)]
    Invalid(#[from] InvalidImage),
    /// The source URL of an ingest may not be fetched.
    #[error("this URL may not be fetched: {0}")]
    Source(#[from] RefusedUrl),
    /// The original or the job record could not be stored.
    #[error("storage is unavailable: {0}")]
    Storage(PortError),
    /// The job could not be put in the queue.
    #[error("the queue is unavailable: {0}")]
    Queue(PortError),
}

/// An accepted upload.
#[derive(Debug)]
pub struct Accepted {
    /// The queued job.
    pub job: Job,
    /// Seconds until the client should first ask.
    pub retry_after_secs: u32,
}

/// Validates `bytes`, stores the original, records the job as queued and
/// puts it in the queue. Either all of that happens or none of it does.
/// [`Receiving`] with the whole file as one piece, then [`accept_received`].
///
/// # Errors
/// [`AcceptError`]; after an error no job record and no original remain
/// (unless the store also refused the clean-up, which the error then says).
pub fn accept_upload(
    ports: Ports<'_>,
    queue: &dyn Queue,
    bytes: &[u8],
    limits: Limits,
    recipients: &Recipients,
) -> Result<Accepted, AcceptError> {
    let mut receiving = Receiving::new(ports.blobs, limits);
    receiving.push(bytes)?;
    accept_received(ports, queue, receiving.finish()?, recipients)
}

/// Records the job of an original [`Receiving`] has stored, as queued, and
/// puts it in the queue. Either all of that happens or none of it does
/// (the original is removed again).
///
/// # Errors
/// [`AcceptError`]; after an error no job record and no original remain
/// (unless the store also refused the clean-up, which the error then says).
pub fn accept_received(
    ports: Ports<'_>,
    queue: &dyn Queue,
    received: Received<'_>,
    recipients: &Recipients,
) -> Result<Accepted, AcceptError> {
    let (id, info) = received.keep();
    let now = ports.clock.now();
    let mut job = Job::queued(id, info, now);
    job.recipients = recipients.clone();
    let original = BlobKey::original(job.id);
    if let Err(e) = save_job(ports.kv, &job) {
        return Err(AcceptError::Storage(undo(
            e,
            [ports.blobs.delete(&original)],
        )));
    }
    let member = keys::catalogue_member(job.id, job.created_at);
    if let Err(e) = queue.catalogue_add(&member) {
        let undone = [
            ports.kv.delete(&keys::job(job.id)),
            ports.blobs.delete(&original),
        ];
        return Err(AcceptError::Queue(undo(e, undone)));
    }
    if let Err(e) = queue.enqueue(job.id, now) {
        let undone = [
            queue.catalogue_remove(&member),
            ports.kv.delete(&keys::job(job.id)),
            ports.blobs.delete(&original),
        ];
        return Err(AcceptError::Queue(undo(e, undone)));
    }
    // The job is safely queued; a failed estimate only costs the client a default.
    let retry_after_secs = queue.stats().map_or(1, estimate_wait_secs);
    Ok(Accepted {
        job,
        retry_after_secs,
    })
}

/// Accepts an ingest by URL: checks `url` against `rules` (nothing is
/// fetched while the client waits), records the job as queued for the
/// fetcher and puts it in the fetcher's queue. All or nothing, as for
/// [`accept_upload`].
///
/// # Errors
/// [`AcceptError`]: `Source` for a URL that may not be fetched.
pub fn accept_url(
    ports: Ports<'_>,
    queues: Queues<'_>,
    url: &str,
    rules: &IngestRules,
    recipients: &Recipients,
) -> Result<Accepted, AcceptError> {
    let checked = ingest::check(url, rules)?;
    let now = ports.clock.now();
    let mut job = Job::ingest(
        JobId::new_random(),
        Source {
            url: checked.to_string(),
        },
        now,
    );
    job.recipients = recipients.clone();
    save_job(ports.kv, &job).map_err(AcceptError::Storage)?;
    let member = keys::catalogue_member(job.id, job.created_at);
    if let Err(e) = queues.jobs.catalogue_add(&member) {
        return Err(AcceptError::Queue(undo(
            e,
            [ports.kv.delete(&keys::job(job.id))],
        )));
    }
    if let Err(e) = queues.fetches.enqueue(job.id, now) {
        let undone = [
            queues.jobs.catalogue_remove(&member),
            ports.kv.delete(&keys::job(job.id)),
        ];
        return Err(AcceptError::Queue(undo(e, undone)));
    }
    let retry_after_secs = queues.fetches.stats().map_or(1, estimate_wait_secs);
    Ok(Accepted {
        job,
        retry_after_secs,
    })
}

/// Why an upload with an `Idempotency-Key` was not accepted.
#[derive(Debug, Error)]
pub enum OnceError {
    /// The upload itself was refused (nothing recorded, the key released).
    #[error(transparent)]
    Accept(#[from] AcceptError),
    /// The key was used before with a different payload.
    #[error("this Idempotency-Key was used for a different upload")]
    KeyReused,
    /// The first request with this key has not finished yet.
    #[error("a request with this Idempotency-Key is still in progress; retry shortly")]
    KeyInUse,
    /// The key's record cannot be read or written.
    #[error("the idempotency records are unavailable: {0}")]
    Store(PortError),
}

/// How an upload with a key was answered.
#[derive(Debug)]
pub enum Once {
    /// The first request with the key: a new job.
    First {
        /// The job (boxed: a job record is large next to a repeat's answer).
        accepted: Box<Accepted>,
        /// Set when the key's record could not be completed: the job is
        /// accepted, but repeats get `409` until the key expires.
        warning: Option<PortError>,
    },
    /// A repeat of it: the first request's answer, nothing new stored.
    Repeat(FirstAnswer),
}

/// [`accept_upload`] under an `Idempotency-Key`: the first request with a
/// key runs it and keeps its answer for `ttl`; a repeat with the same
/// payload gets that answer again (same job, nothing stored); a repeat with
/// another payload is refused, and so is one racing the first. A refused
/// first request releases the key, so the client may retry.
///
/// # Errors
/// [`OnceError`].
pub fn accept_upload_once(
    ports: Ports<'_>,
    queue: &dyn Queue,
    key: KeyUse<'_>,
    bytes: &[u8],
    limits: Limits,
    recipients: &Recipients,
) -> Result<Once, OnceError> {
    let mut receiving = Receiving::fingerprinted(ports.blobs, limits);
    receiving.push(bytes).map_err(OnceError::Accept)?;
    let received = receiving.finish().map_err(OnceError::Accept)?;
    accept_received_once(ports, queue, key, received, recipients)
}

/// [`accept_received`] under an `Idempotency-Key`, as [`accept_upload_once`]:
/// the payload is the file [`Receiving::fingerprinted`] stored. A repeat's
/// original is removed again (nothing stored).
///
/// # Errors
/// [`OnceError`].
pub fn accept_received_once(
    ports: Ports<'_>,
    queue: &dyn Queue,
    key: KeyUse<'_>,
    received: Received<'_>,
    recipients: &Recipients,
) -> Result<Once, OnceError> {
    let plain = received.fingerprint().ok_or_else(|| {
        OnceError::Store(PortError::new(
            "the upload was received without its fingerprint",
        ))
    })?;
    let fingerprint = idempotency::with_recipients(plain.to_owned(), recipients);
    once(key, fingerprint, || {
        accept_received(ports, queue, received, recipients)
    })
}

/// An `Idempotency-Key`, where its records are kept, and for how long.
#[derive(Clone, Copy)]
pub struct KeyUse<'a> {
    /// The records.
    pub records: &'a dyn OnceStore,
    /// The client's key.
    pub key: &'a IdempotencyKey,
    /// How long a first answer is kept.
    pub ttl: Duration,
}

/// [`accept_url`] under an `Idempotency-Key`; the payload is the URL.
///
/// # Errors
/// [`OnceError`].
pub fn accept_url_once(
    ports: Ports<'_>,
    queues: Queues<'_>,
    key: KeyUse<'_>,
    url: &str,
    rules: &IngestRules,
    recipients: &Recipients,
) -> Result<Once, OnceError> {
    let payload = format!("url:{}", url.trim());
    let fingerprint = idempotency::fingerprint_with(payload.as_bytes(), recipients);
    once(key, fingerprint, || {
        accept_url(ports, queues, url, rules, recipients)
    })
}

fn once(
    KeyUse { records, key, ttl }: KeyUse<'_>,
    fingerprint: String,
    accept: impl FnOnce() -> Result<Accepted, AcceptError>,
) -> Result<Once, OnceError> {
    let name = keys::idempotency(key);
    let pending = KeyRecord {
        fingerprint: fingerprint.clone(),
        answer: None,
    };
    let encoded = serde_json::to_vec(&pending).map_err(|e| OnceError::Store(PortError::new(e)))?;
    // A record that expires between the two calls makes this a first request.
    while !records
        .insert_new(&name, &encoded, ttl)
        .map_err(OnceError::Store)?
    {
        let Some(raw) = records.get(&name).map_err(OnceError::Store)? else {
            continue;
        };
        let existing: KeyRecord = serde_json::from_slice(&raw)
            .map_err(|e| OnceError::Store(PortError::new(format!("damaged key record: {e}"))))?;
        if existing.fingerprint != fingerprint {
            return Err(OnceError::KeyReused);
        }
        return existing.answer.map(Once::Repeat).ok_or(OnceError::KeyInUse);
    }
    match accept() {
        Ok(accepted) => {
            let done = KeyRecord {
                fingerprint,
                answer: Some(FirstAnswer {
                    job: accepted.job.id,
                    retry_after_secs: accepted.retry_after_secs,
                }),
            };
            let encoded =
                serde_json::to_vec(&done).map_err(|e| OnceError::Store(PortError::new(e)))?;
            // The job is accepted either way; a record left "in progress"
            // only makes repeats wait for the key to expire (409 meanwhile).
            let warning = records.replace(&name, &encoded).err();
            Ok(Once::First {
                accepted: Box::new(accepted),
                warning,
            })
        }
        Err(e) => {
            records.remove(&name).map_err(OnceError::Store)?;
            Err(OnceError::Accept(e))
        }
    }
}

/// Folds the results of clean-up steps into the error that caused them.
fn undo<const N: usize>(cause: PortError, cleanup: [Result<(), PortError>; N]) -> PortError {
    let failures: Vec<String> = cleanup
        .into_iter()
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    if failures.is_empty() {
        cause
    } else {
        PortError::new(format!(
            "{cause}; clean-up also failed: {}",
            failures.join("; ")
        ))
    }
}

/// The job record for `id`, if there is one.
///
/// # Errors
/// [`PortError`] when the store cannot be read or holds a damaged record.
pub fn load_job(kv: &dyn KeyValue, id: JobId) -> Result<Option<Job>, PortError> {
    let Some(raw) = kv.get(&keys::job(id))? else {
        return Ok(None);
    };
    serde_json::from_slice(&raw)
        .map(Some)
        .map_err(|e| PortError::new(format!("job {id}: damaged record: {e}")))
}

fn save_job(kv: &dyn KeyValue, job: &Job) -> Result<(), PortError> {
    let raw = serde_json::to_vec(job).map_err(PortError::new)?;
    kv.set(&keys::job(job.id), &raw)
}

/// A job as a status read sees it.
#[derive(Debug)]
pub struct StatusReport {
    /// The job.
    pub job: Job,
    /// Seconds until the client should ask again; `None` once finished.
    pub retry_after_secs: Option<u32>,
    /// A queue problem met on the way, which did not stop the read.
    pub warning: Option<PortError>,
    /// Whether the job was overdue (a missed doorbell, a dead processor):
    /// the read rang the doorbell, and a caller that can drive processing
    /// itself (the HTTP-only profile) should.
    pub overdue: bool,
    /// Whether a cancel was asked of the processor holding the job.
    pub cancel_requested: bool,
    /// When the job will be removed (`retention_hours`), once finished.
    pub expires_at: Option<crate::time::Timestamp>,
    /// Its webhook and e-mail notices, once the notifier has planned any.
    pub notices: Option<notify::Notices>,
    /// Whether a notice was overdue (a missed doorbell, a dead notifier):
    /// the read rang the notifier, and a caller that can drive it itself
    /// (the HTTP-only profile) should.
    pub notices_overdue: bool,
}

/// Reads job `id`. For an unfinished job it also estimates the wait and,
/// if the job is overdue (a missed doorbell, a dead processor), rings the
/// doorbell again, so the system recovers without a scheduler. A job past
/// its retention is removed with everything it owns, and reads as gone.
///
/// # Errors
/// [`PortError`] when the job record cannot be read.
pub fn job_status(
    ports: Ports<'_>,
    queues: Queues<'_>,
    retention: Retention,
    id: JobId,
) -> Result<Option<StatusReport>, PortError> {
    let kv = ports.kv;
    let Some(job) = load_job(kv, id)? else {
        return Ok(None);
    };
    let now = ports.clock.now();
    if retention.expired(&job, now) {
        remove_everything(ports, queues, id, Some(&job))?;
        return Ok(None);
    }
    let queue = queues.of(&job);
    let (overdue, due) = match job.state {
        JobState::Queued { retry_at } => {
            let due = retry_at.unwrap_or(job.updated_at);
            (now >= due.plus(OVERDUE_GRACE), Some(due))
        }
        JobState::Processing { .. } => (job.lease_lapsed(now), None),
        JobState::Completed { .. } | JobState::Failed { .. } | JobState::Cancelled => {
            let notices = notify::load_notices(kv, id)?;
            let mut warning = None;
            // A notice overdue like a job (a missed doorbell, a dead
            // notifier) is rung for again.
            let notices_overdue = notices
                .as_ref()
                .and_then(notify::Notices::next_due)
                .filter(|due| now >= due.plus(OVERDUE_GRACE));
            if let (Some(n), Some(due)) = (queues.notify, notices_overdue) {
                warning = n
                    .queue
                    .restore(id, due)
                    .and_then(|restored| if restored { Ok(()) } else { n.queue.ring() })
                    .err();
            }
            return Ok(Some(StatusReport {
                expires_at: retention.expires_at(&job),
                job,
                retry_after_secs: None,
                warning,
                overdue: false,
                cancel_requested: false,
                notices,
                notices_overdue: notices_overdue.is_some(),
            }));
        }
    };
    let notices = if job.recipients.is_empty() {
        None
    } else {
        notify::load_notices(kv, id)?
    };
    let cancel_requested = match pending_request(kv, id)? {
        // A job being deleted is gone already.
        Some(Request::Delete) => return Ok(None),
        Some(Request::Cancel) => true,
        None => false,
    };
    let mut warning = None;
    if overdue {
        // The record is the truth: a job the queue lost is put back, so no
        // outage of the queue's storage leaves a job waiting forever.
        let restored = queue
            .restore(id, due.unwrap_or(now))
            .and_then(|restored| if restored { Ok(()) } else { queue.ring() });
        if let Err(e) = restored {
            warning = Some(e);
        }
    }
    let estimate = match queue.stats() {
        Ok(stats) => estimate_wait_secs(stats),
        Err(e) => {
            warning = Some(e);
            1
        }
    };
    let until_due = due.map_or(0, |d| {
        u32::try_from(d.since(now).as_secs()).unwrap_or(u32::MAX)
    });
    Ok(Some(StatusReport {
        job,
        retry_after_secs: Some(estimate.max(until_due)),
        warning,
        overdue,
        cancel_requested,
        expires_at: None,
        notices,
        notices_overdue: false,
    }))
}

/// Removes job `id` and everything it may own, in an order that a later
/// call can finish when this one is interrupted: the tombstone first (the
/// job reads as gone from then on), then every output it may have, the
/// original and the record, and its catalogue entry (the sweep's to-do
/// list) last but for the queues. Without a record (an interrupted removal)
/// every possible output key is removed.
fn remove_everything(
    ports: Ports<'_>,
    queues: Queues<'_>,
    id: JobId,
    job: Option<&Job>,
) -> Result<(), PortError> {
    ports.kv.set(&keys::request(id), Request::Delete.stored())?;
    match job {
        Some(job) => purge_outputs(ports.blobs, job)?,
        None => purge_every_format(ports.blobs, id)?,
    }
    ports.blobs.delete(&BlobKey::original(id))?;
    ports.kv.delete(&keys::job(id))?;
    if let Some(job) = job {
        queues
            .jobs
            .catalogue_remove(&keys::catalogue_member(id, job.created_at))?;
    }
    queues.jobs.forget(id)?;
    queues.fetches.forget(id)?;
    if let Some(n) = queues.notify {
        n.queue.forget(id)?;
    }
    ports.kv.delete(&keys::notices(id))?;
    ports.kv.delete(&keys::request(id))
}

fn purge_every_format(blobs: &dyn BlobStore, id: JobId) -> Result<(), PortError> {
    for variant in Variant::ALL {
        for format in ImageFormat::ALL {
            blobs.delete(&BlobKey::derivative(id, variant, format))?;
        }
    }
    Ok(())
}

/// What one sweep for expired jobs did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Jobs removed (with everything they owned).
    pub removed: usize,
    /// Whether the sweep stopped at its limit with more to look at.
    pub more: bool,
}

/// How many catalogue entries one sweep looks at.
pub const SWEEP_LIMIT: usize = 500;

/// Removes every job that finished longer than the retention ago, oldest
/// first, looking at no more than [`SWEEP_LIMIT`] entries of the catalogue;
/// a job created after the retention's cut-off cannot have expired, so the
/// walk ends there. An entry whose record is gone is a removal (or a
/// delete) that was interrupted: it is finished here.
///
/// # Errors
/// [`PortError`]; whatever was removed stays removed, and the next sweep
/// goes on from there.
pub fn sweep_expired(
    ports: Ports<'_>,
    queues: Queues<'_>,
    retention: Retention,
) -> Result<Swept, PortError> {
    let Some(keep) = retention.0 else {
        return Ok(Swept::default());
    };
    let now = ports.clock.now();
    let cutoff = now
        .unix_millis()
        .saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
    let mut swept = Swept::default();
    let mut after: Option<String> = None;
    let mut looked = 0;
    loop {
        let page = queues.jobs.catalogue_after(after.as_deref(), 100)?;
        if page.is_empty() {
            return Ok(swept);
        }
        for member in page {
            if looked == SWEEP_LIMIT {
                swept.more = true;
                return Ok(swept);
            }
            looked += 1;
            let Some((created, id)) = keys::parse_catalogue_entry(&member) else {
                after = Some(member);
                continue;
            };
            if created > cutoff {
                return Ok(swept);
            }
            match load_job(ports.kv, id)? {
                None => {
                    remove_everything(ports, queues, id, None)?;
                    queues.jobs.catalogue_remove(&member)?;
                    swept.removed += 1;
                }
                Some(job) if retention.expired(&job, now) => {
                    remove_everything(ports, queues, id, Some(&job))?;
                    swept.removed += 1;
                }
                Some(_) => {}
            }
            after = Some(member);
        }
    }
}

/// One page of the operators' listing.
#[derive(Debug)]
pub struct Listing {
    /// The jobs, newest first.
    pub jobs: Vec<Job>,
    /// Where the next page starts, if there may be one.
    pub next_page_token: Option<String>,
}

/// How many catalogue members one listing call looks at, at most, per job it
/// may return: a filter that matches little still answers quickly, with a
/// token to go on from.
const LISTING_SCAN_FACTOR: usize = 10;

/// Up to `limit` jobs, newest first, in `state` if given, starting after
/// `page_token` (the `next_page_token` of the page before). Paging is stable
/// under new uploads: they sort before every token already handed out.
/// Jobs removed meanwhile are left out.
///
/// # Errors
/// [`PortError`] when the catalogue or a record cannot be read.
pub fn list_jobs(
    kv: &dyn KeyValue,
    queue: &dyn Queue,
    state: Option<&str>,
    limit: usize,
    page_token: Option<&str>,
) -> Result<Listing, PortError> {
    let mut jobs = Vec::new();
    let mut cursor = page_token.map(str::to_owned);
    let mut scanned = 0;
    while scanned < limit * LISTING_SCAN_FACTOR {
        let batch = queue.catalogue_before(cursor.as_deref(), limit)?;
        let exhausted = batch.len() < limit;
        for member in batch {
            scanned += 1;
            cursor = Some(member.clone());
            let Some(id) = keys::parse_catalogue_member(&member) else {
                continue;
            };
            let Some(job) = load_job(kv, id)? else {
                continue;
            };
            if state.is_none_or(|s| job.state.name() == s) {
                jobs.push(job);
                if jobs.len() == limit {
                    return Ok(Listing {
                        jobs,
                        next_page_token: cursor,
                    });
                }
            }
        }
        if exhausted {
            return Ok(Listing {
                jobs,
                next_page_token: None,
            });
        }
    }
    Ok(Listing {
        jobs,
        next_page_token: cursor,
    })
}

/// What a client asked of a job that a processor may be holding, kept under
/// [`keys::request`] until the processor (or the client's own call, when no
/// processor holds the job) has carried it out. Never written into the job
/// record, which only its holder writes, so no request can overwrite a
/// result or be overwritten by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `POST …/cancel`: stop, keep no outputs, end `cancelled`.
    Cancel,
    /// `DELETE`: remove everything the job owns. Also a tombstone: a job
    /// with this request reads as gone.
    Delete,
}

impl Request {
    const fn stored(self) -> &'static [u8] {
        match self {
            Self::Cancel => b"cancel",
            Self::Delete => b"delete",
        }
    }
}

fn pending_request(kv: &dyn KeyValue, id: JobId) -> Result<Option<Request>, PortError> {
    Ok(kv.get(&keys::request(id))?.map(|raw| {
        if raw == Request::Delete.stored() {
            Request::Delete
        } else {
            Request::Cancel
        }
    }))
}

/// Removes every derivative `job` could have: an interrupted attempt leaves
/// no record of what it stored, so each variant in each format the
/// pipeline may give it (JPEG or PNG, and for the optimized copy also the
/// original's own format).
fn purge_outputs(blobs: &dyn BlobStore, job: &Job) -> Result<(), PortError> {
    for variant in Variant::ALL {
        for format in ImageFormat::ALL {
            let possible = matches!(format, ImageFormat::Jpeg | ImageFormat::Png)
                || (variant == Variant::Optimized
                    && job.original.is_some_and(|o| o.format == format));
            if possible {
                blobs.delete(&BlobKey::derivative(job.id, variant, format))?;
            }
        }
    }
    Ok(())
}

/// What a cancel did.
#[derive(Debug)]
pub enum Cancelled {
    /// The job was waiting: it is `cancelled` now.
    Now(Job),
    /// A processor holds the job: it stops at its next step. The job as it
    /// was when asked.
    Requested(Job),
}

/// Why a job cannot be cancelled or deleted.
#[derive(Debug, Error)]
pub enum TakeBackError {
    /// No such job (or it is being deleted).
    #[error("no image with this id")]
    NoSuchJob,
    /// The job has finished; there is nothing to cancel.
    #[error("the image is {0} already; only a queued or processing job can be cancelled")]
    Finished(&'static str),
    /// Storage failed.
    #[error("storage is unavailable: {0}")]
    Storage(#[from] PortError),
    /// The queue could not be reached.
    #[error("the queue is unavailable: {0}")]
    Queue(PortError),
    /// The record changed under the call.
    #[error(transparent)]
    Transition(#[from] TransitionError),
}

/// Cancels job `id` (AIP-151's CancelOperation). A job still waiting is
/// taken out of the queue and is `cancelled` at once; one a processor holds
/// gets a cancel request, which the processor honours before its next step
/// (removing what it stored). Cancelling is best effort: a job that
/// finishes first stays finished.
///
/// # Errors
/// [`TakeBackError`]: `Finished` for a job that has ended.
pub fn cancel_job(
    ports: Ports<'_>,
    queues: Queues<'_>,
    id: JobId,
) -> Result<Cancelled, TakeBackError> {
    let mut job = live_job(ports.kv, id)?;
    if job.state.is_finished() {
        return Err(TakeBackError::Finished(job.state.name()));
    }
    if queues.of(&job).withdraw(id).map_err(TakeBackError::Queue)? {
        // Out of the queue: no processor can claim it any more.
        purge_outputs(ports.blobs, &job)?;
        let now = ports.clock.now();
        job.cancel(now)?;
        save_job(ports.kv, &job)?;
        notify::ring_for(queues.notify, &job, now).map_err(TakeBackError::Queue)?;
        return Ok(Cancelled::Now(job));
    }
    ports.kv.set(&keys::request(id), Request::Cancel.stored())?;
    // The holder may have finished meanwhile: then the request is moot.
    let now = live_job(ports.kv, id)?;
    if now.state.is_finished() {
        ports.kv.delete(&keys::request(id))?;
        return Err(TakeBackError::Finished(now.state.name()));
    }
    Ok(Cancelled::Requested(now))
}

/// Deletes job `id` and everything it owns: record, original, outputs, its
/// place in the queue (AIP-151's DeleteOperation). The tombstone is written
/// first, so a processor holding the job removes whatever it stores after
/// this call, and the job reads as gone at once.
///
/// # Errors
/// [`TakeBackError`] (never `Finished`).
pub fn delete_job(ports: Ports<'_>, queues: Queues<'_>, id: JobId) -> Result<(), TakeBackError> {
    let job = live_job(ports.kv, id)?;
    ports.kv.set(&keys::request(id), Request::Delete.stored())?;
    let queue = queues.of(&job);
    let unheld = job.state.is_finished() || queue.withdraw(id).map_err(TakeBackError::Queue)?;
    purge_outputs(ports.blobs, &job)?;
    ports.blobs.delete(&BlobKey::original(id))?;
    ports.kv.delete(&keys::job(id))?;
    // A notifier holding the job may write them again; its next claim, with
    // the record gone, removes them for good.
    ports.kv.delete(&keys::notices(id))?;
    queues
        .jobs
        .catalogue_remove(&keys::catalogue_member(id, job.created_at))
        .map_err(TakeBackError::Queue)?;
    if unheld {
        queue.forget(id).map_err(TakeBackError::Queue)?;
        ports.kv.delete(&keys::request(id))?;
    }
    Ok(())
}

/// The record of job `id`, unless there is none or it is being deleted.
fn live_job(kv: &dyn KeyValue, id: JobId) -> Result<Job, TakeBackError> {
    if pending_request(kv, id)? == Some(Request::Delete) {
        return Err(TakeBackError::NoSuchJob);
    }
    load_job(kv, id)?.ok_or(TakeBackError::NoSuchJob)
}

/// What a processor works with.
#[derive(Clone, Copy)]
pub struct Worker<'a> {
    /// Storage and time.
    pub ports: Ports<'a>,
    /// The durable queue.
    pub queue: &'a dyn Queue,
    /// Jitter for backoff.
    pub random: &'a dyn Random,
    /// Retries and leases.
    pub policy: RetryPolicy,
    /// Image limits.
    pub limits: Limits,
    /// How the optimized copy is made.
    pub optimize: Optimize,
    /// The notifier's queue, rung for every wanted event before the job is let go.
    pub notify: Option<Notifying<'a>>,
}

/// What working one claimed job did.
#[derive(Debug, PartialEq, Eq)]
pub enum ProcessOutcome {
    /// The job is now completed.
    Completed(Job),
    /// The job failed for good (and, if its retries ran out, is a dead letter).
    Failed(Job),
    /// A transient failure; the job is queued again for `retry_at`.
    Retrying(Job),
    /// The job was already finished: removed from the queue, nothing else done.
    Skipped {
        /// The job.
        id: JobId,
        /// Its state, left alone.
        state: &'static str,
    },
    /// No such job (its upload was rolled back, or it was deleted): removed
    /// from the queue.
    Unknown(JobId),
    /// The client cancelled the job: its outputs removed, now `cancelled`.
    Cancelled(Job),
    /// The client deleted the job while it was held: everything it owned removed.
    Deleted(JobId),
    /// The fetcher stored the job's original: it is in the processor's queue now.
    Fetched(Job),
}

/// What the fetcher works with besides a [`Worker`] (whose queue is the
/// fetcher's own).
#[derive(Clone, Copy)]
pub struct Fetch<'a> {
    /// Outbound HTTP.
    pub http: &'a dyn SourceHttp,
    /// Which URLs may be fetched (checked again on every redirect).
    pub rules: &'a IngestRules,
    /// The whole fetch's time limit (`fetch_timeout_seconds`).
    pub timeout: Duration,
    /// The processor's queue, where a fetched job goes next.
    pub next: &'a dyn Queue,
}

/// Why a claimed job could not be worked. The job stays leased, so it is
/// claimed again when the lease lapses: nothing is lost.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// The queue itself could not be reached: not a fault of one job, so a
    /// drain stops at once instead of trying the next job (there is none it
    /// could claim).
    #[error("queue unavailable: {0}")]
    Queue(PortError),
    /// The job record could not be read or written.
    #[error("storage unavailable: {0}")]
    Storage(#[from] PortError),
    /// The record changed under the processor.
    #[error(transparent)]
    Transition(#[from] TransitionError),
}

/// Claims the next due job and works it: makes every derivative and records
/// the result, retrying transient failures with backoff and dead-lettering
/// jobs whose attempts ran out. `Ok(None)` when nothing is due.
///
/// # Errors
/// [`ProcessError`]: a storage failure while recording; the lease recovers it.
pub fn process_next(w: Worker<'_>) -> Result<Option<ProcessOutcome>, ProcessError> {
    work_next(w, None)
}

/// Claims the next due job of the fetcher's queue (`w.queue`) and fetches
/// its source: the bytes are judged by the upload's rules, stored as the
/// original, and the job moves on to `fetch.next`, the processor's queue.
/// Failures, retries, leases, cancels and deletes work as in [`process_next`].
/// `Ok(None)` when nothing is due.
///
/// # Errors
/// [`ProcessError`], as for [`process_next`].
pub fn fetch_next(w: Worker<'_>, fetch: Fetch<'_>) -> Result<Option<ProcessOutcome>, ProcessError> {
    work_next(w, Some(fetch))
}

/// What an attempt made.
enum Made {
    /// The processor's outputs, and how long the pipeline took.
    Outputs(Outputs, Duration),
    /// The fetcher's stored original.
    Original(ImageInfo),
}

fn work_next(
    w: Worker<'_>,
    fetch: Option<Fetch<'_>>,
) -> Result<Option<ProcessOutcome>, ProcessError> {
    let now = w.ports.clock.now();
    let Some(id) = w
        .queue
        .claim(now, now.plus(w.policy.lease))
        .map_err(ProcessError::Queue)?
    else {
        return Ok(None);
    };
    let Some(mut job) = load_job(w.ports.kv, id)? else {
        if pending_request(w.ports.kv, id)? == Some(Request::Delete) {
            // Deleted while an attempt held it, and that attempt did not
            // finish cleaning up: remove whatever it may have stored. With
            // the record gone, every format is possible.
            for variant in Variant::ALL {
                for format in ImageFormat::ALL {
                    w.ports
                        .blobs
                        .delete(&BlobKey::derivative(id, variant, format))?;
                }
            }
            w.ports.blobs.delete(&BlobKey::original(id))?;
        }
        w.queue.ack(id).map_err(ProcessError::Queue)?;
        // A deleted job's tombstone is no longer needed once its lease is gone.
        w.ports.kv.delete(&keys::request(id))?;
        return Ok(Some(ProcessOutcome::Unknown(id)));
    };
    match pending_request(w.ports.kv, id)? {
        Some(Request::Delete) => return honour(w, job, Request::Delete).map(Some),
        Some(Request::Cancel) if !job.state.is_finished() => {
            return honour(w, job, Request::Cancel).map(Some);
        }
        Some(Request::Cancel) => w.ports.kv.delete(&keys::request(id))?,
        None => {}
    }
    // A job in the wrong queue (the fetcher's after its fetch was stored)
    // is left to the other one.
    let misplaced = fetch.is_some() && !job.awaits_source();
    match job.state {
        _ if misplaced => {
            w.queue.ack(id).map_err(ProcessError::Queue)?;
            return Ok(Some(ProcessOutcome::Skipped {
                id,
                state: job.state.name(),
            }));
        }
        JobState::Completed { .. } | JobState::Failed { .. } | JobState::Cancelled => {
            // Its worker may have stopped between saving the end and ringing
            // the notifier: ring again (a no-op while the notifier holds it).
            ring(w, &job)?;
            w.queue.ack(id).map_err(ProcessError::Queue)?;
            return Ok(Some(ProcessOutcome::Skipped {
                id,
                state: job.state.name(),
            }));
        }
        JobState::Processing { lease_until, .. } if !job.lease_lapsed(now) => {
            // The queue lost our lease but the record says someone holds it:
            // leave the job to them, and look again when their lease lapses.
            w.queue
                .defer(id, lease_until)
                .map_err(ProcessError::Queue)?;
            return Ok(Some(ProcessOutcome::Skipped {
                id,
                state: "processing",
            }));
        }
        JobState::Processing { .. } if !w.policy.may_retry(job.attempts) => {
            let message = format!(
                "the processor stopped before finishing (trap, out of memory or killed) on all {} attempts",
                job.attempts
            );
            job.fail(
                Failure {
                    code: FailureCode::ProcessorLost,
                    message,
                },
                now,
            )?;
            save_job(w.ports.kv, &job)?;
            ring(w, &job)?;
            w.queue.dead_letter(id, now).map_err(ProcessError::Queue)?;
            return settle(w, job, ProcessOutcome::Failed).map(Some);
        }
        JobState::Queued { .. } | JobState::Processing { .. } => {}
    }
    job.start(now, now.plus(w.policy.lease))?;
    save_job(w.ports.kv, &job)?;
    ring(w, &job)?;

    let kv = w.ports.kv;
    let clock = w.ports.clock;
    let made = match fetch {
        Some(f) => fetch_original(w.ports, &job, f, w.limits).map(Made::Original),
        None => make_outputs(w.ports, id, w.limits, w.optimize, &mut |stage, stored| {
            let now = clock.now();
            let announced = stored.is_some();
            if let Some((variant, output)) = stored {
                job.stored(variant, output, now);
            }
            job.advance(stage, now);
            save_job(kv, &job)?;
            if announced {
                notify::ring_for(w.notify, &job, now)?;
            }
            Ok(())
        })
        .map(|(outputs, took)| Made::Outputs(outputs, took)),
    };
    match made {
        Ok(Made::Original(info)) => {
            let f = fetch.ok_or_else(|| PortError::new("a fetch without a fetcher"))?;
            let done = w.ports.clock.now();
            job.fetched(info, done)?;
            save_job(w.ports.kv, &job)?;
            f.next.enqueue(id, done).map_err(ProcessError::Queue)?;
            w.queue.ack(id).map_err(ProcessError::Queue)?;
            Ok(Some(ProcessOutcome::Fetched(job)))
        }
        Ok(Made::Outputs(outputs, took)) => {
            let done = w.ports.clock.now();
            job.complete(outputs, done)?;
            if let Some(attempt) = job.history.last_mut() {
                attempt.pipeline_ms = u64::try_from(took.as_millis()).ok();
            }
            save_job(w.ports.kv, &job)?;
            ring(w, &job)?;
            w.queue.ack(id).map_err(ProcessError::Queue)?;
            w.queue
                .record_duration(done.since(now))
                .map_err(ProcessError::Queue)?;
            settle(w, job, ProcessOutcome::Completed).map(Some)
        }
        Err(Unmade::Interrupted(request)) => honour(w, job, request).map(Some),
        Err(Unmade::Failed(failure))
            if failure.code.is_transient() && w.policy.may_retry(job.attempts) =>
        {
            let now = w.ports.clock.now();
            let retry_at = now.plus(w.policy.backoff(job.attempts, w.random.unit()));
            job.retry_later(failure, retry_at, now)?;
            save_job(w.ports.kv, &job)?;
            ring(w, &job)?;
            w.queue.defer(id, retry_at).map_err(ProcessError::Queue)?;
            settle(w, job, ProcessOutcome::Retrying).map(Some)
        }
        Err(Unmade::Failed(failure)) => {
            let transient = failure.code.is_transient();
            let now = w.ports.clock.now();
            job.fail(failure, now)?;
            save_job(w.ports.kv, &job)?;
            ring(w, &job)?;
            if transient {
                w.queue.dead_letter(id, now).map_err(ProcessError::Queue)?;
            } else {
                w.queue.ack(id).map_err(ProcessError::Queue)?;
            }
            settle(w, job, ProcessOutcome::Failed).map(Some)
        }
    }
}

/// After a worked job's record is saved: a request that came in during the
/// last step is honoured now. A delete always wins (its tombstone was
/// written before the client's removal, so whatever this attempt stored
/// after it is removed here); a cancel that came too late, for a job that
/// finished, is dropped.
fn settle(
    w: Worker<'_>,
    job: Job,
    outcome: impl FnOnce(Job) -> ProcessOutcome,
) -> Result<ProcessOutcome, ProcessError> {
    match pending_request(w.ports.kv, job.id)? {
        Some(Request::Delete) => honour(w, job, Request::Delete),
        Some(Request::Cancel) if !job.state.is_finished() => honour(w, job, Request::Cancel),
        Some(Request::Cancel) => {
            w.ports.kv.delete(&keys::request(job.id))?;
            Ok(outcome(job))
        }
        None => Ok(outcome(job)),
    }
}

/// Carries out a cancel (outputs removed, `cancelled`) or a delete
/// (everything the job owns removed) on a job this processor holds, then
/// lets go of it and of the request.
fn honour(w: Worker<'_>, mut job: Job, request: Request) -> Result<ProcessOutcome, ProcessError> {
    let id = job.id;
    purge_outputs(w.ports.blobs, &job)?;
    let outcome = match request {
        Request::Cancel => {
            job.cancel(w.ports.clock.now())?;
            save_job(w.ports.kv, &job)?;
            ring(w, &job)?;
            w.queue.ack(id).map_err(ProcessError::Queue)?;
            ProcessOutcome::Cancelled(job)
        }
        Request::Delete => {
            w.ports.blobs.delete(&BlobKey::original(id))?;
            w.ports.kv.delete(&keys::job(id))?;
            w.ports.kv.delete(&keys::notices(id))?;
            w.queue
                .catalogue_remove(&keys::catalogue_member(id, job.created_at))
                .map_err(ProcessError::Queue)?;
            w.queue.forget(id).map_err(ProcessError::Queue)?;
            ProcessOutcome::Deleted(id)
        }
    };
    w.ports.kv.delete(&keys::request(id))?;
    Ok(outcome)
}

/// Rings the notifier if anybody wants `job`'s latest event.
fn ring(w: Worker<'_>, job: &Job) -> Result<(), ProcessError> {
    notify::ring_for(w.notify, job, w.ports.clock.now()).map_err(ProcessError::Queue)
}

/// How many claimed jobs in a row may fail to be worked before a drain
/// gives up: a store that refuses every job is down, and trying the rest of
/// the queue would only repeat the error (and the log line) for each.
pub const MAX_FAILURES_IN_A_ROW: usize = 3;

/// Works the queue until nothing is due or `budget` is spent. A retry that
/// falls due, or a lease that lapses (its worker failed or died), within
/// the budget is waited for. Each job's outcome (or error)
/// is handed to `report`.
///
/// Errors never make it spin: an unreachable queue ends the drain at once,
/// and so do [`MAX_FAILURES_IN_A_ROW`] claimed jobs that could not be worked
/// (their leases lapse and they are claimed again later).
///
/// # Errors
/// [`PortError`] when the queue cannot be reached, or storage failed for
/// [`MAX_FAILURES_IN_A_ROW`] jobs in a row.
pub fn drain(
    w: Worker<'_>,
    budget: Duration,
    report: impl FnMut(Result<ProcessOutcome, ProcessError>),
) -> Result<usize, PortError> {
    drain_with(w, None, budget, report)
}

/// [`drain`] for the fetcher: works the fetcher's queue (`w.queue`) with
/// [`fetch_next`].
///
/// # Errors
/// As for [`drain`].
pub fn drain_fetches(
    w: Worker<'_>,
    fetch: Fetch<'_>,
    budget: Duration,
    report: impl FnMut(Result<ProcessOutcome, ProcessError>),
) -> Result<usize, PortError> {
    drain_with(w, Some(fetch), budget, report)
}

fn drain_with(
    w: Worker<'_>,
    fetch: Option<Fetch<'_>>,
    budget: Duration,
    report: impl FnMut(Result<ProcessOutcome, ProcessError>),
) -> Result<usize, PortError> {
    drain_loop(
        w.queue,
        w.ports.clock,
        budget,
        || work_next(w, fetch),
        report,
    )
}

/// The loop of every drain: `step` claims and works one entry of `queue`.
pub(crate) fn drain_loop<O>(
    queue: &dyn Queue,
    clock: &dyn Clock,
    budget: Duration,
    mut step: impl FnMut() -> Result<Option<O>, ProcessError>,
    mut report: impl FnMut(Result<O, ProcessError>),
) -> Result<usize, PortError> {
    let deadline = clock.now().plus(budget);
    let mut handled = 0;
    let mut failures_in_a_row = 0;
    loop {
        let now = clock.now();
        if now >= deadline {
            return Ok(handled);
        }
        match step() {
            Ok(Some(outcome)) => {
                handled += 1;
                failures_in_a_row = 0;
                report(Ok(outcome));
            }
            // Nothing due: wait for the next due time or lapsing lease within
            // the budget, looking again at least every second, so that new
            // work is not kept waiting behind someone else's lease.
            Ok(None) => match queue.next_due()? {
                Some(at) if at < deadline => clock.sleep(
                    at.since(now)
                        .clamp(Duration::from_millis(10), Duration::from_secs(1)),
                ),
                _ => return Ok(handled),
            },
            Err(ProcessError::Queue(e)) => return Err(e),
            Err(e) => {
                handled += 1;
                failures_in_a_row += 1;
                if failures_in_a_row >= MAX_FAILURES_IN_A_ROW {
                    return Err(PortError::new(format!(
                        "{failures_in_a_row} claimed jobs in a row could not be worked, the last because {e}; \
                         stopping until the next doorbell"
                    )));
                }
                report(Err(e));
            }
        }
    }
}

/// Why [`make_outputs`] stopped.
enum Unmade {
    /// The attempt failed.
    Failed(Failure),
    /// The client cancelled or deleted the job between two steps.
    Interrupted(Request),
}

impl From<Failure> for Unmade {
    fn from(f: Failure) -> Self {
        Self::Failed(f)
    }
}

/// Fetches `job`'s source and stores it as the original, once it passes
/// the upload's rules (sniffed from the bytes, never the remote type).
fn fetch_original(
    ports: Ports<'_>,
    job: &Job,
    fetch: Fetch<'_>,
    limits: Limits,
) -> Result<ImageInfo, Unmade> {
    let source = job.source.as_ref().ok_or_else(|| Failure {
        code: FailureCode::OriginalMissing,
        message: "the job has neither an original nor a source".into(),
    })?;
    let bytes = ingest::fetch_source(
        fetch.http,
        ports.clock,
        &source.url,
        fetch.rules,
        limits.max_file_bytes(),
        fetch.timeout,
    )?;
    let info = inspect(&bytes, limits).map_err(|e| ingest::refusal(&e))?;
    let storage = |e: PortError| Failure {
        code: FailureCode::StorageUnavailable,
        message: e.to_string(),
    };
    if let Some(request) = pending_request(ports.kv, job.id).map_err(storage)? {
        return Err(Unmade::Interrupted(request));
    }
    ports
        .blobs
        .put(&BlobKey::original(job.id), info.format.mime(), &bytes)
        .map_err(storage)?;
    Ok(info)
}

/// Renders job `id`'s outputs and stores them, reporting each stage to
/// `advance` (which records it) on the way, with the output stored just
/// before it (the last one is announced by the completion).
fn make_outputs(
    ports: Ports<'_>,
    id: JobId,
    limits: Limits,
    optimize: Optimize,
    advance: &mut dyn FnMut(Stage, Option<(Variant, Output)>) -> Result<(), PortError>,
) -> Result<(Outputs, Duration), Unmade> {
    let storage = |e: PortError| Failure {
        code: FailureCode::StorageUnavailable,
        message: e.to_string(),
    };
    let original = ports
        .blobs
        .get(&BlobKey::original(id))
        .map_err(storage)?
        .ok_or_else(|| Failure {
            code: FailureCode::OriginalMissing,
            message: "the original upload is no longer stored".into(),
        })?;
    let rendering = ports.clock.now();
    let rendered = pipeline::render_with(&original.bytes, limits, optimize);
    let pipeline_time = ports.clock.now().since(rendering);
    let renditions = rendered.map_err(|e| Failure {
        code: match e {
            PipelineError::Invalid(
                InvalidImage::TooManyPixels { .. }
                | InvalidImage::TooMuchMemory { .. }
                | InvalidImage::TooManyFrames { .. }
                | InvalidImage::TooLarge { .. },
            ) => FailureCode::LimitsExceeded,
            PipelineError::Invalid(_) | PipelineError::Decode(_) | PipelineError::Encode(_) => {
                FailureCode::UndecodableImage
            }
        },
        message: e.to_string(),
    })?;
    let mut previous: Option<(Variant, Output)> = None;
    let mut store = |r: &Rendition<'_>| -> Result<Output, Unmade> {
        // Between steps: honour a cancel or delete that came in meanwhile.
        if let Some(request) = pending_request(ports.kv, id).map_err(storage)? {
            return Err(Unmade::Interrupted(request));
        }
        advance(Stage::storing(r.variant), previous.take()).map_err(storage)?;
        // An optimized copy that is the original byte for byte (nothing to
        // strip, nothing to gain) is the original: not stored twice.
        let key = if r.variant == Variant::Optimized && r.bytes.is(&original.bytes) {
            BlobKey::original(id)
        } else {
            let key = BlobKey::derivative(id, r.variant, r.format);
            let (source, pieces) = r.bytes.parts();
            ports
                .blobs
                .compose(
                    &key,
                    r.format.mime(),
                    &BlobKey::original(id),
                    source,
                    pieces,
                )
                .map_err(storage)?;
            key
        };
        let output = Output {
            key,
            format: r.format,
            width: r.width,
            height: r.height,
            bytes: r.bytes.len() as u64,
        };
        previous = Some((r.variant, output.clone()));
        Ok(output)
    };
    let find = |v: Variant| {
        renditions
            .iter()
            .find(|r| r.variant == v)
            .ok_or_else(|| Failure {
                code: FailureCode::UndecodableImage,
                message: format!("the pipeline made no {}", v.name()),
            })
    };
    let outputs = Outputs {
        thumbnail: store(find(Variant::Thumbnail)?)?,
        preview: store(find(Variant::Preview)?)?,
        optimized: store(find(Variant::Optimized)?)?,
    };
    Ok((outputs, pipeline_time))
}

/// Why a dead letter cannot be re-driven.
#[derive(Debug, Error)]
pub enum RedriveError {
    /// No such job.
    #[error("no image with this id")]
    NoSuchJob,
    /// Only failed jobs can be re-driven.
    #[error(transparent)]
    NotFailed(#[from] TransitionError),
    /// Storage or the queue failed.
    #[error("storage or queue unavailable: {0}")]
    Storage(#[from] PortError),
}

/// Gives a failed job a fresh set of attempts: queued again, its history kept.
///
/// # Errors
/// [`RedriveError`].
pub fn redrive(
    kv: &dyn KeyValue,
    clock: &dyn Clock,
    queues: Queues<'_>,
    id: JobId,
) -> Result<Job, RedriveError> {
    let mut job = load_job(kv, id)?.ok_or(RedriveError::NoSuchJob)?;
    let now = clock.now();
    job.requeue(now)?;
    save_job(kv, &job)?;
    queues.of(&job).enqueue(id, now)?;
    Ok(job)
}

/// A file a job exposes through its links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileName {
    /// The upload as received.
    Original,
    /// A derivative.
    Derivative(Variant),
}

impl FileName {
    /// The file called `name` in a link.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "original" => Some(Self::Original),
            other => Variant::from_name(other).map(Self::Derivative),
        }
    }

    /// Whether the file's bytes can never change (derivatives are immutable;
    /// the original may one day be deleted).
    pub const fn is_immutable(self) -> bool {
        matches!(self, Self::Derivative(_))
    }
}

/// Why a file cannot be served.
#[derive(Debug, Error)]
pub enum FileError {
    /// No such job.
    #[error("no image with this id")]
    NoSuchJob,
    /// The job has not (or not successfully) finished.
    #[error("the image is {state}; its {name} is not available")]
    NotReady {
        /// The job's state.
        state: &'static str,
        /// The file asked for.
        name: &'static str,
    },
    /// The record names a blob that is gone.
    #[error("the file is missing from storage")]
    Missing,
    /// Storage failed.
    #[error("storage is unavailable: {0}")]
    Storage(#[from] PortError),
}

/// `file` of job `id`, opened for reading.
///
/// # Errors
/// [`FileError`].
pub fn open_file<'a>(
    ports: Ports<'a>,
    retention: Retention,
    id: JobId,
    file: FileName,
) -> Result<BlobReader<'a>, FileError> {
    let key = locate_file(ports, retention, id, file)?;
    ports.blobs.open(&key)?.ok_or(FileError::Missing)
}

/// What `file` of job `id` is (type, size, ETag), without reading it.
///
/// # Errors
/// [`FileError`].
pub fn stat_file(
    ports: Ports<'_>,
    retention: Retention,
    id: JobId,
    file: FileName,
) -> Result<BlobMeta, FileError> {
    let key = locate_file(ports, retention, id, file)?;
    ports.blobs.stat(&key)?.ok_or(FileError::Missing)
}

/// Where `file` of job `id` is stored, when the job exists and has made it
/// (for a store that hands out its own links instead of serving bytes).
///
/// # Errors
/// [`FileError`] when the job is unknown (or past its retention) or the
/// file is not made yet.
pub fn locate_file(
    ports: Ports<'_>,
    retention: Retention,
    id: JobId,
    file: FileName,
) -> Result<BlobKey, FileError> {
    let job = load_job(ports.kv, id)?.ok_or(FileError::NoSuchJob)?;
    if retention.expired(&job, ports.clock.now()) {
        return Err(FileError::NoSuchJob);
    }
    let key = match (file, &job.state) {
        (FileName::Original, _) if job.original.is_none() => {
            return Err(FileError::NotReady {
                state: "fetching",
                name: "original",
            });
        }
        (FileName::Original, _) => BlobKey::original(id),
        (FileName::Derivative(v), JobState::Completed { outputs }) => outputs.get(v).key.clone(),
        (FileName::Derivative(v), state) => {
            return Err(FileError::NotReady {
                state: state.name(),
                name: v.name(),
            });
        }
    };
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::KvBlobStore;
    use crate::format::ImageFormat;
    use crate::job::FailureCode;
    use crate::testing::{FixedRandom, ManualClock, MemoryKv, MemoryQueue, encode_png, gradient};

    /// Records and blobs in separate stores, so that tests can break one.
    struct World {
        kv: MemoryKv,
        blob_kv: MemoryKv,
        queue: MemoryQueue,
        fetches: MemoryQueue,
        clock: ManualClock,
        policy: RetryPolicy,
        /// The limits processing holds jobs to (uploads use the defaults).
        limits: std::cell::Cell<Limits>,
    }

    const LEASE_MS: u64 = 10_000;

    impl World {
        fn new() -> Self {
            Self {
                kv: MemoryKv::default(),
                blob_kv: MemoryKv::default(),
                queue: MemoryQueue::default(),
                fetches: MemoryQueue::default(),
                clock: ManualClock::at(1_700_000_000_000),
                policy: RetryPolicy {
                    max_attempts: 3,
                    base_delay: Duration::from_secs(2),
                    max_delay: Duration::from_secs(60),
                    lease: Duration::from_millis(LEASE_MS),
                },
                limits: std::cell::Cell::new(Limits::default()),
            }
        }

        fn with_ports<T>(&self, f: impl FnOnce(Ports<'_>) -> T) -> T {
            let blobs = KvBlobStore::new(&self.blob_kv);
            f(Ports {
                kv: &self.kv,
                blobs: &blobs,
                clock: &self.clock,
            })
        }

        fn queues(&self) -> Queues<'_> {
            Queues {
                jobs: &self.queue,
                fetches: &self.fetches,
                notify: None,
            }
        }

        fn read_file(&self, id: JobId, name: FileName) -> Result<crate::ports::Blob, FileError> {
            self.with_ports(|p| Ok(open_file(p, Retention::default(), id, name)?.read_all()?))
        }

        fn worker<T>(&self, f: impl FnOnce(Worker<'_>) -> T) -> T {
            self.with_ports(|ports| {
                f(Worker {
                    ports,
                    queue: &self.queue,
                    random: &FixedRandom(0.5),
                    policy: self.policy,
                    limits: self.limits.get(),
                    optimize: Optimize::Lossless,
                    notify: None,
                })
            })
        }

        fn accept(&self, bytes: &[u8]) -> Result<Job, AcceptError> {
            self.with_ports(|p| {
                accept_upload(
                    p,
                    &self.queue,
                    bytes,
                    Limits::default(),
                    &Recipients::default(),
                )
            })
            .map(|a| a.job)
        }

        fn process_next(&self) -> Option<ProcessOutcome> {
            self.worker(process_next)
                .expect("processing does not error")
        }

        /// A processor that claims the next job, starts it, and dies.
        fn crash_mid_job(&self) -> JobId {
            let now = self.clock.now();
            let id = self
                .queue
                .claim(now, now.plus(self.policy.lease))
                .expect("claim")
                .expect("a job is due");
            let mut job = self.job(id);
            job.start(now, now.plus(self.policy.lease)).expect("start");
            save_job(&self.kv, &job).expect("save");
            id
        }

        fn job(&self, id: JobId) -> Job {
            load_job(&self.kv, id).expect("readable").expect("exists")
        }

        fn status(&self, id: JobId) -> StatusReport {
            self.with_ports(|p| job_status(p, self.queues(), Retention::default(), id))
                .expect("readable")
                .expect("exists")
        }
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        encode_png(&gradient(w, h, false))
    }

    fn outcome_job(outcome: Option<ProcessOutcome>) -> Job {
        match outcome {
            Some(
                ProcessOutcome::Completed(j)
                | ProcessOutcome::Failed(j)
                | ProcessOutcome::Retrying(j),
            ) => j,
            other => panic!("expected a processed job, got {other:?}"),
        }
    }

    #[test]
    fn an_accepted_upload_is_stored_recorded_as_queued_and_queued() {
        let world = World::new();
        let bytes = png(40, 30);
        let job = world.accept(&bytes).expect("accepted");
        assert_eq!(job.state, JobState::Queued { retry_at: None });
        assert_eq!(
            job.original.expect("an upload has an original").format,
            ImageFormat::Png
        );
        assert_eq!(world.queue.waiting(), vec![job.id]);
        assert_eq!(world.queue.rings.get(), 1, "processors are woken");
        assert_eq!(world.job(job.id), job);
        let original = world
            .read_file(job.id, FileName::Original)
            .expect("original");
        assert_eq!(original.bytes, bytes);
    }

    #[test]
    fn an_optimized_copy_identical_to_the_original_is_the_original_not_a_second_blob() {
        let world = World::new();
        // No metadata to strip, Huffman tables already optimal: nothing to gain.
        let pixels = gradient(320, 200, false).to_rgb8().into_raw();
        let mut bytes = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 85);
        encoder.set_optimized_huffman_tables(true);
        encoder
            .encode(&pixels, 320, 200, jpeg_encoder::ColorType::Rgb)
            .expect("encodes");
        let job = world.accept(&bytes).expect("accepted");
        let Some(ProcessOutcome::Completed(done)) = world.process_next() else {
            panic!("not completed");
        };
        let JobState::Completed { outputs } = &done.state else {
            unreachable!()
        };
        assert_eq!(outputs.optimized.key, BlobKey::original(job.id));
        assert_eq!(outputs.optimized.bytes, bytes.len() as u64);
        assert!(
            !world.blob_kv.keys().iter().any(|k| k.contains("optimized")),
            "{:?}",
            world.blob_kv.keys()
        );
        let served = world
            .read_file(job.id, FileName::Derivative(Variant::Optimized))
            .expect("served");
        assert_eq!(served.bytes, bytes);
    }

    #[test]
    fn an_upload_that_cannot_be_queued_leaves_nothing_behind() {
        let world = World::new();
        world.queue.down.set(true);
        let err = world.accept(&png(40, 30)).expect_err("queue down");
        assert!(matches!(err, AcceptError::Queue(_)), "{err}");
        assert!(world.kv.is_empty(), "left behind: {:?}", world.kv.keys());
        assert!(
            world.blob_kv.is_empty(),
            "left behind: {:?}",
            world.blob_kv.keys()
        );
    }

    #[test]
    fn an_upload_whose_record_cannot_be_written_leaves_nothing_behind() {
        let world = World::new();
        world.kv.fail_sets_after(0);
        let err = world.accept(&png(40, 30)).expect_err("store full");
        assert!(matches!(err, AcceptError::Storage(_)), "{err}");
        assert!(world.kv.is_empty() && world.blob_kv.is_empty());
        assert!(world.queue.waiting().is_empty());
    }

    #[test]
    fn an_invalid_upload_touches_nothing() {
        let world = World::new();
        let err = world.accept(b"not an image").expect_err("invalid");
        assert!(
            matches!(err, AcceptError::Invalid(InvalidImage::UnsupportedFormat)),
            "{err}"
        );
        assert!(world.kv.is_empty() && world.blob_kv.is_empty());
    }

    #[test]
    fn processing_a_queued_job_completes_it_with_every_derivative_and_empties_the_queue() {
        let world = World::new();
        let job = world.accept(&png(1000, 500)).expect("accepted");
        world.clock.advance(1_500);
        let done = match world.process_next() {
            Some(ProcessOutcome::Completed(done)) => done,
            other => panic!("expected completion, got {other:?}"),
        };
        assert_eq!(done.attempts, 1);
        assert_eq!(
            done.updated_at.since(done.created_at),
            Duration::from_millis(1_500)
        );
        assert_eq!(world.job(job.id), done);
        let JobState::Completed { outputs } = &done.state else {
            panic!("not completed: {:?}", done.state);
        };
        assert_eq!(
            (outputs.thumbnail.width, outputs.thumbnail.height),
            (200, 100)
        );
        assert_eq!((outputs.preview.width, outputs.preview.height), (800, 400));
        assert_eq!(
            (outputs.optimized.width, outputs.optimized.height),
            (1000, 500)
        );
        for v in Variant::ALL {
            let blob = world
                .read_file(job.id, FileName::Derivative(v))
                .expect("derivative stored");
            // Opaque: JPEG derivatives; the lossless optimized copy of a
            // PNG stays PNG.
            let expected = if v == Variant::Optimized {
                "image/png"
            } else {
                "image/jpeg"
            };
            assert_eq!(blob.meta.content_type, expected, "{v:?}");
            assert_eq!(blob.meta.size, outputs.get(v).bytes);
            let meta = world.with_ports(|p| {
                stat_file(p, Retention::default(), job.id, FileName::Derivative(v))
            });
            assert_eq!(
                meta.expect("described"),
                blob.meta,
                "{v:?}: stat agrees with a read"
            );
        }
        assert!(world.queue.waiting().is_empty() && world.queue.leased().is_empty());
        assert_eq!(world.process_next(), None, "nothing left to do");
    }

    #[test]
    fn a_job_delivered_again_after_completion_makes_no_second_set_of_outputs() {
        let world = World::new();
        let job = world.accept(&png(300, 200)).expect("accepted");
        world.process_next();
        let blobs_before = world.blob_kv.keys();
        world
            .queue
            .enqueue(job.id, world.clock.now())
            .expect("enqueue again");
        assert_eq!(
            world.process_next(),
            Some(ProcessOutcome::Skipped {
                id: job.id,
                state: "completed"
            })
        );
        assert_eq!(world.blob_kv.keys(), blobs_before);
        assert_eq!(world.job(job.id).attempts, 1);
    }

    #[test]
    fn an_image_that_cannot_be_decoded_fails_at_once_without_retries() {
        let world = World::new();
        let mut bytes = png(300, 200);
        let idat = bytes
            .windows(4)
            .position(|w| w == b"IDAT")
            .expect("an IDAT chunk");
        let end = bytes.len();
        bytes[idat + 8..end - 20].fill(0x5A); // a valid header over garbage pixel data
        let job = world.accept(&bytes).expect("the header is fine");
        let failed = outcome_job(world.process_next());
        let JobState::Failed { error } = &failed.state else {
            panic!("not failed: {:?}", failed.state);
        };
        assert_eq!(error.code, FailureCode::UndecodableImage);
        assert!(
            error.message.contains("cannot be decoded"),
            "{}",
            error.message
        );
        assert_eq!(failed.attempts, 1);
        assert!(
            world.queue.dead_letters().expect("dead").is_empty(),
            "permanent failures are not dead letters"
        );
        assert!(world.queue.waiting().is_empty() && world.queue.leased().is_empty());
        assert_eq!(world.job(job.id), failed);
    }

    #[test]
    fn a_job_over_limits_lowered_since_its_upload_fails_at_once_as_limits_exceeded() {
        let world = World::new();
        let job = world
            .accept(&png(300, 200))
            .expect("accepted under the defaults");
        // Room for the file, not for processing it.
        world.limits.set(Limits {
            max_memory: 4 << 20,
            ..Limits::default()
        });
        let failed = outcome_job(world.process_next());
        let JobState::Failed { error } = &failed.state else {
            panic!("not failed: {:?}", failed.state);
        };
        assert_eq!(error.code, FailureCode::LimitsExceeded, "{}", error.message);
        assert!(error.message.contains("MiB"), "{}", error.message);
        assert_eq!(failed.attempts, 1);
        assert!(world.queue.dead_letters().expect("dead").is_empty());
        assert_eq!(world.job(job.id), failed);
    }

    #[test]
    fn a_storage_blip_is_retried_after_a_jittered_backoff_and_then_completes() {
        let world = World::new();
        let job = world.accept(&png(300, 200)).expect("accepted");
        world.blob_kv.fail_next_sets(1);
        let retrying = match world.process_next() {
            Some(ProcessOutcome::Retrying(j)) => j,
            other => panic!("expected a retry, got {other:?}"),
        };
        // attempt 1 failed: full jitter over [0, 2 s], drawn at 0.5
        let expected_at = world.clock.now().plus(Duration::from_secs(1));
        assert_eq!(
            retrying.state,
            JobState::Queued {
                retry_at: Some(expected_at)
            }
        );
        assert_eq!(world.process_next(), None, "not due yet");
        world.clock.advance(1_000);
        let done = outcome_job(world.process_next());
        assert_eq!(done.state.name(), "completed");
        assert_eq!(done.attempts, 2);
        assert_eq!(
            done.history[0].error.as_ref().map(|e| e.code),
            Some(FailureCode::StorageUnavailable)
        );
        assert_eq!(world.job(job.id), done);
    }

    #[test]
    fn a_job_that_keeps_failing_transiently_ends_failed_and_dead_lettered() {
        let world = World::new();
        let job = world.accept(&png(300, 200)).expect("accepted");
        world.blob_kv.fail_sets_after(0);
        for _ in 0..2 {
            assert!(matches!(
                world.process_next(),
                Some(ProcessOutcome::Retrying(_))
            ));
            world.clock.advance(60_000);
        }
        let failed = outcome_job(world.process_next());
        assert_eq!(failed.state.name(), "failed");
        assert_eq!(failed.attempts, 3);
        assert_eq!(failed.history.len(), 3, "every attempt is kept");
        assert_eq!(world.queue.dead_letters().expect("dead"), vec![job.id]);
        assert!(world.queue.waiting().is_empty());
    }

    #[test]
    fn a_job_whose_processor_died_is_taken_over_when_its_lease_lapses() {
        let world = World::new();
        let job = world.accept(&png(300, 200)).expect("accepted");
        world.crash_mid_job();
        world.clock.advance(LEASE_MS - 1);
        assert_eq!(world.process_next(), None, "a live lease is not stolen");
        world.clock.advance(1);
        let done = outcome_job(world.process_next());
        assert_eq!(done.state.name(), "completed");
        assert_eq!(done.attempts, 2);
        assert_eq!(
            done.history[0].error.as_ref().map(|e| e.code),
            Some(FailureCode::ProcessorLost)
        );
        assert_eq!(world.job(job.id), done);
    }

    #[test]
    fn a_job_that_kills_its_processor_every_time_ends_failed_and_dead_lettered() {
        let world = World::new();
        let job = world.accept(&png(300, 200)).expect("accepted");
        for _ in 0..3 {
            world.crash_mid_job();
            world.clock.advance(LEASE_MS);
        }
        let failed = outcome_job(world.process_next());
        let JobState::Failed { error } = &failed.state else {
            panic!("not failed: {:?}", failed.state);
        };
        assert_eq!(error.code, FailureCode::ProcessorLost);
        assert_eq!(failed.attempts, 3);
        assert_eq!(world.queue.dead_letters().expect("dead"), vec![job.id]);
    }

    #[test]
    fn drain_works_every_due_job_and_waits_for_a_retry_within_its_budget() {
        let world = World::new();
        let ids: Vec<JobId> = (0..3)
            .map(|_| world.accept(&png(64, 48)).expect("accepted").id)
            .collect();
        world.blob_kv.fail_next_sets(1);
        let mut outcomes = Vec::new();
        let handled = world
            .worker(|w| drain(w, Duration::from_secs(30), |o| outcomes.push(o)))
            .expect("drain");
        assert_eq!(handled, 4, "three jobs and one retry");
        for id in ids {
            assert_eq!(world.job(id).state.name(), "completed");
        }
        assert!(matches!(outcomes[0], Ok(ProcessOutcome::Retrying(_))));
    }

    #[test]
    fn a_drain_takes_over_a_job_whose_lease_lapses_within_its_budget() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.crash_mid_job();
        let mut outcomes = Vec::new();
        let handled = world
            .worker(|w| {
                drain(w, Duration::from_millis(LEASE_MS + 2_000), |o| {
                    outcomes.push(o)
                })
            })
            .expect("drained");
        assert_eq!(handled, 1);
        assert!(
            matches!(outcomes[..], [Ok(ProcessOutcome::Completed(_))]),
            "{outcomes:?}"
        );
        assert_eq!(world.job(job.id).attempts, 2);
    }

    #[test]
    fn drain_stops_when_the_next_retry_is_beyond_its_budget() {
        let world = World::new();
        world.accept(&png(64, 48)).expect("accepted");
        world.blob_kv.fail_next_sets(1);
        let handled = world
            .worker(|w| drain(w, Duration::from_millis(500), |_| {}))
            .expect("drain");
        assert_eq!(handled, 1);
        assert_eq!(world.queue.waiting().len(), 1, "the retry stays queued");
    }

    #[test]
    fn a_drain_stops_at_the_first_claim_the_queue_cannot_answer() {
        let world = World::new();
        world.accept(&png(64, 48)).expect("accepted");
        world.queue.down.set(true);
        let mut reported = 0;
        let result = world.worker(|w| drain(w, Duration::from_secs(25), |_| reported += 1));
        assert!(result.is_err(), "an unreachable queue ends the drain");
        assert_eq!(world.queue.claims.get(), 1, "one claim, not a loop");
        assert_eq!(reported, 0, "no per-job report for a queue outage");
    }

    #[test]
    fn a_drain_gives_up_after_a_few_jobs_in_a_row_that_storage_refuses() {
        let world = World::new();
        for _ in 0..10 {
            world.accept(&png(8, 8)).expect("accepted");
        }
        // Every record write fails from now on: starting a job cannot be recorded.
        world.kv.fail_sets_after(0);
        let mut reported = 0;
        let result = world.worker(|w| drain(w, Duration::from_secs(25), |_| reported += 1));
        let error = result.expect_err("a store that refuses every job ends the drain");
        assert!(error.to_string().contains("in a row"), "{error}");
        assert_eq!(
            world.queue.claims.get(),
            u32::try_from(MAX_FAILURES_IN_A_ROW).expect("small"),
            "the drain stops after {MAX_FAILURES_IN_A_ROW} failed jobs, not after the whole queue"
        );
        assert_eq!(
            reported,
            MAX_FAILURES_IN_A_ROW - 1,
            "the last one is in the error"
        );
        assert_eq!(
            world.queue.leased().len(),
            MAX_FAILURES_IN_A_ROW,
            "their leases will lapse"
        );
    }

    impl World {
        fn cancel(&self, id: JobId) -> Result<Cancelled, TakeBackError> {
            self.with_ports(|p| cancel_job(p, self.queues(), id))
        }

        fn delete(&self, id: JobId) -> Result<(), TakeBackError> {
            self.with_ports(|p| delete_job(p, self.queues(), id))
        }
    }

    fn once(
        world: &World,
        records: &crate::testing::MemoryOnce,
        key: &str,
        bytes: &[u8],
    ) -> Result<Once, OnceError> {
        let key = IdempotencyKey::parse(key).expect("a valid key");
        world.with_ports(|p| {
            accept_upload_once(
                p,
                &world.queue,
                KeyUse {
                    records,
                    key: &key,
                    ttl: Duration::from_secs(3600),
                },
                bytes,
                Limits::default(),
                &Recipients::default(),
            )
        })
    }

    #[test]
    fn a_repeated_upload_with_the_same_key_and_payload_gets_the_first_answer_and_stores_nothing() {
        let world = World::new();
        let records = crate::testing::MemoryOnce::default();
        let image = png(30, 20);
        let Ok(Once::First {
            accepted,
            warning: None,
        }) = once(&world, &records, "\"k1\"", &image)
        else {
            panic!("the first request makes a job");
        };
        let stored = (
            world.kv.len(),
            world.blob_kv.len(),
            world.queue.waiting().len(),
        );
        let Ok(Once::Repeat(answer)) = once(&world, &records, "\"k1\"", &image) else {
            panic!("a repeat gets the first answer");
        };
        assert_eq!(answer.job, accepted.job.id);
        assert_eq!(answer.retry_after_secs, accepted.retry_after_secs);
        assert_eq!(
            (
                world.kv.len(),
                world.blob_kv.len(),
                world.queue.waiting().len()
            ),
            stored,
            "nothing new stored"
        );
        assert!(matches!(
            once(&world, &records, "\"k1\"", &png(31, 20)),
            Err(OnceError::KeyReused)
        ));
        let Ok(Once::First { .. }) = once(&world, &records, "\"k2\"", &image) else {
            panic!("another key is another job");
        };
        records.expire_all();
        let Ok(Once::First {
            accepted: again, ..
        }) = once(&world, &records, "\"k1\"", &image)
        else {
            panic!("an expired key is new again");
        };
        assert_ne!(again.job.id, accepted.job.id);
    }

    #[test]
    fn a_key_whose_first_request_is_unfinished_is_in_use_and_a_refused_one_is_released() {
        let world = World::new();
        let records = crate::testing::MemoryOnce::default();
        let image = png(30, 20);
        let key = IdempotencyKey::parse("\"busy\"").expect("valid");
        let pending = KeyRecord {
            fingerprint: idempotency::fingerprint(&image),
            answer: None,
        };
        records
            .insert_new(
                &keys::idempotency(&key),
                &serde_json::to_vec(&pending).expect("json"),
                Duration::from_secs(60),
            )
            .expect("insert");
        assert!(matches!(
            once(&world, &records, "\"busy\"", &image),
            Err(OnceError::KeyInUse)
        ));
        assert!(matches!(
            once(&world, &records, "\"bad\"", b"not an image"),
            Err(OnceError::Accept(AcceptError::Invalid(_)))
        ));
        assert_eq!(records.len(), 1, "the refused request released its key");
        let Ok(Once::First { .. }) = once(&world, &records, "\"bad\"", &image) else {
            panic!("the client may retry with the same key");
        };
    }

    #[test]
    fn operators_page_through_jobs_newest_first_and_new_uploads_do_not_shift_pages() {
        let world = World::new();
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(world.accept(&png(8, 8)).expect("accepted").id);
            world.clock.advance(1);
        }
        let page = |state: Option<&str>, token: Option<&str>| {
            list_jobs(&world.kv, &world.queue, state, 2, token).expect("listing")
        };
        let first = page(None, None);
        let got: Vec<JobId> = first.jobs.iter().map(|j| j.id).collect();
        assert_eq!(got, vec![ids[4], ids[3]], "newest first");
        world
            .accept(&png(9, 9))
            .expect("a new upload between pages");
        let second = page(None, first.next_page_token.as_deref());
        let got: Vec<JobId> = second.jobs.iter().map(|j| j.id).collect();
        assert_eq!(
            got,
            vec![ids[2], ids[1]],
            "the new upload does not shift the pages"
        );
        let third = page(None, second.next_page_token.as_deref());
        assert_eq!(
            third.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![ids[0]]
        );
        assert_eq!(third.next_page_token, None, "the end");

        world.process_next();
        let completed =
            list_jobs(&world.kv, &world.queue, Some("completed"), 10, None).expect("listing");
        assert_eq!(completed.jobs.len(), 1);
        assert_eq!(
            completed.jobs[0].id, ids[0],
            "the oldest was processed first"
        );
        world.delete(ids[0]).expect("delete");
        let completed =
            list_jobs(&world.kv, &world.queue, Some("completed"), 10, None).expect("listing");
        assert!(
            completed.jobs.is_empty(),
            "a deleted job leaves the listing"
        );
    }

    #[test]
    fn a_catalogue_member_round_trips_and_nothing_else_parses() {
        let id = JobId::new_random();
        let member = keys::catalogue_member(
            id,
            crate::time::Timestamp::from_unix_millis(1_700_000_000_000),
        );
        assert_eq!(keys::parse_catalogue_member(&member), Some(id));
        for bad in [
            "",
            "1700000000000",
            "170000000000:x",
            &format!("17000000000000:{id}"),
            &format!("170000000000a:{id}"),
        ] {
            assert_eq!(keys::parse_catalogue_member(bad), None, "{bad}");
        }
    }

    #[test]
    fn cancelling_a_queued_job_cancels_it_at_once_and_takes_it_out_of_the_queue() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        let Cancelled::Now(cancelled) = world.cancel(job.id).expect("cancel") else {
            panic!("a waiting job is cancelled at once");
        };
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert_eq!(world.job(job.id).state, JobState::Cancelled);
        assert!(world.queue.waiting().is_empty());
        assert_eq!(world.process_next(), None, "nothing left to claim");
        assert!(matches!(
            world.cancel(job.id),
            Err(TakeBackError::Finished("cancelled"))
        ));
    }

    #[test]
    fn cancelling_a_held_job_asks_its_processor_which_keeps_no_outputs() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.crash_mid_job();
        let Cancelled::Requested(asked) = world.cancel(job.id).expect("cancel") else {
            panic!("a held job is only asked to stop");
        };
        assert_eq!(asked.state.name(), "processing");
        assert!(world.status(job.id).cancel_requested);
        // Its processor is gone; the next one to claim it honours the request.
        world.clock.advance(LEASE_MS + 1);
        let outcome = world.process_next();
        assert!(
            matches!(outcome, Some(ProcessOutcome::Cancelled(_))),
            "{outcome:?}"
        );
        assert_eq!(world.job(job.id).state, JobState::Cancelled);
        let derived: Vec<String> = world
            .blob_kv
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("blob/derived/"))
            .collect();
        assert!(derived.is_empty(), "{derived:?}");
        assert!(world.kv.get(&keys::request(job.id)).expect("kv").is_none());
        assert!(!world.status(job.id).cancel_requested);
    }

    #[test]
    fn a_finished_job_cannot_be_cancelled() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.process_next();
        assert!(matches!(
            world.cancel(job.id),
            Err(TakeBackError::Finished("completed"))
        ));
        assert_eq!(world.job(job.id).state.name(), "completed");
    }

    #[test]
    fn deleting_a_completed_job_removes_everything_it_owns_and_a_second_delete_finds_nothing() {
        let world = World::new();
        let keep = world.accept(&png(16, 16)).expect("accepted");
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.process_next();
        world.process_next();
        world.delete(job.id).expect("delete");
        let id = job.id.to_string();
        let left: Vec<String> = world
            .kv
            .keys()
            .into_iter()
            .chain(world.blob_kv.keys())
            .filter(|k| k.contains(&id))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        assert!(
            world
                .with_ports(|p| job_status(p, world.queues(), Retention::default(), job.id))
                .expect("read")
                .is_none()
        );
        assert!(matches!(
            world.delete(job.id),
            Err(TakeBackError::NoSuchJob)
        ));
        assert_eq!(
            world.job(keep.id).state.name(),
            "completed",
            "the other job is untouched"
        );
        assert!(
            world
                .read_file(keep.id, FileName::Derivative(Variant::Thumbnail))
                .is_ok()
        );
    }

    #[test]
    fn deleting_a_held_job_leaves_a_tombstone_that_its_next_claim_clears() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.crash_mid_job();
        world.delete(job.id).expect("delete");
        assert!(
            world
                .with_ports(|p| job_status(p, world.queues(), Retention::default(), job.id))
                .expect("read")
                .is_none(),
            "gone at once"
        );
        world.clock.advance(LEASE_MS + 1);
        assert_eq!(world.process_next(), Some(ProcessOutcome::Unknown(job.id)));
        assert!(world.kv.is_empty(), "left behind: {:?}", world.kv.keys());
        assert!(
            world.blob_kv.is_empty(),
            "left behind: {:?}",
            world.blob_kv.keys()
        );
        assert!(world.queue.leased().is_empty() && world.queue.waiting().is_empty());
    }

    #[test]
    fn a_status_read_puts_back_an_overdue_job_the_queue_lost() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.queue.forget_everything();
        assert!(world.queue.waiting().is_empty());
        world.status(job.id);
        assert!(
            world.queue.waiting().is_empty(),
            "not overdue yet: left alone"
        );
        world.clock.advance(OVERDUE_GRACE.as_millis() as u64 + 1);
        world.status(job.id);
        assert_eq!(world.queue.waiting(), vec![job.id], "queued again");
        world.status(job.id);
        assert_eq!(world.queue.waiting(), vec![job.id], "only once");
        assert_eq!(
            world
                .process_next()
                .map(|o| matches!(o, ProcessOutcome::Completed(_))),
            Some(true)
        );
    }

    #[test]
    fn a_status_read_of_an_overdue_job_rings_the_doorbell_again() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        let rings = world.queue.rings.get();
        let fresh = world.status(job.id);
        assert_eq!(world.queue.rings.get(), rings, "a fresh job is not overdue");
        assert_eq!(fresh.retry_after_secs, Some(1));
        world.clock.advance(OVERDUE_GRACE.as_millis() as u64);
        world.status(job.id);
        assert_eq!(world.queue.rings.get(), rings + 1);
    }

    #[test]
    fn a_status_read_of_a_job_whose_processor_died_rings_the_doorbell() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.crash_mid_job();
        let rings = world.queue.rings.get();
        world.status(job.id);
        assert_eq!(world.queue.rings.get(), rings, "the lease is live");
        world.clock.advance(LEASE_MS);
        world.status(job.id);
        assert_eq!(world.queue.rings.get(), rings + 1);
    }

    #[test]
    fn retry_after_covers_a_pending_retry_and_disappears_when_finished() {
        let mut world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.blob_kv.fail_next_sets(1);
        world.policy = RetryPolicy {
            base_delay: Duration::from_secs(40),
            ..world.policy
        };
        world.process_next();
        assert_eq!(
            world.status(job.id).retry_after_secs,
            Some(20),
            "the retry is due in 20 s"
        );
        world.clock.advance(20_000);
        world.process_next();
        assert_eq!(world.status(job.id).retry_after_secs, None);
    }

    #[test]
    fn a_dead_letter_can_be_redriven_with_a_fresh_attempt_budget() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.blob_kv.fail_sets_after(0);
        for _ in 0..3 {
            world.process_next();
            world.clock.advance(60_000);
        }
        assert_eq!(world.queue.dead_letters().expect("dead"), vec![job.id]);
        world.blob_kv.heal();
        let requeued = redrive(&world.kv, &world.clock, world.queues(), job.id).expect("redrive");
        assert_eq!((requeued.state.name(), requeued.attempts), ("queued", 0));
        assert!(world.queue.dead_letters().expect("dead").is_empty());
        let done = outcome_job(world.process_next());
        assert_eq!(done.state.name(), "completed");
        assert_eq!(done.history.len(), 4);
        let not_failed = redrive(&world.kv, &world.clock, world.queues(), job.id);
        assert!(matches!(not_failed, Err(RedriveError::NotFailed(_))));
    }

    #[test]
    fn derivatives_are_not_served_before_the_job_completes() {
        let world = World::new();
        let job = world.accept(&png(300, 200)).expect("accepted");
        let err = world
            .read_file(job.id, FileName::Derivative(Variant::Thumbnail))
            .expect_err("not ready");
        assert!(
            matches!(
                err,
                FileError::NotReady {
                    state: "queued",
                    name: "thumbnail"
                }
            ),
            "{err}"
        );
        let missing = world.read_file(JobId::new_random(), FileName::Original);
        assert!(matches!(missing, Err(FileError::NoSuchJob)));
    }

    /// A source that answers every GET with the same scripted answer.
    struct OneAnswer(std::cell::RefCell<Option<Result<ingest::Hop, ingest::HopError>>>);

    impl SourceHttp for OneAnswer {
        fn get(&self, _: &url::Url, _: u64, _: Duration) -> Result<ingest::Hop, ingest::HopError> {
            self.0.borrow_mut().take().expect("asked once")
        }
    }

    impl World {
        fn ingest(&self, url: &str) -> Result<Job, AcceptError> {
            self.with_ports(|p| {
                accept_url(
                    p,
                    self.queues(),
                    url,
                    &IngestRules::default(),
                    &Recipients::default(),
                )
            })
            .map(|a| a.job)
        }

        fn fetch_next(&self, answer: Result<ingest::Hop, ingest::HopError>) -> ProcessOutcome {
            let http = OneAnswer(std::cell::RefCell::new(Some(answer)));
            let rules = IngestRules::default();
            self.with_ports(|ports| {
                let w = Worker {
                    ports,
                    queue: &self.fetches,
                    random: &FixedRandom(0.5),
                    policy: self.policy,
                    limits: self.limits.get(),
                    optimize: Optimize::Lossless,
                    notify: None,
                };
                let fetch = Fetch {
                    http: &http,
                    rules: &rules,
                    timeout: Duration::from_secs(20),
                    next: &self.queue,
                };
                fetch_next(w, fetch)
            })
            .expect("fetching does not error")
            .expect("a fetch was due")
        }
    }

    #[test]
    fn an_ingested_url_is_fetched_stored_as_the_original_and_then_processed() {
        let world = World::new();
        let job = world
            .ingest("https://images.example.com/a.png")
            .expect("accepted");
        assert!(job.awaits_source());
        assert_eq!(world.fetches.waiting(), [job.id]);
        assert!(world.queue.waiting().is_empty(), "not the processor's yet");

        let fetched = world.fetch_next(Ok(ingest::Hop::Body {
            status: 200,
            bytes: png(30, 20),
        }));
        let ProcessOutcome::Fetched(fetched) = fetched else {
            panic!("not fetched: {fetched:?}");
        };
        assert_eq!(fetched.original.expect("original").format, ImageFormat::Png);
        assert!(world.fetches.waiting().is_empty() && world.fetches.leased().is_empty());
        assert_eq!(world.queue.waiting(), [job.id]);

        assert!(matches!(
            world.process_next(),
            Some(ProcessOutcome::Completed(_))
        ));
        let done = world.job(job.id);
        assert_eq!(
            done.history.len(),
            2,
            "the fetch and the processing: {:?}",
            done.history
        );
        assert_eq!(
            world
                .read_file(job.id, FileName::Original)
                .expect("original")
                .bytes,
            png(30, 20)
        );
    }

    #[test]
    fn a_fetched_body_that_is_not_an_image_fails_for_good_with_nothing_stored() {
        let world = World::new();
        let job = world.ingest("https://example.com/page").expect("accepted");
        let outcome = world.fetch_next(Ok(ingest::Hop::Body {
            status: 200,
            bytes: b"<html>hello</html>".to_vec(),
        }));
        let ProcessOutcome::Failed(failed) = outcome else {
            panic!("{outcome:?}");
        };
        let JobState::Failed { error } = failed.state else {
            panic!("not failed");
        };
        assert_eq!(error.code, FailureCode::SourceNotImage);
        assert!(world.blob_kv.is_empty());
        assert!(world.queue.waiting().is_empty() && world.fetches.waiting().is_empty());
        assert_eq!(world.job(job.id).state.name(), "failed");
    }

    #[test]
    fn an_unreachable_source_is_retried_in_the_fetchers_queue() {
        let world = World::new();
        let job = world.ingest("https://example.com/a.png").expect("accepted");
        let outcome = world.fetch_next(Err(ingest::HopError::Timeout(Duration::from_secs(20))));
        assert!(
            matches!(outcome, ProcessOutcome::Retrying(_)),
            "{outcome:?}"
        );
        assert_eq!(world.fetches.waiting(), [job.id]);
        let status = world.status(job.id);
        assert!(status.job.awaits_source());
        assert_eq!(
            status.job.history[0].error.as_ref().map(|e| e.code),
            Some(FailureCode::SourceUnreachable)
        );
    }

    #[test]
    fn a_refused_url_records_nothing() {
        let world = World::new();
        let refused = world.ingest("http://169.254.169.254/latest/meta-data");
        assert!(
            matches!(refused, Err(AcceptError::Source(_))),
            "{refused:?}"
        );
        assert!(world.kv.is_empty());
        assert!(world.fetches.waiting().is_empty());
    }

    #[test]
    fn cancelling_an_ingest_waiting_for_its_fetch_takes_it_out_of_the_fetchers_queue() {
        let world = World::new();
        let job = world.ingest("https://example.com/a.png").expect("accepted");
        assert!(matches!(world.cancel(job.id), Ok(Cancelled::Now(_))));
        assert!(world.fetches.waiting().is_empty());
    }

    fn retention(hours: u64) -> Retention {
        Retention(Some(Duration::from_secs(hours * 3600)))
    }

    #[test]
    fn the_sweep_removes_what_expired_jobs_owned_and_nothing_else() {
        let world = World::new();
        let old = world.accept(&png(30, 20)).expect("accepted");
        world.process_next();
        world.clock.advance(2 * 3600 * 1000);
        let young = world.accept(&png(16, 16)).expect("accepted");
        world.process_next();
        world.clock.advance(3600 * 1000 + 1);

        let swept = world
            .with_ports(|p| sweep_expired(p, world.queues(), retention(2)))
            .expect("swept");
        assert_eq!(
            swept,
            Swept {
                removed: 1,
                more: false
            }
        );
        let old_id = old.id.to_string();
        let left: Vec<String> = world
            .kv
            .keys()
            .into_iter()
            .chain(world.blob_kv.keys())
            .chain(world.queue.catalogue())
            .filter(|k| k.contains(&old_id))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        assert_eq!(world.job(young.id).state.name(), "completed");
        assert!(
            world
                .read_file(young.id, FileName::Derivative(Variant::Preview))
                .is_ok()
        );
        let status = world
            .with_ports(|p| job_status(p, world.queues(), retention(2), young.id))
            .expect("read")
            .expect("kept");
        assert_eq!(
            status.expires_at,
            Some(status.job.updated_at.plus(Duration::from_secs(2 * 3600)))
        );
    }

    #[test]
    fn an_interrupted_removal_is_finished_by_the_next_sweep() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.process_next();
        world.clock.advance(3 * 3600 * 1000);
        // A removal that broke off after deleting the record.
        let blobs_before = world.blob_kv.len();
        world
            .kv
            .delete(&keys::job(job.id))
            .expect("record removed by the interrupted sweep");
        assert!(blobs_before > 0);

        let swept = world
            .with_ports(|p| sweep_expired(p, world.queues(), retention(2)))
            .expect("swept");
        assert_eq!(swept.removed, 1);
        assert!(world.blob_kv.is_empty(), "left: {:?}", world.blob_kv.keys());
        assert!(world.queue.catalogue().is_empty());
    }

    #[test]
    fn a_status_read_past_the_retention_removes_the_job_and_finds_nothing() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        world.process_next();
        world.clock.advance(2 * 3600 * 1000 + 1);
        let read = world
            .with_ports(|p| job_status(p, world.queues(), retention(2), job.id))
            .expect("read");
        assert!(read.is_none());
        assert!(world.kv.is_empty(), "left: {:?}", world.kv.keys());
        assert!(world.blob_kv.is_empty());
    }
}
