//! The JSON representations and headers of Darkroom's resources: the 202
//! answer to an upload, the status document, and a served file.

use darkroom_core::format::ImageInfo;
use darkroom_core::idempotency::FirstAnswer;
use darkroom_core::job::{Attempt, Failure, Output};
use darkroom_core::pipeline::Variant;
use darkroom_core::ports::BlobMeta;
use darkroom_core::queue::QueueStats;
use darkroom_core::service::{Accepted as AcceptedJob, Cancelled, FileName, Listing, StatusReport};
use darkroom_core::{JobId, JobState};
use serde::Serialize;
use spin_sdk::http::Response;
use std::collections::BTreeMap;

use crate::routes;

#[derive(Serialize)]
struct Accepted<'a> {
    id: String,
    status: &'static str,
    links: BTreeMap<&'a str, String>,
}

#[derive(Serialize)]
struct Status<'a> {
    id: String,
    status: &'static str,
    created_at: String,
    updated_at: String,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_at: Option<String>,
    #[serde(skip_serializing_if = "<[Attempt]>::is_empty")]
    history: &'a [Attempt],
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<&'a ImageInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a darkroom_core::job::Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    links: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outputs: Option<BTreeMap<&'static str, OutputView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a Failure>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cancel_requested: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notifications: Vec<NotificationView>,
}

/// One notice as clients see it: where to (host or e-mail domain only).
#[derive(Serialize)]
struct NotificationView {
    channel: &'static str,
    target: String,
    event: String,
    state: darkroom_core::notify::NoticeState,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
}

impl From<&darkroom_core::notify::Notice> for NotificationView {
    fn from(n: &darkroom_core::notify::Notice) -> Self {
        use darkroom_core::notify::{NoticeState, Target};
        Self {
            channel: match n.target {
                Target::Webhook { .. } => "webhook",
                Target::Email { .. } => "email",
            },
            target: n.target.shown(),
            event: n.kind.clone(),
            state: n.state,
            attempts: n.attempts,
            last_status: n.last_status,
            last_error: n.last_error.clone(),
            next_attempt_at: (n.state == NoticeState::Pending)
                .then_some(n.next_attempt_at)
                .flatten()
                .map(|t| t.to_string()),
        }
    }
}

#[derive(Serialize)]
struct OutputView {
    content_type: &'static str,
    width: u32,
    height: u32,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_percent: Option<f64>,
}

impl OutputView {
    /// The view of `output` of `variant`; the optimized copy also says what
    /// it saved against `original`.
    fn of(variant: Variant, output: &Output, original: Option<&ImageInfo>) -> Self {
        let mut view = Self::from(output);
        if let (Variant::Optimized, Some(original)) = (variant, original)
            && original.bytes > 0
        {
            let saved = original.bytes.saturating_sub(output.bytes);
            view.saved_bytes = Some(saved);
            view.saved_percent =
                Some((saved as f64 * 1000.0 / original.bytes as f64).round() / 10.0);
        }
        view
    }
}

impl From<&Output> for OutputView {
    fn from(o: &Output) -> Self {
        Self {
            content_type: o.format.mime(),
            width: o.width,
            height: o.height,
            bytes: o.bytes,
            saved_bytes: None,
            saved_percent: None,
        }
    }
}

fn json_response(status: u16, body: &impl Serialize) -> spin_sdk::http::ResponseBuilder {
    let mut builder = Response::builder();
    builder
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(serde_json::to_vec(body).unwrap_or_default());
    builder
}

/// `202 Accepted` for a queued job, pointing at its status.
pub fn accepted(accepted: &AcceptedJob) -> Response {
    accepted_response(accepted.job.id, accepted.retry_after_secs)
}

/// The `202` the first upload with an `Idempotency-Key` got, again.
pub fn accepted_again(first: FirstAnswer) -> Response {
    accepted_response(first.job, first.retry_after_secs)
}

fn accepted_response(id: JobId, retry_after_secs: u32) -> Response {
    let status_url = routes::status(id);
    let links = BTreeMap::from([
        ("status", status_url.clone()),
        ("original", routes::file(id, FileName::Original)),
    ]);
    let body = Accepted {
        id: id.to_string(),
        status: "queued",
        links,
    };
    let mut builder = json_response(202, &body);
    builder
        .header("location", status_url)
        .header("retry-after", retry_after_secs.to_string());
    builder.build()
}

