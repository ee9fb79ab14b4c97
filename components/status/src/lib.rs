//! `GET /api/images/:id/status`: the job's status document.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_core::JobId;
use darkroom_core::service;
use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::store::SpinKv;
use darkroom_spin::{routes, views};
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

#[http_component]
fn report_status(req: IncomingRequest) -> Response {
    respond(status(&req))
}

fn status(req: &IncomingRequest) -> Result<Response, ApiError> {
    if !matches!(req.method(), Method::Get | Method::Head) {
        return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    let id = routes::path_param(&req.headers(), "id")
        .and_then(|id| JobId::parse(&id).ok())
        .ok_or(ApiError::NotFound)?;
    let kv = SpinKv::open_default().map_err(ApiError::StorageUnavailable)?;
    let job = service::load_job(&kv, id)
        .map_err(ApiError::StorageUnavailable)?
        .ok_or(ApiError::NotFound)?;
    Ok(views::status(&job))
}
