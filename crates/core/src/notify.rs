//! Notifications: signed webhooks ([Standard Webhooks]) and e-mail, sent
//! from each job's event log by the `notifier` component, at least once.
//!
//! - **Who is told.** App-wide endpoints (`webhook_urls`) and a job's own
//!   `callback_url` get the events named in `webhook_events`; a job's
//!   `notify_email` gets one message when the job completes or fails.
//! - **How it is durable.** The component that appends a wanted event rings
//!   the notifier's durable queue (the same claim-and-lease queue as jobs,
//!   on its own channel) *before* it lets go of the job, so a crash in
//!   between is recovered by the job's own lease. The notifier claims the
//!   job, plans one [`Notice`] per target and wanted event that it has not
//!   planned yet, and works every due notice. The notices live under
//!   `notices/{id}`, written by the notifier alone (it holds the claim).
//!   Each attempt is recorded *before* it is sent, so a notifier killed
//!   mid-delivery leaves a notice that the next claim sends again (with the
//!   same `webhook-id`, so receivers can drop the repeat).
//! - **Retries.** Any 2xx is success. Other answers and network errors are
//!   retried on a schedule shaped like the spec's (5 s, 5 min, 30 min, 2 h,
//!   5 h, 10 h, 10 h…, scaled by `webhook_backoff_ms`), each delay drawn
//!   with full jitter and never shorter than the receiver's `Retry-After`.
//!   `410 Gone` stops the target for good (an app-wide endpoint for every
//!   later job too, until an operator clears it). A notice whose attempts
//!   ran out, or that the runtime refused to send, is `failed`, and its job
//!   becomes a dead letter of the notifier's queue, re-drivable by operators.
//!
//! Rendering the bodies is the adapter's business ([`Render`]): this module
//! decides what is sent, when, how it is signed, and what the answers mean.
//!
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::id::JobId;
use crate::ingest::{self, HopError, IngestRules, RefusedUrl};
use crate::job::{Event, EventKind, Job};
use crate::keys;
use crate::ports::{KeyValue, PortError, Random};
use crate::queue::Queue;
use crate::service::{Ports, ProcessError, load_job};
use crate::time::Timestamp;

/// The event types a webhook may subscribe to. `image.queued` is not one:
/// the `202` answer already says it.
pub const WEBHOOK_EVENTS: [&str; 6] = [
    "image.processing",
    "image.output",
    "image.retrying",
    "image.completed",
    "image.failed",
    "image.cancelled",
];

/// The largest webhook body sent.
pub const MAX_WEBHOOK_BODY: usize = 20 * 1024;

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The spec's retry schedule, in units of its first step (5 s): 5 s, 5 min,
/// 30 min, 2 h, 5 h, 10 h; the last step repeats.
const SCHEDULE: [u32; 6] = [1, 60, 360, 1440, 3600, 7200];

/// A job's own recipients, given with its upload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipients {
    /// `callback_url`: a webhook target for this job alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// `notify_email`: told once when the job completes or fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Recipients {
    /// Whether nobody is named.
    pub const fn is_empty(&self) -> bool {
        self.callback_url.is_none() && self.email.is_none()
    }
}

/// Why a recipient given with an upload is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RefusedRecipient {
    /// The callback URL may not be called.
    #[error("callback_url: {0}")]
    Callback(RefusedUrl),
    /// Not an e-mail address.
    #[error("notify_email: {0:?} is not an e-mail address")]
    Email(String),
    /// This deployment sends no e-mail (`email_api_url` is empty).
    #[error("notify_email: this deployment sends no e-mail")]
    NoEmail,
}

/// What a callback URL must satisfy (`webhook_allow_http`,
/// `webhook_allow_private`): the ingest rules' scheme, credential and
/// address checks, with no host list.
pub fn callback_rules(allow_http: bool, allow_private: bool) -> IngestRules {
    IngestRules {
        allow_http,
        allow_private,
        allowed_hosts: Vec::new(),
    }
}

