//! The delivery guarantee on top of Redis pub/sub: jobs are not lost when no
//! processor runs, when Redis restarts, or when a processor dies mid-job;
//! several processors share one queue without doing a job twice; a job that
//! kills its processor every time ends failed and dead-lettered; a job
//! whose object storage goes away is retried until it comes back.

use std::time::Duration;

use crate::helpers::{Options, PrivateRedis, PrivateS3, TestApp, assert_problem, header};
use crate::images;

const FRONT: &[&str] = &["upload", "status", "files"];
const PROCESSOR: &[&str] = &["processor"];

fn front(redis: Option<&PrivateRedis>, variables: &[(&'static str, &'static str)]) -> TestApp {
    TestApp::start(Options {
        redis_url: redis.map(PrivateRedis::url),
        components: Some(FRONT),
        variables: variables.to_vec(),
        ..Options::default()
    })
}

fn processor_for(front: &TestApp, variables: &[(&'static str, &'static str)]) -> TestApp {
    TestApp::start(Options {
        components: Some(PROCESSOR),
        share_state_with: Some(front),
        variables: variables.to_vec(),
        ..Options::default()
    })
}

#[test]
fn a_job_accepted_while_no_processor_runs_is_processed_once_one_starts() {
    let front = front(None, &[]);
    let id = front.upload(images::small_jpeg());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        front.status(&id).json::<serde_json::Value>().expect("JSON")["status"],
        "queued"
    );

    let _processor = processor_for(&front, &[]);
    // No upload rings the doorbell now: the status reads of the overdue job do.
    let done = front.wait_until_finished(&id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1);
}

#[test]
fn a_job_survives_a_redis_restart_between_accept_and_processing() {
    let redis = PrivateRedis::start_persistent();
    let front = front(Some(&redis), &[]);
    let id = front.upload(images::small_jpeg());
    let redis = redis.restart();

    let _processor = processor_for(&front, &[]);
    let done = front.wait_until_finished(&id);
    assert_eq!(done["status"], "completed", "{done}");
    drop(redis);
}

#[test]
fn a_job_whose_processor_is_killed_mid_job_is_finished_by_another_without_duplicate_outputs() {
    let lease = [("lease_seconds", "2")];
    let front = front(None, &lease);
    let doomed = processor_for(&front, &lease);
    let id = front.upload(images::photo_24mp());
    front.wait_for_status(&id, &["processing"], Duration::from_secs(30));
    doomed.kill();

    let _survivor = processor_for(&front, &lease);
    let done = front.wait_until_finished(&id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(
        done["history"][0]["error"]["code"], "processor_lost",
        "{done}"
    );
    assert!(done["history"][1]["error"].is_null(), "{done}");
    assert_eq!(front.derivative_count(&id), 3, "one set of derivatives");
}

#[test]
fn two_processors_share_one_queue_and_each_job_is_processed_once() {
    let front = front(None, &[]);
    let _one = processor_for(&front, &[]);
    let _two = processor_for(&front, &[]);
    front.wait_for_subscribers(2);
    let ids = front.upload_concurrently(12, &images::small_jpeg());
    for id in &ids {
        let done = front.wait_until_finished(id);
        assert_eq!(done["status"], "completed", "{done}");
        // Every start counts an attempt: a second processor taking the job would show.
        assert_eq!(done["attempts"], 1, "{done}");
        assert_eq!(done["history"].as_array().map(Vec::len), Some(1), "{done}");
    }
}

#[test]
fn a_job_that_kills_its_processor_every_time_ends_failed_and_dead_lettered() {
    let app = TestApp::start(Options {
        variables: vec![
            ("max_attempts", "2"),
            ("lease_seconds", "1"),
            ("admin_token", "s3cret"),
        ],
        max_instance_memory: Some(48 << 20),
        ..Options::default()
    });
    // 20 MP decodes to 60 MB of pixels: over the 48 MiB instance cap.
    let id = app.upload(images::png_declaring_real(5000, 4000));
    let done = app.wait_until_finished(&id);
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "processor_lost", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");

    let unauthorized = app.request(reqwest::Method::GET, "/internal/dead-letters");
    assert_eq!(
        header(&unauthorized, "www-authenticate").as_deref(),
        Some("Bearer")
    );
    assert_problem(unauthorized, 401);
    let dead: serde_json::Value = app
        .admin(reqwest::Method::GET, "/internal/dead-letters")
        .json()
        .expect("JSON");
    assert!(
        dead["dead_letters"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == id.as_str())),
        "{dead}"
    );

    let redriven = app.admin(
        reqwest::Method::POST,
        &format!("/internal/dead-letters/{id}/redrive"),
    );
    assert_eq!(redriven.status().as_u16(), 200);
    let after: serde_json::Value = redriven.json().expect("JSON");
    assert!(
        after["dead_letters"]
            .as_array()
            .is_some_and(|d| !d.iter().any(|x| x == id.as_str())),
        "{after}"
    );
}

#[test]
fn admin_routes_are_hidden_until_a_token_is_configured() {
    let app = TestApp::spawn();
    assert_problem(app.request(reqwest::Method::POST, "/internal/sweep"), 404);
    let configured = TestApp::spawn_with(&[("admin_token", "s3cret")]);
    let sweep = configured.admin(reqwest::Method::POST, "/internal/sweep");
    assert_eq!(sweep.status().as_u16(), 200);
    let report: serde_json::Value = sweep.json().expect("JSON");
    assert_eq!(report["workers"], 1, "{report}");
}

#[test]
fn a_status_read_still_answers_while_redis_is_down() {
    let redis = PrivateRedis::start();
    let app = TestApp::spawn_against(&redis.url(), &[]);
    let id = app.upload(images::small_jpeg());
    app.wait_until_finished(&id);
    drop(redis);
    let response = app.status(&id);
    assert_eq!(response.status().as_u16(), 200);
    let status: serde_json::Value = response.json().expect("status JSON");
    assert_eq!(status["status"], "completed", "{status}");
}

#[test]
fn a_job_whose_storage_fails_while_processing_is_retried_and_completes_when_it_returns() {
    let s3 = PrivateS3::start();
    let mut variables = s3.variables();
    variables.push(("retry_base_delay_ms", "200"));
    let front = TestApp::start(Options {
        components: Some(FRONT),
        variables: variables.clone(),
        ..Options::default()
    });
    let id = front.upload(images::small_jpeg());
    s3.stop();
    let _processor = TestApp::start(Options {
        components: Some(PROCESSOR),
        share_state_with: Some(&front),
        variables,
        ..Options::default()
    });
    // The first attempt cannot read the original: a transient failure,
    // so the job goes back to the queue with a retry time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let status: serde_json::Value = front.status(&id).json().expect("JSON");
        if status["attempts"].as_u64() >= Some(1) && status["status"] == "queued" {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed attempt within 30 s: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        waiting["history"][0]["error"]["code"], "storage_unavailable",
        "{waiting}"
    );
    s3.resume();
    let done = front.wait_until_finished(&id);
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["attempts"].as_u64() >= Some(2), "{done}");
    let derived = s3
        .object_keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("derived/{id}/")))
        .count();
    assert_eq!(derived, 3, "one set of outputs");
}
