//! Webhooks and e-mail, end to end: a receiver the test runs on loopback
//! answers as each test scripts it (500 then 200, 410, a hang) and checks
//! every signature with `standardwebhooks`, the spec authors' own verifier,
//! not Darkroom's code; the e-mail API is the same receiver on another path.
//!
//! The receiver is a few lines over `std::net`, as the ingest tests' source
//! server is: it must misbehave on purpose (hold a request unanswered).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Options, TestApp, assert_problem};
use crate::images;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// Holds the request this long, then closes without answering.
    Hang(Duration),
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Whether the signature verifies with the spec authors' library.
    fn verifies(&self) -> bool {
        standardwebhooks::Webhook::new(SECRET)
            .expect("the test secret")
            .verify(&self.body, &self.headers)
            .is_ok()
    }
}

struct Receiver {
    port: u16,
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// A receiver answering `replies` in order, then 200.
    fn start(replies: &[Reply]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("address").port();
        let script = Arc::new(Mutex::new(replies.iter().copied().collect::<VecDeque<_>>()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, log) = (Arc::clone(&script), Arc::clone(&seen));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, log) = (Arc::clone(&s), Arc::clone(&log));
                std::thread::spawn(move || receive(stream, &s, &log));
            }
        });
        Self { port, script, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().expect("log").clone()
    }

    /// Waits until `n` requests arrived; fails the test after `within`.
    fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests arrived within {within:?}: {seen:?}",
                seen.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn left(&self) -> usize {
        self.script.lock().expect("script").len()
    }
}

fn receive(stream: TcpStream, script: &Mutex<VecDeque<Reply>>, seen: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = http::HeaderMap::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_or(true, |n| n == 0) || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = value.parse().unwrap_or(0);
            }
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                headers.append(n, v);
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    seen.lock().expect("log").push(Received {
        path,
        headers,
        body,
    });
    let reply = script
        .lock()
        .expect("script")
        .pop_front()
        .unwrap_or(Reply::Status(200));
    let mut out = stream;
    match reply {
        Reply::Status(status) => {
            let head = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
            // Darkroom may have given up on us: nothing to do about it here.
            out.write_all(head.as_bytes()).unwrap_or(());
        }
        Reply::Hang(d) => std::thread::sleep(d),
    }
}

