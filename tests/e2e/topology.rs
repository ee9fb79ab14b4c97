//! The documented topology and the Redis trigger: a front process (every
//! HTTP component) and processor processes sharing one deployment's state.
//! Jobs are not lost when no processor runs, when Redis restarts or goes
//! away for a while (the front keeps answering; a supervisor restarts the
//! processor that Spin ended), or when a processor dies mid-job; several
//! processors share one queue without doing a job twice; a processor never
//! spins on a queue it cannot reach; a job whose object storage goes away is
//! retried until it comes back. Skipped in the HTTP-only pass, which has no
//! Redis trigger.

use std::time::Duration;

use crate::helpers::{
    Options, PrivateRedis, PrivateS3, Supervised, TestApp, assert_problem, header,
};
use crate::images;

/// The front process of the documented topology: every HTTP component.
pub const FRONT: &[&str] = &["upload", "status", "manage", "files", "admin", "web"];
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
fn a_job_cancelled_while_it_waits_is_cancelled_at_once_and_never_processed() {
    let front = front(None, &[]);
    let id = front.upload(images::small_jpeg());
    let response = front.cancel(&id);
    assert_eq!(response.status().as_u16(), 200);
    let cancelled: serde_json::Value = response.json().expect("status JSON");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(cancelled["links"].get("cancel").is_none(), "{cancelled}");

    let _processor = processor_for(&front, &[]);
    let other = front.upload(images::small_jpeg());
    assert_eq!(front.wait_until_finished(&other)["status"], "completed");
    let still: serde_json::Value = front.status(&id).json().expect("status JSON");
    assert_eq!(still["status"], "cancelled", "{still}");
    assert_eq!(still["attempts"], 0, "never started: {still}");
    assert_eq!(front.derivative_count(&id), 0);
}

/// Accepts a job while no processor runs, restarts `redis`, then starts a
/// processor and returns the job's final status.
fn finish_across_a_restart_of(redis: PrivateRedis) -> serde_json::Value {
    let front = front(Some(&redis), &[]);
    let id = front.upload(images::small_jpeg());
    let _redis = redis.restart();
    let _processor = processor_for(&front, &[]);
    front.wait_until_finished(&id)
}

#[test]
fn a_job_survives_a_redis_restart_between_accept_and_processing() {
    let done = finish_across_a_restart_of(PrivateRedis::start_persistent());
    assert_eq!(done["status"], "completed", "{done}");
}

#[test]
fn a_job_survives_a_redis_restart_that_lost_the_queue_because_status_reads_put_it_back() {
    // No persistence: the restarted Redis has forgotten the queue, but the
    // job's record still says it is queued.
    let done = finish_across_a_restart_of(PrivateRedis::start());
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
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
fn a_processor_whose_redis_goes_away_ends_its_whole_app_as_spin_up_does() {
    let mut redis = PrivateRedis::start();
    let app = TestApp::spawn_against(&redis.url(), &[]);
    let id = app.upload(images::small_jpeg());
    app.wait_until_finished(&id);
    redis.go_down();
    // Spin's Redis trigger ends with its connection, and `spin up` with it:
    // the HTTP routes of the same process go too.
    let reason = app.wait_for_exit(Duration::from_secs(10));
    assert!(
        reason.contains("disconnected") || reason.contains("exited"),
        "{reason}"
    );
    let addr = app.url("").trim_start_matches("http://").to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} still accepts connections 5 s after the app ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_two_process_deployment_rides_out_a_redis_outage_and_finishes_every_accepted_job() {
    let mut redis = PrivateRedis::start_persistent();
    // A claim that Redis executed but whose reply the outage swallowed is
    // only recovered when its lease lapses: keep that short here.
    let lease = [("lease_seconds", "3")];
    let front = front(Some(&redis), &lease);
    let processor = Supervised::processor(&front, &lease);
    let before = front.upload(images::small_jpeg());
    assert_eq!(front.wait_until_finished(&before)["status"], "completed");
    // Accepted just before the outage: may still be queued when it starts.
    let queued = front.upload(images::photo_24mp());

    redis.go_down();
    processor.wait_until_stopped(Duration::from_secs(30));
    // The front has no Redis trigger, so it keeps answering from storage.
    let status = front.status(&before);
    assert_eq!(status.status().as_u16(), 200);
    assert_eq!(
        status.json::<serde_json::Value>().expect("JSON")["status"],
        "completed"
    );
    let thumbnail = front.get(&format!("/api/images/{before}/files/thumbnail"));
    assert_eq!(thumbnail.status().as_u16(), 200);
    assert_eq!(front.status(&queued).status().as_u16(), 200);
    let keys_before = front.kv_keys();
    let refused = front.upload_multipart(images::small_jpeg(), "photo.jpg", "image/jpeg");
    assert!(
        header(&refused, "retry-after").is_some(),
        "503 carries Retry-After"
    );
    assert_problem(refused, 503);
    assert_eq!(
        front.kv_keys(),
        keys_before,
        "an upload refused during the outage records nothing"
    );

    redis.resume();
    processor.wait_until_running(Duration::from_secs(30));
    let after = front.upload(images::small_jpeg());
    for id in [&queued, &after] {
        let done = front.wait_until_finished(id);
        assert_eq!(done["status"], "completed", "{done}");
    }
    let exits = processor.exits();
    assert!(
        exits
            .iter()
            .any(|e| e.contains("disconnected") || e.contains("exited")),
        "the processor ended with its Redis connection: {exits:?}"
    );
}

#[test]
fn a_processor_does_not_spin_on_a_queue_it_cannot_reach() {
    let mut redis = PrivateRedis::start();
    let front = front(Some(&redis), &[]);
    let processor = processor_for(&front, &[]);
    // Enough work that the processor is mid-drain when Redis goes away.
    let ids = front.upload_concurrently(6, &images::photo_24mp());
    front.wait_for_status(
        &ids[0],
        &["processing", "completed"],
        Duration::from_secs(30),
    );
    redis.go_down();
    processor.wait_for_exit(Duration::from_secs(40));
    let log = processor.logs();
    let failed_claims =
        log.matches("could not be worked").count() + log.matches("queue unavailable").count();
    assert!(
        failed_claims <= 3,
        "{failed_claims} failed attempts logged while the queue was down:\n{log}"
    );
    assert!(
        log.lines().count() < 200,
        "{} log lines",
        log.lines().count()
    );
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
