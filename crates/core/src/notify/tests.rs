//! Unit tests of notifications: recipients, planning, signing, backoff, and
//! the notifier's claim loop against in-memory ports and a scripted receiver.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::*;
use crate::blob::KvBlobStore;
use crate::format::inspect;
use crate::job::{Failure, FailureCode};
use crate::ports::Clock as _;
use crate::testing::{FixedRandom, ManualClock, MemoryKv, MemoryQueue, encode_png, gradient};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

#[test]
fn the_signature_matches_the_reference_implementations_vector() {
    // The vector of standard-webhooks' own Rust library (`test_sign`).
    let secrets = Secret::parse_all(SECRET).expect("a valid secret");
    assert_eq!(
        signature(
            &secrets,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            br#"{"email":"test@example.com","username":"test_user"}"#
        ),
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    );
}

#[test]
fn several_secrets_each_sign_and_bad_ones_are_refused_without_repeating_them() {
    let two = Secret::parse_all(&format!("{SECRET}  whsec_{}", "A".repeat(32))).expect("two");
    let header = signature(&two, "msg_1", 1, b"{}");
    assert_eq!(header.split(' ').count(), 2, "{header}");
    assert!(header.split(' ').all(|s| s.starts_with("v1,")));
    assert_eq!(Secret::parse_all("  ").expect("blank"), Vec::new());
    for bad in ["C2FVsBQIhrscChlQIMV", "whsec_!!!", "whsec_AAAA"] {
        let e = Secret::parse_all(bad).expect_err(bad);
        assert!(!e.contains(bad.trim_start_matches("whsec_")), "{e}");
    }
}

#[test]
fn recipients_are_checked_like_ingest_urls_and_addresses() {
    let strict = callback_rules(false, false);
    let ok = recipients(
        Some(" https://hooks.example.com/x "),
        Some("ann@example.com"),
        &strict,
        true,
    )
    .expect("fine");
    assert_eq!(
        ok.callback_url.as_deref(),
        Some("https://hooks.example.com/x")
    );
    assert_eq!(ok.email.as_deref(), Some("ann@example.com"));
    assert_eq!(
        recipients(Some(""), Some("  "), &strict, false).expect("blank is absent"),
        Recipients::default()
    );
    for url in [
        "http://hooks.example.com/",
        "https://user:pw@hooks.example.com/",
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://10.1.2.3/",
        "https://169.254.169.254/latest",
        "ftp://example.com/",
        "not a url",
    ] {
        assert!(
            matches!(
                recipients(Some(url), None, &strict, true),
                Err(RefusedRecipient::Callback(_))
            ),
            "{url}"
        );
    }
    let local = callback_rules(true, true);
    assert!(recipients(Some("http://127.0.0.1:9/x"), None, &local, true).is_ok());
    for email in [
        "ann",
        "ann@",
        "@example.com",
        "Ann <ann@example.com>",
        "ann@localhost",
        "a b@example.com",
    ] {
        assert_eq!(
            recipients(None, Some(email), &strict, true),
            Err(RefusedRecipient::Email(email.to_owned())),
            "{email}"
        );
    }
    assert_eq!(
        recipients(None, Some("ann@example.com"), &strict, false),
        Err(RefusedRecipient::NoEmail)
    );
}

#[test]
fn subscriptions_parse_known_events_and_http_urls_only() {
    let s = Subscriptions::parse(
        "https://a.example/h, http://b.example:8080/h",
        "image.completed,image.failed",
    )
    .expect("valid");
    assert_eq!(s.endpoints.len(), 2);
    assert_eq!(s.events, ["image.completed", "image.failed"]);
    assert!(Subscriptions::parse("", "image.queued").is_err());
    assert!(Subscriptions::parse("ftp://x/", "").is_err());
    assert_eq!(
        Subscriptions::parse("", "").expect("none"),
        Subscriptions::default()
    );
}

