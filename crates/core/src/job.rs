//! A job and its lifecycle:
//!
//! ```text
//! queued ──start──▶ processing ──complete──▶ completed
//!   ▲                 │  │
//!   ├──retry_later────┤  └──fail──▶ failed   (also queued ──fail──▶ failed)
//!   └──fetched────────┘  (a job ingested by URL: its source was fetched)
//! processing ──start (lease expired: the worker died)──▶ processing
//! queued | processing ──cancel──▶ cancelled
//! ```
//!
//! Each state carries only the data that exists in it, and every transition
//! is a method that refuses to start from the wrong state, so a record read
//! back from storage can only ever describe a reachable situation.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::format::{ImageFormat, ImageInfo};
use crate::id::JobId;
use crate::keys::BlobKey;
use crate::pipeline::Variant;
use crate::time::Timestamp;

/// One upload and what became of it. Stored as JSON under [`crate::keys::job`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Identity, chosen at upload.
    pub id: JobId,
    /// When the upload was accepted.
    pub created_at: Timestamp,
    /// When the record last changed.
    pub updated_at: Timestamp,
    /// What the original's header said; `None` for a job ingested by URL
    /// until its source has been fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<ImageInfo>,
    /// Where the original comes from, for a job ingested by URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// How many times processing has started.
    pub attempts: u32,
    /// Every attempt that has ended, oldest first.
    #[serde(default)]
    pub history: Vec<Attempt>,
    /// Where in its lifecycle the job is.
    #[serde(flatten)]
    pub state: JobState,
    /// Every change, in order: the job's event log (server-sent events
    /// replay it). Kept in the record itself, so each change and its event
    /// are one write, and removed with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// Who else is told of the job: its `callback_url` and `notify_email`.
    #[serde(default, skip_serializing_if = "crate::notify::Recipients::is_empty")]
    pub recipients: crate::notify::Recipients,
}

/// The most events one job keeps; the oldest give way (a job needs about
/// `6 + 2 × attempts`).
pub const MAX_EVENTS: usize = 64;

/// One change of a job, numbered per job from 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The sequence number (SSE `id`).
    pub seq: u32,
    /// When it happened.
    pub at: Timestamp,
    /// What happened (SSE `event`), with its data.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an [`Event`] says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    /// Accepted (or re-driven, or its source fetched): waiting for a worker.
    #[serde(rename = "image.queued")]
    Queued,
    /// An attempt started (the fetch of an ingest's source, or processing).
    #[serde(rename = "image.processing")]
    Processing {
        /// The attempt's number.
        attempt: u32,
        /// What the attempt does first (`fetching` or `decoding`).
        stage: Stage,
    },
    /// One derivative is stored.
    #[serde(rename = "image.output")]
    Output {
        /// Which one.
        variant: Variant,
        /// What it is.
        output: Output,
    },
    /// A transient failure; the job is queued again.
    #[serde(rename = "image.retrying")]
    Retrying {
        /// Why the attempt failed.
        error: Failure,
        /// When the next attempt is due.
        retry_at: Timestamp,
    },
    /// Every output exists.
    #[serde(rename = "image.completed")]
    Completed,
    /// Processing gave up.
    #[serde(rename = "image.failed")]
    Failed {
        /// Why.
        error: Failure,
    },
    /// The client took the job back.
    #[serde(rename = "image.cancelled")]
    Cancelled,
}

impl EventKind {
    /// The wire name (SSE `event`).
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Queued => "image.queued",
            Self::Processing { .. } => "image.processing",
            Self::Output { .. } => "image.output",
            Self::Retrying { .. } => "image.retrying",
            Self::Completed => "image.completed",
            Self::Failed { .. } => "image.failed",
            Self::Cancelled => "image.cancelled",
        }
    }

    /// Whether nothing follows it.
    pub const fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed { .. } | Self::Cancelled
        )
    }
}

/// The remote original of a job ingested by URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The URL the client gave, as checked at `POST`.
    pub url: String,
}

