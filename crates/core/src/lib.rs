//! Darkroom's domain, free of any runtime: job identity and lifecycle, upload
//! validation, the key layout, blob chunking over a key-value port, the image
//! pipeline and the use cases (accept, look up, process) that drive them.
//!
//! Nothing here knows about Spin, HTTP or Redis: those live behind the
//! [`ports`] traits, which the `darkroom-spin` adapter implements and the
//! in-memory fakes in [`testing`] implement for unit tests.

pub mod access;
pub mod blob;
mod cost;
pub mod format;
mod gif;
mod icc;
pub mod id;
pub mod idempotency;
pub mod ingest;
pub mod job;
pub mod jpeg;
pub mod jpeg_recode;
pub mod keys;
pub mod metadata;
pub mod notify;
pub mod pipeline;
pub mod ports;
pub mod queue;
pub mod service;
pub mod testing;
pub mod time;
mod webp;

pub use id::JobId;
pub use job::{Job, JobState};
