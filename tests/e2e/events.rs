//! Beyond polling: the job's events as server-sent events (replay, live,
//! resume with `Last-Event-ID`, ending itself with a `retry:` hint) and the
//! long poll (`ETag`, `If-None-Match`, `?wait=`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Options, TestApp, assert_problem, header};
use crate::images;
use crate::topology::FRONT;

/// One parsed SSE frame.
#[derive(Debug)]
struct Frame {
    id: Option<u32>,
    event: Option<String>,
    data: Option<Value>,
    retry: Option<u32>,
}

fn frames(text: &str) -> Vec<Frame> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let mut frame = Frame {
                id: None,
                event: None,
                data: None,
                retry: None,
            };
            let mut any = false;
            for line in block.lines() {
                let Some((field, value)) = line.split_once(": ") else {
                    continue;
                };
                any = true;
                match field {
                    "id" => frame.id = value.parse().ok(),
                    "event" => frame.event = Some(value.to_owned()),
                    "data" => frame.data = serde_json::from_str(value).ok(),
                    "retry" => frame.retry = value.parse().ok(),
                    _ => {}
                }
            }
            any.then_some(frame)
        })
        .collect()
}

fn events_of(app: &TestApp, id: &str, last_event_id: Option<&str>) -> (Vec<Frame>, Option<String>) {
    let response = app.get_with_header(
        &format!("/api/images/{id}/events"),
        last_event_id.map(|v| ("last-event-id", v)),
    );
    assert_eq!(response.status().as_u16(), 200);
    let content_type = header(&response, "content-type");
    (frames(&response.text().expect("text")), content_type)
}

#[test]
fn the_event_stream_replays_and_follows_a_job_to_its_terminal_event() {
    let app = TestApp::spawn();
    let id = app.upload(images::jpeg());
    let (frames, content_type) = events_of(&app, &id, None);
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));
    let types: Vec<&str> = frames.iter().filter_map(|f| f.event.as_deref()).collect();
    assert_eq!(
        types,
        [
            "image.queued",
            "image.processing",
            "image.output",
            "image.output",
            "image.output",
            "image.completed"
        ],
        "{frames:?}"
    );
    let ids: Vec<u32> = frames.iter().filter_map(|f| f.id).collect();
    assert_eq!(ids, (1..=6).collect::<Vec<_>>(), "consecutive, from 1");
    let thumbnail = frames[2].data.as_ref().expect("data");
    assert_eq!(thumbnail["variant"], "thumbnail");
    assert_eq!(thumbnail["output"]["width"], 200);
    assert_eq!(
        thumbnail["link"],
        format!("/api/images/{id}/files/thumbnail")
    );
    assert_eq!(frames[1].data.as_ref().expect("data")["attempt"], 1);
    let done = app.wait_until_finished(&id);
    assert_eq!(done["links"]["events"], format!("/api/images/{id}/events"));
}

#[test]
fn a_reconnecting_stream_resumes_after_its_last_event_id_with_nothing_repeated() {
    let app = TestApp::spawn();
    let id = app.upload(images::small_jpeg());
    app.wait_until_finished(&id);
    let (resumed, _) = events_of(&app, &id, Some("2"));
    let ids: Vec<u32> = resumed.iter().filter_map(|f| f.id).collect();
    assert_eq!(ids, [3, 4, 5, 6]);
    let by_query = app.get(&format!("/api/images/{id}/events?last_event_id=5"));
    let ids: Vec<u32> = frames(&by_query.text().expect("text"))
        .iter()
        .filter_map(|f| f.id)
        .collect();
    assert_eq!(ids, [6]);
    assert_problem(
        app.get_with_header(
            &format!("/api/images/{id}/events"),
            Some(("last-event-id", "x")),
        ),
        400,
    );
    assert_problem(
        app.get("/api/images/6f1c0c8e-5d2a-4e61-9d0e-6a3b0c2d1e4f/events"),
        404,
    );
}

#[test]
fn a_stream_ends_itself_before_stream_seconds_with_a_retry_hint() {
    // A front without a processor: the job stays queued.
    let app = TestApp::start(Options {
        components: Some(FRONT),
        variables: vec![("stream_seconds", "1")],
        ..Options::default()
    });
    let id = app.upload(images::small_jpeg());
    let started = Instant::now();
    let (frames, _) = events_of(&app, &id, None);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the stream ended by itself"
    );
    assert_eq!(
        frames.first().and_then(|f| f.event.as_deref()),
        Some("image.queued")
    );
    assert_eq!(
        frames.last().and_then(|f| f.retry),
        Some(1000),
        "{frames:?}"
    );
}

