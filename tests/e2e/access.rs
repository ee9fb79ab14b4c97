//! Who may do what: with `api_keys` set, uploads, cancels and deletes need
//! one of the keys as a bearer token (`401` problem with `WWW-Authenticate`
//! otherwise, nothing recorded); status and files stay capability URLs
//! unless `private_reads` is on.

use crate::helpers::{TestApp, assert_problem, header};
use crate::images;

fn assert_unauthorized(response: crate::helpers::Response) {
    assert_eq!(
        header(&response, "www-authenticate").as_deref(),
        Some("Bearer")
    );
    let problem = assert_problem(response, 401);
    assert_eq!(
        problem["type"], "urn:darkroom:problem:unauthorized",
        "{problem}"
    );
}

#[test]
fn with_api_keys_set_writes_need_a_key_and_reads_stay_open() {
    let mut app = TestApp::spawn_with(&[("api_keys", "first-key, second-key")]);
    assert_unauthorized(app.upload_multipart(images::small_jpeg(), "a.jpg", "image/jpeg"));
    app.use_bearer(Some("not-a-key"));
    assert_unauthorized(app.upload_multipart(images::small_jpeg(), "a.jpg", "image/jpeg"));
    assert!(
        app.kv_keys().iter().all(|k| !k.starts_with("job/")),
        "a refused upload records nothing"
    );

    app.use_bearer(Some("second-key"));
    let id = app.upload(images::small_jpeg());
    assert_eq!(app.wait_until_finished(&id)["status"], "completed");

    app.use_bearer(None);
    assert_eq!(
        app.status(&id).status().as_u16(),
        200,
        "status is a capability URL"
    );
    let thumbnail = app.get(&format!("/api/images/{id}/files/thumbnail"));
    assert_eq!(thumbnail.status().as_u16(), 200);
    assert_unauthorized(app.cancel(&id));
    assert_unauthorized(app.delete(&id));
    app.use_bearer(Some("first-key"));
    assert_eq!(app.delete(&id).status().as_u16(), 204);
}

#[test]
fn with_private_reads_status_and_files_need_a_key_too() {
    let mut app = TestApp::spawn_with(&[("api_keys", "reader"), ("private_reads", "true")]);
    app.use_bearer(Some("reader"));
    let id = app.upload(images::small_jpeg());
    assert_eq!(app.wait_until_finished(&id)["status"], "completed");
    app.use_bearer(None);
    assert_unauthorized(app.status(&id));
    assert_unauthorized(app.get(&format!("/api/images/{id}/files/original")));
    app.use_bearer(Some("reader"));
    assert_eq!(
        app.get(&format!("/api/images/{id}/files/original"))
            .status()
            .as_u16(),
        200
    );
}

#[test]
fn without_api_keys_anyone_may_upload() {
    let app = TestApp::spawn();
    let id = app.upload(images::small_jpeg());
    assert_eq!(app.delete(&id).status().as_u16(), 204);
}
