//! `POST /api/images`: validates an upload, stores the original, records the
//! job as queued and puts it in the durable queue, then answers `202 Accepted`.
//! In the HTTP-only profile (`worker_url` set) it then, with the response
//! already complete, asks the worker to drain the queue.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_core::service::{self, Ports};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::queue::RedisQueue;
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
    let limits = config::limits()?;
    let queue_config = config::queue()?;
    let bytes = upload::read_upload(req, limits).await?;
    let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
    let blobs = darkroom_spin::store::blob_store(&kv)?;
    let queue = RedisQueue::connect(&queue_config.redis_url, &queue_config.channel)
        .map_err(ApiError::QueueUnavailable)?;
    let ports = Ports {
        kv: &kv,
        blobs: blobs.as_ref(),
        clock: &SystemClock,
    };
    let accepted = service::accept_upload(ports, &queue, &bytes, limits)?;
    Ok(views::accepted(&accepted))
}
