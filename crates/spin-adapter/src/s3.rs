//! The core's [`BlobStore`] on S3-compatible object storage (AWS S3,
//! Cloudflare R2, MinIO, Garage, Ceph) over Spin's outbound HTTP. Requests
//! are signed with AWS Signature V4 by `rusty-s3`, which signs without doing
//! I/O (query-string signatures valid for a few minutes), and sent with
//! `spin_sdk::http::send`. Objects larger than [`MULTIPART_THRESHOLD`] go up
//! as a multipart upload.

use std::time::Duration;

use darkroom_core::keys::BlobKey;
use darkroom_core::ports::{Blob, BlobMeta, BlobStore, PortError};
use rusty_s3::actions::{CompleteMultipartUpload, CreateMultipartUpload};
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use spin_sdk::http::{Method, Request, Response};

/// Above this size an object is sent in parts.
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;
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

fn port_error(what: &str, e: impl std::fmt::Display) -> PortError {
    PortError::new(format!("s3 {what}: {e}"))
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .header(name)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

impl S3BlobStore {
    /// A store for `config`.
    ///
    /// # Errors
    /// [`PortError`] when the endpoint or bucket name cannot form a bucket URL.
    pub fn new(config: &S3Config) -> Result<Self, PortError> {
        let endpoint = url::Url::parse(&config.endpoint).map_err(|e| port_error("endpoint", e))?;
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| port_error("bucket", e))?;
        Ok(Self {
            bucket,
            credentials: Credentials::new(
                config.access_key_id.clone(),
                config.secret_access_key.clone(),
            ),
        })
    }

    fn send(
        &self,
        what: &str,
        method: Method,
        url: &url::Url,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<Response, PortError> {
        let mut builder = Request::builder();
        builder.method(method.clone()).uri(url.as_str());
        if let Some(ct) = content_type {
            builder.header("content-type", ct);
        }
        if matches!(method, Method::Put | Method::Post) {
            // Without it the body goes chunked, which S3 refuses (411).
            builder.header("content-length", body.len().to_string());
        }
        let request = builder.body(body).build();
        spin_sdk::http::run(spin_sdk::http::send::<_, Response>(request))
            .map_err(|e| port_error(what, e))
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

    fn put_multipart(
        &self,
        key: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Option<String>, PortError> {
        let mut create = CreateMultipartUpload::new(&self.bucket, Some(&self.credentials), key);
        create
            .headers_mut()
            .insert("content-type", content_type.to_owned());
        let url = create.sign(SIGNATURE_TTL);
        let response = self.send(
            "create multipart upload",
            Method::Post,
            &url,
            Vec::new(),
            Some(content_type),
        )?;
        Self::expect_success("create multipart upload", &response)?;
        let created =
            CreateMultipartUpload::parse_response(&String::from_utf8_lossy(response.body()))
                .map_err(|e| port_error("create multipart upload", e))?;
        let upload_id = created.upload_id();
        let mut etags = Vec::new();
        for (index, part) in bytes.chunks(PART_BYTES).enumerate() {
            let number = u16::try_from(index + 1)
                .map_err(|_| port_error("upload part", "too many parts"))?;
            let url = self
                .bucket
                .upload_part(Some(&self.credentials), key, number, upload_id)
                .sign(SIGNATURE_TTL);
            let response = self.send("upload part", Method::Put, &url, part.to_vec(), None)?;
            Self::expect_success("upload part", &response)?;
            etags.push(
                header(&response, "etag").ok_or_else(|| port_error("upload part", "no ETag"))?,
            );
        }
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
            body.into_bytes(),
            None,
        )?;
        Self::expect_success("complete multipart upload", &response)?;
        Ok(header(&response, "etag"))
    }
}

impl BlobStore for S3BlobStore {
    fn put(&self, key: &BlobKey, content_type: &str, bytes: &[u8]) -> Result<BlobMeta, PortError> {
        let etag = if bytes.len() > MULTIPART_THRESHOLD {
            self.put_multipart(key.as_str(), content_type, bytes)?
        } else {
            let url = self
                .bucket
                .put_object(Some(&self.credentials), key.as_str())
                .sign(SIGNATURE_TTL);
            let response =
                self.send("put", Method::Put, &url, bytes.to_vec(), Some(content_type))?;
            Self::expect_success("put", &response)?;
            header(&response, "etag")
        };
        Ok(BlobMeta {
            size: bytes.len() as u64,
            content_type: content_type.to_owned(),
            etag: etag.unwrap_or_else(|| darkroom_core::blob::etag(bytes)),
        })
    }

    fn get(&self, key: &BlobKey) -> Result<Option<Blob>, PortError> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key.as_str())
            .sign(SIGNATURE_TTL);
        let response = self.send("get", Method::Get, &url, Vec::new(), None)?;
        if *response.status() == 404 {
            return Ok(None);
        }
        Self::expect_success("get", &response)?;
        let content_type = header(&response, "content-type")
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let etag = header(&response, "etag");
        let bytes = response.into_body();
        Ok(Some(Blob {
            meta: BlobMeta {
                size: bytes.len() as u64,
                content_type,
                etag: etag.unwrap_or_else(|| darkroom_core::blob::etag(&bytes)),
            },
            bytes,
        }))
    }

    fn delete(&self, key: &BlobKey) -> Result<(), PortError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key.as_str())
            .sign(SIGNATURE_TTL);
        let response = self.send("delete", Method::Delete, &url, Vec::new(), None)?;
        if *response.status() == 404 {
            return Ok(());
        }
        Self::expect_success("delete", &response)
    }
}
