//! Operator routes under `/internal/`, guarded by the `admin_token` bearer
//! token and disabled (404) while it is unset:
//!
//! - `POST /internal/sweep`: rings the processors' doorbell (a lapsed lease or
//!   a missed doorbell is then recovered) and reports the queue; for a
//!   scheduler such as a Kubernetes CronJob or `spin aka cron`. In the
//!   HTTP-only profile (`worker_url` set) it then, with the report sent,
//!   asks the worker to drain.
//! - `GET /internal/dead-letters`: the queue and its dead letters.
//! - `GET /internal/images?status=&limit=&page_token=`: the jobs, newest
//!   first, a page at a time (stable under new uploads).
//! - `POST /internal/dead-letters/{id}/redrive`: a failed job, queued again
//!   with a fresh set of attempts.
//! - `GET /internal/notifications/dead-letters`: jobs whose webhooks or
//!   e-mail ran out of attempts, with every notice;
//!   `POST /internal/notifications/dead-letters/{id}/redrive` makes the
//!   failed notices of one due again with fresh attempts.
//!
//! The sweep rings the notifier's doorbell too: a notice due in 5 hours is
//! sent by the first doorbell after that (any job's end, or the sweep).

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_core::JobId;
use darkroom_core::notify::{self, Subscriptions};
use darkroom_core::queue::Queue as _;
use darkroom_core::service::{self, Ports, Swept};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::queue::AllQueues;
use darkroom_spin::routes::{self, header};
use darkroom_spin::store::SpinKv;
use darkroom_spin::{config, outparam, views, work};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn administer(req: IncomingRequest, out: ResponseOutparam) {
    let answer = admin(&req);
    let swept = answer.is_ok()
        && req.method() == Method::Post
        && header(&req.headers(), "spin-path-info").as_deref() == Some("/sweep");
    outparam::send_buffered(out, respond(answer));
    if swept {
        for url in [
            config::worker_url(),
            config::fetch_worker_url(),
            config::notify_worker_url(),
        ]
        .into_iter()
        .flatten()
        {
            work::kick_worker(&url).await;
        }
    }
}

fn admin(req: &IncomingRequest) -> Result<Response, ApiError> {
    let headers = req.headers();
    let Some(token) = config::admin_token()? else {
        return Err(ApiError::NotFound);
    };
    if !token.permit(header(&headers, "authorization").as_deref()) {
        return Err(ApiError::Unauthorized);
    }
    let path = header(&headers, "spin-path-info").unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let queue_config = config::queue()?;
    let queues = AllQueues::connect(&queue_config).map_err(ApiError::QueueUnavailable)?;
    let queue = &queues.jobs;
    match (req.method(), segments.as_slice()) {
        (Method::Post, ["sweep"]) => {
            let retention = config::retention()?;
            let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
            let blobs = darkroom_spin::store::blob_store(&kv)?;
            let ports = Ports {
                kv: &kv,
                blobs: blobs.as_ref(),
                clock: &SystemClock,
            };
            let nobody = Subscriptions::default();
            let swept = service::sweep_expired(ports, queues.notifying(&nobody), retention)
                .map_err(ApiError::StorageUnavailable)?;
            queue.ring().map_err(ApiError::QueueUnavailable)?;
            queues.fetches.ring().map_err(ApiError::QueueUnavailable)?;
            queues.notices.ring().map_err(ApiError::QueueUnavailable)?;
            report(&queues, Some(swept))
        }
        (Method::Get, ["dead-letters"]) => report(&queues, None),
        (Method::Get, ["images"]) => {
            let query = routes::listing_query(&req.uri())?;
            let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
            let listing = service::list_jobs(
                &kv,
                queue,
                query.status.as_deref(),
                query.limit,
                query.page_token.as_deref(),
            )
            .map_err(ApiError::QueueUnavailable)?;
            Ok(views::listing(&listing))
        }
        (_, ["images"]) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (Method::Post, ["dead-letters", id, "redrive"]) => {
            let id = JobId::parse(id).map_err(|_| ApiError::NotFound)?;
            let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
            service::redrive(&kv, &SystemClock, queues.ports(), id)?;
            report(&queues, None)
        }
        (Method::Get, ["notifications", "dead-letters"]) => {
            let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
            notification_letters(&kv, &queues)
        }
        (Method::Post, ["notifications", "dead-letters", id, "redrive"]) => {
            let id = JobId::parse(id).map_err(|_| ApiError::NotFound)?;
            let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
            let blobs = darkroom_spin::store::blob_store(&kv)?;
            let ports = Ports {
                kv: &kv,
                blobs: blobs.as_ref(),
                clock: &SystemClock,
            };
            notify::redrive_notices(ports, &queues.notices, id).map_err(|e| match e {
                notify::RedriveNoticesError::NothingFailed(_) => ApiError::Conflict(e.to_string()),
                notify::RedriveNoticesError::Port(e) => ApiError::StorageUnavailable(e),
            })?;
            notification_letters(&kv, &queues)
        }
        (_, ["notifications", "dead-letters"]) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (_, ["notifications", "dead-letters", _, "redrive"]) => {
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        }
        (_, ["sweep"] | ["dead-letters", ..]) => {
            Err(ApiError::MethodNotAllowed { allow: "POST, GET" })
        }
        _ => Err(ApiError::NotFound),
    }
}

/// The notifier's dead letters, each with its notices.
fn notification_letters(kv: &SpinKv, queues: &AllQueues) -> Result<Response, ApiError> {
    let mut letters = Vec::new();
    for id in queues
        .notices
        .dead_letters()
        .map_err(ApiError::QueueUnavailable)?
    {
        let notices = notify::load_notices(kv, id).map_err(ApiError::StorageUnavailable)?;
        letters.push((id, notices.unwrap_or_default()));
    }
    Ok(views::notification_dead_letters(&letters))
}

fn report(queues: &AllQueues, swept: Option<Swept>) -> Result<Response, ApiError> {
    let stats = queues.jobs.stats().map_err(ApiError::QueueUnavailable)?;
    let fetches = queues.fetches.stats().map_err(ApiError::QueueUnavailable)?;
    let mut dead = queues
        .jobs
        .dead_letters()
        .map_err(ApiError::QueueUnavailable)?;
    dead.extend(
        queues
            .fetches
            .dead_letters()
            .map_err(ApiError::QueueUnavailable)?,
    );
    Ok(views::queue(stats, fetches.depth, &dead, swept))
}
