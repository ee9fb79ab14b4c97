//! Reading an upload from a request: `multipart/form-data` with a `file`
//! field (what HTML forms and `curl -F file=@x.jpg` send), or a raw body
//! with an `image/*` (or `application/octet-stream`, or no) Content-Type;
//! or an ingest by URL: `application/json` `{"url": "https://…"}`, or a
//! multipart `url` field. Multipart and JSON bodies may also name who is
//! told when the job ends: `callback_url` and `notify_email` (checked by
//! the core, not here).
//!
//! The body is read as a stream and the file's bytes handed to a
//! [`FileSink`] as they arrive (the upload component's sink judges and
//! stores them, `darkroom_core::receive`), so an upload never holds the
//! file; a multipart body is parsed as it arrives, and any body is
//! abandoned as soon as it exceeds the limit.

use darkroom_core::format::{InvalidImage, Limits};
use futures::StreamExt;
use spin_sdk::http::IncomingRequest;

use crate::problem::ApiError;
use crate::routes::header;

/// Room for multipart framing (boundaries, part headers, other small fields)
/// on top of the file itself.
const MULTIPART_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Largest JSON ingest request read.
const JSON_LIMIT_BYTES: u64 = 16 * 1024;

enum BodyKind {
    Multipart(String),
    Raw,
    Json,
}

/// What a `POST /api/images` carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Upload {
    /// A file, whose bytes went to the [`FileSink`].
    File,
    /// A source URL to ingest (not yet checked).
    Url(String),
}

/// Where a file's bytes go as they arrive.
pub trait FileSink {
    /// Takes the next piece of the file.
    ///
    /// # Errors
    /// The [`ApiError`] that ends the upload (a refused image, storage down).
    fn push(&mut self, bytes: &[u8]) -> Result<(), ApiError>;
}

impl FileSink for darkroom_core::receive::Receiving<'_> {
    fn push(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        Self::push(self, bytes).map_err(ApiError::from)
    }
}

/// Collects the bytes (a JSON ingest body, and the tests' files).
impl FileSink for Vec<u8> {
    fn push(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// An upload with the recipients it names.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The image or its URL.
    pub upload: Option<Upload>,
    /// `callback_url`, as sent.
    pub callback_url: Option<String>,
    /// `notify_email`, as sent.
    pub notify_email: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestBody {
    url: String,
    #[serde(default)]
    callback_url: Option<String>,
    #[serde(default)]
    notify_email: Option<String>,
}

fn body_kind(content_type: Option<&str>) -> Result<BodyKind, ApiError> {
    let Some(ct) = content_type else {
        return Ok(BodyKind::Raw);
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "multipart/form-data" => multer::parse_boundary(ct)
            .map(BodyKind::Multipart)
            .map_err(|e| ApiError::BadMultipart(e.to_string())),
        "application/octet-stream" | "" => Ok(BodyKind::Raw),
        "application/json" => Ok(BodyKind::Json),
        e if e.starts_with("image/") => Ok(BodyKind::Raw),
        other => Err(ApiError::UnsupportedBody(format!(
            "cannot read an upload from a {other} body; send multipart/form-data with a `file` field, the raw image with an image/* Content-Type, or application/json with a `url`"
        ))),
    }
}

/// Reads the upload, handing a file's bytes to `file` as they arrive. Size
/// is enforced here; format and dimensions are the sink's business.
///
/// A multipart body is parsed from the stream, and any body is abandoned
/// as soon as it passes [`Limits::max_file_bytes`] (`max_upload_bytes`, or
/// half of `max_memory_mib` when smaller), whatever a client sends.
///
/// # Errors
/// [`ApiError`]: 413 over the limit, 415 for a body type that cannot carry
/// an upload, 400 for a malformed multipart body or a missing file; and
/// whatever `file` refuses.
pub async fn read_upload(
    req: IncomingRequest,
    limits: Limits,
    file: &mut dyn FileSink,
) -> Result<(Upload, Request), ApiError> {
    let headers = req.headers();
    let kind = body_kind(header(&headers, "content-type").as_deref())?;
    let file_limit = limits.max_file_bytes();
    let body_limit = match kind {
        BodyKind::Multipart(_) => file_limit.saturating_add(MULTIPART_OVERHEAD_BYTES),
        BodyKind::Raw => file_limit,
        BodyKind::Json => JSON_LIMIT_BYTES,
    };
    let declared = header(&headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > body_limit) {
        return Err(too_large(file_limit));
    }
    drop(headers);

    let stream = req.into_body_stream().map(|chunk| {
        chunk
            .map(bytes::Bytes::from)
            .map_err(|e| format!("the request body broke off: {e:?}"))
    });
    let mut request = match kind {
        BodyKind::Multipart(boundary) => {
            fields(Paced::new(stream), boundary, file_limit, file).await?
        }
        BodyKind::Raw => {
            let sent = pour(stream, file_limit, file).await?;
            Request {
                upload: (sent > 0).then_some(Upload::File),
                ..Request::default()
            }
        }
        BodyKind::Json => {
            let mut body = Vec::new();
            pour(stream, JSON_LIMIT_BYTES, &mut body).await?;
            ingest_body(&body)?
        }
    };
    let upload = request.upload.take().ok_or(ApiError::MissingFile)?;
    Ok((upload, request))
}

/// A stream that hands out one item per wake-up. multer reads its stream
/// until the stream is pending, so a body arriving faster than it is parsed
/// (as a local client sends it) would be buffered whole, next to the file
/// being collected from it: after each chunk this yields to spin-sdk's
/// executor on a timer that is due at once (the executor only sleeps on
/// registered `wasi:io/poll` pollables), and multer parses what it has.
struct Paced<S> {
    inner: S,
    just_yielded: bool,
}

impl<S> Paced<S> {
    const fn new(inner: S) -> Self {
        Self {
            inner,
            just_yielded: false,
        }
    }
}

impl<S: futures::Stream + Unpin> futures::Stream for Paced<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        if std::mem::take(&mut self.just_yielded) {
            let now = wasi::clocks::monotonic_clock::subscribe_duration(0);
            spin_executor::push_waker(now, cx.waker().clone());
            return std::task::Poll::Pending;
        }
        let next = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        self.just_yielded = matches!(next, std::task::Poll::Ready(Some(_)));
        next
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::InvalidImage(InvalidImage::TooLarge { limit })
}

/// Hands the stream's bytes to `sink`; how many there were. Refused (413)
/// once they pass `limit`: the rest is not read.
async fn pour<S, E>(mut stream: S, limit: u64, sink: &mut dyn FileSink) -> Result<u64, ApiError>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut sent = 0_u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadMultipart(e.to_string()))?;
        sent += chunk.len() as u64;
        if sent > limit {
            return Err(too_large(limit));
        }
        sink.push(&chunk)?;
    }
    Ok(sent)
}

