//! `POST /api/images`: validates an upload, stores the original, records the
//! job as queued and puts it in the durable queue, then answers `202 Accepted`.
//! With an `Idempotency-Key` a repeat of the same upload gets the first
//! answer again. In the HTTP-only profile (`worker_url` set) it then, with
//! the response already complete, asks the worker to drain the queue.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_core::idempotency::IdempotencyKey;
use darkroom_core::service::{self, Once, Ports};
use darkroom_spin::access::{self, Access};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::queue::RedisQueue;
use darkroom_spin::routes::header;
use darkroom_spin::store::SpinKv;
use darkroom_spin::{config, outparam, upload, views, work};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn accept_image(req: IncomingRequest, out: ResponseOutparam) {
    let accepted = accept(req).await;
    let queued = accepted.is_ok();
    outparam::send_buffered(out, respond(accepted));
    if queued && let Some(url) = config::worker_url() {
        work::kick_worker(&url).await;
    }
}

async fn accept(req: IncomingRequest) -> Result<Response, ApiError> {
    if req.method() != Method::Post {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    access::require(&req.headers(), Access::Write)?;
    let key = header(&req.headers(), "idempotency-key");
    let limits = config::limits()?;
    let queue_config = config::queue()?;
    // The body is read before the key is judged: a client still sending
    // cannot read an answer given too early.
    let bytes = upload::read_upload(req, limits).await?;
    let key = key.map(|h| IdempotencyKey::parse(&h)).transpose()?;
    let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
    let blobs = darkroom_spin::store::blob_store(&kv)?;
    let queue = RedisQueue::connect(&queue_config.redis_url, &queue_config.channel)
        .map_err(ApiError::QueueUnavailable)?;
    let ports = Ports {
        kv: &kv,
        blobs: blobs.as_ref(),
        clock: &SystemClock,
    };
    let Some(key) = key else {
        let accepted = service::accept_upload(ports, &queue, &bytes, limits)?;
        return Ok(views::accepted(&accepted));
    };
    let ttl = config::idempotency_ttl()?;
    match service::accept_upload_once(ports, &queue, &queue, &key, ttl, &bytes, limits)? {
        Once::First { accepted, warning } => {
            if let Some(e) = warning {
                eprintln!(
                    "darkroom: job {} accepted, but its Idempotency-Key record was not completed: {e}",
                    accepted.job.id
                );
            }
            Ok(views::accepted(&accepted))
        }
        Once::Repeat(first) => Ok(views::accepted_again(first)),
    }
}
