//! `GET /api/images/:id/files/:name`: a job's original or one of its
//! derivatives, with its content type, length, ETag and caching headers.
//! The bytes are streamed from the blob store as they are read; with
//! `blob_store = s3` and `s3_links = redirect` the answer is instead a `307`
//! to a short-lived presigned URL of the object.

#![expect(
    unsafe_code,
    reason = "spin-sdk's export macro generates the unsafe component export"
)]

use darkroom_core::JobId;
use darkroom_core::ports::{BlobReader, BlobStore};
use darkroom_core::service::{self, FileName, Ports};
use darkroom_spin::access::{self, Access};
use darkroom_spin::clock::SystemClock;
use darkroom_spin::config::{self, BlobStoreConfig, S3Links};
use darkroom_spin::cors::Cors;
use darkroom_spin::problem::ApiError;
use darkroom_spin::routes::header;
use darkroom_spin::s3::PresignedLinks;
use darkroom_spin::store::SpinKv;
use darkroom_spin::{outparam, routes, views};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
fn serve_file(req: IncomingRequest, out: ResponseOutparam) {
    let cors = Cors::of(&req.headers());
    if req.method() == Method::Options {
        return cors.send(out, cors.preflight("GET, HEAD"));
    }
    let kv = match SpinKv::open_default() {
        Ok(kv) => kv,
        Err(e) => return cors.send(out, ApiError::StorageUnavailable(e).into_response()),
    };
    let blob_config = match config::blob_store() {
        Ok(config) => config,
        Err(e) => return cors.send(out, ApiError::from(e).into_response()),
    };
    let blobs = match darkroom_spin::store::blob_store_for(&kv, blob_config.clone()) {
        Ok(blobs) => blobs,
        Err(e) => return cors.send(out, e.into_response()),
    };
    match serve(&req, &kv, blobs.as_ref(), &blob_config) {
        Ok(Served::Stream(mut response, body)) => {
            cors.apply(&mut response);
            outparam::send(out, response, body);
        }
        Ok(Served::Whole(response)) => cors.send(out, response),
        Err(e) => cors.send(out, e.into_response()),
    }
}

enum Served<'a> {
    /// Headers now, then the blob's pieces.
    Stream(Response, BlobReader<'a>),
    /// A complete answer: a redirect, a `304`, or the headers of a `HEAD`.
    Whole(Response),
}

fn serve<'a>(
    req: &IncomingRequest,
    kv: &'a SpinKv,
    blobs: &'a dyn BlobStore,
    blob_config: &BlobStoreConfig,
) -> Result<Served<'a>, ApiError> {
    let head = match req.method() {
        Method::Get => false,
        Method::Head => true,
        _ => return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
    };
    let headers = req.headers();
    access::require(&headers, Access::Read)?;
    let id = routes::path_param(&headers, "id")
        .and_then(|id| JobId::parse(&id).ok())
        .ok_or(ApiError::NotFound)?;
    let name = routes::path_param(&headers, "name")
        .and_then(|name| FileName::parse(&name))
        .ok_or(ApiError::NotFound)?;
    let retention = config::retention()?;
    let ports = Ports {
        kv,
        blobs,
        clock: &SystemClock,
    };
    if let BlobStoreConfig::S3(s3) = blob_config
        && let S3Links::Redirect {
            public_endpoint,
            ttl,
        } = config::s3_links()?
    {
        let links = PresignedLinks::new(s3, public_endpoint.as_deref(), ttl)
            .map_err(ApiError::StorageUnavailable)?;
        let key = service::locate_file(ports, retention, id, name)?;
        return Ok(Served::Whole(views::redirect(
            links.url(&key).as_str(),
            links.ttl(),
        )));
    }
    let if_none_match = header(&headers, "if-none-match");
    // A HEAD or a revalidation needs only what the file is; storage is
    // asked for the bytes only when they are to be sent.
    if head || if_none_match.is_some() {
        let meta = service::stat_file(ports, retention, id, name)?;
        let response = views::file(&meta, name, if_none_match.as_deref());
        if head || *response.status() != 200 {
            return Ok(Served::Whole(response));
        }
    }
    let reader = service::open_file(ports, retention, id, name)?;
    let response = views::file(&reader.meta, name, None);
    Ok(Served::Stream(response, reader))
}
