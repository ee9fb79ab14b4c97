//! The use cases, written against the ports: accept an upload, look a job
//! up, process a queue message, open a job's file. Components call exactly
//! one of these and map the outcome to their trigger's answer.

use thiserror::Error;

use crate::format::{InvalidImage, Limits, inspect};
use crate::id::{InvalidJobId, JobId};
use crate::job::{Failure, FailureCode, Job, JobState, Output, Outputs, TransitionError};
use crate::keys::{self, BlobKey};
use crate::pipeline::{self, PipelineError, Rendition, Variant};
use crate::ports::{Blob, BlobStore, Clock, KeyValue, PortError, Queue};

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

/// Why an upload was not accepted. Nothing is left behind in any case.
#[derive(Debug, Error)]
pub enum AcceptError {
    /// The upload is not an acceptable image.
    #[error(transparent)]
    Invalid(#[from] InvalidImage),
    /// The original or the job record could not be stored.
    #[error("storage is unavailable: {0}")]
    Storage(PortError),
    /// The job could not be announced to the processors.
    #[error("the queue is unavailable: {0}")]
    Queue(PortError),
}

/// Validates `bytes`, stores the original, records the job as queued and
/// announces it. Either all of that happens or none of it does.
///
/// # Errors
/// [`AcceptError`]; after an error no job record and no original remain
/// (unless the store also refused the clean-up, which the error then says).
pub fn accept_upload(
    ports: Ports<'_>,
    queue: &dyn Queue,
    bytes: &[u8],
    limits: Limits,
) -> Result<Job, AcceptError> {
    let info = inspect(bytes, limits)?;
    let job = Job::queued(JobId::new_random(), info, ports.clock.now());
    let original = BlobKey::original(job.id);
    ports
        .blobs
        .put(&original, info.format.mime(), bytes)
        .map_err(AcceptError::Storage)?;
    if let Err(e) = save_job(ports.kv, &job) {
        return Err(AcceptError::Storage(undo(
            e,
            [ports.blobs.delete(&original)],
        )));
    }
    if let Err(e) = queue.enqueue(job.id) {
        let undone = [
            ports.kv.delete(&keys::job(job.id)),
            ports.blobs.delete(&original),
        ];
        return Err(AcceptError::Queue(undo(e, undone)));
    }
    Ok(job)
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

/// How long a client should wait before asking again about `job`, in
/// seconds; `None` once it has finished.
pub const fn retry_after_secs(job: &Job) -> Option<u32> {
    match job.state {
        JobState::Queued | JobState::Processing { .. } => Some(1),
        JobState::Completed { .. } | JobState::Failed { .. } => None,
    }
}

/// What handling one queue message did.
#[derive(Debug, PartialEq, Eq)]
pub enum ProcessOutcome {
    /// The job is now completed.
    Completed(Job),
    /// The job is now failed, for the reason in its state.
    Failed(Job),
    /// The job was not waiting (already taken or finished): nothing done.
    Skipped {
        /// The job.
        id: JobId,
        /// Its state, which was left alone.
        state: &'static str,
    },
    /// No such job (its upload was rolled back): nothing done.
    Unknown(JobId),
}

/// Why a message could not be handled at all.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// The message is not a job id. Only the id is read from a message.
    #[error("the message is not a job id: {0}")]
    BadMessage(#[from] InvalidJobId),
    /// The job record could not be read or written.
    #[error("storage is unavailable: {0}")]
    Storage(#[from] PortError),
    /// Two processors raced for one job.
    #[error(transparent)]
    Transition(#[from] TransitionError),
}

/// Handles one queue message: takes the job it names, makes every
/// derivative, and records the result. Trusts nothing in the message but
/// the job id; everything else is read from storage.
///
/// # Errors
/// [`ProcessError`] when the message is malformed or the job record cannot
/// be read or written. Problems with the image itself are not errors: they
/// end the job as failed ([`ProcessOutcome::Failed`]).
pub fn process_message(
    ports: Ports<'_>,
    message: &[u8],
    limits: Limits,
) -> Result<ProcessOutcome, ProcessError> {
    let text = std::str::from_utf8(message).map_err(|_| InvalidJobId)?;
    let id = JobId::parse(text.trim())?;
    let Some(mut job) = load_job(ports.kv, id)? else {
        return Ok(ProcessOutcome::Unknown(id));
    };
    if !matches!(job.state, JobState::Queued) {
        return Ok(ProcessOutcome::Skipped {
            id,
            state: job.state.name(),
        });
    }
    job.start(ports.clock.now())?;
    save_job(ports.kv, &job)?;

    match make_outputs(ports, id, limits) {
        Ok(outputs) => {
            job.complete(outputs, ports.clock.now())?;
            save_job(ports.kv, &job)?;
            Ok(ProcessOutcome::Completed(job))
        }
        Err(failure) => {
            job.fail(failure, ports.clock.now())?;
            save_job(ports.kv, &job)?;
            Ok(ProcessOutcome::Failed(job))
        }
    }
}

fn make_outputs(ports: Ports<'_>, id: JobId, limits: Limits) -> Result<Outputs, Failure> {
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
    let renditions = pipeline::render(&original.bytes, limits).map_err(|e| Failure {
        code: match e {
            PipelineError::Invalid(InvalidImage::TooManyPixels { .. }) => {
                FailureCode::LimitsExceeded
            }
            PipelineError::Invalid(_) | PipelineError::Decode(_) | PipelineError::Encode(_) => {
                FailureCode::UndecodableImage
            }
        },
        message: e.to_string(),
    })?;
    let store = |r: &Rendition| -> Result<Output, Failure> {
        let key = BlobKey::derivative(id, r.variant, r.format);
        ports
            .blobs
            .put(&key, r.format.mime(), &r.bytes)
            .map_err(storage)?;
        Ok(Output {
            key,
            format: r.format,
            width: r.width,
            height: r.height,
            bytes: r.bytes.len() as u64,
        })
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
    Ok(Outputs {
        thumbnail: store(find(Variant::Thumbnail)?)?,
        preview: store(find(Variant::Preview)?)?,
        optimized: store(find(Variant::Optimized)?)?,
    })
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

/// The bytes of `file` of job `id`.
///
/// # Errors
/// [`FileError`].
pub fn open_file(ports: Ports<'_>, id: JobId, file: FileName) -> Result<Blob, FileError> {
    let job = load_job(ports.kv, id)?.ok_or(FileError::NoSuchJob)?;
    let key = match (file, &job.state) {
        (FileName::Original, _) => BlobKey::original(id),
        (FileName::Derivative(v), JobState::Completed { outputs }) => outputs.get(v).key.clone(),
        (FileName::Derivative(v), state) => {
            return Err(FileError::NotReady {
                state: state.name(),
                name: v.name(),
            });
        }
    };
    ports.blobs.get(&key)?.ok_or(FileError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::KvBlobStore;
    use crate::format::ImageFormat;
    use crate::testing::{ManualClock, MemoryKv, MemoryQueue, encode_png, gradient};

    struct World {
        kv: MemoryKv,
        queue: MemoryQueue,
        clock: ManualClock,
    }

    impl World {
        fn new() -> Self {
            Self {
                kv: MemoryKv::default(),
                queue: MemoryQueue::default(),
                clock: ManualClock::at(1_700_000_000_000),
            }
        }

        fn with_ports<T>(&self, f: impl FnOnce(Ports<'_>) -> T) -> T {
            let blobs = KvBlobStore::new(&self.kv);
            f(Ports {
                kv: &self.kv,
                blobs: &blobs,
                clock: &self.clock,
            })
        }

        fn accept(&self, bytes: &[u8]) -> Result<Job, AcceptError> {
            self.with_ports(|p| accept_upload(p, &self.queue, bytes, Limits::default()))
        }

        fn process_next(&self) -> Result<ProcessOutcome, ProcessError> {
            let id = self.queue.enqueued.borrow_mut().remove(0);
            self.with_ports(|p| process_message(p, id.to_string().as_bytes(), Limits::default()))
        }

        fn job(&self, id: JobId) -> Job {
            load_job(&self.kv, id).expect("readable").expect("exists")
        }
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        encode_png(&gradient(w, h, false))
    }

    #[test]
    fn an_accepted_upload_is_stored_recorded_as_queued_and_announced() {
        let world = World::new();
        let bytes = png(40, 30);
        let job = world.accept(&bytes).expect("accepted");
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.original.format, ImageFormat::Png);
        assert_eq!(*world.queue.enqueued.borrow(), vec![job.id]);
        assert_eq!(world.job(job.id), job);
        let original = world
            .with_ports(|p| open_file(p, job.id, FileName::Original))
            .expect("original");
        assert_eq!(original.bytes, bytes);
    }

    #[test]
    fn an_upload_that_cannot_be_announced_leaves_nothing_behind() {
        let world = World::new();
        world.queue.down.set(true);
        let err = world.accept(&png(40, 30)).expect_err("queue down");
        assert!(matches!(err, AcceptError::Queue(_)), "{err}");
        assert!(world.kv.is_empty(), "left behind: {:?}", world.kv.keys());
    }

    #[test]
    fn an_upload_whose_record_cannot_be_written_leaves_nothing_behind() {
        let world = World::new();
        world.kv.fail_sets_after(2); // the original's chunk and manifest, not the record
        let err = world.accept(&png(40, 30)).expect_err("store full");
        assert!(matches!(err, AcceptError::Storage(_)), "{err}");
        assert!(world.kv.is_empty(), "left behind: {:?}", world.kv.keys());
        assert!(world.queue.enqueued.borrow().is_empty());
    }

    #[test]
    fn an_invalid_upload_touches_nothing() {
        let world = World::new();
        let err = world.accept(b"not an image").expect_err("invalid");
        assert!(
            matches!(err, AcceptError::Invalid(InvalidImage::UnsupportedFormat)),
            "{err}"
        );
        assert!(world.kv.is_empty());
    }

    #[test]
    fn processing_a_queued_job_completes_it_with_every_derivative() {
        let world = World::new();
        let job = world.accept(&png(1000, 500)).expect("accepted");
        world.clock.advance(1_500);
        let outcome = world.process_next().expect("processed");
        let ProcessOutcome::Completed(done) = outcome else {
            panic!("expected completion, got {outcome:?}");
        };
        assert_eq!(done.attempts, 1);
        assert_eq!(
            done.updated_at.unix_millis() - done.created_at.unix_millis(),
            1_500
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
                .with_ports(|p| open_file(p, job.id, FileName::Derivative(v)))
                .expect("derivative stored");
            assert_eq!(blob.meta.content_type, "image/jpeg");
            assert_eq!(blob.meta.size, outputs.get(v).bytes);
        }
    }

    #[test]
    fn a_second_message_for_a_finished_job_changes_nothing() {
        let world = World::new();
        let job = world.accept(&png(300, 200)).expect("accepted");
        world.process_next().expect("first");
        let before = world.kv.len();
        let again = world
            .with_ports(|p| process_message(p, job.id.to_string().as_bytes(), Limits::default()));
        assert_eq!(
            again.expect("handled"),
            ProcessOutcome::Skipped {
                id: job.id,
                state: "completed"
            }
        );
        assert_eq!(world.kv.len(), before, "no second set of outputs");
    }

    #[test]
    fn an_image_that_cannot_be_decoded_ends_failed_with_a_reason() {
        let world = World::new();
        let mut bytes = png(300, 200);
        let idat = bytes
            .windows(4)
            .position(|w| w == b"IDAT")
            .expect("an IDAT chunk");
        let end = bytes.len();
        bytes[idat + 8..end - 20].fill(0x5A); // a valid header over garbage pixel data
        let job = world.accept(&bytes).expect("the header is fine");
        let outcome = world.process_next().expect("handled");
        assert!(matches!(outcome, ProcessOutcome::Failed(_)), "{outcome:?}");
        let JobState::Failed { error } = world.job(job.id).state else {
            panic!("not failed");
        };
        assert_eq!(error.code, FailureCode::UndecodableImage);
        assert!(
            error.message.contains("cannot be decoded"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_message_that_is_not_a_job_id_is_refused_and_touches_nothing() {
        let world = World::new();
        for message in [
            &b"{\"id\":\"x\"}"[..],
            b"",
            b"\xFF\xFE",
            b"../../etc/passwd",
        ] {
            let err = world
                .with_ports(|p| process_message(p, message, Limits::default()))
                .expect_err("bad message");
            assert!(matches!(err, ProcessError::BadMessage(_)), "{err}");
        }
        assert!(world.kv.is_empty());
    }

    #[test]
    fn a_message_for_an_unknown_job_does_nothing() {
        let world = World::new();
        let id = JobId::new_random();
        let outcome =
            world.with_ports(|p| process_message(p, id.to_string().as_bytes(), Limits::default()));
        assert_eq!(outcome.expect("handled"), ProcessOutcome::Unknown(id));
        assert!(world.kv.is_empty());
    }

    #[test]
    fn derivatives_are_not_served_before_the_job_completes() {
        let world = World::new();
        let job = world.accept(&png(300, 200)).expect("accepted");
        let err = world
            .with_ports(|p| open_file(p, job.id, FileName::Derivative(Variant::Thumbnail)))
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
        let missing = world.with_ports(|p| open_file(p, JobId::new_random(), FileName::Original));
        assert!(matches!(missing, Err(FileError::NoSuchJob)));
    }

    #[test]
    fn unfinished_jobs_ask_clients_to_come_back_and_finished_ones_do_not() {
        let world = World::new();
        let job = world.accept(&png(30, 20)).expect("accepted");
        assert_eq!(retry_after_secs(&job), Some(1));
        world.process_next().expect("processed");
        assert_eq!(retry_after_secs(&world.job(job.id)), None);
    }
}
