//! The HTTP-only profile's notifier (`spin.http-only.toml`): a private route
//! (`http://notify-worker.spin.internal/`) that the worker, the fetch-worker,
//! the status component (a notice overdue) and the sweep call. It answers
//! `202` at once, so its caller is free, then sends due webhooks and e-mail
//! as the Redis-triggered notifier does. As in `spin.toml`, it is the only
//! component that reaches the receivers and the e-mail API.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use std::time::Duration;

use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::{outparam, views, work};
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

/// How long one call starts new claims: one claim sends its job's due
/// notices, each within `webhook_timeout_seconds` (keep it at 10 s or less
/// on hosted platforms, whose handlers end at 30 s). What is left is sent
/// on the next call.
const BUDGET: Duration = Duration::from_secs(5);

#[http_component]
async fn notify_on_request(req: IncomingRequest, out: ResponseOutparam) {
    if req.method() != Method::Post {
        let refused: Result<spin_sdk::http::Response, _> =
            Err(ApiError::MethodNotAllowed { allow: "POST" });
        outparam::send_buffered(out, respond(refused));
        return;
    }
    outparam::send_buffered(out, views::drain_started());
    if let Err(e) = work::drain_notifications(BUDGET) {
        eprintln!("darkroom: the notifier's queue cannot be worked: {e}");
    }
}
