//! Ingest by URL: `202` at once, the fetch done by the fetcher in the
//! background, and every way a source can go wrong (never answering,
//! redirecting to a private address, serving HTML or 200 MB, 404 and 503),
//! against a source server the test runs on loopback.
//!
//! The source server is a few lines over `std::net` rather than hyper: the
//! tests need a server that misbehaves on purpose (holds a connection
//! without answering, streams until the client goes away and counts what
//! it sent), which is simplest with the socket in hand.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, header};
use crate::images;

/// A loopback HTTP/1.1 server with one route per misbehaviour.
struct Source {
    port: u16,
    /// Bytes of `/huge` written before the client went away.
    huge_sent: Arc<AtomicU64>,
    /// Paths asked for, in order.
    asked: Arc<std::sync::Mutex<Vec<String>>>,
}

const HUGE_BYTES: u64 = 200 * 1024 * 1024;

impl Source {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the source server");
        let port = listener.local_addr().expect("address").port();
        let huge_sent = Arc::new(AtomicU64::new(0));
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (sent, log) = (Arc::clone(&huge_sent), Arc::clone(&asked));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (sent, log) = (Arc::clone(&sent), Arc::clone(&log));
                std::thread::spawn(move || serve(stream, port, &sent, &log));
            }
        });
        Self {
            port,
            huge_sent,
            asked,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("log").clone()
    }
}

fn serve(
    stream: TcpStream,
    port: u16,
    huge_sent: &AtomicU64,
    asked: &std::sync::Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_or(true, |n| n == 0) || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    asked.lock().expect("log").push(path.clone());
    let mut out = stream;
    let reply = |out: &mut TcpStream, status: &str, ctype: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        // The client may have gone: nothing to do about it here.
        out.write_all(head.as_bytes())
            .and_then(|()| out.write_all(body))
            .unwrap_or(());
    };
    match path.as_str() {
        // Labelled as text: the fetcher must judge the bytes, not the type.
        "/photo" => reply(&mut out, "200 OK", "text/plain", &images::jpeg()),
        "/page.html" => reply(
            &mut out,
            "200 OK",
            "text/html",
            b"<!doctype html><p>not an image</p>",
        ),
        "/missing" => reply(&mut out, "404 Not Found", "text/plain", b"no"),
        "/down" => reply(&mut out, "503 Service Unavailable", "text/plain", b"later"),
        "/hang" => std::thread::sleep(Duration::from_secs(60)),
        "/to-private" => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{port}/photo\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            out.write_all(head.as_bytes()).unwrap_or(());
        }
        "/huge" => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\nconnection: close\r\n\r\n";
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
            // A JPEG's first bytes, then filler, with no Content-Length.
            let mut chunk = images::jpeg();
            chunk.resize(64 * 1024, 0);
            let mut sent = 0;
            while sent < HUGE_BYTES && out.write_all(&chunk).is_ok() {
                sent += chunk.len() as u64;
                huge_sent.store(sent, Ordering::SeqCst);
            }
        }
        _ => reply(&mut out, "404 Not Found", "text/plain", b"unknown route"),
    }
}

/// An app whose fetcher may reach the loopback source.
fn app_for_loopback(extra: &[(&str, &str)]) -> TestApp {
    let mut variables = vec![
        ("ingest_allow_http", "true"),
        ("ingest_allow_private", "true"),
        ("ingest_outbound", "http://127.0.0.1:*"),
        ("fetch_timeout_seconds", "2"),
        ("max_attempts", "1"),
    ];
    variables.extend_from_slice(extra);
    TestApp::spawn_with(&variables)
}

fn ingest(app: &TestApp, url: &str) -> crate::helpers::Response {
    app.request_json(reqwest::Method::POST, "/api/images", &json!({ "url": url }))
}

fn ingest_id(app: &TestApp, url: &str) -> String {
    let response = ingest(app, url);
    assert_eq!(response.status().as_u16(), 202, "{:?}", response.text());
    let body: Value = response.json().expect("202 JSON");
    body["id"].as_str().expect("id").to_owned()
}

fn failure_code(status: &Value) -> &str {
    assert_eq!(status["status"], "failed", "{status}");
    status["error"]["code"].as_str().expect("error code")
}

#[test]
fn a_url_is_answered_at_once_then_fetched_by_its_bytes_and_processed() {
    let source = Source::start();
    let app = app_for_loopback(&[]);
    let response = ingest(&app, &source.url("/photo"));
    assert_eq!(response.status().as_u16(), 202);
    let location = header(&response, "location").expect("Location");
    let body: Value = response.json().expect("202 JSON");
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(location, format!("/api/images/{id}/status"));

    let done = app.wait_until_finished(&id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["source"]["url"], source.url("/photo"));
    assert_eq!(done["original"]["format"], "jpeg");
    assert_eq!(
        done["history"].as_array().map(Vec::len),
        Some(2),
        "fetch + processing: {done}"
    );
    let original = app.get(&format!("/api/images/{id}/files/original"));
    assert_eq!(original.status().as_u16(), 200);
    assert_eq!(
        header(&original, "content-type").as_deref(),
        Some("image/jpeg")
    );
    assert_eq!(original.bytes().expect("bytes").to_vec(), images::jpeg());

    // A multipart `url` field is the same request.
    let form = reqwest::blocking::multipart::Form::new().text("url", source.url("/photo"));
    let response = app.post_form("/api/images", form);
    assert_eq!(response.status().as_u16(), 202);
    let id: String = response.json::<Value>().expect("JSON")["id"]
        .as_str()
        .expect("id")
        .into();
    assert_eq!(app.wait_until_finished(&id)["status"], "completed");
}

