//! Darkroom's job domain, free of any runtime: job identity and lifecycle,
//! the key layout, blob chunking over a key-value port, and the use cases
//! (accept, look up, process) that drive the image work of
//! [`darkroom_imaging`].
//!
//! Nothing here knows about Spin, HTTP or Redis: those live behind the
//! [`ports`] traits, which the `darkroom-spin` adapter implements and the
//! in-memory fakes in [`testing`] implement for unit tests.

pub mod access;
pub mod blob;
pub mod id;
pub mod idempotency;
pub mod ingest;
pub mod job;
pub mod keys;
pub mod notify;
pub mod ports;
pub mod queue;
pub mod receive;
pub mod service;
pub mod testing;
pub mod time;

/// What an upload is and the limits it is held to (from `darkroom-imaging`):
/// jobs, problems and configuration speak in these types.
pub use darkroom_imaging::format;
/// The image work a job runs (from `darkroom-imaging`).
pub use darkroom_imaging::pipeline;
pub use id::JobId;
pub use job::{Job, JobState};