/// Checks the recipients of an upload; blank fields count as absent.
///
/// # Errors
/// [`RefusedRecipient`].
pub fn recipients(
    callback_url: Option<&str>,
    email: Option<&str>,
    rules: &IngestRules,
    email_enabled: bool,
) -> Result<Recipients, RefusedRecipient> {
    fn present(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    let callback_url = present(callback_url)
        .map(|url| {
            ingest::check(url, rules)
                .map(|u| u.to_string())
                .map_err(RefusedRecipient::Callback)
        })
        .transpose()?;
    let email = present(email)
        .map(|address| {
            if !email_enabled {
                return Err(RefusedRecipient::NoEmail);
            }
            let options = email_address::Options {
                minimum_sub_domains: 2,
                allow_domain_literal: false,
                allow_display_text: false,
                ..email_address::Options::default()
            };
            email_address::EmailAddress::parse_with_options(address, options)
                .map(|a| a.email().to_owned())
                .map_err(|_| RefusedRecipient::Email(address.to_owned()))
        })
        .transpose()?;
    Ok(Recipients {
        callback_url,
        email,
    })
}

/// Who is told of what, app-wide (`webhook_urls`, `webhook_events`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscriptions {
    /// `webhook_urls`: endpoints told of every job.
    pub endpoints: Vec<String>,
    /// `webhook_events`: the event types webhooks are sent for.
    pub events: Vec<&'static str>,
}

impl Subscriptions {
    /// Parses `webhook_urls` and `webhook_events` (both comma-separated).
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn parse(urls: &str, events: &str) -> Result<Self, String> {
        let endpoints = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                url::Url::parse(u)
                    .ok()
                    .filter(|p| matches!(p.scheme(), "http" | "https"))
                    .map(|p| p.to_string())
                    .ok_or_else(|| format!("webhook_urls: {u:?} is not an http(s) URL"))
            })
            .collect::<Result<_, _>>()?;
        let events = events
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                WEBHOOK_EVENTS
                    .into_iter()
                    .find(|known| *known == e)
                    .ok_or_else(|| {
                        format!(
                            "webhook_events: {e:?} is not one of {}",
                            WEBHOOK_EVENTS.join(", ")
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { endpoints, events })
    }

    /// Whether `event` of `job` is for anybody.
    pub fn wants(&self, job: &Job, event: &Event) -> bool {
        !self.targets(job, event).is_empty()
    }

    /// Whom `event` of `job` goes to.
    fn targets(&self, job: &Job, event: &Event) -> Vec<Target> {
        let mut targets = Vec::new();
        if self.events.contains(&event.kind.name()) {
            targets.extend(self.endpoints.iter().map(|url| Target::Webhook {
                url: url.clone(),
                app: true,
            }));
            if let Some(url) = &job.recipients.callback_url {
                targets.push(Target::Webhook {
                    url: url.clone(),
                    app: false,
                });
            }
        }
        if let Some(to) = &job.recipients.email
            && matches!(event.kind, EventKind::Completed | EventKind::Failed { .. })
        {
            targets.push(Target::Email { to: to.clone() });
        }
        targets
    }
}

/// Rings the notifier for `job`'s latest event if anybody wants it. Called
/// by whoever appended the event, after saving the record and before
/// letting go of the job, so that a crash in between is retried.
///
/// # Errors
/// [`PortError`] from the notifier's queue.
pub fn ring_for(notify: Option<Notifying<'_>>, job: &Job, now: Timestamp) -> Result<(), PortError> {
    let (Some(n), Some(event)) = (notify, job.events.last()) else {
        return Ok(());
    };
    if n.subscriptions.wants(job, event) {
        n.queue.restore(job.id, now)?;
    }
    Ok(())
}

/// What the components that change jobs need to ring the notifier.
#[derive(Clone, Copy)]
pub struct Notifying<'a> {
    /// The notifier's durable queue (`notify_channel`).
    pub queue: &'a dyn Queue,
    /// Who wants which events.
    pub subscriptions: &'a Subscriptions,
}

/// Where a notice goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum Target {
    /// A webhook endpoint.
    Webhook {
        /// The URL.
        url: String,
        /// Whether it is an app-wide endpoint (`webhook_urls`) rather than
        /// the job's `callback_url`.
        app: bool,
    },
    /// An e-mail address.
    Email {
        /// The address.
        to: String,
    },
}

impl Target {
    /// What the status document shows: the host alone, or the address's domain.
    pub fn shown(&self) -> String {
        match self {
            Self::Webhook { url, .. } => url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default(),
            Self::Email { to } => {
                format!("…@{}", to.rsplit_once('@').map_or("", |(_, d)| d))
            }
        }
    }
}

