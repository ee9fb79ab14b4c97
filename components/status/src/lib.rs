//! `GET /api/images/:id/status`: the job's status document. Reading an
//! overdue job also rings the processors' doorbell again (putting the job
//! back if the queue lost it); in the HTTP-only profile (`worker_url` set)
//! it then, with the response already complete, asks the worker to drain.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_core::JobId;
use darkroom_core::service::{self, StatusReport};
use darkroom_spin::access::{self, Access};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::queue::connect_or_unreachable;
use darkroom_spin::store::SpinKv;
use darkroom_spin::{config, outparam, routes, views, work};
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn report_status(req: IncomingRequest, out: ResponseOutparam) {
    let report = status(&req);
    let overdue = report.as_ref().is_ok_and(|r| r.overdue);
    outparam::send_buffered(out, respond(report.map(|r| views::status(&r))));
    if overdue && let Some(url) = config::worker_url() {
        work::kick_worker(&url).await;
    }
}

fn status(req: &IncomingRequest) -> Result<StatusReport, ApiError> {
    if !matches!(req.method(), Method::Get | Method::Head) {
        return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    access::require(&req.headers(), Access::Read)?;
    let id = routes::path_param(&req.headers(), "id")
        .and_then(|id| JobId::parse(&id).ok())
        .ok_or(ApiError::NotFound)?;
    let queue_config = config::queue()?;
    let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
    // The queue only sharpens Retry-After and re-rings the doorbell; a status
    // read still answers when Redis is down.
    let queue = connect_or_unreachable(&queue_config.redis_url, &queue_config.channel);
    let report = service::job_status(&kv, &SystemClock, queue.as_ref(), id)
        .map_err(ApiError::StorageUnavailable)?
        .ok_or(ApiError::NotFound)?;
    if let Some(warning) = &report.warning {
        eprintln!("darkroom: status of {id}: queue: {warning}");
    }
    Ok(report)
}
