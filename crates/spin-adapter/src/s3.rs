//! The core's [`BlobStore`] on S3-compatible object storage (AWS S3,
//! Cloudflare R2, MinIO, Garage, Ceph) over Spin's outbound HTTP. Requests
//! are signed with AWS Signature V4 by `rusty-s3`, which signs without doing
//! I/O (query-string signatures valid for a few minutes), and sent with
//! `spin_sdk::http::send`. Objects larger than [`MULTIPART_THRESHOLD`] go up
//! as a multipart upload; an object written piece by piece (an upload
//! streamed as it arrives) sends each part as it fills.

use std::time::Duration;

use darkroom_core::keys::BlobKey;
use darkroom_core::ports::{BlobMeta, BlobReader, BlobStore, BlobWriter, PortError};
use futures::StreamExt as _;
use rusty_s3::actions::{CompleteMultipartUpload, CreateMultipartUpload};
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use spin_sdk::http::{IncomingResponse, Method, Request, Response};

/// Above this size an object is sent in parts.
pub const MULTIPART_THRESHOLD: usize = PART_BYTES;
/// The size of each part but the last (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// How long a signature we send ourselves stays valid.
const SIGNATURE_TTL: Duration = Duration::from_secs(300);

/// Where and how to reach the bucket.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// e.g. `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The region (`auto` for R2, anything for MinIO/Garage).
    pub region: String,
    /// `path` (`endpoint/bucket/key`) or `virtual` (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// Blobs as objects in one S3 bucket, keyed by [`BlobKey`].
pub struct S3BlobStore {
    bucket: Bucket,
    credentials: Credentials,
}

fn credentials(config: &S3Config) -> Credentials {
    Credentials::new(
        config.access_key_id.clone(),
        config.secret_access_key.clone(),
    )
}

fn port_error(what: &str, e: impl std::fmt::Display) -> PortError {
    PortError::new(format!("s3 {what}: {e}"))
}

/// How many times one S3 request is tried before its error is reported.
const ATTEMPTS: u32 = 3;
/// The pause before the second attempt; it doubles for each one after.
const FIRST_BACKOFF: Duration = Duration::from_millis(25);

/// Whether an answer with this status is worth another try: the statuses
/// AWS's SDKs retry in their standard mode (a throttle or a server error).
const fn transient(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Runs `attempt` (one request) up to [`ATTEMPTS`] times while it fails to
/// get an answer (a refused or broken connection) or gets a [`transient`]
/// one, pausing [`FIRST_BACKOFF`], then twice that, in between. Every S3
/// request this store makes may be repeated: a PUT, an uploaded part or a
/// DELETE of one key leaves the same state however often it lands, and a
/// repeated GET or HEAD changes nothing. (A repeated multipart create whose
/// first answer was lost leaves an unfinished upload behind, which S3
/// keeps until a bucket lifecycle rule for incomplete uploads removes it; a
/// repeated complete of one that had completed may fail, and the job's own
/// retry writes the object again.) That is how AWS's SDKs treat them
/// ("standard" retry mode: three attempts, transient errors and 5xx); a
/// connection that breaks off under load (seen with s3s-fs as hyper's
/// `HttpProtocolError`) or a 500 from two racing DELETEs of a key then costs
/// a pause, not a job attempt. The last answer or error is returned as is.
fn with_retries<R>(
    what: &str,
    mut attempt: impl FnMut() -> Result<(R, u16), spin_sdk::http::SendError>,
) -> Result<R, PortError> {
    let mut backoff = FIRST_BACKOFF;
    for _ in 1..ATTEMPTS {
        match attempt() {
            Ok((response, status)) if !transient(status) => return Ok(response),
            Ok((_, status)) => eprintln!("darkroom: s3 {what}: HTTP {status}; trying again"),
            Err(e) => eprintln!("darkroom: s3 {what}: {e}; trying again"),
        }
        let nanos = u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX);
        wasi::clocks::monotonic_clock::subscribe_duration(nanos).block();
        backoff *= 2;
    }
    attempt()
        .map(|(response, _)| response)
        .map_err(|e| port_error(what, e))
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .header(name)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// The bucket's base URL as rusty-s3 wants it. With virtual-hosted
/// addressing the configured endpoint is the bucket's own host
/// (`https://my-images.s3.eu-west-1.amazonaws.com`), because that host, and
/// only it, is what `allowed_outbound_hosts` lets the components call.
fn bucket(
    endpoint: &str,
    bucket: &str,
    region: &str,
    path_style: bool,
) -> Result<Bucket, PortError> {
    let mut endpoint = url::Url::parse(endpoint).map_err(|e| port_error("endpoint", e))?;
    let style = if path_style {
        UrlStyle::Path
    } else {
        let host = endpoint.host_str().unwrap_or_default().to_owned();
        let base = host
            .strip_prefix(bucket)
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|base| !base.is_empty())
            .ok_or_else(|| {
                port_error(
                    "endpoint",
                    format!(
                        "with s3_url_style = virtual, s3_endpoint must be the bucket's own \
                         host ({bucket}.<endpoint>), not {host}"
                    ),
                )
            })?
            .to_owned();
        endpoint
            .set_host(Some(&base))
            .map_err(|e| port_error("endpoint", e))?;
        UrlStyle::VirtualHost
    };
    Bucket::new(endpoint, style, bucket.to_owned(), region.to_owned())
        .map_err(|e| port_error("bucket", e))
}