/// Where a notice stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeState {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answered it.
    Delivered,
    /// The target answered `410 Gone`: never sent to again.
    Gone,
    /// Its attempts ran out, or it cannot be sent at all: a dead letter.
    Failed,
}

/// One message for one target about one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Where it goes.
    pub target: Target,
    /// The event's sequence number in the job's log.
    pub event: u32,
    /// The event's type (`image.completed`, …).
    pub kind: String,
    /// Where it stands.
    pub state: NoticeState,
    /// Attempts started.
    pub attempts: u32,
    /// The last answer's HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// The last failure, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next attempt is due (pending notices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
}

impl Notice {
    /// The message id: the same on every attempt, and for every target of one
    /// event (`webhook-id`, the e-mail API's `Idempotency-Key`).
    pub fn message_id(&self, job: JobId) -> String {
        format!("msg_{}_{}", job.to_string().replace('-', ""), self.event)
    }
}

/// A job's notices, as stored under `notices/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notices {
    /// The last event of the job's log that has been planned.
    pub planned_through: u32,
    /// Every notice, in the order planned.
    pub list: Vec<Notice>,
}

impl Notices {
    /// Plans a notice for each target of each event after
    /// `planned_through`; whether anything was added.
    pub fn plan(&mut self, job: &Job, subscriptions: &Subscriptions, now: Timestamp) -> bool {
        let before = self.planned_through;
        for event in job.events.iter().filter(|e| e.seq > before) {
            for target in subscriptions.targets(job, event) {
                // A target that answered 410 for this job is not asked again.
                let gone = self
                    .list
                    .iter()
                    .any(|n| n.target == target && n.state == NoticeState::Gone);
                self.list.push(Notice {
                    target,
                    event: event.seq,
                    kind: event.kind.name().to_owned(),
                    state: if gone {
                        NoticeState::Gone
                    } else {
                        NoticeState::Pending
                    },
                    attempts: 0,
                    last_status: None,
                    last_error: gone.then(|| "the target answered 410 Gone before".to_owned()),
                    next_attempt_at: (!gone).then_some(now),
                });
            }
            self.planned_through = event.seq;
        }
        self.planned_through != before
    }

    /// The first due time of a pending notice.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.list
            .iter()
            .filter(|n| n.state == NoticeState::Pending)
            .filter_map(|n| n.next_attempt_at)
            .min()
    }

    /// Whether any notice is a dead letter.
    pub fn any_failed(&self) -> bool {
        self.list.iter().any(|n| n.state == NoticeState::Failed)
    }

    /// Makes every failed notice pending again, due `now`, with its attempts
    /// reset; how many.
    pub fn redrive(&mut self, now: Timestamp) -> usize {
        let mut n = 0;
        for notice in self
            .list
            .iter_mut()
            .filter(|n| n.state == NoticeState::Failed)
        {
            notice.state = NoticeState::Pending;
            notice.attempts = 0;
            notice.next_attempt_at = Some(now);
            n += 1;
        }
        n
    }
}

/// Reads job `id`'s notices.
///
/// # Errors
/// [`PortError`], also for a damaged record.
pub fn load_notices(kv: &dyn KeyValue, id: JobId) -> Result<Option<Notices>, PortError> {
    kv.get(&keys::notices(id))?
        .map(|raw| {
            serde_json::from_slice(&raw)
                .map_err(|e| PortError::new(format!("damaged notices of job {id}: {e}")))
        })
        .transpose()
}

fn save_notices(kv: &dyn KeyValue, id: JobId, notices: &Notices) -> Result<(), PortError> {
    let bytes = serde_json::to_vec(notices).map_err(PortError::new)?;
    kv.set(&keys::notices(id), &bytes)
}

/// A webhook signing secret (`whsec_` and base64, as the spec writes them).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Parses `webhook_secret`: one or more space-separated secrets (every
    /// one signs each message, so a receiver can rotate). Blank → none.
    ///
    /// # Errors
    /// What is wrong, in words (the secret itself is never repeated).
    pub fn parse_all(value: &str) -> Result<Vec<Self>, String> {
        value
            .split_whitespace()
            .enumerate()
            .map(|(i, s)| {
                let encoded = s.strip_prefix("whsec_").ok_or_else(|| {
                    format!(
                        "webhook_secret: secret {} does not start with whsec_",
                        i + 1
                    )
                })?;
                let key = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| {
                        format!(
                            "webhook_secret: secret {} is not base64 after whsec_",
                            i + 1
                        )
                    })?;
                if key.len() < 24 {
                    return Err(format!(
                        "webhook_secret: secret {} is shorter than 24 bytes",
                        i + 1
                    ));
                }
                Ok(Self(key))
            })
            .collect()
    }
}

