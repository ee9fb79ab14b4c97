//! The HTTP-only profile's processor (`spin.http-only.toml`), for hosts with
//! no Redis trigger (Fermyon Cloud, Akamai Functions): a private route that
//! only service chaining reaches (`http://worker.spin.internal/`). The
//! upload, status and admin components call it after their own response is
//! complete; it claims and works due jobs like the Redis-triggered
//! processor, within a budget that keeps it and its caller under the hosted
//! platforms' 30 s per request. When it handled any job, it then (its
//! answer sent) asks the `notify-worker` to send what the jobs' ends owe.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use std::time::Duration;

use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::{config, outparam, views, work};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

/// How long one call keeps working. The caller waits for the answer after
/// its own response went out, so both stay under the hosted 30 s.
const BUDGET: Duration = Duration::from_secs(20);

#[http_component]
async fn drain_on_request(req: IncomingRequest, out: ResponseOutparam) {
    let answer = drain(&req);
    let handled = answer.as_ref().map_or(0, |(n, _)| *n);
    outparam::send_buffered(out, respond(answer.map(|(_, response)| response)));
    if handled > 0
        && let Some(url) = config::notify_worker_url()
    {
        work::kick_worker(&url).await;
    }
}

fn drain(req: &IncomingRequest) -> Result<(usize, Response), ApiError> {
    if req.method() != Method::Post {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    let handled = work::drain_queue(BUDGET)?;
    Ok((handled, views::drained(handled)))
}
