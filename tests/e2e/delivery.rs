//! Delivery in any profile: a job that kills its processor every time ends
//! failed and dead-lettered (and can be re-driven); the operator routes stay
//! hidden until a token is set. The guarantees that depend on the Redis
//! trigger and on running the processor as a process of its own are in
//! `topology`.

use crate::helpers::{Options, TestApp, assert_problem, header, http_only};
use crate::images;

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
    // A lossless WebP is decoded whole: 12 MP take two buffers of 48 MB,
    // over the 48 MiB instance cap (a PNG no longer would: it is streamed).
    let id = app.upload(images::in_format_sized(
        image::ImageFormat::WebP,
        4000,
        3000,
    ));
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
    // The workers are the processors listening on the Redis trigger; the
    // HTTP-only profile has none (its worker is called, not subscribed).
    let workers = if http_only() { 0 } else { 1 };
    assert_eq!(report["workers"], workers, "{report}");
}

#[test]
fn operators_list_jobs_newest_first_a_page_at_a_time() {
    let app = TestApp::spawn_with(&[("admin_token", "s3cret")]);
    let ids: Vec<String> = (0..3).map(|_| app.upload(images::small_jpeg())).collect();
    for id in &ids {
        assert_eq!(app.wait_until_finished(id)["status"], "completed");
    }
    let page = |query: &str| -> serde_json::Value {
        let response = app.admin(reqwest::Method::GET, &format!("/internal/images{query}"));
        assert_eq!(response.status().as_u16(), 200);
        response.json().expect("JSON")
    };
    let listed = |page: &serde_json::Value| -> Vec<String> {
        page["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|i| i["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let first = page("?limit=2");
    assert_eq!(
        listed(&first),
        vec![ids[2].clone(), ids[1].clone()],
        "{first}"
    );
    let token = first["next_page_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    app.upload(images::small_jpeg());
    let second = page(&format!("?limit=2&page_token={token}"));
    assert_eq!(listed(&second), vec![ids[0].clone()], "{second}");
    assert!(second["next_page_token"].is_null(), "{second}");
    assert_eq!(page("?status=failed")["images"], serde_json::json!([]));
    assert_eq!(listed(&page("?status=completed&limit=3")).len(), 3);

    for bad in [
        "?status=done",
        "?limit=0",
        "?limit=101",
        "?page_token=nope",
        "?colour=red",
    ] {
        let response = app.admin(reqwest::Method::GET, &format!("/internal/images{bad}"));
        let problem = assert_problem(response, 400);
        assert_eq!(
            problem["type"], "urn:darkroom:problem:invalid-query",
            "{bad}: {problem}"
        );
    }
    assert_problem(app.request(reqwest::Method::GET, "/internal/images"), 401);
}
