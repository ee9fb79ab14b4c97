//! CORS for the API (`cors_allowed_origins`, comma-separated origins, or
//! `*`; empty, the default, allows no other origin): a browser page on
//! another origin may upload, read status, follow the event stream, cancel,
//! delete and download. A preflight (`OPTIONS`) is answered `204`; every
//! answer to an allowed origin carries `Access-Control-Allow-Origin` (that
//! origin, with `Vary: Origin`) and exposes the headers clients need.

use spin_sdk::http::{Headers, Response};

use crate::routes::header;

/// The request headers a cross-origin page may send.
const ALLOW_HEADERS: &str =
    "authorization, content-type, idempotency-key, if-none-match, last-event-id";

/// The response headers a cross-origin page may read.
const EXPOSE_HEADERS: &str = "location, retry-after, etag, www-authenticate";

/// What the request's `Origin` is allowed, if anything.
#[derive(Debug, Default)]
pub struct Cors {
    allowed: Option<String>,
}

impl Cors {
    /// For a request with `headers`. A component without the variable
    /// allows no other origin.
    pub fn of(headers: &Headers) -> Self {
        let Some(origin) = header(headers, "origin") else {
            return Self::default();
        };
        let list = spin_sdk::variables::get("cors_allowed_origins").unwrap_or_default();
        Self {
            allowed: allows(&list, &origin).then_some(origin),
        }
    }

    /// The answer to an `OPTIONS` request for a resource that supports `allow`.
    pub fn preflight(&self, allow: &str) -> Response {
        let mut builder = Response::builder();
        builder.status(204).header("allow", allow);
        let mut response = builder.build();
        if self.allowed.is_some() {
            response.set_header("access-control-allow-methods", allow);
            response.set_header("access-control-allow-headers", ALLOW_HEADERS);
            response.set_header("access-control-max-age", "600");
        }
        self.apply(&mut response);
        response
    }

    /// Sends `response` (buffered) with the CORS headers.
    pub fn send(&self, out: spin_sdk::http::ResponseOutparam, mut response: Response) {
        self.apply(&mut response);
        crate::outparam::send_buffered(out, response);
    }

    /// Adds the CORS headers to an answer for an allowed origin.
    pub fn apply(&self, response: &mut Response) {
        if let Some(origin) = &self.allowed {
            response.set_header("access-control-allow-origin", origin.as_str());
            response.set_header("access-control-expose-headers", EXPOSE_HEADERS);
            response.set_header("vary", "Origin");
        }
    }
}

/// Whether `origin` is on `list` (`*` allows every origin).
fn allows(list: &str, origin: &str) -> bool {
    list.split(',').map(str::trim).any(|allowed| {
        allowed == "*" || (!allowed.is_empty() && allowed.eq_ignore_ascii_case(origin))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_are_allowed_and_an_empty_list_allows_none() {
        assert!(allows(
            "https://app.example.com, https://admin.example.com",
            "https://admin.example.com"
        ));
        assert!(!allows(
            "https://app.example.com",
            "https://evil.example.com"
        ));
        assert!(!allows("", "https://app.example.com"));
        assert!(allows("*", "http://localhost:5173"));
    }
}