/// `200 OK` with the job's status document.
pub fn status(report: &StatusReport) -> Response {
    let job = &report.job;
    let mut links = BTreeMap::from([
        ("self", routes::status(job.id)),
        ("original", routes::file(job.id, FileName::Original)),
    ]);
    links.insert("events", routes::events(job.id));
    if !job.state.is_finished() {
        links.insert("cancel", routes::cancel(job.id));
    }
    let stage = match job.state {
        JobState::Queued { .. } => Some(("queued", 0)),
        JobState::Processing { stage, .. } => Some((stage.name(), stage.percent())),
        JobState::Completed { .. } => Some(("done", 100)),
        JobState::Failed { .. } | JobState::Cancelled => None,
    };
    let retry_at = match job.state {
        JobState::Queued { retry_at } => retry_at.map(|t| t.to_string()),
        _ => None,
    };
    let (outputs, error) = match &job.state {
        JobState::Completed { outputs } => {
            let views = Variant::ALL
                .into_iter()
                .map(|v| {
                    links.insert(v.name(), routes::file(job.id, FileName::Derivative(v)));
                    (
                        v.name(),
                        OutputView::of(v, outputs.get(v), job.original.as_ref()),
                    )
                })
                .collect();
            (Some(views), None)
        }
        JobState::Failed { error } => (None, Some(error)),
        // The derivatives already written, while the job is still at work.
        JobState::Processing { .. } => {
            let views: BTreeMap<&'static str, OutputView> = job
                .announced_outputs()
                .map(|(v, o)| {
                    links.insert(v.name(), routes::file(job.id, FileName::Derivative(v)));
                    (v.name(), OutputView::of(v, o, job.original.as_ref()))
                })
                .collect();
            ((!views.is_empty()).then_some(views), None)
        }
        JobState::Queued { .. } | JobState::Cancelled => (None, None),
    };
    let body = Status {
        id: job.id.to_string(),
        status: job.state.name(),
        created_at: job.created_at.to_string(),
        updated_at: job.updated_at.to_string(),
        attempts: job.attempts,
        retry_at,
        history: &job.history,
        original: job.original.as_ref(),
        source: job.source.as_ref(),
        expires_at: report.expires_at.map(|t| t.to_string()),
        links,
        outputs,
        error,
        cancel_requested: report.cancel_requested,
        stage: stage.map(|(name, _)| name),
        progress: stage.map(|(_, percent)| percent),
        notifications: report
            .notices
            .iter()
            .flat_map(|n| n.list.iter().map(NotificationView::from))
            .collect(),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut builder = json_response(200, &body);
    builder.header("etag", etag(&bytes));
    if let Some(secs) = report.retry_after_secs {
        builder.header("retry-after", secs.to_string());
    }
    builder.build()
}

/// A strong ETag for a document: its SHA-256, shortened.
fn etag(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..12]))
}

/// `200 OK` with the notifier's dead letters: each job and its notices.
pub fn notification_dead_letters(letters: &[(JobId, darkroom_core::notify::Notices)]) -> Response {
    #[derive(Serialize)]
    struct Letter {
        id: String,
        status: String,
        notifications: Vec<NotificationView>,
        redrive: String,
    }
    #[derive(Serialize)]
    struct Letters {
        dead_letters: Vec<Letter>,
    }
    let body = Letters {
        dead_letters: letters
            .iter()
            .map(|(id, notices)| Letter {
                id: id.to_string(),
                status: routes::status(*id),
                notifications: notices.list.iter().map(NotificationView::from).collect(),
                redrive: format!("/internal/notifications/dead-letters/{id}/redrive"),
            })
            .collect(),
    };
    json_response(200, &body).build()
}

/// `304 Not Modified` for a status read whose `If-None-Match` names the
/// current document (`etag`).
pub fn not_modified(etag: &str, retry_after_secs: Option<u32>) -> Response {
    let mut builder = Response::builder();
    builder
        .status(304)
        .header("etag", etag)
        .header("cache-control", "no-store");
    if let Some(secs) = retry_after_secs {
        builder.header("retry-after", secs.to_string());
    }
    builder.build()
}