/// The lifecycle state, with the data that belongs to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JobState {
    /// Accepted and waiting for a processor.
    Queued {
        /// When a retry is pending: when it becomes due.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<Timestamp>,
    },
    /// A processor has taken it.
    Processing {
        /// When the current attempt started.
        started_at: Timestamp,
        /// When the processor's claim lapses if it does not finish.
        lease_until: Timestamp,
        /// How far the attempt has come.
        #[serde(default)]
        stage: Stage,
    },
    /// Every output exists.
    Completed {
        /// The stored derivatives.
        outputs: Outputs,
    },
    /// Processing gave up.
    Failed {
        /// Why.
        error: Failure,
    },
    /// The client took the job back before it finished; it has no outputs.
    Cancelled,
}

impl JobState {
    /// Every state's wire name.
    pub const NAMES: [&'static str; 5] =
        ["queued", "processing", "completed", "failed", "cancelled"];

    /// The state's wire name.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Queued { .. } => "queued",
            Self::Processing { .. } => "processing",
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job can still change on its own.
    pub const fn is_finished(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. } | Self::Failed { .. } | Self::Cancelled
        )
    }
}

/// The step a processing job is at, in order. Decoding covers the one pass
/// that decodes, resizes and encodes every output; each later stage is the
/// storing of one output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Fetching the original from its URL (a job ingested by URL).
    Fetching,
    /// Reading, decoding, resizing and encoding.
    #[default]
    Decoding,
    /// Storing the thumbnail.
    Thumbnail,
    /// Storing the preview.
    Preview,
    /// Storing the optimized copy.
    Optimized,
}

impl Stage {
    /// The stage that stores `variant`.
    pub const fn storing(variant: Variant) -> Self {
        match variant {
            Variant::Thumbnail => Self::Thumbnail,
            Variant::Preview => Self::Preview,
            Variant::Optimized => Self::Optimized,
        }
    }

    /// The share of the work done when the stage begins, in percent: the
    /// decode pass is most of a job's time.
    pub const fn percent(self) -> u8 {
        match self {
            Self::Fetching => 5,
            Self::Decoding => 10,
            Self::Thumbnail => 70,
            Self::Preview => 80,
            Self::Optimized => 90,
        }
    }

    /// The stage's wire name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fetching => "fetching",
            Self::Decoding => "decoding",
            Self::Thumbnail => "thumbnail",
            Self::Preview => "preview",
            Self::Optimized => "optimized",
        }
    }
}

/// The derivatives of a completed job, one per [`Variant`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outputs {
    /// 200 px wide (or the original width if narrower).
    pub thumbnail: Output,
    /// 800 px wide (or the original width if narrower).
    pub preview: Output,
    /// The original's dimensions, re-encoded without metadata.
    pub optimized: Output,
}

impl Outputs {
    /// The output made for `variant`.
    pub const fn get(&self, variant: Variant) -> &Output {
        match variant {
            Variant::Thumbnail => &self.thumbnail,
            Variant::Preview => &self.preview,
            Variant::Optimized => &self.optimized,
        }
    }
}

/// One stored derivative.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Where the bytes are.
    pub key: BlobKey,
    /// Encoding of the bytes.
    pub format: ImageFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub bytes: u64,
}

/// Why a job failed, for the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// A stable, machine-readable reason.
    pub code: FailureCode,
    /// A human explanation.
    pub message: String,
}

/// Stable reasons a job can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The bytes passed the header check but cannot be decoded.
    UndecodableImage,
    /// The image is beyond what the pipeline will process.
    LimitsExceeded,
    /// The original could not be found in the blob store.
    OriginalMissing,
    /// Storage failed while processing.
    StorageUnavailable,
    /// The processor stopped mid-job (trap, out of memory, killed) and its lease lapsed.
    ProcessorLost,
    /// The client cancelled the job during this attempt (only in `history`).
    Cancelled,
    /// The source URL could not be reached (DNS, connect, timeout, a 5xx).
    SourceUnreachable,
    /// The source answered with a 4xx, or redirected where ingest may not go.
    SourceRefused,
    /// The source's bytes are not a supported image (whatever its Content-Type said).
    SourceNotImage,
    /// The source's body is larger than `max_upload_bytes`.
    SourceTooLarge,
    /// The source image's header declares more than the limits allow.
    SourceTooManyPixels,
}