fn ingest_body(body: &[u8]) -> Result<Request, ApiError> {
    serde_json::from_slice::<IngestBody>(body)
        .map(|b| Request {
            upload: Some(Upload::Url(b.url)),
            callback_url: b.callback_url,
            notify_email: b.notify_email,
        })
        .map_err(|e| {
            ApiError::BadJson(format!(
                "expected {{\"url\": \"https://…\"}}, optionally with \"callback_url\" and \"notify_email\": {e}"
            ))
        })
}

/// The `file` (or `url`), `callback_url` and `notify_email` fields, parsed
/// from the body as it arrives, the file's bytes handed to `file`; others
/// are skipped unread. The file is refused once it passes `file_limit`,
/// every other field past [`MULTIPART_OVERHEAD_BYTES`].
async fn fields<S, E>(
    body: S,
    boundary: String,
    file_limit: u64,
    file: &mut dyn FileSink,
) -> Result<Request, ApiError>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(file_limit.saturating_add(MULTIPART_OVERHEAD_BYTES))
            .per_field(MULTIPART_OVERHEAD_BYTES)
            // Held to `file_limit` as it is read, below.
            .for_field("file", u64::MAX),
    );
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    let bad = |e: multer::Error| match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            too_large(file_limit)
        }
        e => ApiError::BadMultipart(e.to_string()),
    };
    let mut request = Request::default();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("file") if request.upload.is_none() => {
                let mut field = field;
                let mut sent = 0_u64;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    sent += chunk.len() as u64;
                    if sent > file_limit {
                        return Err(too_large(file_limit));
                    }
                    file.push(&chunk)?;
                }
                // An empty file field is no file.
                request.upload = (sent > 0).then_some(Upload::File);
            }
            Some("url") if request.upload.is_none() => {
                request.upload = Some(Upload::Url(field.text().await.map_err(bad)?));
            }
            Some("callback_url") => request.callback_url = Some(field.text().await.map_err(bad)?),
            Some("notify_email") => request.notify_email = Some(field.text().await.map_err(bad)?),
            _ => {}
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: Vec<u8>, file_limit: u64) -> Result<Request, ApiError> {
        parsed_with_file(body, file_limit).map(|(request, _)| request)
    }

    /// The request and the file's bytes as the sink got them.
    fn parsed_with_file(body: Vec<u8>, file_limit: u64) -> Result<(Request, Vec<u8>), ApiError> {
        // Sent in small pieces, as a network delivers it.
        let pieces: Vec<Result<bytes::Bytes, std::convert::Infallible>> = body
            .chunks(7)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let mut file = Vec::new();
        let request = futures::executor::block_on(fields(
            futures::stream::iter(pieces),
            "b".into(),
            file_limit,
            &mut file,
        ))?;
        Ok((request, file))
    }

    #[test]
    fn body_kinds_follow_the_content_type_essence() {
        assert!(matches!(body_kind(None), Ok(BodyKind::Raw)));
        assert!(matches!(body_kind(Some("image/jpeg")), Ok(BodyKind::Raw)));
        assert!(matches!(
            body_kind(Some("Image/PNG; q=1")),
            Ok(BodyKind::Raw)
        ));
        assert!(matches!(
            body_kind(Some("application/octet-stream")),
            Ok(BodyKind::Raw)
        ));
        assert!(matches!(
            body_kind(Some("multipart/form-data; boundary=abc")),
            Ok(BodyKind::Multipart(b)) if b == "abc"
        ));
        assert!(matches!(
            body_kind(Some("multipart/form-data")),
            Err(ApiError::BadMultipart(_))
        ));
        assert!(matches!(
            body_kind(Some("application/json; charset=utf-8")),
            Ok(BodyKind::Json)
        ));
        assert!(matches!(
            body_kind(Some("text/plain")),
            Err(ApiError::UnsupportedBody(_))
        ));
    }

    #[test]
    fn the_file_field_is_found_among_others() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--b--\r\n".to_vec();
        let (request, file) = parsed_with_file(body, 1 << 20).expect("parsed");
        assert_eq!(request.upload, Some(Upload::File));
        assert_eq!(file, b"PNGDATA");
    }

    #[test]
    fn a_url_arrives_as_json_or_as_a_multipart_field() {
        assert_eq!(
            ingest_body(br#"{"url": "https://example.com/a.jpg"}"#)
                .expect("json")
                .upload,
            Some(Upload::Url("https://example.com/a.jpg".into()))
        );
        assert!(matches!(
            ingest_body(br#"{"uri": "https://example.com/a.jpg"}"#),
            Err(ApiError::BadJson(_))
        ));
        let body = b"--b\r\nContent-Disposition: form-data; name=\"url\"\r\n\r\nhttps://example.com/a.jpg\r\n--b--\r\n".to_vec();
        let request = parsed(body, 1 << 20).expect("parsed");
        assert_eq!(
            request.upload,
            Some(Upload::Url("https://example.com/a.jpg".into()))
        );
    }

    #[test]
    fn a_multipart_body_without_a_file_field_is_a_missing_file() {
        let body =
            b"--b\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--b--\r\n"
                .to_vec();
        let request = parsed(body, 1 << 20).expect("parsed");
        assert_eq!(request.upload, None, "read_upload answers MissingFile");
    }

    #[test]
    fn recipients_come_from_multipart_fields_in_any_order_or_from_the_json_body() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\nPNG\r\n--b\r\nContent-Disposition: form-data; name=\"callback_url\"\r\n\r\nhttps://h.example/x\r\n--b\r\nContent-Disposition: form-data; name=\"notify_email\"\r\n\r\nann@example.com\r\n--b--\r\n".to_vec();
        let request = parsed(body, 1 << 20).expect("parsed");
        assert_eq!(request.callback_url.as_deref(), Some("https://h.example/x"));
        assert_eq!(request.notify_email.as_deref(), Some("ann@example.com"));
        let json = ingest_body(
            br#"{"url": "https://e.example/a.jpg", "callback_url": "https://h.example/x", "notify_email": "ann@example.com"}"#,
        )
        .expect("json");
        assert_eq!(json.callback_url.as_deref(), Some("https://h.example/x"));
        assert_eq!(json.notify_email.as_deref(), Some("ann@example.com"));
    }

    #[test]
    fn a_multipart_file_over_the_limit_is_too_large_and_small_fields_stay_small() {
        let file = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\n0123456789\r\n--b--\r\n".to_vec();
        assert!(matches!(
            parsed(file.clone(), 9),
            Err(ApiError::InvalidImage(InvalidImage::TooLarge { limit: 9 }))
        ));
        assert!(parsed(file, 10).is_ok());
        let mut big_title =
            b"--b\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n".to_vec();
        big_title.extend(std::iter::repeat_n(
            b'x',
            MULTIPART_OVERHEAD_BYTES as usize + 1,
        ));
        big_title.extend_from_slice(b"\r\n--b--\r\n");
        assert!(matches!(
            parsed(big_title, 1 << 20),
            Err(ApiError::InvalidImage(InvalidImage::TooLarge { .. }))
        ));
    }
}
