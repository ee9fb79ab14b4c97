//! `GET /api/images/:id/status`: the job's status document, with an `ETag`.
//! With `If-None-Match` naming the current document and `?wait=N` (at most
//! 25 s), an unfinished job's read is held until the job changes or the
//! time passes (then `304`): a long poll. Reading an overdue job also rings
//! the doorbell again (putting the job back if the queue lost it); in the
//! HTTP-only profile (`worker_url` set) it then, with the response already
//! complete, asks the worker (or, for a job waiting for its fetch, the fetch
//! worker) to drain. A job past its retention (`retention_hours`) is
//! removed and reads as 404.
//!
//! `GET /api/images/:id/events`: the job's events as server-sent events
//! (`darkroom_spin::events`).

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use std::time::Duration;

use darkroom_core::JobId;
use darkroom_core::ports::Clock as _;
use darkroom_core::service::{self, Ports, Queues, StatusReport, load_job};
use darkroom_spin::access::{self, Access};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::cors::Cors;
use darkroom_spin::events::EventStream;
use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::queue::connect_all_or_unreachable;
use darkroom_spin::routes::header;
use darkroom_spin::store::SpinKv;
use darkroom_spin::{config, outparam, routes, views, work};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

/// How often a held read looks at the job's record.
const HOLD_POLL: Duration = Duration::from_millis(250);

#[http_component]
async fn report_status(req: IncomingRequest, out: ResponseOutparam) {
    let cors = Cors::of(&req.headers());
    let streaming =
        header(&req.headers(), "spin-matched-route").is_some_and(|r| r.ends_with("/events"));
    if req.method() == Method::Options {
        return cors.send(
            out,
            cors.preflight(if streaming { "GET" } else { "GET, HEAD" }),
        );
    }
    if streaming {
        stream_events(&req, &cors, out);
        return;
    }
    let answer = status(&req);
    let overdue = answer
        .as_ref()
        .ok()
        .and_then(|(r, _)| r.overdue.then(|| r.job.awaits_source()));
    let notices_overdue = answer.as_ref().is_ok_and(|(r, _)| r.notices_overdue);
    cors.send(out, respond(answer.map(|(_, response)| response)));
    let worker = match overdue {
        Some(true) => config::fetch_worker_url(),
        Some(false) => config::worker_url(),
        None if notices_overdue => config::notify_worker_url(),
        None => None,
    };
    if let Some(url) = worker {
        work::kick_worker(&url).await;
    }
}

fn job_id(req: &IncomingRequest) -> Result<JobId, ApiError> {
    routes::path_param(&req.headers(), "id")
        .and_then(|id| JobId::parse(&id).ok())
        .ok_or(ApiError::NotFound)
}

fn status(req: &IncomingRequest) -> Result<(StatusReport, Response), ApiError> {
    if !matches!(req.method(), Method::Get | Method::Head) {
        return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    access::require(&req.headers(), Access::Read)?;
    let id = job_id(req)?;
    let wait = Duration::from_secs(routes::wait_query(&req.uri())?.unwrap_or(0));
    let if_none_match = header(&req.headers(), "if-none-match");
    let queue_config = config::queue()?;
    let retention = config::retention()?;
    let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
    let blobs = darkroom_spin::store::blob_store(&kv)?;
    // The queue only sharpens Retry-After and re-rings the doorbell; a status
    // read still answers when Redis is down.
    let [jobs, fetches, notices] = connect_all_or_unreachable(&queue_config);
    // Nobody is rung for here: a status read only re-rings overdue notices.
    let nobody = darkroom_core::notify::Subscriptions::default();
    let queues = Queues {
        jobs: jobs.as_ref(),
        fetches: fetches.as_ref(),
        notify: Some(darkroom_core::notify::Notifying {
            queue: notices.as_ref(),
            subscriptions: &nobody,
        }),
    };
    let ports = Ports {
        kv: &kv,
        blobs: blobs.as_ref(),
        clock: &SystemClock,
    };
    let read = || -> Result<StatusReport, ApiError> {
        let report = service::job_status(ports, queues, retention, id)
            .map_err(ApiError::StorageUnavailable)?
            .ok_or(ApiError::NotFound)?;
        if let Some(warning) = &report.warning {
            eprintln!("darkroom: status of {id}: queue: {warning}");
        }
        Ok(report)
    };
    let until = SystemClock.now().plus(wait);
    let mut report = read()?;
    loop {
        let response = views::status(&report);
        let etag = response
            .header("etag")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        if if_none_match.as_deref() != Some(etag.as_str()) {
            return Ok((report, response));
        }
        let seen = report.job.updated_at;
        // Held while the job is unfinished and unchanged, until `until`.
        let changed = !report.job.state.is_finished()
            && loop {
                if SystemClock.now().plus(HOLD_POLL) > until {
                    break false;
                }
                SystemClock.sleep(HOLD_POLL);
                match load_job(&kv, id).map_err(ApiError::StorageUnavailable)? {
                    Some(job) if job.updated_at == seen => {}
                    _ => break true,
                }
            };
        if !changed {
            let retry_after = report.retry_after_secs;
            return Ok((report, views::not_modified(&etag, retry_after)));
        }
        report = read()?;
    }
}

fn stream_events(req: &IncomingRequest, cors: &Cors, out: ResponseOutparam) {
    let opened = (|| -> Result<(SpinKv, JobId, u32, Duration), ApiError> {
        if req.method() != Method::Get {
            return Err(ApiError::MethodNotAllowed { allow: "GET" });
        }
        access::require(&req.headers(), Access::Read)?;
        let id = job_id(req)?;
        let after = routes::last_event_id(&req.headers(), &req.uri())?;
        let budget = config::stream_budget()?;
        let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
        let retention = config::retention()?;
        match load_job(&kv, id).map_err(ApiError::StorageUnavailable)? {
            Some(job) if !retention.expired(&job, SystemClock.now()) => Ok((kv, id, after, budget)),
            _ => Err(ApiError::NotFound),
        }
    })();
    match opened {
        Err(e) => cors.send(out, e.into_response()),
        Ok((kv, id, after, budget)) => {
            let stream = EventStream::new(&kv, &SystemClock, id, after, budget);
            let mut head = views::event_stream();
            cors.apply(&mut head);
            outparam::send(out, head, stream);
        }
    }
}
