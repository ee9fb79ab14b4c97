//! `GET /api/images/:id/files/:name`: a job's original or one of its
//! derivatives, with its content type, length, ETag and caching headers.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_core::JobId;
use darkroom_core::service::{self, FileName, Ports};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::store::SpinKv;
use darkroom_spin::upload::header;
use darkroom_spin::{routes, views};
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

#[http_component]
fn serve_file(req: IncomingRequest) -> Response {
    respond(serve(&req))
}

fn serve(req: &IncomingRequest) -> Result<Response, ApiError> {
    let head = match req.method() {
        Method::Get => false,
        Method::Head => true,
        _ => return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
    };
    let headers = req.headers();
    let id = routes::path_param(&headers, "id")
        .and_then(|id| JobId::parse(&id).ok())
        .ok_or(ApiError::NotFound)?;
    let name = routes::path_param(&headers, "name")
        .and_then(|name| FileName::parse(&name))
        .ok_or(ApiError::NotFound)?;
    let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
    let blobs = darkroom_spin::store::blob_store(&kv)?;
    let ports = Ports {
        kv: &kv,
        blobs: blobs.as_ref(),
        clock: &SystemClock,
    };
    let blob = service::open_file(ports, id, name)?;
    Ok(views::file(
        blob,
        name,
        header(&headers, "if-none-match").as_deref(),
        head,
    ))
}