impl FailureCode {
    /// Whether another attempt may succeed. Image problems are permanent;
    /// infrastructure problems are not.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Self::StorageUnavailable | Self::ProcessorLost | Self::SourceUnreachable
        )
    }
}

/// One ended attempt, kept in the job's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended (or, for a lost attempt, when its loss was noticed).
    pub ended_at: Timestamp,
    /// Why it did not complete; `None` if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// How long the image work itself took (decode, resize, encode), in
    /// milliseconds, for an attempt that got that far: the rest of the
    /// attempt is storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_ms: Option<u64>,
}

/// A transition was asked of a state it cannot start from.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("job {id} cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The job.
    pub id: JobId,
    /// Its current state.
    pub from: &'static str,
    /// The state that was asked for.
    pub to: &'static str,
}

impl Job {
    /// A freshly accepted upload.
    pub fn queued(id: JobId, original: ImageInfo, now: Timestamp) -> Self {
        Self {
            id,
            created_at: now,
            updated_at: now,
            original: Some(original),
            source: None,
            attempts: 0,
            history: Vec::new(),
            state: JobState::Queued { retry_at: None },
            events: Vec::new(),
            recipients: crate::notify::Recipients::default(),
        }
        .announced(EventKind::Queued, now)
    }

    /// A freshly accepted ingest by URL: queued for the fetcher.
    pub fn ingest(id: JobId, source: Source, now: Timestamp) -> Self {
        Self {
            id,
            created_at: now,
            updated_at: now,
            original: None,
            source: Some(source),
            attempts: 0,
            history: Vec::new(),
            state: JobState::Queued { retry_at: None },
            events: Vec::new(),
            recipients: crate::notify::Recipients::default(),
        }
        .announced(EventKind::Queued, now)
    }

    fn announced(mut self, kind: EventKind, now: Timestamp) -> Self {
        self.announce(kind, now);
        self
    }

    /// Appends an event to the job's log (dropping the oldest beyond [`MAX_EVENTS`]).
    fn announce(&mut self, kind: EventKind, at: Timestamp) {
        let seq = self.events.last().map_or(1, |e| e.seq + 1);
        self.events.push(Event { seq, at, kind });
        if self.events.len() > MAX_EVENTS {
            self.events.remove(0);
        }
    }

    /// Records that `output` of `variant` is stored (an `image.output` event).
    pub fn stored(&mut self, variant: Variant, output: Output, now: Timestamp) {
        self.announce(EventKind::Output { variant, output }, now);
    }