#[test]
fn a_source_that_never_answers_fails_as_unreachable_after_the_timeout() {
    let source = Source::start();
    let app = app_for_loopback(&[]);
    let id = ingest_id(&app, &source.url("/hang"));
    let done = app.wait_until_finished(&id);
    assert_eq!(failure_code(&done), "source_unreachable");
}

#[test]
fn a_source_serving_html_or_a_404_or_a_503_fails_with_its_code() {
    let source = Source::start();
    let app = app_for_loopback(&[]);
    for (path, code) in [
        ("/page.html", "source_not_image"),
        ("/missing", "source_refused"),
        ("/down", "source_unreachable"),
    ] {
        let id = ingest_id(&app, &source.url(path));
        let done = app.wait_until_finished(&id);
        assert_eq!(failure_code(&done), code, "{path}: {done}");
        assert!(
            app.keys_of(&id).iter().all(|k| !k.contains("original/")),
            "{path}: nothing stored: {:?}",
            app.keys_of(&id)
        );
    }
}

#[test]
fn a_200_mb_source_is_abandoned_just_past_max_upload_bytes() {
    let source = Source::start();
    let app = app_for_loopback(&[("max_upload_bytes", "1048576")]);
    let id = ingest_id(&app, &source.url("/huge"));
    let done = app.wait_until_finished(&id);
    assert_eq!(failure_code(&done), "source_too_large");
    std::thread::sleep(Duration::from_millis(500));
    let sent = source.huge_sent.load(Ordering::SeqCst);
    assert!(
        sent < HUGE_BYTES / 4,
        "the fetcher read on: the server sent {sent} bytes"
    );
}

#[test]
fn a_redirect_to_a_private_address_is_refused_without_fetching_it() {
    let source = Source::start();
    // Private addresses are forbidden here; `localhost` is a name, which only
    // the runtime's block_networks judges (after DNS), so the first hop goes.
    let app = TestApp::spawn_with(&[
        ("ingest_allow_http", "true"),
        ("ingest_outbound", "http://*:*"),
        ("fetch_timeout_seconds", "5"),
    ]);
    let url = format!("http://localhost:{}/to-private", source.port);
    let id = ingest_id(&app, &url);
    let done = app.wait_until_finished(&id);
    assert_eq!(failure_code(&done), "source_refused");
    assert!(
        done["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.1")),
        "{done}"
    );
    assert_eq!(
        source.asked(),
        ["/to-private"],
        "the private hop was never asked"
    );
}

#[test]
fn a_url_that_may_not_be_fetched_is_a_422_at_post_with_nothing_recorded() {
    let source = Source::start();
    let app = TestApp::spawn_with(&[("ingest_outbound", "http://*:*")]);
    for url in [
        source.url("/photo"),
        "http://images.example.com/a.jpg".to_owned(),
        "https://user:secret@images.example.com/a.jpg".to_owned(),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "ftp://images.example.com/a.jpg".to_owned(),
        "not a url".to_owned(),
    ] {
        let problem = assert_problem(ingest(&app, &url), 422);
        assert_eq!(
            problem["type"], "urn:darkroom:problem:url-not-allowed",
            "{url}"
        );
    }
    let problem = assert_problem(
        app.request_json(reqwest::Method::POST, "/api/images", &json!({ "uri": "x" })),
        400,
    );
    assert_eq!(problem["type"], "urn:darkroom:problem:malformed-json");
    assert!(
        app.kv_keys().iter().all(|k| !k.starts_with("job/")),
        "{:?}",
        app.kv_keys()
    );
    assert!(source.asked().is_empty());
}

#[test]
fn the_same_idempotency_key_and_url_give_the_first_answer_again() {
    let source = Source::start();
    let app = app_for_loopback(&[]);
    let send = |url: &str| {
        app.request_json_with_key(
            reqwest::Method::POST,
            "/api/images",
            &json!({ "url": url }),
            "\"ingest-1\"",
        )
    };
    let first = send(&source.url("/photo"));
    assert_eq!(first.status().as_u16(), 202);
    let first: Value = first.json().expect("JSON");
    let again = send(&source.url("/photo"));
    assert_eq!(again.status().as_u16(), 202);
    assert_eq!(again.json::<Value>().expect("JSON")["id"], first["id"]);
    let other = send(&source.url("/page.html"));
    assert_problem(other, 422);
}

#[test]
fn cancelling_a_job_while_its_source_is_fetched_leaves_it_cancelled() {
    let source = Source::start();
    // Attempts left: the timed-out fetch is a retry, and the cancel asked
    // meanwhile is honoured when it is recorded (a job that failed for good
    // first would stay failed: cancelling is best effort).
    let app = app_for_loopback(&[("fetch_timeout_seconds", "3"), ("max_attempts", "3")]);
    let id = ingest_id(&app, &source.url("/hang"));
    let held = app.wait_for_status(&id, &["processing"], Duration::from_secs(30));
    assert_eq!(held["stage"], "fetching", "{held}");
    assert_eq!(app.cancel(&id).status().as_u16(), 202);
    let done = app.wait_for_status(&id, &["cancelled"], Duration::from_secs(30));
    assert!(done.get("original").is_none(), "{done}");
    assert!(app.keys_of(&id).iter().all(|k| !k.contains("original/")));
}
