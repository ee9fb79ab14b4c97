//! The public URL layout. `spin.toml` routes these paths to the components;
//! links in responses are built here and nowhere else; request headers
//! (Spin's route headers among them) are read here too.

use darkroom_core::JobId;
use darkroom_core::service::FileName;

/// The upload collection.
pub const IMAGES: &str = "/api/images";

/// A job's status resource.
pub fn status(id: JobId) -> String {
    format!("{IMAGES}/{id}/status")
}

/// A job's cancel action (`POST`).
pub fn cancel(id: JobId) -> String {
    format!("{IMAGES}/{id}/cancel")
}

/// A job's file.
pub fn file(id: JobId, name: FileName) -> String {
    let name = match name {
        FileName::Original => "original",
        FileName::Derivative(v) => v.name(),
    };
    format!("{IMAGES}/{id}/files/{name}")
}

/// The value Spin gives a `:name` segment of the matched route, from the
/// `spin-path-match-<name>` request header.
pub fn path_param(headers: &spin_sdk::http::Headers, name: &str) -> Option<String> {
    header(headers, &format!("spin-path-match-{name}"))
}

/// The first value of header `name`, as text (request headers, and the
/// headers of responses to outbound requests).
pub fn header(headers: &spin_sdk::http::Headers, name: &str) -> Option<String> {
    headers
        .get(name)
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}
