//! Darkroom's end-to-end suite: one binary that drives the app only from
//! outside (HTTP in, JSON and bytes out) through a [`helpers::TestApp`].
//!
//! Runtime: the wasmtime test host by default; `DARKROOM_TEST_RUNTIME=spin`
//! runs the same tests against `spin up` (`spin` on `PATH`, or `SPIN_BIN`)
//! and fails if it is missing. `DARKROOM_TEST_REDIS_URL` names the Redis
//! server (scripts/test.sh starts one).

mod access;
mod browser;
mod contract;
mod delivery;
mod events;
mod files;
mod helpers;
mod http_only;
mod idempotency;
mod images;
mod ingest;
mod lifecycle;
mod notify;
mod processing;
mod status;
mod topology;
mod upload;