/// The head of an event stream (its body is written as the job changes).
pub fn event_stream() -> Response {
    let mut builder = Response::builder();
    builder
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        .header("x-accel-buffering", "no");
    builder.build()
}

#[derive(Serialize)]
struct QueueView<'a> {
    depth: u64,
    fetch_depth: u64,
    workers: u64,
    average_job_ms: Option<u128>,
    dead_letters: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_removed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_more: Option<bool>,
}

#[derive(Serialize)]
struct ListedJob {
    id: String,
    status: &'static str,
    created_at: String,
    updated_at: String,
    links: BTreeMap<&'static str, String>,
}

/// `200 OK` with a page of the operators' listing.
pub fn listing(listing: &Listing) -> Response {
    let images: Vec<ListedJob> = listing
        .jobs
        .iter()
        .map(|job| ListedJob {
            id: job.id.to_string(),
            status: job.state.name(),
            created_at: job.created_at.to_string(),
            updated_at: job.updated_at.to_string(),
            links: BTreeMap::from([("status", routes::status(job.id))]),
        })
        .collect();
    json_response(
        200,
        &serde_json::json!({ "images": images, "next_page_token": listing.next_page_token }),
    )
    .build()
}

/// `200 OK` with the queue's state (admin).
pub fn queue(
    stats: QueueStats,
    fetch_depth: u64,
    dead: &[JobId],
    swept: Option<darkroom_core::service::Swept>,
) -> Response {
    let dead: Vec<String> = dead.iter().map(ToString::to_string).collect();
    let body = QueueView {
        depth: stats.depth,
        fetch_depth,
        workers: stats.workers,
        average_job_ms: stats.average_job.map(|d| d.as_millis()),
        dead_letters: &dead,
        expired_removed: swept.as_ref().map(|s| s.removed),
        expired_more: swept.map(|s| s.more),
    };
    json_response(200, &body).build()
}

/// The answer to a cancel: `200` with the status document of a job that is
/// `cancelled` now, `202` (and `Location`) for one whose processor was asked
/// to stop.
pub fn cancelled(outcome: Cancelled) -> Response {
    let (job, now) = match outcome {
        Cancelled::Now(job) => (job, true),
        Cancelled::Requested(job) => (job, false),
    };
    let report = StatusReport {
        retry_after_secs: (!now).then_some(1),
        warning: None,
        overdue: false,
        cancel_requested: !now,
        expires_at: None,
        notices: None,
        notices_overdue: false,
        job,
    };
    let response = status(&report);
    if now {
        return response;
    }
    let mut builder = response.into_builder();
    builder
        .status(202)
        .header("location", routes::status(report.job.id));
    builder.build()
}

/// `204 No Content`: the job and everything it owned are gone.
pub fn deleted() -> Response {
    Response::builder().status(204).build()
}

/// The worker's answer: how many jobs one drain handled.
pub fn drained(handled: usize) -> Response {
    json_response(200, &serde_json::json!({ "handled": handled })).build()
}

/// `202 Accepted`: a drain was started and goes on after this answer.
pub fn drain_started() -> Response {
    json_response(202, &serde_json::json!({ "started": true })).build()
}

/// The status and headers of a served file, the same for a GET and a HEAD;
/// the body, when there is one (`200` to a GET), is streamed after them by
/// the caller. `304` when the client's `If-None-Match` names the current ETag.
pub fn file(meta: &BlobMeta, name: FileName, if_none_match: Option<&str>) -> Response {
    let cache_control = if name.is_immutable() {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=3600"
    };
    let mut builder = Response::builder();
    builder
        .header("etag", meta.etag.as_str())
        .header("cache-control", cache_control)
        .header("x-content-type-options", "nosniff");
    let current = if_none_match.is_some_and(|tags| {
        tags.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == meta.etag)
    });
    if current {
        return builder.status(304).build();
    }
    builder
        .status(200)
        .header("content-type", meta.content_type.as_str())
        .header("content-length", meta.size.to_string())
        .build()
}

/// A `307` to a presigned URL of a file, cacheable by the client for half
/// the URL's lifetime.
pub fn redirect(url: &str, ttl: std::time::Duration) -> Response {
    Response::builder()
        .status(307)
        .header("location", url)
        .header(
            "cache-control",
            format!("private, max-age={}", ttl.as_secs() / 2),
        )
        .build()
}
