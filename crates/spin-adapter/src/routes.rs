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

/// The operators' listing query (`GET /internal/images?status=&limit=&page_token=`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListingQuery {
    /// Only jobs in this state.
    pub status: Option<String>,
    /// At most this many (1 to 100, 50 by default).
    pub limit: usize,
    /// Where to go on from.
    pub page_token: Option<String>,
}

/// Parses the query of `uri` for the listing.
///
/// # Errors
/// [`crate::problem::ApiError::InvalidQuery`] naming what is wrong.
pub fn listing_query(uri: &str) -> Result<ListingQuery, crate::problem::ApiError> {
    use crate::problem::ApiError;
    let url = url::Url::parse(uri)
        .or_else(|_| url::Url::parse(&format!("http://localhost{uri}")))
        .map_err(|e| ApiError::InvalidQuery(format!("the request URL cannot be read: {e}")))?;
    let mut query = ListingQuery {
        limit: 50,
        ..ListingQuery::default()
    };
    for (name, value) in url.query_pairs() {
        match name.as_ref() {
            "status" if darkroom_core::JobState::NAMES.contains(&value.as_ref()) => {
                query.status = Some(value.into_owned());
            }
            "status" => {
                return Err(ApiError::InvalidQuery(format!(
                    "status must be one of {}",
                    darkroom_core::JobState::NAMES.join(", ")
                )));
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| ApiError::InvalidQuery("limit must be 1 to 100".into()))?;
            }
            "page_token" if darkroom_core::keys::parse_catalogue_member(&value).is_some() => {
                query.page_token = Some(value.into_owned());
            }
            "page_token" => {
                return Err(ApiError::InvalidQuery(
                    "page_token must be a next_page_token this listing gave".into(),
                ));
            }
            other => {
                return Err(ApiError::InvalidQuery(format!(
                    "unknown parameter {other:?}; the listing takes status, limit and page_token"
                )));
            }
        }
    }
    Ok(query)
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

/// The longest a status read may be held (`?wait=`): under the hosted 30 s.
pub const MAX_WAIT_SECONDS: u64 = 25;

fn query_pairs(uri: &str) -> Result<Vec<(String, String)>, crate::problem::ApiError> {
    let url = url::Url::parse(uri)
        .or_else(|_| url::Url::parse(&format!("http://localhost{uri}")))
        .map_err(|e| {
            crate::problem::ApiError::InvalidQuery(format!("the request URL cannot be read: {e}"))
        })?;
    Ok(url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// A status read's `?wait=N` (0 to [`MAX_WAIT_SECONDS`]), if given.
///
/// # Errors
/// [`crate::problem::ApiError::InvalidQuery`] for another value.
pub fn wait_query(uri: &str) -> Result<Option<u64>, crate::problem::ApiError> {
    let Some((_, value)) = query_pairs(uri)?.into_iter().find(|(k, _)| k == "wait") else {
        return Ok(None);
    };
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= MAX_WAIT_SECONDS)
        .map(Some)
        .ok_or_else(|| {
            crate::problem::ApiError::InvalidQuery(format!(
                "wait must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}"
            ))
        })
}

/// The last event a reconnecting stream saw: the `Last-Event-ID` header
/// (as `EventSource` sends it) or `?last_event_id=`; 0 for none.
///
/// # Errors
/// [`crate::problem::ApiError::InvalidQuery`] when it is not a number.
pub fn last_event_id(
    headers: &spin_sdk::http::Headers,
    uri: &str,
) -> Result<u32, crate::problem::ApiError> {
    let given = header(headers, "last-event-id").or_else(|| {
        query_pairs(uri)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "last_event_id")
            .map(|(_, v)| v)
    });
    match given {
        None => Ok(0),
        Some(v) => v.trim().parse().map_err(|_| {
            crate::problem::ApiError::InvalidQuery(
                "Last-Event-ID must be the id of an event this stream sent".into(),
            )
        }),
    }
}

/// The event stream of job `id`.
pub fn events(id: JobId) -> String {
    format!("/api/images/{id}/events")
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
