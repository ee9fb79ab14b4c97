//! `GET /api/images/:id/status`: the job's status document. Reading an
//! overdue job also rings the processors' doorbell again (putting the job
//! back if the queue lost it); in the HTTP-only profile (`worker_url` set)
//! it then, with the response already complete, asks the worker (or, for a
//! job waiting for its fetch, the fetch worker) to drain. A job past its
//! retention (`retention_hours`) is removed and reads as 404.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_core::JobId;
use darkroom_core::service::{self, Ports, Queues, StatusReport};
use darkroom_spin::access::{self, Access};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::queue::connect_both_or_unreachable;
use darkroom_spin::store::SpinKv;
use darkroom_spin::{config, outparam, routes, views, work};
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn report_status(req: IncomingRequest, out: ResponseOutparam) {
    let report = status(&req);
    let overdue = report
        .as_ref()
        .ok()
        .filter(|r| r.overdue)
        .map(|r| r.job.awaits_source());
    outparam::send_buffered(out, respond(report.map(|r| views::status(&r))));
    let worker = match overdue {
        Some(true) => config::fetch_worker_url(),
        Some(false) => config::worker_url(),
        None => None,
    };
    if let Some(url) = worker {
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
    let retention = config::retention()?;
    let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
    let blobs = darkroom_spin::store::blob_store(&kv)?;
    // The queue only sharpens Retry-After and re-rings the doorbell; a status
    // read still answers when Redis is down.
    let (jobs, fetches) = connect_both_or_unreachable(&queue_config);
    let queues = Queues {
        jobs: jobs.as_ref(),
        fetches: fetches.as_ref(),
    };
    let ports = Ports {
        kv: &kv,
        blobs: blobs.as_ref(),
        clock: &SystemClock,
    };
    let report = service::job_status(ports, queues, retention, id)
        .map_err(ApiError::StorageUnavailable)?
        .ok_or(ApiError::NotFound)?;
    if let Some(warning) = &report.warning {
        eprintln!("darkroom: status of {id}: queue: {warning}");
    }
    Ok(report)
}