/// An object's type, size and ETag from the headers of a GET or HEAD answer.
fn object_meta(what: &str, headers: &spin_sdk::http::Headers) -> Result<BlobMeta, PortError> {
    let header = |name: &str| crate::routes::header(headers, name);
    let size = header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| port_error(what, "no Content-Length"))?;
    Ok(BlobMeta {
        size,
        content_type: header("content-type")
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
        // S3 ETags are quoted already; every S3-compatible store sends one.
        etag: header("etag").ok_or_else(|| port_error(what, "no ETag"))?,
    })
}

impl S3BlobStore {
    /// A store for `config`.
    ///
    /// # Errors
    /// [`PortError`] when the endpoint or bucket name cannot form a bucket URL.
    pub fn new(config: &S3Config) -> Result<Self, PortError> {
        Ok(Self {
            bucket: bucket(
                &config.endpoint,
                &config.bucket,
                &config.region,
                config.path_style,
            )?,
            credentials: credentials(config),
        })
    }

    fn send(
        &self,
        what: &str,
        method: Method,
        url: &url::Url,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<Response, PortError> {
        with_retries(what, || {
            let mut builder = Request::builder();
            builder.method(method.clone()).uri(url.as_str());
            if let Some(ct) = content_type {
                builder.header("content-type", ct);
            }
            if matches!(method, Method::Put | Method::Post) {
                // Without it the body goes chunked, which S3 refuses (411).
                builder.header("content-length", body.len().to_string());
            }
            // One copy of the body at a time: a failed attempt's is dropped
            // before the next is made.
            let request = builder.body(body.to_vec()).build();
            let response = spin_sdk::http::run(spin_sdk::http::send::<_, Response>(request));
            response.map(|r| {
                let status = *r.status();
                (r, status)
            })
        })
    }

    /// Sends a signed GET or HEAD of the object under `key`.
    fn request_object(&self, method: Method, key: &BlobKey) -> Result<IncomingResponse, PortError> {
        let credentials = Some(&self.credentials);
        let (what, url) = match method {
            Method::Head => (
                "head",
                self.bucket
                    .head_object(credentials, key.as_str())
                    .sign(SIGNATURE_TTL),
            ),
            _ => (
                "get",
                self.bucket
                    .get_object(credentials, key.as_str())
                    .sign(SIGNATURE_TTL),
            ),
        };
        with_retries(what, || {
            let request = Request::builder()
                .method(method.clone())
                .uri(url.as_str())
                .build();
            spin_sdk::http::run(spin_sdk::http::send::<_, IncomingResponse>(request)).map(|r| {
                let status = r.status();
                (r, status)
            })
        })
    }

    fn expect_success(what: &str, response: &Response) -> Result<(), PortError> {
        let status = *response.status();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = String::from_utf8_lossy(response.body());
        Err(port_error(
            what,
            format!(
                "HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            ),
        ))
    }

    /// Begins a multipart upload of `key`; its upload id.
    fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, PortError> {
        let mut create = CreateMultipartUpload::new(&self.bucket, Some(&self.credentials), key);
        create
            .headers_mut()
            .insert("content-type", content_type.to_owned());
        let url = create.sign(SIGNATURE_TTL);
        let response = self.send(
            "create multipart upload",
            Method::Post,
            &url,
            &[],
            Some(content_type),
        )?;
        Self::expect_success("create multipart upload", &response)?;
        let created =
            CreateMultipartUpload::parse_response(&String::from_utf8_lossy(response.body()))
                .map_err(|e| port_error("create multipart upload", e))?;
        Ok(created.upload_id().to_owned())
    }

    /// Sends part `number` (from 1); its ETag.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: usize,
        part: &[u8],
    ) -> Result<String, PortError> {
        let number =
            u16::try_from(number).map_err(|_| port_error("upload part", "too many parts"))?;
        let url = self
            .bucket
            .upload_part(Some(&self.credentials), key, number, upload_id)
            .sign(SIGNATURE_TTL);
        let response = self.send("upload part", Method::Put, &url, part, None)?;
        Self::expect_success("upload part", &response)?;
        header(&response, "etag").ok_or_else(|| port_error("upload part", "no ETag"))
    }

    /// Completes a multipart upload; the object's ETag, if S3 gave one.
    fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<Option<String>, PortError> {
        let complete = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = complete.sign(SIGNATURE_TTL);
        let body = complete.body();
        let response = self.send(
            "complete multipart upload",
            Method::Post,
            &url,
            body.as_bytes(),
            None,
        )?;
        Self::expect_success("complete multipart upload", &response)?;
        Ok(header(&response, "etag"))
    }

    /// Abandons a multipart upload: S3 drops its parts.
    fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), PortError> {
        let url = self
            .bucket
            .abort_multipart_upload(Some(&self.credentials), key, upload_id)
            .sign(SIGNATURE_TTL);
        let response = self.send("abort multipart upload", Method::Delete, &url, &[], None)?;
        if *response.status() == 404 {
            return Ok(());
        }
        Self::expect_success("abort multipart upload", &response)
    }

