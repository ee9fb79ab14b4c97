//! Every error a client can see, and the one place that turns each into an
//! RFC 9457 `application/problem+json` response. Internal details are logged
//! to the component's stderr and never sent to the client.

use darkroom_core::format::{ImageFormat, InvalidImage};
use darkroom_core::idempotency::MalformedKey;
use darkroom_core::ports::PortError;
use darkroom_core::service::{AcceptError, FileError, OnceError, RedriveError, TakeBackError};
use serde_json::{Value, json};
use spin_sdk::http::Response;
use thiserror::Error;

use crate::config::ConfigError;

/// Seconds a client should wait after a 503 before trying again.
const UNAVAILABLE_RETRY_AFTER_SECS: u32 = 5;

/// An error answered to an HTTP client.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The methods the route supports, for the `Allow` header.
        allow: &'static str,
    },
    /// The request body is not what the endpoint reads.
    #[error("{0}")]
    UnsupportedBody(String),
    /// A multipart body that cannot be parsed.
    #[error("the multipart body cannot be read: {0}")]
    BadMultipart(String),
    /// No `file` field, or an empty body.
    #[error("no file was uploaded")]
    MissingFile,
    /// The upload breaks a rule.
    #[error(transparent)]
    InvalidImage(#[from] InvalidImage),
    /// No such job, or an id that cannot be one.
    #[error("no image with this id")]
    NotFound,
    /// A missing or wrong bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The request conflicts with the job's state.
    #[error("{0}")]
    Conflict(String),
    /// A job's file that does not exist yet.
    #[error("{0}")]
    NotReady(String),
    /// Storage refused (transient).
    #[error("storage is unavailable")]
    StorageUnavailable(#[source] PortError),
    /// The queue refused (transient).
    #[error("the processing queue is unavailable")]
    QueueUnavailable(#[source] PortError),
    /// An `Idempotency-Key` header that is not a quoted key.
    #[error(transparent)]
    MalformedIdempotencyKey(#[from] MalformedKey),
    /// An `Idempotency-Key` used before for another upload.
    #[error("this Idempotency-Key was used for a different upload; use a new key for a new upload")]
    IdempotencyKeyReused,
    /// An `Idempotency-Key` whose first request is still in progress.
    #[error("a request with this Idempotency-Key is still in progress; retry shortly")]
    IdempotencyKeyInUse,
    /// A query parameter that is not one the route takes.
    #[error("{0}")]
    InvalidQuery(String),
    /// An ingest whose URL may not be fetched (nothing recorded).
    #[error(transparent)]
    RefusedUrl(#[from] darkroom_core::ingest::RefusedUrl),
    /// A `callback_url` or `notify_email` that is refused (nothing recorded).
    #[error(transparent)]
    RefusedRecipient(#[from] darkroom_core::notify::RefusedRecipient),
    /// A JSON body that is not an ingest request.
    #[error("{0}")]
    BadJson(String),
    /// The deployment is misconfigured.
    #[error("the service is misconfigured")]
    Config(#[from] ConfigError),
}

impl From<AcceptError> for ApiError {
    fn from(e: AcceptError) -> Self {
        match e {
            AcceptError::Invalid(e) => Self::InvalidImage(e),
            AcceptError::Source(e) => Self::RefusedUrl(e),
            AcceptError::Storage(e) => Self::StorageUnavailable(e),
            AcceptError::Queue(e) => Self::QueueUnavailable(e),
        }
    }
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::NoSuchJob => Self::NotFound,
            e @ FileError::NotReady { .. } => Self::NotReady(e.to_string()),
            FileError::Missing => {
                Self::StorageUnavailable(PortError::new("a recorded file is missing"))
            }
            FileError::Storage(e) => Self::StorageUnavailable(e),
        }
    }
}

impl From<RedriveError> for ApiError {
    fn from(e: RedriveError) -> Self {
        match e {
            RedriveError::NoSuchJob => Self::NotFound,
            e @ RedriveError::NotFailed(_) => Self::Conflict(e.to_string()),
            RedriveError::Storage(e) => Self::StorageUnavailable(e),
        }
    }
}

impl From<TakeBackError> for ApiError {
    fn from(e: TakeBackError) -> Self {
        match e {
            TakeBackError::NoSuchJob => Self::NotFound,
            e @ (TakeBackError::Finished(_) | TakeBackError::Transition(_)) => {
                Self::Conflict(e.to_string())
            }
            TakeBackError::Storage(e) => Self::StorageUnavailable(e),
            TakeBackError::Queue(e) => Self::QueueUnavailable(e),
        }
    }
}

impl From<OnceError> for ApiError {
    fn from(e: OnceError) -> Self {
        match e {
            OnceError::Accept(e) => e.into(),
            OnceError::KeyReused => Self::IdempotencyKeyReused,
            OnceError::KeyInUse => Self::IdempotencyKeyInUse,
            OnceError::Store(e) => Self::QueueUnavailable(e),
        }
    }
}

/// The parts of a problem document.
struct Problem {
    status: u16,
    slug: &'static str,
    title: &'static str,
    detail: String,
    extensions: Value,
}

impl ApiError {
    fn problem(&self) -> Problem {
        let p = |status, slug, title, detail: String| Problem {
            status,
            slug,
            title,
            detail,
            extensions: Value::Null,
        };
        match self {
            Self::MethodNotAllowed { allow } => p(
                405,
                "method-not-allowed",
                "Method not allowed",
                format!("this resource supports {allow}"),
            ),
            Self::UnsupportedBody(d) => Problem {
                extensions: json!({ "supported": supported() }),
                ..p(415, "unsupported-media-type", "Unsupported media type", d.clone())
            },
            Self::BadMultipart(_) => p(400, "malformed-multipart", "Malformed multipart body", self.to_string()),
            Self::MissingFile | Self::InvalidImage(InvalidImage::Empty) => p(
                400,
                "missing-file",
                "No file uploaded",
                "send the image as the `file` field of a multipart/form-data body, or as a raw image/* body".into(),
            ),
            Self::InvalidImage(e) => match e {
                InvalidImage::TooLarge { limit } => Problem {
                    extensions: json!({ "limit_bytes": limit }),
                    ..p(413, "payload-too-large", "Upload too large", e.to_string())
                },
                InvalidImage::UnsupportedFormat => Problem {
                    extensions: json!({ "supported": supported() }),
                    ..p(415, "unsupported-media-type", "Unsupported image format", e.to_string())
                },
                InvalidImage::TooManyPixels { limit, .. } => Problem {
                    extensions: json!({ "limit_pixels": limit }),
                    ..p(422, "too-many-pixels", "Image dimensions too large", e.to_string())
                },
                InvalidImage::TooMuchMemory { limit_mib, max_pixels, .. } => Problem {
                    extensions: json!({ "limit_pixels": max_pixels, "limit_memory_mib": limit_mib }),
                    ..p(422, "too-many-pixels", "Image dimensions too large", e.to_string())
                },
                InvalidImage::TooManyFrames { limit } => Problem {
                    extensions: json!({ "limit_frames": limit }),
                    ..p(422, "too-many-frames", "Too many animation frames", e.to_string())
                },
                InvalidImage::UnreadableHeader { .. } | InvalidImage::ZeroDimension | InvalidImage::Empty => {
                    p(422, "invalid-image", "Invalid image", e.to_string())
                }
            },
            Self::NotFound => p(404, "not-found", "Not found", self.to_string()),
            Self::Unauthorized => p(401, "unauthorized", "Unauthorized", self.to_string()),
            Self::Conflict(d) => p(409, "conflict", "Conflict", d.clone()),
            Self::InvalidQuery(d) => p(400, "invalid-query", "Invalid query", d.clone()),
            Self::RefusedUrl(_) => p(422, "url-not-allowed", "URL not allowed", self.to_string()),
            Self::RefusedRecipient(_) => p(
                422,
                "recipient-not-allowed",
                "Notification recipient not allowed",
                self.to_string(),
            ),
            Self::BadJson(d) => p(400, "malformed-json", "Malformed JSON body", d.clone()),
            Self::MalformedIdempotencyKey(_) => p(
                400,
                "malformed-idempotency-key",
                "Malformed Idempotency-Key",
                self.to_string(),
            ),
            Self::IdempotencyKeyReused => p(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                self.to_string(),
            ),
            Self::IdempotencyKeyInUse => p(
                409,
                "idempotency-key-in-use",
                "Idempotency-Key in use",
                self.to_string(),
            ),
            Self::NotReady(d) => p(409, "not-ready", "Not ready", d.clone()),
            Self::StorageUnavailable(_) | Self::QueueUnavailable(_) => p(
                503,
                "service-unavailable",
                "Service unavailable",
                format!("{self}; nothing was recorded, try again later"),
            ),
            Self::Config(_) => p(
                500,
                "internal",
                "Internal error",
                "the service is misconfigured; the operator has the details in the logs".into(),
            ),
        }
    }

    /// The response for this error. Server-side errors are logged with their cause.
    pub fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            eprintln!("darkroom: {}: {}", problem.status, self_chain(&self));
        }
        let mut body = json!({
            "type": format!("urn:darkroom:problem:{}", problem.slug),
            "title": problem.title,
            "status": problem.status,
            "detail": problem.detail,
        });
        if let (Value::Object(body), Value::Object(ext)) = (&mut body, problem.extensions) {
            body.extend(ext);
        }
        let mut builder = Response::builder();
        builder
            .status(problem.status)
            .header("content-type", "application/problem+json")
            .header("cache-control", "no-store");
        match &self {
            Self::MethodNotAllowed { allow } => {
                builder.header("allow", *allow);
            }
            Self::Unauthorized => {
                builder.header("www-authenticate", "Bearer");
            }
            Self::StorageUnavailable(_) | Self::QueueUnavailable(_) => {
                builder.header("retry-after", UNAVAILABLE_RETRY_AFTER_SECS.to_string());
            }
            _ => {}
        }
        builder.body(body.to_string()).build()
    }
}

/// The error and its sources as one line, for logs.
fn self_chain(e: &ApiError) -> String {
    let mut line = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

fn supported() -> Vec<&'static str> {
    ImageFormat::ALL.map(ImageFormat::mime).to_vec()
}

/// Turns a handler's result into its response.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}
