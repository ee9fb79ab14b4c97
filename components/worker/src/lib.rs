//! The HTTP-only profile's processor (`spin.http-only.toml`), for hosts with
//! no Redis trigger (Fermyon Cloud, Akamai Functions): a private route that
//! only service chaining reaches (`http://worker.spin.internal/`). The
//! upload, status and admin components call it after their own response is
//! complete; it claims and works due jobs like the Redis-triggered
//! processor, within a budget that keeps it and its caller under the hosted
//! platforms' 30 s per request.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use std::time::Duration;

use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::{views, work};
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

/// How long one call keeps working. The caller waits for the answer after
/// its own response went out, so both stay under the hosted 30 s.
const BUDGET: Duration = Duration::from_secs(20);

#[http_component]
fn drain_on_request(req: IncomingRequest) -> Response {
    respond(drain(&req))
}

fn drain(req: &IncomingRequest) -> Result<Response, ApiError> {
    if req.method() != Method::Post {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    let handled = work::drain_queue(BUDGET)?;
    Ok(views::drained(handled))
}