    /// One PUT of the whole object; its ETag, if S3 gave one.
    fn put_whole(
        &self,
        key: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Option<String>, PortError> {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(SIGNATURE_TTL);
        let response = self.send("put", Method::Put, &url, bytes, Some(content_type))?;
        Self::expect_success("put", &response)?;
        Ok(header(&response, "etag"))
    }
}

/// An object going up as it is written: held while it fits in one part of
/// [`PART_BYTES`] (then one PUT when finished), else sent in parts as they
/// fill, so at most one part is held (and the copy `send` makes of it).
struct S3Writer<'a> {
    store: &'a S3BlobStore,
    key: String,
    content_type: String,
    pending: Vec<u8>,
    upload_id: Option<String>,
    etags: Vec<String>,
    size: u64,
    etag: darkroom_core::blob::Etag,
}

impl S3Writer<'_> {
    fn send_part(&mut self, part: &[u8]) -> Result<(), PortError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.store.create_multipart(&self.key, &self.content_type)?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let etag = self
            .store
            .upload_part(&self.key, &upload_id, self.etags.len() + 1, part)?;
        self.etags.push(etag);
        Ok(())
    }

    fn meta(&mut self, etag: Option<String>) -> BlobMeta {
        BlobMeta {
            size: self.size,
            content_type: self.content_type.clone(),
            etag: etag.unwrap_or_else(|| std::mem::take(&mut self.etag).finish()),
        }
    }
}

