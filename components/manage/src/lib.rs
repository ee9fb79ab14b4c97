//! Taking a job back (AIP-151's CancelOperation and DeleteOperation):
//!
//! - `POST /api/images/:id/cancel`: a waiting job is `cancelled` at once
//!   (`200`, its status); one a processor holds is asked to stop (`202`, its
//!   status with `cancel_requested`); a finished one is a `409` problem.
//! - `DELETE /api/images/:id`: `204`, the record, the original, every output
//!   and its place in the queue removed; then `404`.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_core::JobId;
use darkroom_core::service::{self, Ports};
use darkroom_spin::access::{self, Access};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::cors::Cors;
use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::queue::AllQueues;
use darkroom_spin::routes::{self, header};
use darkroom_spin::store::SpinKv;
use darkroom_spin::{config, views};
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

#[http_component]
fn take_back(req: IncomingRequest) -> Response {
    let cors = Cors::of(&req.headers());
    let cancelling =
        header(&req.headers(), "spin-matched-route").is_some_and(|r| r.ends_with("/cancel"));
    let mut response = if req.method() == Method::Options {
        cors.preflight(if cancelling { "POST" } else { "DELETE" })
    } else {
        respond(manage(&req))
    };
    cors.apply(&mut response);
    response
}

fn manage(req: &IncomingRequest) -> Result<Response, ApiError> {
    let headers = req.headers();
    let id = routes::path_param(&headers, "id")
        .and_then(|id| JobId::parse(&id).ok())
        .ok_or(ApiError::NotFound)?;
    let cancelling = header(&headers, "spin-matched-route").is_some_and(|r| r.ends_with("/cancel"));
    match (cancelling, req.method()) {
        (true, Method::Post) | (false, Method::Delete) => {}
        (true, _) => return Err(ApiError::MethodNotAllowed { allow: "POST" }),
        (false, _) => return Err(ApiError::MethodNotAllowed { allow: "DELETE" }),
    }
    access::require(&headers, Access::Write)?;
    let queue_config = config::queue()?;
    let subscriptions = config::subscriptions()?;
    let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
    let blobs = darkroom_spin::store::blob_store(&kv)?;
    let queues = AllQueues::connect(&queue_config).map_err(ApiError::QueueUnavailable)?;
    let ports = Ports {
        kv: &kv,
        blobs: blobs.as_ref(),
        clock: &SystemClock,
    };
    if cancelling {
        Ok(views::cancelled(service::cancel_job(
            ports,
            queues.notifying(&subscriptions),
            id,
        )?))
    } else {
        service::delete_job(ports, queues.notifying(&subscriptions), id)?;
        Ok(views::deleted())
    }
}
