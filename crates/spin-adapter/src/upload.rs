//! Reading an upload from a request: `multipart/form-data` with a `file`
//! field (what HTML forms and `curl -F file=@x.jpg` send), or a raw body
//! with an `image/*` (or `application/octet-stream`, or no) Content-Type;
//! or an ingest by URL: `application/json` `{"url": "https://…"}`, or a
//! multipart `url` field. Multipart and JSON bodies may also name who is
//! told when the job ends: `callback_url` and `notify_email` (checked by
//! the core, not here).
//!
//! The body is read as a stream and abandoned as soon as it exceeds the
//! limit, so an oversized upload costs at most the limit in memory.

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
    /// The image's bytes.
    File(Vec<u8>),
    /// A source URL to ingest (not yet checked).
    Url(String),
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

/// The uploaded file's bytes. Size is enforced here; format and dimensions
/// are the core's business.
///
/// # Errors
/// [`ApiError`]: 413 over the limit, 415 for a body type that cannot carry
/// an upload, 400 for a malformed multipart body or a missing file.
pub async fn read_upload(
    req: IncomingRequest,
    limits: Limits,
) -> Result<(Upload, Request), ApiError> {
    let headers = req.headers();
    let kind = body_kind(header(&headers, "content-type").as_deref())?;
    let too_large = || {
        ApiError::InvalidImage(InvalidImage::TooLarge {
            limit: limits.max_upload_bytes,
        })
    };
    let body_limit = match kind {
        BodyKind::Multipart(_) => limits
            .max_upload_bytes
            .saturating_add(MULTIPART_OVERHEAD_BYTES),
        BodyKind::Raw => limits.max_upload_bytes,
        BodyKind::Json => JSON_LIMIT_BYTES,
    };
    let declared = header(&headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > body_limit) {
        return Err(too_large());
    }
    drop(headers);

    let mut body = Vec::with_capacity(declared.map_or(0, |l| usize::try_from(l).unwrap_or(0)));
    let mut stream = req.into_body_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadMultipart(format!("the request body broke off: {e:?}")))?;
        if (body.len() + chunk.len()) as u64 > body_limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }

    let mut request = match kind {
        BodyKind::Raw => Request {
            upload: Some(Upload::File(body)),
            ..Request::default()
        },
        BodyKind::Json => ingest_body(&body)?,
        BodyKind::Multipart(boundary) => fields(body, boundary).await?,
    };
    let upload = match request.upload.take() {
        Some(Upload::File(file)) if file.is_empty() => return Err(ApiError::MissingFile),
        Some(Upload::File(file)) if file.len() as u64 > limits.max_upload_bytes => {
            return Err(too_large());
        }
        Some(upload) => upload,
        None => return Err(ApiError::MissingFile),
    };
    Ok((upload, request))
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

/// The `file` (or `url`), `callback_url` and `notify_email` fields; others
/// are ignored.
async fn fields(body: Vec<u8>, boundary: String) -> Result<Request, ApiError> {
    let once = futures::stream::once(async move {
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(body))
    });
    let mut multipart = multer::Multipart::new(once, boundary);
    let bad = |e: multer::Error| ApiError::BadMultipart(e.to_string());
    let mut request = Request::default();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("file") if request.upload.is_none() => {
                request.upload = Some(Upload::File(field.bytes().await.map_err(bad)?.to_vec()));
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
        let request = futures::executor::block_on(fields(body, "b".into())).expect("parsed");
        assert_eq!(request.upload, Some(Upload::File(b"PNGDATA".to_vec())));
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
        let request = futures::executor::block_on(fields(body, "b".into())).expect("parsed");
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
        let request = futures::executor::block_on(fields(body, "b".into())).expect("parsed");
        assert_eq!(request.upload, None, "read_upload answers MissingFile");
    }

    #[test]
    fn recipients_come_from_multipart_fields_in_any_order_or_from_the_json_body() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\nPNG\r\n--b\r\nContent-Disposition: form-data; name=\"callback_url\"\r\n\r\nhttps://h.example/x\r\n--b\r\nContent-Disposition: form-data; name=\"notify_email\"\r\n\r\nann@example.com\r\n--b--\r\n".to_vec();
        let request = futures::executor::block_on(fields(body, "b".into())).expect("parsed");
        assert_eq!(request.callback_url.as_deref(), Some("https://h.example/x"));
        assert_eq!(request.notify_email.as_deref(), Some("ann@example.com"));
        let json = ingest_body(
            br#"{"url": "https://e.example/a.jpg", "callback_url": "https://h.example/x", "notify_email": "ann@example.com"}"#,
        )
        .expect("json");
        assert_eq!(json.callback_url.as_deref(), Some("https://h.example/x"));
        assert_eq!(json.notify_email.as_deref(), Some("ann@example.com"));
    }
}
