//! A test host for Darkroom that runs the **built** `.wasm` components
//! through the **real** `spin.toml` the way `spin up` does, on wasmtime,
//! because the Spin CLI cannot be installed where the tests run.
//!
//! # Spin behaviours reproduced
//! Checked against Spin's source (`spinframework/spin`: `crates/http/src/routes.rs`,
//! `crates/trigger-http/src/headers.rs`, `crates/trigger-redis/src/lib.rs`).
//! - Manifest v2: `[variables]`, `[[trigger.http]]`, `[[trigger.redis]]`,
//!   `[application.trigger.redis] address`, `[component.*]` `source`,
//!   `key_value_stores`, `allowed_outbound_hosts`, `variables` ([`manifest`]).
//! - Routing with the same `routefinder` crate: exact beats `:param` beats
//!   wildcard, `/...` tails, private routes unroutable, 404 otherwise; the
//!   `spin-*` request headers including `spin-path-match-<name>` ([`routes`]).
//! - A fresh instance per request and per Redis message; guest output captured.
//! - `fermyon:spin/key-value@2.0.0` in memory (the tests' default), in
//!   `--state-dir`'s SQLite file, or on Redis from a runtime config, each as
//!   Spin's backend crate stores it; grants enforced ([`kv`], [`runtime_config`]).
//! - `fermyon:spin/redis@2.0.0` against a real Redis, `allowed_outbound_hosts`
//!   enforced ([`redis_out`]).
//! - The Redis trigger (`crates/trigger-redis/src/lib.rs`): it `SUBSCRIBE`s
//!   the real channel and awaits each message's handler before reading the
//!   next, so a lost connection is noticed once the running handler returns.
//!   Then, as in Spin, the whole app ends: `run_listener` returns
//!   "disconnected from <addr>", the trigger process exits with an error, and
//!   `spin up` (`src/commands/up.rs`: `select_all` over the trigger
//!   processes, "A trigger exited unexpectedly. Terminating.") kills
//!   the HTTP trigger too: the listener closes, open connections drop,
//!   running instances trap ([`host::RunningApp::exit_reason`]). A Redis
//!   that cannot be reached at start fails the start.
//! - An app (or `--component-id` subset) with no HTTP trigger does not listen
//!   and refuses an explicit `--listen`, as `spin up -c processor` does
//!   (`error: unexpected argument '--listen' found`).
//! - `fermyon:spin/variables@2.0.0`: defaults, `SPIN_VARIABLE_*` overrides, templates ([`variables`]).
//! - Outbound HTTP refused (`HttpRequestDenied`) unless allowed; service chaining
//!   to `http://<component>.spin.internal` in process ([`outbound`]).
//! - `--max-instance-memory` as [`host::HostConfig::max_instance_memory`].
//!
//! # Not reproduced
//! - Other Spin interfaces (SQLite, LLM, MySQL, Postgres, MQTT, `wasi:keyvalue`,
//!   `wasi:config`): a component importing one fails to start, naming the import.
//! - Runtime config sections other than key-value stores and
//!   `[outbound_networking]`; `block_networks` is parsed, not enforced. WAGI, HTTPS, HTTP/2,
//!   `self` in `allowed_outbound_hosts`, application `base` paths other than `/`.
//! - Spin validates templates lazily at `variables::get`; this host renders all
//!   component variables at start, so a bad template fails earlier here.

pub mod bindings;
pub mod host;
pub mod kv;
pub mod manifest;
pub mod outbound;
pub mod redis_out;
pub mod routes;
pub mod runtime_config;
pub mod variables;
