//! `Idempotency-Key` on uploads (draft-ietf-httpapi-idempotency-key-header):
//! a repeat gets the first `202` and stores nothing, another payload under
//! the key is a `422`, racing requests make one job, a malformed key is a
//! `400`.

use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, header};
use crate::images;

fn job_records(app: &TestApp) -> usize {
    app.kv_keys()
        .iter()
        .filter(|k| k.starts_with("job/"))
        .count()
}

#[test]
fn a_repeated_upload_with_the_same_key_gets_the_first_202_and_stores_nothing_new() {
    let app = TestApp::spawn();
    let first = app.upload_with_key(images::jpeg(), "\"retry-me-1\"");
    assert_eq!(first.status().as_u16(), 202);
    let location = header(&first, "location");
    let first: Value = first.json().expect("JSON");
    let id = first["id"].as_str().expect("id").to_owned();
    assert_eq!(app.wait_until_finished(&id)["status"], "completed");
    let stored = (app.kv_keys(), app.blob_keys());

    // Another multipart body (a new boundary), the same image: a repeat.
    let again = app.upload_with_key(images::jpeg(), "\"retry-me-1\"");
    assert_eq!(again.status().as_u16(), 202);
    assert_eq!(header(&again, "location"), location);
    assert!(header(&again, "retry-after").is_some());
    let again: Value = again.json().expect("JSON");
    assert_eq!(again, first, "the first answer, again");
    assert_eq!(
        (app.kv_keys(), app.blob_keys()),
        stored,
        "nothing new stored"
    );

    let other = app.upload_with_key(images::jpeg(), "\"retry-me-2\"");
    assert_eq!(other.status().as_u16(), 202);
    let other: Value = other.json().expect("JSON");
    assert_ne!(other["id"], first["id"], "another key, another job");
}

#[test]
fn the_same_key_with_another_image_is_a_422_problem_and_records_nothing() {
    let app = TestApp::spawn();
    let first = app.upload_with_key(images::jpeg(), "\"one-key\"");
    assert_eq!(first.status().as_u16(), 202);
    let first: Value = first.json().expect("JSON");
    let id = first["id"].as_str().expect("id").to_owned();
    // Compare the stores once the first job has settled.
    assert_eq!(app.wait_until_finished(&id)["status"], "completed");
    let stored = app.kv_keys();
    let reused = app.upload_with_key(images::small_jpeg(), "\"one-key\"");
    let problem = assert_problem(reused, 422);
    assert_eq!(
        problem["type"], "urn:darkroom:problem:idempotency-key-reused",
        "{problem}"
    );
    assert_eq!(app.kv_keys(), stored);
}

#[test]
fn a_malformed_key_is_a_400_problem_and_records_nothing() {
    let app = TestApp::spawn();
    for bad in ["unquoted", "\"\"", "\"caf\u{e9}\""] {
        let response = app.upload_with_key(images::jpeg(), bad);
        let problem = assert_problem(response, 400);
        assert_eq!(
            problem["type"], "urn:darkroom:problem:malformed-idempotency-key",
            "{problem}"
        );
    }
    assert_eq!(job_records(&app), 0);
}

#[test]
fn concurrent_uploads_racing_with_one_key_make_one_job() {
    let app = TestApp::spawn();
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let response = app.upload_with_key(images::photo_24mp(), "\"raced\"");
                    let status = response.status().as_u16();
                    (status, response.json().expect("JSON"))
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("racer"))
            .collect()
    });
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .filter(|(status, _)| *status == 202)
        .map(|(_, body)| body["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one job for one key: {answers:?}");
    for (status, body) in &answers {
        assert!(
            *status == 202
                || (*status == 409
                    && body["type"] == "urn:darkroom:problem:idempotency-key-in-use"),
            "{status} {body}"
        );
    }
    assert_eq!(job_records(&app), 1);
    let id = ids.into_iter().next().expect("an id");
    assert_eq!(app.wait_until_finished(&id)["status"], "completed");
}
