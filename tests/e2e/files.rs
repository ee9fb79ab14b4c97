//! `GET /api/images/:id/files/:name`: files are streamed, not buffered, and
//! with `s3_links = redirect` they are presigned redirects into the bucket.

use crate::helpers::{Options, TestApp, header};
use crate::images;

#[test]
fn an_original_larger_than_the_files_instance_memory_is_streamed_intact() {
    // 2300x2300 noise: a ~16 MB PNG.
    let original = images::incompressible_png(2300, 2300);
    assert!(original.len() > 15_000_000, "{} bytes", original.len());
    let front = TestApp::start(Options {
        components: Some(&["upload"]),
        ..Options::default()
    });
    let id = front.upload(original.clone());
    // A files instance capped far below the file's size can only serve it
    // by passing it through piece by piece.
    let files = TestApp::start(Options {
        components: Some(&["files"]),
        share_state_with: Some(&front),
        max_instance_memory: Some(8 << 20),
        ..Options::default()
    });
    let response = files.get(&format!("/api/images/{id}/files/original"));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        header(&response, "content-length"),
        Some(original.len().to_string())
    );
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("image/png")
    );
    let served = response.bytes().expect("the whole body arrives");
    assert!(served.as_slice() == original.as_slice(), "the bytes differ");
}

#[test]
fn with_redirect_links_an_s3_file_is_a_307_to_a_presigned_url_that_serves_it() {
    let app = TestApp::spawn_with(&[("s3_links", "redirect"), ("s3_link_seconds", "120")]);
    let id = app.upload(images::jpeg());
    let done = app.wait_until_finished(&id);
    assert_eq!(done["status"], "completed", "{done}");
    let link = done["links"]["thumbnail"].as_str().expect("thumbnail link");
    let response = app.get_unfollowed(link);
    if !app.uses_s3() {
        // The setting is about S3 objects; the key-value store serves bytes.
        assert_eq!(response.status().as_u16(), 200);
        return;
    }
    assert_eq!(response.status().as_u16(), 307);
    assert_eq!(
        header(&response, "cache-control").as_deref(),
        Some("private, max-age=60")
    );
    let location = header(&response, "location").expect("a Location");
    assert!(
        location.contains("X-Amz-Signature=") && location.contains("X-Amz-Expires=120"),
        "{location}"
    );
    let object = reqwest::blocking::get(&location).expect("the presigned URL answers");
    assert_eq!(object.status().as_u16(), 200, "{location}");
    let bytes = object.bytes().expect("body");
    let thumbnail = image::load_from_memory(&bytes).expect("a decodable image");
    assert_eq!(thumbnail.width(), 200);

    let mut url = reqwest::Url::parse(&location).expect("a URL");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "X-Amz-Signature" {
                // Another valid-looking signature: flip its last hex digit.
                let (head, last) = v.split_at(v.len() - 1);
                format!("{head}{}", if last == "0" { "1" } else { "0" })
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let tampered = url.to_string();
    assert_ne!(tampered, location);
    let refused = reqwest::blocking::get(&tampered).expect("the S3 server answers");
    assert_eq!(
        refused.status().as_u16(),
        403,
        "a tampered signature is refused"
    );
}
