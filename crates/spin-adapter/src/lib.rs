//! Darkroom on Spin: the only crate that calls `spin_sdk`.
//!
//! - [`access`]: the bearer-token guard on the public routes;
//! - [`cors`]: cross-origin access for browser pages elsewhere;
//! - [`store`], [`queue`], [`clock`]: the core's ports on Spin's key-value
//!   store, outbound Redis and the system clock;
//! - [`config`]: Spin variables, parsed once per request;
//! - [`problem`]: the one mapping from every error to an RFC 9457 response;
//! - [`upload`], [`views`], [`routes`], [`outparam`]: the HTTP edge the
//!   components share ([`outparam`] streams large bodies out);
//! - [`s3`]: the S3-compatible blob store and its presigned links;
//! - [`events`]: a job's event log as server-sent events;
//! - [`fetch`]: outbound HTTP for ingest by URL and for notices (the
//!   fetcher's and the notifier's ports);
//! - [`messages`]: the webhook and e-mail bodies the notifier sends;
//! - [`work`]: draining the queues (the processor, the fetcher, the
//!   HTTP-only workers) and kicking a worker after a response.
//!
//! Components build these adapters, call one `darkroom_core::service`
//! function and return what it maps to.

pub mod access;
pub mod clock;
pub mod config;
pub mod cors;
pub mod events;
pub mod fetch;
pub mod messages;
pub mod outparam;
pub mod problem;
pub mod queue;
pub mod routes;
pub mod s3;
pub mod store;
pub mod upload;
pub mod views;
pub mod work;
