//! The face of Darkroom: `GET /` (the upload page), `/assets/…` (its script
//! and styles), `GET /api/openapi.json` (the OpenAPI 3.1 description) and
//! `GET /api/docs` (a rendering of it). Everything is compiled into the
//! component from `web/`, so the page loads nothing from outside the app.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_spin::problem::{ApiError, respond};
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

/// One file the component serves.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../../web/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/app.js"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../web/app.css"),
    },
    Asset {
        path: "/assets/docs.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/docs.js"),
    },
    Asset {
        path: "/api/docs",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../../web/docs.html"),
    },
    Asset {
        path: "/api/openapi.json",
        content_type: "application/json",
        body: include_bytes!("../../../web/openapi.json"),
    },
];

/// Only the page's own origin; images may also come from a bucket's
/// presigned URLs (`s3_links = redirect`).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' https: http: blob: data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

#[http_component]
fn serve(req: IncomingRequest) -> Response {
    respond(asset(&req))
}

fn asset(req: &IncomingRequest) -> Result<Response, ApiError> {
    let full = req.path_with_query().unwrap_or_default();
    let path = full.split(['?', '#']).next().unwrap_or("/");
    let asset = ASSETS
        .iter()
        .find(|a| a.path == path)
        .ok_or(ApiError::NotFound)?;
    let head = match req.method() {
        Method::Get => false,
        Method::Head => true,
        _ => return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
    };
    let mut builder = Response::builder();
    builder
        .status(200)
        .header("content-type", asset.content_type)
        .header("content-length", asset.body.len().to_string())
        .header("cache-control", "no-cache")
        .header("x-content-type-options", "nosniff")
        .header("content-security-policy", CONTENT_SECURITY_POLICY);
    if !head {
        builder.body(asset.body.to_vec());
    }
    Ok(builder.build())
}