#[test]
fn backoff_follows_the_specs_schedule_with_full_jitter_and_honours_retry_after() {
    let policy = NotifyPolicy::default();
    let top = |attempt| policy.backoff(attempt, 1.0, None).as_secs();
    assert_eq!(
        (1..=8).map(top).collect::<Vec<_>>(),
        [5, 300, 1800, 7200, 18_000, 36_000, 36_000, 36_000]
    );
    assert_eq!(policy.backoff(2, 0.5, None), Duration::from_secs(150));
    assert_eq!(policy.backoff(2, 0.0, None), Duration::ZERO);
    assert_eq!(
        policy.backoff(1, 0.5, Some(Duration::from_secs(60))),
        Duration::from_secs(60),
        "never sooner than Retry-After"
    );
    assert_eq!(
        policy.backoff(1, 0.5, Some(Duration::from_secs(10 * 24 * 3600))),
        Duration::from_secs(24 * 3600),
        "at most a day"
    );
}

/// One request: URL, headers, body.
type Request = (String, Vec<(String, String)>, Vec<u8>);

/// A receiver that answers from a script and records every request.
#[derive(Default)]
struct Script {
    answers: RefCell<VecDeque<Result<Answer, HopError>>>,
    seen: RefCell<Vec<Request>>,
}

impl Script {
    fn then(self, status: u16) -> Self {
        self.answers.borrow_mut().push_back(Ok(Answer {
            status,
            retry_after: None,
        }));
        self
    }

    fn then_err(self, e: HopError) -> Self {
        self.answers.borrow_mut().push_back(Err(e));
        self
    }

    fn header(&self, i: usize, name: &str) -> String {
        self.seen.borrow()[i]
            .1
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

impl Outbound for Script {
    fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        _timeout: Duration,
    ) -> Result<Answer, HopError> {
        self.seen.borrow_mut().push((
            url.to_owned(),
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            body.to_vec(),
        ));
        self.answers
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Err(HopError::Unreachable("no more answers scripted".into())))
    }
}

struct Plain;