#[test]
fn a_long_poll_answers_304_when_nothing_changed_and_the_new_document_when_the_job_moved() {
    let front = TestApp::start(Options {
        components: Some(FRONT),
        ..Options::default()
    });
    let id = front.upload(images::small_jpeg());
    let path = format!("/api/images/{id}/status");
    let first = front.get(&path);
    let etag = header(&first, "etag").expect("an ETag");
    let held = front.get_with_header(&format!("{path}?wait=1"), Some(("if-none-match", &etag)));
    assert_eq!(held.status().as_u16(), 304);
    assert_eq!(header(&held, "etag").as_deref(), Some(etag.as_str()));

    if crate::helpers::http_only() {
        // No processor to start apart from the front in that profile; the
        // finished-job half below runs in `the_long_poll_does_not_hold_…`.
        return;
    }
    let processor = TestApp::start(Options {
        components: Some(&["processor"]),
        share_state_with: Some(&front),
        ..Options::default()
    });
    // The first doorbell rang while no processor listened: a second upload
    // rings it again, and the processor drains both.
    front.upload(images::small_jpeg());
    let moved = front.get_with_header(&format!("{path}?wait=20"), Some(("if-none-match", &etag)));
    assert_eq!(
        moved.status().as_u16(),
        200,
        "the job changed within the wait"
    );
    assert_ne!(header(&moved, "etag"), Some(etag));
    let done = front.wait_until_finished(&id);
    assert_eq!(done["status"], "completed");
    drop(processor);
}

#[test]
fn the_long_poll_does_not_hold_a_finished_job_and_refuses_a_bad_wait() {
    let app = TestApp::spawn();
    let id = app.upload(images::small_jpeg());
    app.wait_until_finished(&id);
    let path = format!("/api/images/{id}/status");
    let finished = app.get(&path);
    let etag = header(&finished, "etag").expect("an ETag");
    let started = Instant::now();
    let again = app.get_with_header(&format!("{path}?wait=20"), Some(("if-none-match", &etag)));
    assert_eq!(again.status().as_u16(), 304, "a finished job is not held");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_problem(app.get(&format!("{path}?wait=99")), 400);
    assert_problem(app.get(&format!("{path}?wait=soon")), 400);
}

#[test]
fn a_page_on_an_allowed_origin_may_call_the_api_and_other_origins_get_no_cors_headers() {
    const ORIGIN: &str = "https://app.example.com";
    let app = TestApp::spawn_with(&[("cors_allowed_origins", ORIGIN)]);
    let preflight = app.send_with(
        reqwest::Method::OPTIONS,
        "/api/images",
        &[
            ("origin", ORIGIN),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "idempotency-key"),
        ],
        None,
    );
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(
        header(&preflight, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert!(header(&preflight, "access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(
        header(&preflight, "access-control-allow-headers")
            .is_some_and(|h| h.contains("idempotency-key"))
    );

    let upload = app.send_with(
        reqwest::Method::POST,
        "/api/images",
        &[("origin", ORIGIN), ("content-type", "image/jpeg")],
        Some(images::small_jpeg()),
    );
    assert_eq!(upload.status().as_u16(), 202);
    assert_eq!(
        header(&upload, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert!(
        header(&upload, "access-control-expose-headers").is_some_and(|h| h.contains("location"))
    );
    let id: String = upload.json::<Value>().expect("JSON")["id"]
        .as_str()
        .expect("id")
        .into();
    app.wait_until_finished(&id);
    for path in [
        format!("/api/images/{id}/status"),
        format!("/api/images/{id}/events"),
        format!("/api/images/{id}/files/thumbnail"),
    ] {
        let read = app.send_with(reqwest::Method::GET, &path, &[("origin", ORIGIN)], None);
        assert_eq!(read.status().as_u16(), 200, "{path}");
        assert_eq!(
            header(&read, "access-control-allow-origin").as_deref(),
            Some(ORIGIN),
            "{path}"
        );
    }
    for path in [
        format!("/api/images/{id}/cancel"),
        format!("/api/images/{id}"),
    ] {
        let preflight = app.send_with(reqwest::Method::OPTIONS, &path, &[("origin", ORIGIN)], None);
        assert_eq!(preflight.status().as_u16(), 204, "{path}");
        assert_eq!(
            header(&preflight, "access-control-allow-origin").as_deref(),
            Some(ORIGIN)
        );
    }

    let other = app.send_with(
        reqwest::Method::OPTIONS,
        "/api/images",
        &[
            ("origin", "https://evil.example.net"),
            ("access-control-request-method", "POST"),
        ],
        None,
    );
    assert_eq!(other.status().as_u16(), 204);
    assert_eq!(header(&other, "access-control-allow-origin"), None);
    let closed = TestApp::spawn();
    let default = closed.send_with(
        reqwest::Method::GET,
        &format!("/api/images/{id}/status"),
        &[("origin", ORIGIN)],
        None,
    );
    assert_eq!(
        header(&default, "access-control-allow-origin"),
        None,
        "no origin by default"
    );
}
