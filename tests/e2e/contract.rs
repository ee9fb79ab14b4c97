//! The OpenAPI description (`web/openapi.json`, served at
//! `/api/openapi.json`) as the suite's contract: every answer the tests get
//! from the app passes through [`checked`], which finds the documented
//! operation for its method and path, fails the test if the status code is
//! not listed there, and validates every JSON body (problems included)
//! against the schema for that status and media type. A path the
//! description does not know (an S3 server's, a presigned URL's) is left
//! alone; an undocumented method is accepted only as a `405` or `404`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use reqwest::Method;
use serde_json::{Value, json};

fn description() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = crate::helpers::app_root().join("web/openapi.json");
        let text = std::fs::read_to_string(&path).expect("web/openapi.json");
        serde_json::from_str(&text).expect("web/openapi.json is JSON")
    })
}

/// The documented path template matching `path`, if any.
fn template_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    description()["paths"]
        .as_object()?
        .keys()
        .filter(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
        })
        // The most literal segments win (`/api/openapi.json` over a parameter).
        .max_by_key(|t| t.split('/').filter(|p| !p.starts_with('{')).count())
        .map(String::as_str)
}

fn resolve(value: &Value) -> &Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => description()
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("web/openapi.json: dangling $ref {pointer}")),
        None => value,
    }
}

fn validate(key: String, schema: &Value, body: &Value) -> Result<(), String> {
    static VALIDATORS: OnceLock<Mutex<HashMap<String, jsonschema::Validator>>> = OnceLock::new();
    let mut cache = VALIDATORS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let validator = cache.entry(key.clone()).or_insert_with(|| {
        // The response's schema, with the description's components beside
        // it so that its `#/components/…` references resolve.
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": description()["components"],
            "allOf": [schema],
        });
        jsonschema::validator_for(&root).unwrap_or_else(|e| {
            panic!("web/openapi.json: the schema for {key} does not compile: {e}")
        })
    });
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Holds one answer to the description; panics (failing the test) when it
/// breaks it.
pub fn check(
    method: &Method,
    url: &reqwest::Url,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) {
    let Some(template) = template_of(url.path()) else {
        return;
    };
    let item = &description()["paths"][template];
    let operation = &item[method.as_str().to_ascii_lowercase()];
    if operation.is_null() {
        assert!(
            status == 405 || status == 404,
            "{method} {template} is not in web/openapi.json, yet it answered {status}"
        );
        return;
    }
    let Some(response) = operation["responses"].get(status.to_string()).map(resolve) else {
        panic!(
            "{method} {template} answered {status}, which web/openapi.json does not list (it lists {:?})",
            operation["responses"]
                .as_object()
                .map(|r| r.keys().collect::<Vec<_>>())
        );
    };
    let essence = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|e| e.trim().to_ascii_lowercase());
    let Some(essence) = essence.filter(|e| e.ends_with("json")) else {
        return;
    };
    if body.is_empty() || *method == Method::HEAD {
        return;
    }
    let Some(media) = response["content"].get(&essence) else {
        panic!(
            "{method} {template} {status} answered {essence}, which web/openapi.json does not list"
        );
    };
    let body: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!("{method} {template} {status}: the {essence} body is not JSON: {e}")
    });
    if let Err(errors) = validate(
        format!("{method} {template} {status} {essence}"),
        &media["schema"],
        &body,
    ) {
        panic!(
            "{method} {template} {status}: the body breaks web/openapi.json: {errors}\nbody: {body}"
        );
    }
}

#[test]
fn the_description_is_served_and_every_problem_type_it_lists_is_one_the_readme_documents() {
    let app = crate::helpers::TestApp::spawn();
    let served: Value = app.get("/api/openapi.json").json().expect("JSON");
    assert_eq!(
        &served,
        description(),
        "the app serves web/openapi.json as it is"
    );
    assert_eq!(served["openapi"], "3.1.0");
    let readme =
        std::fs::read_to_string(crate::helpers::app_root().join("README.md")).expect("README");
    let types = served["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
        .as_array()
        .expect("problem types");
    for t in types {
        let t = t.as_str().expect("a string");
        assert!(
            readme.contains(t),
            "{t} is in the description but not in the README's error table"
        );
    }
}

#[test]
fn an_undocumented_status_or_a_body_off_its_schema_fails_the_check() {
    let url = reqwest::Url::parse("http://127.0.0.1:1/api/images/x/status").expect("url");
    let undocumented = std::panic::catch_unwind(|| {
        check(&Method::GET, &url, 418, Some("application/json"), b"{}");
    });
    assert!(undocumented.is_err(), "a 418 is not in the description");
    let off_schema = std::panic::catch_unwind(|| {
        check(
            &Method::GET,
            &url,
            200,
            Some("application/json"),
            br#"{"id": 1}"#,
        );
    });
    assert!(off_schema.is_err(), "a status without its required members");
    let problem = br#"{"type":"urn:darkroom:problem:not-found","title":"Not found","status":404,"detail":"no image with this id"}"#;
    check(
        &Method::GET,
        &url,
        404,
        Some("application/problem+json"),
        problem,
    );
}