/// The `webhook-signature` header of a message: `v1,<base64 HMAC-SHA256 of
/// "id.timestamp.body">` for each secret, space-separated.
pub fn signature(secrets: &[Secret], id: &str, timestamp: u64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret.0)
                .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            let tag = mac.finalize().into_bytes();
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(tag)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How notices are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyPolicy {
    /// Attempts before a notice fails (`webhook_max_attempts`).
    pub max_attempts: u32,
    /// The schedule's first step (`webhook_backoff_ms`; the spec's 5 s).
    pub first_delay: Duration,
    /// How long one request may take (`webhook_timeout_seconds`).
    pub timeout: Duration,
    /// How long the notifier holds a job's notices.
    pub lease: Duration,
}

impl Default for NotifyPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            first_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            lease: Duration::from_secs(60),
        }
    }
}

impl NotifyPolicy {
    /// The delay after attempt `attempt` failed: a draw in `[0, step]` (full
    /// jitter) where the steps follow the spec's schedule, but never less
    /// than the receiver's `Retry-After` (itself at most a day).
    pub fn backoff(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .min(SCHEDULE.len() - 1);
        let step = self.first_delay.saturating_mul(SCHEDULE[index]);
        let drawn = step.mul_f64(unit.clamp(0.0, 1.0));
        retry_after.map_or(drawn, |r| drawn.max(r.min(MAX_RETRY_AFTER)))
    }
}

/// One answer to one POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// `Retry-After`, when it gave a number of seconds.
    pub retry_after: Option<Duration>,
}

/// Outbound HTTP for notices (Spin's outbound HTTP in `darkroom-spin`).
pub trait Outbound {
    /// `POST url` with `headers` and `body`, all within `timeout`; the body
    /// of the answer is not needed.
    ///
    /// # Errors
    /// [`HopError`].
    fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Answer, HopError>;
}

/// The bodies of the messages (the adapter's views).
pub trait Render {
    /// The webhook body for `event` of `job`: `{"type", "timestamp", "data"}`.
    fn webhook(&self, job: &Job, event: &Event) -> Vec<u8>;
    /// The e-mail API request body for `event` of `job`, to `to`.
    fn email(&self, job: &Job, event: &Event, to: &str) -> Vec<u8>;
}

/// The e-mail API (`email_api_url`, `email_api_key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailApi {
    /// Where messages are posted.
    pub url: String,
    /// The bearer key.
    pub key: String,
}

/// What the notifier works with.
#[derive(Clone, Copy)]
pub struct Notifier<'a> {
    /// Storage and time.
    pub ports: Ports<'a>,
    /// The notifier's durable queue.
    pub queue: &'a dyn Queue,
    /// Jitter for backoff.
    pub random: &'a dyn Random,
    /// Retries and timeouts.
    pub policy: NotifyPolicy,
    /// Who wants what.
    pub subscriptions: &'a Subscriptions,
    /// The signing secrets; with none, webhooks cannot be sent.
    pub secrets: &'a [Secret],
    /// The e-mail API, if the deployment sends e-mail.
    pub email: Option<&'a EmailApi>,
    /// Outbound HTTP.
    pub http: &'a dyn Outbound,
    /// The message bodies.
    pub render: &'a dyn Render,
}

/// What one claim of a job's notices did.
#[derive(Debug, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// Notices were worked: how many of this claim's attempts ended in each way.
    Worked {
        /// The job.
        id: JobId,
        /// Delivered.
        delivered: usize,
        /// To be tried again.
        retrying: usize,
        /// Stopped for good (`410`, attempts exhausted, refused).
        stopped: usize,
    },
    /// The job is gone: its notices were dropped.
    Unknown(JobId),
}

