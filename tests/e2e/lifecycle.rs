//! Taking a job back (AIP-151): cancelling it while it waits or while a
//! processor holds it (no outputs kept, `cancelled` for good), refusing to
//! cancel a finished one, and deleting a job, finished or mid-processing,
//! with everything it owned.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, header};
use crate::images;

/// Uploads a photograph big enough to take a while and cancels it once a
/// processor holds it. A small machine may finish a job before the cancel
/// arrives (then `409`); try again with a fresh job a few times.
fn cancel_while_processing(app: &TestApp) -> (String, Value) {
    for _ in 0..4 {
        let id = app.upload(images::photo_24mp());
        app.wait_for_status(&id, &["processing", "completed"], Duration::from_secs(30));
        let response = app.cancel(&id);
        match response.status().as_u16() {
            202 => {
                assert_eq!(
                    header(&response, "location").as_deref(),
                    Some(format!("/api/images/{id}/status").as_str())
                );
                let body: Value = response.json().expect("status JSON");
                return (id, body);
            }
            409 => {}
            other => panic!("cancel answered {other}: {:?}", response.text()),
        }
    }
    panic!("every job finished before its cancel arrived");
}

/// A storage error while a processor honours a request leaves the job to
/// its lease (transient, retried): keep that short here.
const SHORT_LEASE: &[(&str, &str)] = &[("lease_seconds", "5")];

#[test]
fn a_job_cancelled_while_it_is_processed_ends_cancelled_with_no_outputs() {
    let app = TestApp::spawn_with(SHORT_LEASE);
    let (id, asked) = cancel_while_processing(&app);
    assert_eq!(asked["status"], "processing", "{asked}");
    assert_eq!(asked["cancel_requested"], true, "{asked}");
    let done = app.wait_for_status(&id, &["cancelled", "completed"], Duration::from_secs(60));
    assert_eq!(done["status"], "cancelled", "{done}");
    assert!(done.get("outputs").is_none(), "{done}");
    assert!(done["links"].get("thumbnail").is_none(), "{done}");
    assert_eq!(app.derivative_count(&id), 0, "no outputs kept");
    let thumbnail = app.get(&format!("/api/images/{id}/files/thumbnail"));
    assert_problem(thumbnail, 409);
    let original = app.get(&format!("/api/images/{id}/files/original"));
    assert_eq!(
        original.status().as_u16(),
        200,
        "the original stays until deleted"
    );
    assert_problem(app.cancel(&id), 409);
}

#[test]
fn a_finished_job_cannot_be_cancelled_and_an_unknown_one_is_not_found() {
    let app = TestApp::spawn();
    let id = app.upload(images::small_jpeg());
    assert_eq!(app.wait_until_finished(&id)["status"], "completed");
    let refused = assert_problem(app.cancel(&id), 409);
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("completed")),
        "{refused}"
    );
    assert_problem(app.cancel(&uuid::Uuid::new_v4().to_string()), 404);
    assert_problem(app.cancel("not-an-id"), 404);
    let wrong = app.request(reqwest::Method::GET, &format!("/api/images/{id}/cancel"));
    assert_eq!(header(&wrong, "allow").as_deref(), Some("POST"));
    assert_problem(wrong, 405);
    let wrong = app.request(reqwest::Method::GET, &format!("/api/images/{id}"));
    assert_eq!(header(&wrong, "allow").as_deref(), Some("DELETE"));
    assert_problem(wrong, 405);
}

#[test]
fn deleting_a_finished_job_removes_everything_it_owned_and_nothing_else() {
    let app = TestApp::spawn();
    let keep = app.upload(images::small_jpeg());
    let id = app.upload(images::jpeg());
    for job in [&keep, &id] {
        assert_eq!(app.wait_until_finished(job)["status"], "completed");
    }
    let kept_before = app.keys_of(&keep);
    assert!(!app.keys_of(&id).is_empty(), "the job owns keys before");

    let response = app.delete(&id);
    assert_eq!(response.status().as_u16(), 204);
    assert!(response.bytes().expect("body").is_empty());
    assert_eq!(
        app.keys_of(&id),
        Vec::<String>::new(),
        "nothing of the job is left"
    );
    assert_problem(app.status(&id), 404);
    assert_problem(app.get(&format!("/api/images/{id}/files/original")), 404);
    assert_problem(app.delete(&id), 404);
    assert_eq!(
        app.keys_of(&keep),
        kept_before,
        "the other job is untouched"
    );
    assert_eq!(app.status(&keep).status().as_u16(), 200);
}

#[test]
fn deleting_a_job_while_it_is_processed_leaves_nothing_once_its_processor_lets_go() {
    let app = TestApp::spawn_with(SHORT_LEASE);
    let id = app.upload(images::photo_24mp());
    app.wait_for_status(&id, &["processing", "completed"], Duration::from_secs(30));
    let response = app.delete(&id);
    assert_eq!(response.status().as_u16(), 204);
    assert_problem(app.status(&id), 404);
    // The processor holding it removes what it stores after the delete.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = app.keys_of(&id);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still there after 60 s: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_problem(app.status(&id), 404);
}

/// 0.001 h = 3.6 s.
const RETENTION: (&str, &str) = ("retention_hours", "0.001");

#[test]
fn the_sweep_removes_everything_an_expired_job_owned_and_nothing_else() {
    let app = TestApp::spawn_with(&[RETENTION, ("admin_token", "s3cret")]);
    let old = app.upload(images::small_jpeg());
    assert_eq!(app.wait_until_finished(&old)["status"], "completed");
    assert!(!app.keys_of(&old).is_empty());
    std::thread::sleep(Duration::from_millis(4_000));
    let young = app.upload(images::small_jpeg());
    let kept = app.wait_until_finished(&young);
    assert!(kept["expires_at"].is_string(), "{kept}");

    let swept = app.admin(reqwest::Method::POST, "/internal/sweep");
    assert_eq!(swept.status().as_u16(), 200);
    let report: Value = swept.json().expect("sweep JSON");
    assert_eq!(report["expired_removed"], 1, "{report}");
    assert!(
        app.keys_of(&old).is_empty(),
        "left: {:?}",
        app.keys_of(&old)
    );
    assert_problem(app.status(&old), 404);
    assert_eq!(app.status(&young).status().as_u16(), 200);
    assert_eq!(
        app.get(&format!("/api/images/{young}/files/thumbnail"))
            .status()
            .as_u16(),
        200
    );
}

#[test]
fn a_job_read_after_its_retention_is_gone_with_everything_it_owned() {
    let app = TestApp::spawn_with(&[RETENTION]);
    let id = app.upload(images::small_jpeg());
    assert_eq!(app.wait_until_finished(&id)["status"], "completed");
    std::thread::sleep(Duration::from_millis(4_000));
    assert_problem(app.get(&format!("/api/images/{id}/files/original")), 404);
    assert_problem(app.status(&id), 404);
    assert!(app.keys_of(&id).is_empty(), "left: {:?}", app.keys_of(&id));
}