    /// The outputs announced so far (while processing: those already stored).
    pub fn announced_outputs(&self) -> impl Iterator<Item = (Variant, &Output)> {
        let attempt_start = self
            .events
            .iter()
            .rposition(|e| matches!(e.kind, EventKind::Processing { .. }))
            .unwrap_or(0);
        self.events[attempt_start..]
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Output { variant, output } => Some((*variant, output)),
                _ => None,
            })
    }

    /// Whether the job's current attempt belongs to a processor that is gone:
    /// it is processing and its lease lapsed before `now`.
    pub fn lease_lapsed(&self, now: Timestamp) -> bool {
        matches!(self.state, JobState::Processing { lease_until, .. } if lease_until <= now)
    }

    /// `queued → processing`, or `processing → processing` when the previous
    /// attempt's lease lapsed (that attempt is recorded as lost). Counts an attempt.
    ///
    /// # Errors
    /// [`TransitionError`] if the job is finished, or processing under a live lease.
    pub fn start(&mut self, now: Timestamp, lease_until: Timestamp) -> Result<(), TransitionError> {
        match self.state {
            JobState::Queued { .. } => {}
            JobState::Processing { .. } if self.lease_lapsed(now) => self.record_lost_attempt(now),
            _ => return Err(self.refuse("processing")),
        }
        self.attempts += 1;
        let stage = if self.awaits_source() {
            Stage::Fetching
        } else {
            Stage::Decoding
        };
        self.enter(
            JobState::Processing {
                started_at: now,
                lease_until,
                stage,
            },
            now,
        );
        self.announce(
            EventKind::Processing {
                attempt: self.attempts,
                stage,
            },
            now,
        );
        Ok(())
    }

    /// Whether the job's original is still to be fetched from its source:
    /// such a job belongs to the fetcher's queue, not the processor's.
    pub const fn awaits_source(&self) -> bool {
        self.original.is_none() && self.source.is_some()
    }

    /// `processing → queued` for the processor, once the fetcher stored the
    /// original described by `original`. The fetch ends as a successful attempt.
    ///
    /// # Errors
    /// [`TransitionError`] unless the job is processing.
    pub fn fetched(&mut self, original: ImageInfo, now: Timestamp) -> Result<(), TransitionError> {
        match self.state {
            JobState::Processing { .. } => {
                self.end_attempt(now, None);
                self.original = Some(original);
                self.enter(JobState::Queued { retry_at: None }, now);
                self.announce(EventKind::Queued, now);
                Ok(())
            }
            _ => Err(self.refuse("queued")),
        }
    }

    /// Moves a processing job on to `next`; other states are left alone.
    pub fn advance(&mut self, next: Stage, now: Timestamp) {
        if let JobState::Processing { stage, .. } = &mut self.state {
            *stage = next;
            self.updated_at = now;
        }
    }

    fn record_lost_attempt(&mut self, now: Timestamp) {
        if let JobState::Processing { started_at, .. } = self.state {
            self.history.push(Attempt {
                number: self.attempts,
                started_at,
                ended_at: now,
                error: Some(Failure {
                    code: FailureCode::ProcessorLost,
                    message:
                        "the processor stopped before finishing (trap, out of memory or killed)"
                            .into(),
                }),
                pipeline_ms: None,
            });
        }
    }

    fn end_attempt(&mut self, now: Timestamp, error: Option<Failure>) {
        if let JobState::Processing { started_at, .. } = self.state {
            self.history.push(Attempt {
                number: self.attempts,
                started_at,
                ended_at: now,
                error,
                pipeline_ms: None,
            });
        }
    }

    /// `processing → completed`.
    ///
    /// # Errors
    /// [`TransitionError`] unless the job is processing.
    pub fn complete(&mut self, outputs: Outputs, now: Timestamp) -> Result<(), TransitionError> {
        match self.state {
            JobState::Processing { .. } => {
                self.end_attempt(now, None);
                let announced: Vec<Variant> = self.announced_outputs().map(|(v, _)| v).collect();
                for variant in Variant::ALL {
                    if !announced.contains(&variant) {
                        self.stored(variant, outputs.get(variant).clone(), now);
                    }
                }
                self.enter(JobState::Completed { outputs }, now);
                self.announce(EventKind::Completed, now);
                Ok(())
            }
            _ => Err(self.refuse("completed")),
        }
    }

    /// `processing → queued`, due again at `retry_at`, after a transient failure.
    ///
    /// # Errors
    /// [`TransitionError`] unless the job is processing.
    pub fn retry_later(
        &mut self,
        error: Failure,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), TransitionError> {
        match self.state {
            JobState::Processing { .. } => {
                self.end_attempt(now, Some(error.clone()));
                self.enter(
                    JobState::Queued {
                        retry_at: Some(retry_at),
                    },
                    now,
                );
                self.announce(EventKind::Retrying { error, retry_at }, now);
                Ok(())
            }
            _ => Err(self.refuse("queued")),
        }
    }

    /// `queued | processing → failed`. A lapsed attempt is recorded as lost first.
    ///
    /// # Errors
    /// [`TransitionError`] if the job has already finished.
    pub fn fail(&mut self, error: Failure, now: Timestamp) -> Result<(), TransitionError> {
        if self.state.is_finished() {
            return Err(self.refuse("failed"));
        }
        self.end_attempt(now, Some(error.clone()));
        self.enter(
            JobState::Failed {
                error: error.clone(),
            },
            now,
        );
        self.announce(EventKind::Failed { error }, now);
        Ok(())
    }

    /// `queued | processing → cancelled`. An attempt in progress is recorded
    /// in the history as ended by the cancellation.
    ///
    /// # Errors
    /// [`TransitionError`] if the job has already finished.
    pub fn cancel(&mut self, now: Timestamp) -> Result<(), TransitionError> {
        if self.state.is_finished() {
            return Err(self.refuse("cancelled"));
        }
        self.end_attempt(
            now,
            Some(Failure {
                code: FailureCode::Cancelled,
                message: "cancelled by the client".into(),
            }),
        );
        self.enter(JobState::Cancelled, now);
        self.announce(EventKind::Cancelled, now);
        Ok(())
    }

    /// `failed → queued` with a fresh attempt budget (a re-driven dead
    /// letter); the history keeps the earlier attempts.
    ///
    /// # Errors
    /// [`TransitionError`] unless the job failed.
    pub fn requeue(&mut self, now: Timestamp) -> Result<(), TransitionError> {
        match self.state {
            JobState::Failed { .. } => {
                self.attempts = 0;
                self.enter(JobState::Queued { retry_at: None }, now);
                self.announce(EventKind::Queued, now);
                Ok(())
            }
            _ => Err(self.refuse("queued")),
        }
    }

    fn enter(&mut self, state: JobState, now: Timestamp) {
        self.state = state;
        self.updated_at = now;
    }

    fn refuse(&self, to: &'static str) -> TransitionError {
        TransitionError {
            id: self.id,
            from: self.state.name(),
            to,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    fn job() -> Job {
        let info = ImageInfo {
            format: ImageFormat::Png,
            width: 10,
            height: 5,
            bytes: 100,
        };
        Job::queued(JobId::new_random(), info, t(1_000))
    }

    fn output(id: JobId, variant: Variant) -> Output {
        Output {
            key: BlobKey::derivative(id, variant, ImageFormat::Jpeg),
            format: ImageFormat::Jpeg,
            width: 10,
            height: 5,
            bytes: 42,
        }
    }

    fn outputs(id: JobId) -> Outputs {
        Outputs {
            thumbnail: output(id, Variant::Thumbnail),
            preview: output(id, Variant::Preview),
            optimized: output(id, Variant::Optimized),
        }
    }

    fn failure() -> Failure {
        Failure {
            code: FailureCode::UndecodableImage,
            message: "bad".into(),
        }
    }

    #[test]
    fn a_job_goes_from_queued_through_processing_to_completed() {
        let mut job = job();
        job.start(t(2_000), t(9_000)).expect("start");
        assert_eq!(
            job.state,
            JobState::Processing {
                started_at: t(2_000),
                lease_until: t(9_000),
                stage: Stage::Decoding,
            }
        );
        assert_eq!(job.attempts, 1);
        job.complete(outputs(job.id), t(3_000)).expect("complete");
        assert_eq!(job.state.name(), "completed");
        assert_eq!((job.created_at, job.updated_at), (t(1_000), t(3_000)));
        assert_eq!(job.history.len(), 1);
        assert_eq!(job.history[0].error, None);
    }

    #[test]
    fn a_queued_or_processing_job_can_fail_but_a_finished_one_cannot() {
        let mut queued = job();
        queued.fail(failure(), t(2_000)).expect("queued → failed");

        let mut processing = job();
        processing.start(t(2_000), t(9_000)).expect("start");
        processing
            .fail(failure(), t(3_000))
            .expect("processing → failed");

        let err = processing
            .fail(failure(), t(4_000))
            .expect_err("failed twice");
        assert_eq!((err.from, err.to), ("failed", "failed"));
        assert_eq!(
            processing.updated_at,
            t(3_000),
            "a refused transition changes nothing"
        );
    }

    #[test]
    fn only_a_queued_job_can_start_and_only_a_processing_one_can_complete() {
        let mut job = job();
        let err = job
            .complete(outputs(job.id), t(2_000))
            .expect_err("not started");
        assert_eq!((err.from, err.to), ("queued", "completed"));
        job.start(t(2_000), t(9_000)).expect("start");
        let err = job
            .start(t(3_000), t(10_000))
            .expect_err("started twice under a live lease");
        assert_eq!((err.from, err.to), ("processing", "processing"));
        assert_eq!(job.attempts, 1);
    }

    #[test]
    fn a_job_whose_lease_lapsed_can_be_started_again_and_the_lost_attempt_is_kept() {
        let mut job = job();
        job.start(t(2_000), t(5_000)).expect("start");
        assert!(!job.lease_lapsed(t(4_999)));
        assert!(job.lease_lapsed(t(5_000)));
        job.start(t(6_000), t(9_000))
            .expect("restart after the lease lapsed");
        assert_eq!(job.attempts, 2);
        assert_eq!(job.history.len(), 1);
        let lost = &job.history[0];
        assert_eq!(
            (lost.number, lost.started_at, lost.ended_at),
            (1, t(2_000), t(6_000))
        );
        assert_eq!(
            lost.error.as_ref().map(|e| e.code),
            Some(FailureCode::ProcessorLost)
        );
    }

    #[test]
    fn a_transient_failure_sends_the_job_back_to_the_queue_with_a_due_time() {
        let mut job = job();
        job.start(t(2_000), t(9_000)).expect("start");
        let storage = Failure {
            code: FailureCode::StorageUnavailable,
            message: "down".into(),
        };
        job.retry_later(storage, t(4_000), t(3_000))
            .expect("retry later");
        assert_eq!(
            job.state,
            JobState::Queued {
                retry_at: Some(t(4_000))
            }
        );
        assert_eq!(
            job.history[0].error.as_ref().map(|e| e.code),
            Some(FailureCode::StorageUnavailable)
        );
        job.start(t(4_000), t(9_000)).expect("second attempt");
        assert_eq!(job.attempts, 2);
        let mut queued = self::job();
        assert!(
            queued.retry_later(failure(), t(5_000), t(5_000)).is_err(),
            "only a processing job can be retried"
        );
    }

    #[test]
    fn only_infrastructure_failures_are_transient() {
        assert!(FailureCode::StorageUnavailable.is_transient());
        assert!(FailureCode::ProcessorLost.is_transient());
        assert!(!FailureCode::UndecodableImage.is_transient());
        assert!(!FailureCode::LimitsExceeded.is_transient());
        assert!(!FailureCode::OriginalMissing.is_transient());
    }

    #[test]
    fn the_stored_form_names_the_status_and_round_trips() {
        let mut job = job();
        job.start(t(2_000), t(9_000)).expect("start");
        job.fail(failure(), t(3_000)).expect("fail");
        let json = serde_json::to_value(&job).expect("serialize");
        assert_eq!(json["status"], "failed");
        assert_eq!(json["error"]["code"], "undecodable_image");
        assert_eq!(json["original"]["format"], "png");
        let back: Job = serde_json::from_value(json).expect("parse");
        assert_eq!(back, job);
    }

    #[test]
    fn a_queued_or_processing_job_can_be_cancelled_and_a_finished_one_cannot() {
        let mut queued = job();
        queued.cancel(t(2_000)).expect("queued → cancelled");
        assert_eq!(queued.state, JobState::Cancelled);
        assert!(queued.history.is_empty(), "no attempt was running");

        let mut processing = job();
        processing.start(t(2_000), t(9_000)).expect("start");
        processing.cancel(t(3_000)).expect("processing → cancelled");
        assert_eq!(
            processing.history[0].error.as_ref().map(|e| e.code),
            Some(FailureCode::Cancelled)
        );
        for done in [&mut queued, &mut processing] {
            let err = done.cancel(t(4_000)).expect_err("cancelled twice");
            assert_eq!(err.from, "cancelled");
        }
        let mut completed = job();
        completed.start(t(2_000), t(9_000)).expect("start");
        completed
            .complete(outputs(completed.id), t(3_000))
            .expect("complete");
        assert!(completed.cancel(t(4_000)).is_err(), "completed is final");
        assert!(!FailureCode::Cancelled.is_transient());
    }

    #[test]
    fn a_cancelled_job_is_stored_with_its_status_alone_and_round_trips() {
        let mut job = job();
        job.cancel(t(2_000)).expect("cancel");
        let json = serde_json::to_value(&job).expect("serialize");
        assert_eq!(json["status"], "cancelled");
        assert!(json.get("error").is_none(), "{json}");
        let back: Job = serde_json::from_value(json).expect("parse");
        assert_eq!(back, job);
        assert!(back.state.is_finished());
    }

    #[test]
    fn an_ingest_fetches_first_then_goes_back_to_the_queue_with_its_original() {
        let mut job = Job::ingest(
            JobId::new_random(),
            Source {
                url: "https://example.com/a.png".into(),
            },
            t(1_000),
        );
        assert!(job.awaits_source());
        job.start(t(2_000), t(62_000)).expect("start");
        assert!(matches!(
            job.state,
            JobState::Processing {
                stage: Stage::Fetching,
                ..
            }
        ));
        let info = ImageInfo {
            format: ImageFormat::Png,
            width: 10,
            height: 5,
            bytes: 100,
        };
        job.fetched(info, t(3_000)).expect("fetched");
        assert!(!job.awaits_source());
        assert_eq!(job.state, JobState::Queued { retry_at: None });
        assert_eq!(job.history.len(), 1);
        assert!(job.history[0].error.is_none());
        job.start(t(4_000), t(64_000)).expect("start processing");
        assert_eq!(job.attempts, 2);
        assert!(matches!(
            job.state,
            JobState::Processing {
                stage: Stage::Decoding,
                ..
            }
        ));
    }

    fn kinds(job: &Job) -> Vec<&'static str> {
        job.events.iter().map(|e| e.kind.name()).collect()
    }

    #[test]
    fn every_change_of_a_job_is_an_event_numbered_in_order() {
        let mut job = job();
        job.start(t(2_000), t(62_000)).expect("start");
        let out = outputs(job.id);
        job.stored(Variant::Thumbnail, out.thumbnail.clone(), t(2_500));
        job.retry_later(failure(), t(9_000), t(3_000))
            .expect("retry");
        job.start(t(9_000), t(69_000)).expect("start again");
        job.stored(Variant::Thumbnail, out.thumbnail.clone(), t(9_500));
        assert_eq!(
            job.announced_outputs().map(|(v, _)| v).collect::<Vec<_>>(),
            [Variant::Thumbnail],
            "only the current attempt's outputs count"
        );
        job.complete(out, t(10_000)).expect("complete");
        assert_eq!(
            kinds(&job),
            [
                "image.queued",
                "image.processing",
                "image.output",
                "image.retrying",
                "image.processing",
                "image.output",
                "image.output",
                "image.output",
                "image.completed"
            ]
        );
        let seqs: Vec<u32> = job.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
        assert!(job.events.last().is_some_and(|e| e.kind.is_terminal()));
        let stored = serde_json::to_string(&job).expect("serialize");
        assert_eq!(serde_json::from_str::<Job>(&stored).expect("parse"), job);
    }

    #[test]
    fn a_job_keeps_at_most_its_latest_events_and_goes_on_numbering() {
        let mut job = job();
        for n in 0..u64::try_from(MAX_EVENTS).expect("small") {
            job.start(t(2_000 + n * 10), t(2_005 + n * 10))
                .expect("start");
        }
        assert_eq!(job.events.len(), MAX_EVENTS);
        assert_eq!(
            job.events.last().map(|e| e.seq),
            Some(MAX_EVENTS as u32 + 1)
        );
    }
}