/// Claims the next due job of the notifier's queue and works its due
/// notices. `Ok(None)` when nothing is due.
///
/// # Errors
/// [`ProcessError`]: the job stays leased and is claimed again when the
/// lease lapses.
pub fn notify_next(n: Notifier<'_>) -> Result<Option<NotifyOutcome>, ProcessError> {
    let clock = n.ports.clock;
    let kv = n.ports.kv;
    let now = clock.now();
    let lease_until = now.plus(n.policy.lease);
    let Some(id) = n
        .queue
        .claim(now, lease_until)
        .map_err(ProcessError::Queue)?
    else {
        return Ok(None);
    };
    let Some(job) = load_job(kv, id)? else {
        kv.delete(&keys::notices(id))?;
        n.queue.ack(id).map_err(ProcessError::Queue)?;
        return Ok(Some(NotifyOutcome::Unknown(id)));
    };
    let mut notices = load_notices(kv, id)?.unwrap_or_default();
    if notices.plan(&job, n.subscriptions, now) {
        save_notices(kv, id, &notices)?;
    }
    let (mut delivered, mut retrying, mut stopped) = (0, 0, 0);
    for i in 0..notices.list.len() {
        let notice = &notices.list[i];
        let due = notice.state == NoticeState::Pending
            && notice.next_attempt_at.is_none_or(|at| at <= clock.now());
        if !due {
            continue;
        }
        // Never send past the lease: another notifier may hold it by then.
        if clock.now().plus(n.policy.timeout) >= lease_until {
            break;
        }
        let Some(event) = job.events.iter().find(|e| e.seq == notice.event) else {
            let notice = &mut notices.list[i];
            notice.state = NoticeState::Failed;
            notice.last_error = Some("the event is no longer in the job's log".into());
            stopped += 1;
            save_notices(kv, id, &notices)?;
            continue;
        };
        if let Target::Webhook { url, app: true } = &notice.target
            && kv.get(&keys::endpoint_gone(url))?.is_some()
        {
            notices.list[i].state = NoticeState::Gone;
            notices.list[i].last_error = Some("the target answered 410 Gone before".into());
            stopped += 1;
            save_notices(kv, id, &notices)?;
            continue;
        }
        // The attempt is recorded before it is made: a notifier killed
        // during the request leaves it counted, and due again.
        notices.list[i].attempts += 1;
        notices.list[i].next_attempt_at = Some(lease_until);
        save_notices(kv, id, &notices)?;
        let result = send(n, &job, event, &notices.list[i]);
        let notice = &mut notices.list[i];
        match settle(n, notice, result) {
            NoticeState::Delivered => delivered += 1,
            NoticeState::Pending => retrying += 1,
            NoticeState::Gone => {
                stopped += 1;
                let target = notice.target.clone();
                if let Target::Webhook { url, app: true } = &target {
                    kv.set(&keys::endpoint_gone(url), b"410")?;
                }
                for other in notices
                    .list
                    .iter_mut()
                    .filter(|o| o.target == target && o.state == NoticeState::Pending)
                {
                    other.state = NoticeState::Gone;
                    other.next_attempt_at = None;
                }
            }
            NoticeState::Failed => stopped += 1,
        }
        save_notices(kv, id, &notices)?;
    }
    // Events appended while this claim worked rang a queue that still held
    // the job: look at the record again rather than lose them.
    let Some(fresh) = load_job(kv, id)? else {
        // Deleted meanwhile: what this claim wrote goes too.
        kv.delete(&keys::notices(id))?;
        n.queue.ack(id).map_err(ProcessError::Queue)?;
        return Ok(Some(NotifyOutcome::Unknown(id)));
    };
    let unplanned = fresh
        .events
        .iter()
        .any(|e| e.seq > notices.planned_through && n.subscriptions.wants(&fresh, e));
    let next = if unplanned {
        Some(clock.now())
    } else {
        notices.next_due()
    };
    match next {
        Some(at) => n.queue.defer(id, at),
        None if notices.any_failed() => n.queue.dead_letter(id, clock.now()),
        None => n.queue.ack(id),
    }
    .map_err(ProcessError::Queue)?;
    Ok(Some(NotifyOutcome::Worked {
        id,
        delivered,
        retrying,
        stopped,
    }))
}

/// What became of one attempt.
enum Sent {
    /// An answer.
    Answered(Answer),
    /// No answer.
    Unanswered(HopError),
    /// It could not be sent at all (no secret, no e-mail API, too big).
    Unsendable(String),
}

