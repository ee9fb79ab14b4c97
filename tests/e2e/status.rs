//! `GET /api/images/:id/status`: the lifecycle as a client sees it, and 404s.

use crate::helpers::{TestApp, assert_problem, header};
use crate::images;

#[test]
fn a_job_moves_from_queued_to_completed_with_a_link_per_derivative() {
    let app = TestApp::spawn();
    let id = app.upload(images::jpeg());
    let first = app.status(&id);
    assert_eq!(first.status().as_u16(), 200);
    let first_retry = header(&first, "retry-after");
    let first: serde_json::Value = first.json().expect("JSON");
    match first["status"].as_str() {
        Some("queued" | "processing") => assert!(
            first_retry.is_some(),
            "unfinished without Retry-After: {first}"
        ),
        Some("completed") => assert!(first_retry.is_none()),
        other => panic!("unexpected first status {other:?}: {first}"),
    }

    let done = app.wait_until_finished(&id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["id"], id);
    assert_eq!(done["attempts"], 1);
    for field in ["created_at", "updated_at"] {
        assert!(
            done[field].as_str().is_some_and(|t| t.ends_with('Z')),
            "{field}: {done}"
        );
    }
    assert!(done["created_at"].as_str() <= done["updated_at"].as_str());
    for link in ["original", "thumbnail", "preview", "optimized"] {
        let path = done["links"][link]
            .as_str()
            .unwrap_or_else(|| panic!("no {link} link: {done}"));
        assert_eq!(app.get(path).status().as_u16(), 200, "{link} link");
    }
    let finished = app.status(&id);
    assert!(
        header(&finished, "retry-after").is_none(),
        "a finished job needs no Retry-After"
    );
}

#[test]
fn unknown_and_malformed_ids_are_404_problems() {
    let app = TestApp::spawn();
    for id in [
        uuid::Uuid::new_v4().to_string(),
        "not-a-uuid".to_owned(),
        uuid::Uuid::new_v4().to_string().to_uppercase(),
        "x%2Fy".to_owned(),
    ] {
        assert_problem(app.status(&id), 404);
    }
}

#[test]
fn unknown_files_of_a_real_job_are_404_problems() {
    let app = TestApp::spawn();
    let id = app.upload(images::small_jpeg());
    app.wait_until_finished(&id);
    assert_problem(app.get(&format!("/api/images/{}/files/secret", id)), 404);
    assert_problem(
        app.get(&format!(
            "/api/images/{}/files/original",
            uuid::Uuid::new_v4()
        )),
        404,
    );
}

#[test]
fn paths_outside_the_api_are_404() {
    let app = TestApp::spawn();
    for path in [
        "/index.html",
        "/assets/missing.js",
        "/api",
        "/api/images/x/y/z",
        "/processor",
        "/api/images/x/process",
    ] {
        assert_eq!(app.get(path).status().as_u16(), 404, "{path}");
    }
}

#[test]
fn the_page_its_assets_and_the_api_description_come_from_the_app_alone() {
    let app = TestApp::spawn();
    let page = app.get("/");
    assert_eq!(page.status().as_u16(), 200);
    assert!(header(&page, "content-type").is_some_and(|t| t.starts_with("text/html")));
    let csp = header(&page, "content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.text().expect("HTML");
    for asset in ["/assets/app.js", "/assets/app.css"] {
        assert!(html.contains(asset), "the page loads {asset}");
        assert_eq!(app.get(asset).status().as_u16(), 200, "{asset}");
    }
    for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !html.contains(attr),
            "the page loads nothing from another origin"
        );
    }
    let head = app.request(reqwest::Method::HEAD, "/");
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        header(&head, "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let docs = app.get("/api/docs");
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().expect("HTML").contains("/assets/docs.js"));
    assert_eq!(app.get("/assets/docs.js").status().as_u16(), 200);
}
