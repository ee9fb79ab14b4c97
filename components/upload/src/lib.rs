//! `POST /api/images`: validates an upload and stores the original as it
//! arrives (the file is never held whole), records the job as queued and
//! puts it in the durable queue, then answers `202 Accepted`.
//! An ingest by URL is checked (never fetched here), recorded and put in the
//! fetcher's queue. A `callback_url` or `notify_email` sent with either is
//! checked first; a refused one is a `422` with nothing recorded.
//! With an `Idempotency-Key` a repeat of the same upload gets the first
//! answer again. In the HTTP-only profile (`worker_url` set) it then, with
//! the response already complete, asks the worker to drain the queue.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_core::idempotency::IdempotencyKey;
use darkroom_core::notify;
use darkroom_core::receive::Receiving;
use darkroom_core::service::{self, KeyUse, Once, Ports};
use darkroom_spin::access::{self, Access};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::cors::Cors;
use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::queue::AllQueues;
use darkroom_spin::routes::header;
use darkroom_spin::store::SpinKv;
use darkroom_spin::upload::Upload;
use darkroom_spin::{config, upload, views, work};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn accept_image(req: IncomingRequest, out: ResponseOutparam) {
    let cors = Cors::of(&req.headers());
    if req.method() == Method::Options {
        return cors.send(out, cors.preflight("POST"));
    }
    let accepted = accept(req).await;
    let worker = match &accepted {
        Ok((_, Upload::Url(_))) => config::fetch_worker_url(),
        Ok((_, Upload::File)) => config::worker_url(),
        Err(_) => None,
    };
    cors.send(out, respond(accepted.map(|(response, _)| response)));
    if let Some(url) = worker {
        work::kick_worker(&url).await;
    }
}

/// The answer, and what was accepted (only its kind matters afterwards).
async fn accept(req: IncomingRequest) -> Result<(Response, Upload), ApiError> {
    if req.method() != Method::Post {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    access::require(&req.headers(), Access::Write)?;
    let key = header(&req.headers(), "idempotency-key");
    let limits = config::limits()?;
    let queue_config = config::queue()?;
    let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
    let blobs = darkroom_spin::store::blob_store(&kv)?;
    // The file goes to storage as it arrives; the body is read whole before
    // the key is judged: a client still sending cannot read an answer given
    // too early.
    let mut receiving = if key.is_some() {
        Receiving::fingerprinted(blobs.as_ref(), limits)
    } else {
        Receiving::new(blobs.as_ref(), limits)
    };
    let (upload, request) = upload::read_upload(req, limits, &mut receiving).await?;
    let key = key.map(|h| IdempotencyKey::parse(&h)).transpose()?;
    let recipients = notify::recipients(
        request.callback_url.as_deref(),
        request.notify_email.as_deref(),
        &config::callback_rules()?,
        config::sends_email()?,
    )?;
    let queues = AllQueues::connect(&queue_config).map_err(ApiError::QueueUnavailable)?;
    let ports = Ports {
        kv: &kv,
        blobs: blobs.as_ref(),
        clock: &SystemClock,
    };
    let jobs = &queues.jobs;
    let answer = match (&upload, key) {
        (Upload::File, None) => views::accepted(&service::accept_received(
            ports,
            jobs,
            receiving.finish()?,
            &recipients,
        )?),
        (Upload::File, Some(key)) => {
            let ttl = config::idempotency_ttl()?;
            let key = KeyUse {
                records: jobs,
                key: &key,
                ttl,
            };
            answer_once(service::accept_received_once(
                ports,
                jobs,
                key,
                receiving.finish()?,
                &recipients,
            )?)
        }
        (Upload::Url(url), None) => {
            let rules = config::ingest_rules()?;
            views::accepted(&service::accept_url(
                ports,
                queues.ports(),
                url,
                &rules,
                &recipients,
            )?)
        }
        (Upload::Url(url), Some(key)) => {
            let (rules, ttl) = (config::ingest_rules()?, config::idempotency_ttl()?);
            let key = KeyUse {
                records: jobs,
                key: &key,
                ttl,
            };
            answer_once(service::accept_url_once(
                ports,
                queues.ports(),
                key,
                url,
                &rules,
                &recipients,
            )?)
        }
    };
    Ok((answer, upload))
}

fn answer_once(once: Once) -> Response {
    match once {
        Once::First { accepted, warning } => {
            if let Some(e) = warning {
                eprintln!(
                    "darkroom: job {} accepted, but its Idempotency-Key record was not completed: {e}",
                    accepted.job.id
                );
            }
            views::accepted(&accepted)
        }
        Once::Repeat(first) => views::accepted_again(first),
    }
}