fn send(n: Notifier<'_>, job: &Job, event: &Event, notice: &Notice) -> Sent {
    let message_id = notice.message_id(job.id);
    let (url, headers, body) = match &notice.target {
        Target::Webhook { url, .. } => {
            if n.secrets.is_empty() {
                return Sent::Unsendable(
                    "webhook_secret is not set: webhooks are never sent unsigned".into(),
                );
            }
            let body = n.render.webhook(job, event);
            if body.len() > MAX_WEBHOOK_BODY {
                return Sent::Unsendable(format!(
                    "the body is {} bytes, over the {MAX_WEBHOOK_BODY} allowed",
                    body.len()
                ));
            }
            let timestamp = n.ports.clock.now().unix_millis() / 1000;
            let headers = vec![
                ("content-type", "application/json".to_owned()),
                ("webhook-id", message_id.clone()),
                ("webhook-timestamp", timestamp.to_string()),
                (
                    "webhook-signature",
                    signature(n.secrets, &message_id, timestamp, &body),
                ),
            ];
            (url.clone(), headers, body)
        }
        Target::Email { to } => {
            let Some(api) = n.email else {
                return Sent::Unsendable("email_api_url is not set".into());
            };
            let headers = vec![
                ("content-type", "application/json".to_owned()),
                ("authorization", format!("Bearer {}", api.key)),
                ("idempotency-key", message_id),
            ];
            (api.url.clone(), headers, n.render.email(job, event, to))
        }
    };
    match n.http.post(&url, &headers, &body, n.policy.timeout) {
        Ok(answer) => Sent::Answered(answer),
        Err(e) => Sent::Unanswered(e),
    }
}

/// Records the outcome of an attempt on `notice`; its new state.
fn settle(n: Notifier<'_>, notice: &mut Notice, sent: Sent) -> NoticeState {
    let now = n.ports.clock.now();
    let mut retry_after = None;
    let final_state = match sent {
        Sent::Answered(answer) => {
            notice.last_status = Some(answer.status);
            match answer.status {
                200..=299 => {
                    notice.last_error = None;
                    Some(NoticeState::Delivered)
                }
                410 => {
                    notice.last_error =
                        Some("410 Gone: the target asked not to be called again".into());
                    Some(NoticeState::Gone)
                }
                status => {
                    notice.last_error = Some(format!("answered {status}"));
                    retry_after = answer.retry_after;
                    None
                }
            }
        }
        Sent::Unanswered(HopError::Forbidden(why)) | Sent::Unsendable(why) => {
            notice.last_error = Some(why);
            Some(NoticeState::Failed)
        }
        Sent::Unanswered(e) => {
            notice.last_status = None;
            notice.last_error = Some(e.to_string());
            None
        }
    };
    let state = final_state.unwrap_or(if notice.attempts >= n.policy.max_attempts {
        NoticeState::Failed
    } else {
        NoticeState::Pending
    });
    notice.state = state;
    notice.next_attempt_at = (state == NoticeState::Pending).then(|| {
        now.plus(
            n.policy
                .backoff(notice.attempts, n.random.unit(), retry_after),
        )
    });
    state
}

/// Works the notifier's queue until nothing is due or `budget` is spent,
/// as [`crate::service::drain`] does the processor's.
///
/// # Errors
/// As for [`crate::service::drain`].
pub fn drain_notices(
    n: Notifier<'_>,
    budget: Duration,
    report: impl FnMut(Result<NotifyOutcome, ProcessError>),
) -> Result<usize, PortError> {
    crate::service::drain_loop(n.queue, n.ports.clock, budget, || notify_next(n), report)
}

/// Why a job's notices could not be re-driven.
#[derive(Debug, Error)]
pub enum RedriveNoticesError {
    /// The job has no failed notice.
    #[error("job {0} has no failed notification")]
    NothingFailed(JobId),
    /// Storage or the queue failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Makes job `id`'s failed notices pending again and puts the job back in
/// the notifier's queue; how many notices.
///
/// # Errors
/// [`RedriveNoticesError`].
pub fn redrive_notices(
    ports: Ports<'_>,
    queue: &dyn Queue,
    id: JobId,
) -> Result<usize, RedriveNoticesError> {
    let mut notices = load_notices(ports.kv, id)?
        .filter(Notices::any_failed)
        .ok_or(RedriveNoticesError::NothingFailed(id))?;
    let now = ports.clock.now();
    let n = notices.redrive(now);
    save_notices(ports.kv, id, &notices)?;
    queue.forget(id)?;
    queue.enqueue(id, now)?;
    Ok(n)
}

#[cfg(test)]
mod tests;
