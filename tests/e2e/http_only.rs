//! The HTTP-only profile (`spin.http-only.toml`) in every pass, whatever
//! manifest the pass runs: no component has a Redis trigger, so nothing is
//! subscribed to the queue's channel, and still every accepted job is
//! processed once (each upload asks the worker to drain after answering)
//! and a job whose call to the worker never happened is finished by the
//! status reads that find it overdue. (The HTTP-only pass also runs the
//! rest of the suite against this manifest.)

use crate::helpers::{Options, TestApp};
use crate::images;

const MANIFEST: &str = "spin.http-only.toml";

#[test]
fn in_the_http_only_profile_concurrent_uploads_are_each_processed_once_with_no_subscriber() {
    let app = TestApp::start(Options {
        manifest: Some(MANIFEST),
        ..Options::default()
    });
    let ids = app.upload_concurrently(8, &images::small_jpeg());
    for id in &ids {
        let done = app.wait_until_finished(id);
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["attempts"], 1, "{done}");
        assert_eq!(app.derivative_count(id), 3, "one set of outputs");
    }
    assert_eq!(app.subscribers(), 0, "no Redis trigger listens");
}

#[test]
fn in_the_http_only_profile_a_job_nobody_asked_the_worker_for_is_finished_by_status_reads() {
    // An upload front whose calls to the worker are switched off: the job is
    // only queued, as if the instance had died right after answering.
    let silent = TestApp::start(Options {
        manifest: Some(MANIFEST),
        variables: vec![("worker_url", "")],
        ..Options::default()
    });
    let id = silent.upload(images::small_jpeg());
    let app = TestApp::start(Options {
        manifest: Some(MANIFEST),
        share_state_with: Some(&silent),
        ..Options::default()
    });
    let done = app.wait_until_finished(&id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
}