impl Render for Plain {
    fn webhook(&self, job: &Job, event: &Event) -> Vec<u8> {
        format!(r#"{{"type":"{}","id":"{}"}}"#, event.kind.name(), job.id).into_bytes()
    }

    fn email(&self, job: &Job, _event: &Event, to: &str) -> Vec<u8> {
        format!(r#"{{"to":"{to}","id":"{}"}}"#, job.id).into_bytes()
    }
}

struct World {
    kv: MemoryKv,
    queue: MemoryQueue,
    clock: ManualClock,
    subscriptions: Subscriptions,
    secrets: Vec<Secret>,
    email: EmailApi,
}

impl World {
    fn new(endpoints: &str) -> Self {
        Self {
            kv: MemoryKv::default(),
            queue: MemoryQueue::default(),
            clock: ManualClock::at(1_700_000_000_000),
            subscriptions: Subscriptions::parse(endpoints, "image.completed,image.failed")
                .expect("valid"),
            secrets: Secret::parse_all(SECRET).expect("valid"),
            email: EmailApi {
                url: "https://mail.example/emails".into(),
                key: "re_key".into(),
            },
        }
    }

    /// A failed job with `recipients`, saved, and the notifier rung as the
    /// processor rings it.
    fn failed_job(&self, recipients: Recipients) -> Job {
        let png = encode_png(&gradient(8, 8, false));
        let info = inspect(&png, crate::format::Limits::default()).expect("an image");
        let now = self.clock.now();
        let mut job = Job::queued(JobId::new_random(), info, now);
        job.recipients = recipients;
        job.fail(
            Failure {
                code: FailureCode::UndecodableImage,
                message: "broken".into(),
            },
            now,
        )
        .expect("queued → failed");
        self.kv
            .set(&keys::job(job.id), &serde_json::to_vec(&job).expect("json"))
            .expect("saved");
        let notifying = Notifying {
            queue: &self.queue,
            subscriptions: &self.subscriptions,
        };
        ring_for(Some(notifying), &job, now).expect("rung");
        job
    }

    fn notify(&self, http: &Script) -> Option<NotifyOutcome> {
        let blob_kv = MemoryKv::default();
        let blobs = KvBlobStore::new(&blob_kv);
        let n = Notifier {
            ports: Ports {
                kv: &self.kv,
                blobs: &blobs,
                clock: &self.clock,
            },
            queue: &self.queue,
            random: &FixedRandom(1.0),
            policy: NotifyPolicy {
                max_attempts: 3,
                first_delay: Duration::from_secs(1),
                timeout: Duration::from_secs(2),
                lease: Duration::from_secs(30),
            },
            subscriptions: &self.subscriptions,
            secrets: &self.secrets,
            email: Some(&self.email),
            http,
            render: &Plain,
        };
        notify_next(n).expect("no storage errors")
    }

    fn notices(&self, id: JobId) -> Vec<Notice> {
        load_notices(&self.kv, id)
            .expect("readable")
            .expect("planned")
            .list
    }
}

#[test]
fn nothing_rings_for_a_job_nobody_wants_to_hear_of() {
    let world = World::new("");
    world.failed_job(Recipients::default());
    assert!(world.queue.waiting().is_empty());
    assert_eq!(world.notify(&Script::default()), None);
}

#[test]
fn a_500_then_a_200_is_one_retry_and_one_delivery_with_the_same_webhook_id() {
    let world = World::new("https://a.example/hook");
    let job = world.failed_job(Recipients::default());
    let http = Script::default().then(500).then(200);
    assert!(matches!(
        world.notify(&http),
        Some(NotifyOutcome::Worked { retrying: 1, .. })
    ));
    let pending = world.notices(job.id);
    assert_eq!(pending[0].state, NoticeState::Pending);
    assert_eq!(pending[0].last_status, Some(500));
    assert_eq!(world.notify(&http), None, "not due before its backoff");
    world.clock.advance(1_000);
    assert!(matches!(
        world.notify(&http),
        Some(NotifyOutcome::Worked { delivered: 1, .. })
    ));
    let done = world.notices(job.id);
    assert_eq!(done[0].state, NoticeState::Delivered);
    assert_eq!(done[0].attempts, 2);
    assert_eq!(http.seen.borrow().len(), 2);
    assert_eq!(http.header(0, "webhook-id"), http.header(1, "webhook-id"));
    assert_eq!(
        http.header(1, "webhook-id"),
        format!("msg_{}_2", job.id.to_string().replace('-', ""))
    );
    let (ts, body) = (
        http.header(1, "webhook-timestamp"),
        http.seen.borrow()[1].2.clone(),
    );
    assert_eq!(
        http.header(1, "webhook-signature"),
        signature(
            &world.secrets,
            &http.header(1, "webhook-id"),
            ts.parse().expect("secs"),
            &body
        )
    );
    assert!(
        world.queue.waiting().is_empty() && world.queue.leased().is_empty(),
        "acked"
    );
}

#[test]
fn a_410_stops_that_endpoint_for_this_job_and_every_later_one() {
    let world = World::new("https://a.example/hook");
    let first = world.failed_job(Recipients::default());
    let http = Script::default().then(410);
    world.notify(&http);
    assert_eq!(world.notices(first.id)[0].state, NoticeState::Gone);
    let second = world.failed_job(Recipients::default());
    world.notify(&http);
    assert_eq!(world.notices(second.id)[0].state, NoticeState::Gone);
    assert_eq!(
        http.seen.borrow().len(),
        1,
        "the gone endpoint is not called again"
    );
}

#[test]
fn unanswered_attempts_retry_until_they_run_out_then_the_job_is_a_dead_letter_and_can_be_redriven()
{
    let world = World::new("");
    let job = world.failed_job(Recipients {
        callback_url: Some("https://cb.example/x".into()),
        email: None,
    });
    let http = Script::default()
        .then_err(HopError::Timeout(Duration::from_secs(2)))
        .then(503)
        .then_err(HopError::Unreachable("refused".into()))
        .then(204);
    for _ in 0..3 {
        world.notify(&http);
        world.clock.advance(60_000);
    }
    let notice = &world.notices(job.id)[0];
    assert_eq!(notice.state, NoticeState::Failed);
    assert_eq!(notice.attempts, 3);
    assert_eq!(world.queue.dead_letters().expect("listed"), [job.id]);
    let blob_kv = MemoryKv::default();
    let blobs = KvBlobStore::new(&blob_kv);
    let ports = Ports {
        kv: &world.kv,
        blobs: &blobs,
        clock: &world.clock,
    };
    assert_eq!(
        redrive_notices(ports, &world.queue, job.id).expect("redriven"),
        1
    );
    assert!(world.queue.dead_letters().expect("listed").is_empty());
    world.notify(&http);
    assert_eq!(world.notices(job.id)[0].state, NoticeState::Delivered);
    assert!(matches!(
        redrive_notices(ports, &world.queue, job.id),
        Err(RedriveNoticesError::NothingFailed(_))
    ));
}

#[test]
fn an_email_goes_to_the_api_once_with_its_key_and_an_idempotency_key() {
    let world = World::new("");
    let job = world.failed_job(Recipients {
        callback_url: None,
        email: Some("ann@example.com".into()),
    });
    let http = Script::default().then(200);
    world.notify(&http);
    let seen = http.seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "https://mail.example/emails");
    drop(seen);
    assert_eq!(http.header(0, "authorization"), "Bearer re_key");
    assert!(http.header(0, "idempotency-key").starts_with("msg_"));
    assert_eq!(
        http.header(0, "webhook-signature"),
        "",
        "e-mail is not a webhook"
    );
    let notices = world.notices(job.id);
    assert_eq!(notices[0].target.shown(), "…@example.com");
    assert_eq!(notices[0].state, NoticeState::Delivered);
}

#[test]
fn a_notice_without_a_secret_or_refused_by_the_runtime_fails_at_once() {
    let mut world = World::new("https://a.example/hook");
    world.secrets.clear();
    let job = world.failed_job(Recipients::default());
    let http = Script::default();
    world.notify(&http);
    let notice = &world.notices(job.id)[0];
    assert_eq!(notice.state, NoticeState::Failed);
    assert!(
        notice
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("webhook_secret"))
    );
    assert!(http.seen.borrow().is_empty(), "never sent unsigned");