impl BlobWriter for S3Writer<'_> {
    fn write(&mut self, mut bytes: &[u8]) -> Result<(), PortError> {
        self.etag.update(bytes);
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            // A full part goes only once more follows: an object of at most
            // one part is one PUT when finished.
            if self.pending.len() == PART_BYTES {
                let part = std::mem::take(&mut self.pending);
                self.send_part(&part)?;
                self.pending = part;
                self.pending.clear();
            }
            let n = (PART_BYTES - self.pending.len()).min(bytes.len());
            // Grown by doubling, but never past one part.
            let wanted = self.pending.len() + n;
            if wanted > self.pending.capacity() {
                let grown = wanted.max(2 * self.pending.capacity()).min(PART_BYTES);
                self.pending.reserve_exact(grown - self.pending.len());
            }
            self.pending.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<BlobMeta, PortError> {
        let pending = std::mem::take(&mut self.pending);
        let Some(upload_id) = self.upload_id.clone() else {
            let etag = self
                .store
                .put_whole(&self.key, &self.content_type, &pending)?;
            return Ok(self.meta(etag));
        };
        let completed = if pending.is_empty() {
            Ok(())
        } else {
            self.send_part(&pending)
        }
        .and_then(|()| {
            self.store
                .complete_multipart(&self.key, &upload_id, &self.etags)
        });
        match completed {
            Ok(etag) => Ok(self.meta(etag)),
            Err(e) => {
                if let Err(cleanup) = self.store.abort_multipart(&self.key, &upload_id) {
                    return Err(port_error(
                        "complete multipart upload",
                        format!("{e}; aborting it also failed: {cleanup}"),
                    ));
                }
                Err(e)
            }
        }
    }

    fn abort(self: Box<Self>) -> Result<(), PortError> {
        match &self.upload_id {
            Some(upload_id) => self.store.abort_multipart(&self.key, upload_id),
            None => Ok(()),
        }
    }
}

impl BlobStore for S3BlobStore {
    fn create<'a>(
        &'a self,
        key: &BlobKey,
        content_type: &str,
    ) -> Result<Box<dyn BlobWriter + 'a>, PortError> {
        Ok(Box::new(S3Writer {
            store: self,
            key: key.as_str().to_owned(),
            content_type: content_type.to_owned(),
            pending: Vec::new(),
            upload_id: None,
            etags: Vec::new(),
            size: 0,
            etag: darkroom_core::blob::Etag::default(),
        }))
    }

    fn put(&self, key: &BlobKey, content_type: &str, bytes: &[u8]) -> Result<BlobMeta, PortError> {
        let etag = if bytes.len() > MULTIPART_THRESHOLD {
            let upload_id = self.create_multipart(key.as_str(), content_type)?;
            let sent: Result<Vec<String>, PortError> = bytes
                .chunks(PART_BYTES)
                .enumerate()
                .map(|(n, part)| self.upload_part(key.as_str(), &upload_id, n + 1, part))
                .collect();
            let completed =
                sent.and_then(|etags| self.complete_multipart(key.as_str(), &upload_id, &etags));
            if completed.is_err() {
                drop(self.abort_multipart(key.as_str(), &upload_id));
            }
            completed?
        } else {
            self.put_whole(key.as_str(), content_type, bytes)?
        };
        Ok(BlobMeta {
            size: bytes.len() as u64,
            content_type: content_type.to_owned(),
            etag: etag.unwrap_or_else(|| darkroom_core::blob::etag(bytes)),
        })
    }

    fn open(&self, key: &BlobKey) -> Result<Option<BlobReader<'_>>, PortError> {
        let response = self.request_object(Method::Get, key)?;
        let status = response.status();
        if status == 404 {
            return Ok(None);
        }
        let meta = object_meta("get", &response.headers());
        let mut body = ObjectBody::new(response);
        if !(200..300).contains(&status) {
            let text = body.read_to_end(300);
            return Err(port_error(
                "get",
                format!("HTTP {status}: {}", String::from_utf8_lossy(&text)),
            ));
        }
        Ok(Some(BlobReader::new(meta?, body)))
    }

    fn stat(&self, key: &BlobKey) -> Result<Option<BlobMeta>, PortError> {
        let response = self.request_object(Method::Head, key)?;
        match response.status() {
            404 => Ok(None),
            status if (200..300).contains(&status) => {
                object_meta("head", &response.headers()).map(Some)
            }
            // A HEAD answer has no body to explain itself.
            status => Err(port_error("head", format!("HTTP {status}"))),
        }
    }

    fn delete(&self, key: &BlobKey) -> Result<(), PortError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key.as_str())
            .sign(SIGNATURE_TTL);
        let response = self.send(&format!("delete {key}"), Method::Delete, &url, &[], None)?;
        if *response.status() == 404 {
            return Ok(());
        }
        Self::expect_success("delete", &response)
    }
}

/// The body of an object being read, piece by piece as the network delivers
/// it (16 KiB at most each), so serving a 20 MB original never holds all of it.
struct ObjectBody {
    // Field order is drop order: the stream goes before the response it reads.
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = Result<Vec<u8>, PortError>>>>,
    _response: IncomingResponse,
}

