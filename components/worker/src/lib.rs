//! The HTTP-only profile's processor (`spin.http-only.toml`), for hosts with
//! no Redis trigger (Fermyon Cloud, Akamai Functions): a private route that
//! only service chaining reaches (`http://worker.spin.internal/`). The
//! upload and status components call it after their own response is
//! complete; it claims and works due jobs like the Redis-triggered
//! processor, within a budget that keeps it and its caller under the
//! hosted platforms' 30 s per request.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use std::time::Duration;

use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

/// How long one call keeps working. The caller waits for the answer after
/// its own response went out, so both stay under the hosted 30 s.
const BUDGET: Duration = Duration::from_secs(20);

#[http_component]
fn drain_on_request(req: IncomingRequest) -> Response {
    if req.method() != Method::Post {
        return Response::builder()
            .status(405)
            .header("allow", "POST")
            .build();
    }
    match darkroom_spin::work::drain_queue(BUDGET) {
        Ok(handled) => Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "handled": handled }).to_string())
            .build(),
        Err(e) => {
            eprintln!("darkroom: worker: {e}");
            Response::builder().status(503).build()
        }
    }
}