    let world = World::new("https://a.example/hook");
    let job = world.failed_job(Recipients::default());
    let http = Script::default().then_err(HopError::Forbidden("block_networks".into()));
    world.notify(&http);
    assert_eq!(world.notices(job.id)[0].state, NoticeState::Failed);
    assert_eq!(world.notices(job.id)[0].attempts, 1);
}

#[test]
fn a_notifier_that_stops_mid_delivery_leaves_the_attempt_counted_and_due_after_the_lease() {
    let world = World::new("https://a.example/hook");
    let job = world.failed_job(Recipients::default());
    // The attempt is recorded before the request: a notifier that dies in
    // the request leaves this behind.
    let now = world.clock.now();
    let id = world
        .queue
        .claim(now, now.plus(Duration::from_secs(30)))
        .expect("claim")
        .expect("due");
    let mut notices = Notices::default();
    notices.plan(&job, &world.subscriptions, now);
    notices.list[0].attempts = 1;
    notices.list[0].next_attempt_at = Some(now.plus(Duration::from_secs(30)));
    save_notices(&world.kv, id, &notices).expect("saved");
    let http = Script::default().then(200);
    assert_eq!(
        world.notify(&http),
        None,
        "held by the dead notifier's lease"
    );
    world.clock.advance(30_001);
    world.notify(&http);
    let notice = &world.notices(job.id)[0];
    assert_eq!((notice.state, notice.attempts), (NoticeState::Delivered, 2));
}

#[test]
fn a_deleted_job_loses_its_notices_at_the_next_claim() {
    let world = World::new("https://a.example/hook");
    let job = world.failed_job(Recipients::default());
    world.kv.delete(&keys::job(job.id)).expect("deleted");
    assert_eq!(
        world.notify(&Script::default()),
        Some(NotifyOutcome::Unknown(job.id))
    );
    assert_eq!(load_notices(&world.kv, job.id).expect("readable"), None);
}
