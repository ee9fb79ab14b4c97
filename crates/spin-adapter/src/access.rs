//! The guard on the public routes: with `api_keys` set, the writes (upload,
//! cancel, delete) need one of them as a bearer token, and the reads
//! (status, files) too when `private_reads` is on; otherwise they are
//! capability URLs (a job id is an unguessable v4 UUID). A refusal is the
//! one `401` problem, with `WWW-Authenticate: Bearer`.

use spin_sdk::http::Headers;

use crate::problem::ApiError;
use crate::{config, routes};

/// What a route does, for the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Creates or removes something: upload, cancel, delete.
    Write,
    /// Reads a job: status, files.
    Read,
}

/// Lets the request through, or refuses it.
///
/// # Errors
/// [`ApiError::Unauthorized`], or a configuration error.
pub fn require(headers: &Headers, access: Access) -> Result<(), ApiError> {
    let keys = config::api_keys()?;
    if keys.is_empty() || (access == Access::Read && !config::private_reads()?) {
        return Ok(());
    }
    if keys.permit(routes::header(headers, "authorization").as_deref()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}
