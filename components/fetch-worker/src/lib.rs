//! The HTTP-only profile's fetcher (`spin.http-only.toml`): a private route
//! (`http://fetch-worker.spin.internal/`) that the upload, status and admin
//! components call for jobs ingested by URL. It answers `202` at once, so
//! its caller is free, then fetches due sources and, when it stored any,
//! asks the worker to process them. As in `spin.toml`, it is the only
//! component with general egress.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use std::time::Duration;

use darkroom_spin::problem::{ApiError, respond};
use darkroom_spin::{config, outparam, views, work};
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

/// How long one call starts new fetches: one fetch may take up to
/// `fetch_timeout_seconds` (20 s) and the worker's drain follows, so the
/// budget is short to keep the handler near the hosted 30 s. What is left
/// is fetched on the next call (an upload, an overdue status read, the sweep).
const BUDGET: Duration = Duration::from_secs(2);

#[http_component]
async fn fetch_on_request(req: IncomingRequest, out: ResponseOutparam) {
    if req.method() != Method::Post {
        let refused: Result<spin_sdk::http::Response, _> =
            Err(ApiError::MethodNotAllowed { allow: "POST" });
        outparam::send_buffered(out, respond(refused));
        return;
    }
    outparam::send_buffered(out, views::drain_started());
    match work::drain_fetches(BUDGET) {
        Ok(0) => {}
        Ok(_) => {
            // A fetch that failed for good may have notices to send.
            for url in [config::worker_url(), config::notify_worker_url()]
                .into_iter()
                .flatten()
            {
                work::kick_worker(&url).await;
            }
        }
        Err(e) => eprintln!("darkroom: the fetcher's queue cannot be worked: {e}"),
    }
}