/// The settings of an app whose notifier may call the loopback receiver.
fn notifying(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut vars = vec![
        ("webhook_secret", SECRET),
        ("webhook_allowed_hosts", "http://127.0.0.1:*"),
        ("email_outbound", "http://127.0.0.1:*"),
        ("webhook_backoff_ms", "200"),
        ("webhook_timeout_seconds", "2"),
        ("public_base_url", "https://images.example.com"),
    ];
    vars.extend_from_slice(extra);
    vars
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn upload_with(app: &TestApp, fields: &[(&'static str, String)]) -> crate::helpers::Response {
    let part = reqwest::blocking::multipart::Part::bytes(images::jpeg())
        .file_name("photo.jpg")
        .mime_str("image/jpeg")
        .expect("mime");
    let form = fields.iter().fold(
        reqwest::blocking::multipart::Form::new().part("file", part),
        |f, (k, v)| f.text(*k, v.clone()),
    );
    app.post_form("/api/images", form)
}

fn accepted_id(response: crate::helpers::Response) -> String {
    assert_eq!(response.status().as_u16(), 202, "{:?}", response.text());
    response.json::<Value>().expect("202 JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Polls the status until every notification has left `pending`.
fn wait_for_notifications(app: &TestApp, id: &str, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let status: Value = app.status(id).json().expect("status JSON");
        let notifications = status["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if notifications.len() >= n && notifications.iter().all(|n| n["state"] != "pending") {
            return notifications;
        }
        assert!(
            Instant::now() < deadline,
            "notifications still pending: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_webhook_answered_500_then_200_is_retried_once_and_delivered_once_signed() {
    let receiver = Receiver::start(&[Reply::Status(500)]);
    let hook = leak(receiver.url("/hook"));
    let app = TestApp::spawn_with(&notifying(&[("webhook_urls", hook)]));
    let id = app.upload(images::jpeg());
    assert_eq!(app.wait_until_finished(&id)["status"], "completed");
    let notifications = wait_for_notifications(&app, &id, 1, Duration::from_secs(30));
    assert_eq!(notifications.len(), 1, "{notifications:?}");
    let n = &notifications[0];
    assert_eq!(n["state"], "delivered", "{n}");
    assert_eq!(n["attempts"], 2, "{n}");
    assert_eq!(n["last_status"], 200, "{n}");
    assert_eq!(n["event"], "image.completed");
    assert_eq!(n["target"], "127.0.0.1", "the host only");
    assert_eq!(n["channel"], "webhook");

    let seen = receiver.wait_for(2, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.seen().len(), 2, "one retry, one delivery");
    assert!(seen.iter().all(Received::verifies), "signatures: {seen:?}");
    assert_eq!(seen[0].header("webhook-id"), seen[1].header("webhook-id"));
    assert!(seen[0].header("webhook-timestamp").parse::<u64>().is_ok());
    let body = seen[1].json();
    assert_eq!(body["type"], "image.completed");
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(body["data"]["status"], "completed");
    assert_eq!(
        body["data"]["links"]["thumbnail"],
        format!("https://images.example.com/api/images/{id}/files/thumbnail")
    );
    assert!(seen[1].body.len() < 20 * 1024);
    assert_eq!(seen[1].header("content-type"), "application/json");

    // The same body under a tampered signature is refused by the verifier:
    // the check above can fail.
    let mut forged = seen[1].clone();
    forged.body.push(b' ');
    assert!(!forged.verifies());
}

#[test]
fn a_410_stops_the_jobs_callback_for_good_and_a_hang_is_timed_out_and_retried() {
    let receiver = Receiver::start(&[Reply::Status(410)]);
    let app = TestApp::spawn_with(&notifying(&[
        ("webhook_allow_http", "true"),
        ("webhook_allow_private", "true"),
        ("webhook_events", "image.processing,image.completed"),
    ]));
    let id = accepted_id(upload_with(&app, &[("callback_url", receiver.url("/cb"))]));
    app.wait_until_finished(&id);
    let notifications = wait_for_notifications(&app, &id, 2, Duration::from_secs(30));
    assert!(
        notifications.iter().all(|n| n["state"] == "gone"),
        "{notifications:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.seen().len(), 1, "nothing after the 410");
    assert_eq!(receiver.seen()[0].path, "/cb");

    let hanging = Receiver::start(&[Reply::Hang(Duration::from_secs(5))]);
    let id = accepted_id(upload_with(&app, &[("callback_url", hanging.url("/cb"))]));
    app.wait_until_finished(&id);
    let done = wait_for_notifications(&app, &id, 2, Duration::from_secs(40));
    assert!(done.iter().all(|n| n["state"] == "delivered"), "{done:?}");
    assert!(
        done.iter().any(|n| n["attempts"] == 2),
        "the hung attempt was retried: {done:?}"
    );
    assert_eq!(hanging.left(), 0);
}

#[test]
fn a_notifier_killed_mid_delivery_still_delivers_with_the_same_webhook_id() {
    let receiver = Receiver::start(&[Reply::Hang(Duration::from_secs(30))]);
    let hook = leak(receiver.url("/hook"));
    let vars = notifying(&[
        ("webhook_urls", hook),
        ("webhook_timeout_seconds", "10"),
        ("lease_seconds", "12"),
    ]);
    let front_and_processor: &[&str] = &["upload", "status", "files", "processor"];
    let front = TestApp::start(Options {
        variables: vars.clone(),
        components: Some(front_and_processor),
        ..Options::default()
    });
    let notifier = TestApp::start(Options {
        variables: vars.clone(),
        components: Some(&["notifier"]),
        share_state_with: Some(&front),
        ..Options::default()
    });
    let id = front.upload(images::jpeg());
    front.wait_until_finished(&id);
    receiver.wait_for(1, Duration::from_secs(20));
    notifier.kill();
    let _second = TestApp::start(Options {
        variables: vars,
        components: Some(&["notifier"]),
        share_state_with: Some(&front),
        ..Options::default()
    });
    // Nothing rings for it: the status read of a job whose notice is
    // overdue rings the notifier again (as it does for an overdue job).
    let done = wait_for_notifications(&front, &id, 1, Duration::from_secs(60));
    let seen = receiver.seen();
    assert_eq!(done[0]["state"], "delivered", "{done:?}");
    assert_eq!(seen.len(), 2, "{seen:?}\n{}", front.logs());
    assert_eq!(
        done[0]["attempts"], 2,
        "the killed attempt counts: {done:?}"
    );
    assert_eq!(seen[0].header("webhook-id"), seen[1].header("webhook-id"));
    assert!(seen[1].verifies());
}

#[test]
fn an_email_goes_to_the_api_with_the_key_the_address_and_absolute_links() {
    let api = Receiver::start(&[]);
    let emails = leak(api.url("/emails"));
    let app = TestApp::spawn_with(&notifying(&[
        ("email_api_url", emails),
        ("email_api_key", "re_test_key"),
        ("email_from", "Darkroom <images@example.com>"),
    ]));
    let id = accepted_id(upload_with(
        &app,
        &[("notify_email", "ann@example.com".into())],
    ));
    app.wait_until_finished(&id);
    let notifications = wait_for_notifications(&app, &id, 1, Duration::from_secs(30));
    assert_eq!(notifications[0]["channel"], "email");
    assert_eq!(notifications[0]["target"], "…@example.com");
    assert_eq!(notifications[0]["state"], "delivered");
    let sent = api.wait_for(1, Duration::from_secs(5));
    let mail = &sent[0];
    assert_eq!(mail.path, "/emails");
    assert_eq!(mail.header("authorization"), "Bearer re_test_key");
    assert!(mail.header("idempotency-key").starts_with("msg_"));
    let body = mail.json();
    assert_eq!(body["from"], "Darkroom <images@example.com>");
    assert_eq!(body["to"], serde_json::json!(["ann@example.com"]));
    assert_eq!(body["subject"], "Your image is ready");
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains(&format!(
            "https://images.example.com/api/images/{id}/files/thumbnail"
        )),
        "{text}"
    );

    // A failure says why, in words.
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "file",
            reqwest::blocking::multipart::Part::bytes(images::corrupt_png()).file_name("x.png"),
        )
        .text("notify_email", "ann@example.com");
    let failed = accepted_id(app.post_form("/api/images", form));
    assert_eq!(app.wait_until_finished(&failed)["status"], "failed");
    let sent = api.wait_for(2, Duration::from_secs(30));
    let body = sent[1].json();
    assert_eq!(body["subject"], "Your image could not be processed");
    assert!(
        body["text"]
            .as_str()
            .is_some_and(|t| t.contains("cannot be decoded")),
        "{body}"
    );
}

#[test]
fn every_refused_callback_url_and_a_bad_notify_email_get_a_422_with_nothing_recorded() {
    let app = TestApp::spawn_with(&[("email_api_url", "https://mail.example/emails")]);
    for url in [
        "http://hooks.example.com/x",
        "https://user:pw@hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.0.0.8/x",
        "https://[::1]/x",
        "https://169.254.169.254/latest/meta-data",
        "ftp://hooks.example.com/x",
        "not a url",
    ] {
        let problem = assert_problem(upload_with(&app, &[("callback_url", url.to_owned())]), 422);
        assert_eq!(
            problem["type"], "urn:darkroom:problem:recipient-not-allowed",
            "{url}"
        );
    }
    for email in [
        "ann",
        "ann@localhost",
        "Ann <ann@example.com>",
        "@example.com",
    ] {
        let problem = assert_problem(
            upload_with(&app, &[("notify_email", email.to_owned())]),
            422,
        );
        assert_eq!(
            problem["type"], "urn:darkroom:problem:recipient-not-allowed",
            "{email}"
        );
    }
    let problem = assert_problem(
        app.request_json(
            reqwest::Method::POST,
            "/api/images",
            &serde_json::json!({ "url": "https://images.example.com/a.jpg", "callback_url": "https://10.0.0.8/x" }),
        ),
        422,
    );
    assert_eq!(
        problem["type"],
        "urn:darkroom:problem:recipient-not-allowed"
    );
    assert!(
        app.kv_keys().iter().all(|k| !k.starts_with("job/")),
        "{:?}",
        app.kv_keys()
    );
    assert!(app.blob_keys().is_empty(), "{:?}", app.blob_keys());

    let no_email = TestApp::spawn();
    let problem = assert_problem(
        upload_with(&no_email, &[("notify_email", "ann@example.com".to_owned())]),
        422,
    );
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("sends no e-mail")),
        "{problem}"
    );
}