impl ObjectBody {
    fn new(response: IncomingResponse) -> Self {
        let stream = response
            .take_body_stream()
            .map(|piece| piece.map_err(|e| port_error("get", e.to_debug_string())));
        Self {
            stream: Box::pin(stream),
            _response: response,
        }
    }

    /// Up to `limit` bytes of the body (for error messages).
    fn read_to_end(&mut self, limit: usize) -> Vec<u8> {
        let mut text = Vec::new();
        while text.len() < limit {
            match self.next() {
                Some(Ok(piece)) => text.extend_from_slice(&piece),
                _ => break,
            }
        }
        text.truncate(limit);
        text
    }
}

impl Iterator for ObjectBody {
    type Item = Result<Vec<u8>, PortError>;

    fn next(&mut self) -> Option<Self::Item> {
        spin_sdk::http::run(self.stream.next())
    }
}

/// Short-lived presigned GET links to objects, for clients to fetch result
/// files from the bucket directly (`s3_links = redirect`).
pub struct PresignedLinks {
    bucket: Bucket,
    credentials: Credentials,
    ttl: Duration,
}

impl PresignedLinks {
    /// Links into `config`'s bucket through `public_endpoint` (the address
    /// clients reach the store at; the configured endpoint when `None`),
    /// valid for `ttl`.
    ///
    /// # Errors
    /// [`PortError`] when the endpoint or bucket name cannot form a bucket URL.
    pub fn new(
        config: &S3Config,
        public_endpoint: Option<&str>,
        ttl: Duration,
    ) -> Result<Self, PortError> {
        Ok(Self {
            bucket: bucket(
                public_endpoint.unwrap_or(&config.endpoint),
                &config.bucket,
                &config.region,
                config.path_style,
            )?,
            credentials: credentials(config),
            ttl,
        })
    }

    /// How long a link stays valid.
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A presigned GET URL of `key`.
    pub fn url(&self, key: &BlobKey) -> url::Url {
        self.bucket
            .get_object(Some(&self.credentials), key.as_str())
            .sign(self.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_style_puts_the_bucket_in_the_path() {
        let bucket = bucket("http://127.0.0.1:9000", "images", "us-east-1", true).expect("bucket");
        let url = bucket.object_url("derived/a/b.jpg");
        assert_eq!(url.as_str(), "http://127.0.0.1:9000/images/derived/a/b.jpg");
    }

    #[test]
    fn virtual_hosted_style_calls_exactly_the_configured_bucket_host() {
        let endpoint = "https://my-images.s3.eu-west-1.amazonaws.com";
        let bucket = bucket(endpoint, "my-images", "eu-west-1", false).expect("bucket");
        let url = bucket.object_url("original/x");
        assert_eq!(
            url.as_str(),
            "https://my-images.s3.eu-west-1.amazonaws.com/original/x"
        );
    }

    #[test]
    fn virtual_hosted_style_refuses_an_endpoint_that_is_not_the_bucket_host() {
        let err = bucket(
            "https://s3.eu-west-1.amazonaws.com",
            "my-images",
            "eu-west-1",
            false,
        )
        .expect_err("refused");
        assert!(err.to_string().contains("bucket's own host"), "{err}");
    }

    #[test]
    fn a_presigned_link_is_signed_for_the_public_endpoint_and_its_lifetime() {
        let config = S3Config {
            endpoint: "http://minio.internal:9000".to_owned(),
            bucket: "images".to_owned(),
            region: "us-east-1".to_owned(),
            path_style: true,
            access_key_id: "AKID".to_owned(),
            secret_access_key: "secret".to_owned(),
        };
        let links = PresignedLinks::new(
            &config,
            Some("https://files.example.com"),
            Duration::from_secs(120),
        )
        .expect("links");
        let id = darkroom_core::JobId::new_random();
        let key = BlobKey::original(id);
        let url = links.url(&key);
        assert!(
            url.as_str()
                .starts_with(&format!("https://files.example.com/images/original/{id}?")),
            "{url}"
        );
        let query: std::collections::HashMap<_, _> = url.query_pairs().collect();
        assert_eq!(query.get("X-Amz-Expires").map(|v| v.as_ref()), Some("120"));
        assert!(query.contains_key("X-Amz-Signature"), "{url}");
    }
}
