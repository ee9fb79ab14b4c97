//! `POST /api/images`: what is accepted, and every way an upload is refused.

use crate::helpers::{SendChecked as _, TestApp, assert_problem, header};
use crate::images;

#[test]
fn an_image_posted_as_multipart_is_accepted_with_202_location_and_retry_after() {
    let app = TestApp::spawn();
    let response = app.upload_multipart(images::small_jpeg(), "photo.jpg", "image/jpeg");
    assert_eq!(response.status().as_u16(), 202);
    let location = header(&response, "location").expect("Location");
    let retry_after: u32 = header(&response, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    let body: serde_json::Value = response.json().expect("JSON");
    let id = body["id"].as_str().expect("id");
    assert_eq!(body["status"], "queued");
    assert_eq!(location, format!("/api/images/{id}/status"));
    assert_eq!(body["links"]["status"], location);
    assert_eq!(
        app.status(id).status().as_u16(),
        200,
        "the Location resolves"
    );
}

#[test]
fn an_image_posted_as_a_raw_body_is_accepted() {
    let app = TestApp::spawn();
    let response = app.upload_raw(images::small_jpeg(), Some("image/jpeg"));
    assert_eq!(response.status().as_u16(), 202);
    let body: serde_json::Value = response.json().expect("JSON");
    assert_eq!(body["status"], "queued");
}

#[test]
fn the_format_comes_from_the_bytes_not_the_declared_content_type() {
    let app = TestApp::spawn();
    let accepted = app.upload_multipart(images::png_with_alpha(), "lies.jpg", "image/jpeg");
    assert_eq!(accepted.status().as_u16(), 202);
    let id = accepted.json::<serde_json::Value>().expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let done = app.wait_until_finished(&id);
    assert_eq!(done["original"]["format"], "png");
}

#[test]
fn a_multipart_body_without_a_file_field_is_a_400_problem() {
    let app = TestApp::spawn();
    let form = reqwest::blocking::multipart::Form::new().text("title", "no file here");
    let response = reqwest::blocking::Client::new()
        .post(app.url("/api/images"))
        .multipart(form)
        .send_checked();
    let problem = assert_problem(response, 400);
    assert_eq!(problem["type"], "urn:darkroom:problem:missing-file");
}

#[test]
fn an_empty_body_is_a_400_problem() {
    let app = TestApp::spawn();
    assert_problem(app.upload_raw(Vec::new(), Some("image/png")), 400);
}

#[test]
fn bytes_that_are_not_an_image_are_a_415_problem_naming_the_supported_formats() {
    let app = TestApp::spawn();
    let response =
        app.upload_multipart(b"I am definitely a JPEG".to_vec(), "fake.jpg", "image/jpeg");
    let problem = assert_problem(response, 415);
    let supported = problem["supported"].as_array().expect("supported list");
    for mime in ["image/jpeg", "image/png", "image/webp", "image/gif"] {
        assert!(
            supported.iter().any(|s| s == mime),
            "{mime} missing from {problem}"
        );
        assert!(
            problem["detail"].as_str().is_some_and(|d| d.contains(mime)),
            "{problem}"
        );
    }
}

#[test]
fn a_body_type_that_cannot_carry_an_image_is_a_415_problem() {
    let app = TestApp::spawn();
    let problem = assert_problem(app.upload_raw(b"hello".to_vec(), Some("text/plain")), 415);
    assert!(problem["supported"].is_array(), "{problem}");
}

#[test]
fn a_body_over_the_limit_is_a_413_problem_for_raw_and_multipart_uploads() {
    let app = TestApp::spawn_with(&[("max_upload_bytes", "50000")]);
    let big = images::jpeg();
    assert!(big.len() > 50_000, "the test image must exceed the limit");
    let problem = assert_problem(app.upload_raw(big.clone(), Some("image/jpeg")), 413);
    assert_eq!(problem["limit_bytes"], 50_000);
    assert_problem(app.upload_multipart(big, "big.jpg", "image/jpeg"), 413);
}

#[test]
fn a_header_declaring_more_pixels_than_the_limit_is_a_422_problem() {
    let app = TestApp::spawn();
    let response = app.upload_raw(images::png_declaring(20_000, 20_000), Some("image/png"));
    let problem = assert_problem(response, 422);
    assert_eq!(problem["type"], "urn:darkroom:problem:too-many-pixels");
    assert_eq!(problem["limit_pixels"], 50_000_000);
}

#[test]
fn an_image_that_would_need_more_memory_than_the_limit_is_a_422_naming_the_pixels_its_kind_may_have()
 {
    let app = TestApp::spawn();
    // A 24 MP lossless WebP is decoded whole: about 180 MiB to process,
    // over the default 120 (a PNG is streamed, and fits).
    let webp = images::in_format_sized(image::ImageFormat::WebP, 6000, 4000);
    let problem = assert_problem(app.upload_raw(webp, Some("image/webp")), 422);
    assert_eq!(problem["type"], "urn:darkroom:problem:too-many-pixels");
    assert_eq!(problem["limit_memory_mib"], 120);
    let limit = problem["limit_pixels"].as_u64().expect("limit_pixels");
    assert!((10_000_000..24_000_000).contains(&limit), "{problem}");
}

#[test]
fn an_animated_gif_with_more_frames_than_the_limit_is_a_422_problem() {
    let app = TestApp::spawn_with(&[("max_gif_frames", "5")]);
    let response = app.upload_multipart(images::animated_gif(6), "loop.gif", "image/gif");
    let problem = assert_problem(response, 422);
    assert_eq!(problem["type"], "urn:darkroom:problem:too-many-frames");
    assert_eq!(problem["limit_frames"], 5);
    let response = app.upload_raw(images::animated_gif(5), Some("image/gif"));
    assert_eq!(response.status().as_u16(), 202, "at the limit is accepted");
}

#[test]
fn other_methods_on_the_upload_route_are_405_problems_with_allow() {
    let app = TestApp::spawn();
    let response = app.request(reqwest::Method::GET, "/api/images");
    assert_eq!(header(&response, "allow").as_deref(), Some("POST"));
    assert_problem(response, 405);
}

#[test]
fn an_upload_while_the_queue_is_unreachable_is_a_503_and_records_nothing() {
    // A Redis of this test's own, so that it can be stopped mid-test.
    let redis = crate::helpers::PrivateRedis::start();
    // The front alone: a process with the Redis trigger ends with Redis.
    let app = TestApp::start(crate::helpers::Options {
        redis_url: Some(redis.url()),
        components: Some(crate::topology::FRONT),
        ..crate::helpers::Options::default()
    });
    let keys_before = app.kv_keys();
    let blobs_before = app.blob_keys();
    drop(redis);
    let response = app.upload_multipart(images::small_jpeg(), "photo.jpg", "image/jpeg");
    assert!(
        header(&response, "retry-after").is_some(),
        "503 carries Retry-After"
    );
    assert_problem(response, 503);
    assert_eq!(
        app.kv_keys(),
        keys_before,
        "no job record and no original left behind"
    );
    assert_eq!(
        app.blob_keys(),
        blobs_before,
        "the stored original is removed again"
    );
    let blobs = app.blob_keys();
    assert!(blobs.is_empty(), "a fresh app stores nothing: {blobs:?}");
}

#[test]
fn an_upload_while_object_storage_is_unreachable_is_a_503_and_records_nothing() {
    let s3 = crate::helpers::PrivateS3::start();
    s3.stop();
    let app = TestApp::start(crate::helpers::Options {
        variables: s3.variables(),
        ..crate::helpers::Options::default()
    });
    let keys_before = app.kv_keys();
    let response = app.upload_multipart(images::small_jpeg(), "photo.jpg", "image/jpeg");
    assert!(
        header(&response, "retry-after").is_some(),
        "503 carries Retry-After"
    );
    assert_problem(response, 503);
    assert_eq!(app.kv_keys(), keys_before, "no job record left behind");
    s3.resume();
    assert_eq!(s3.object_keys(), Vec::<String>::new(), "no object either");
}

#[test]
fn an_object_store_connection_that_breaks_off_is_tried_again_and_the_job_completes() {
    let s3 = crate::helpers::PrivateS3::start();
    let (variables, proxy) = s3.variables_through_a_proxy_breaking(1);
    let app = TestApp::start(crate::helpers::Options {
        variables: variables
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect(),
        ..crate::helpers::Options::default()
    });
    let id = app.upload(images::small_jpeg());
    assert_eq!(
        proxy.broken(),
        1,
        "the upload's first request was broken off"
    );
    let done = app.wait_until_finished(&id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["attempts"], 1,
        "the retry was the store's, not the job's: {done}"
    );
    assert!(
        s3.object_keys()
            .iter()
            .any(|key| key.starts_with("original/")),
        "the original is in the bucket: {:?}",
        s3.object_keys()
    );
}

/// Polls `done` every 100 ms for up to 20 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_body_near_the_upload_limit_is_stored_as_it_arrives_under_an_instance_cap_far_smaller_than_it()
{
    let cap: usize = 24 << 20;
    let body = images::photo_like_png(8000, 6000, 4, 8, false);
    let limit = body.len().next_multiple_of(1 << 20).to_string();
    assert!(body.len() > 2 * cap, "{} bytes", body.len());
    let app = TestApp::start(crate::helpers::Options {
        max_instance_memory: Some(cap),
        variables: vec![("max_upload_bytes", &limit), ("max_memory_mib", "1024")],
        ..crate::helpers::Options::default()
    });
    // Chunked, with no Content-Length, as a browser streams a file.
    let (status, accepted) = app.upload_chunked(body.clone(), "image/png");
    assert_eq!(status, 202, "{accepted}");
    let original = app.get(accepted["links"]["original"].as_str().expect("a link"));
    assert_eq!(original.status().as_u16(), 200);
    let served = original.bytes().expect("the original");
    assert!(served == body, "stored byte for byte");
}

#[test]
fn an_upload_the_client_abandons_mid_body_leaves_nothing_stored() {
    let app = TestApp::start(crate::helpers::Options {
        variables: vec![("max_upload_bytes", "67108864"), ("max_memory_mib", "512")],
        ..crate::helpers::Options::default()
    });
    let keys_before = app.kv_keys();
    let blobs_before = app.blob_keys();
    let body = images::photo_like_png(5000, 4000, 3, 8, false);
    // Past the first S3 part (8 MiB) and several key-value chunks.
    let sent = &body[..body.len() * 3 / 4];
    assert!(sent.len() > 9 << 20, "{} bytes", sent.len());
    let connection = app.begin_upload(sent, body.len(), "image/png");
    if !app.uses_s3() {
        eventually("the body's chunks are stored while it arrives", || {
            app.kv_keys().len() >= keys_before.len() + 8
        });
    }
    drop(connection);
    eventually("what was stored is removed again", || {
        app.kv_keys() == keys_before && app.blob_keys() == blobs_before
    });
}
