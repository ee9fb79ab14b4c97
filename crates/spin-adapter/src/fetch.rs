//! The core's outbound-HTTP ports on WASI HTTP: [`SourceHttp`] for the
//! fetcher's GETs and [`Outbound`] for the notifier's POSTs.
//!
//! Written against `wasi:http/outgoing-handler` directly rather than
//! `spin_sdk::http::send`, because the SDK passes no request options and
//! offers no timer: here the whole GET (connect, first byte, every later
//! byte) races one monotonic-clock deadline with `wasi:io/poll`, the body is
//! read as it arrives and abandoned as soon as it passes the limit, and no
//! redirect is followed (the core re-checks every hop). The runtime still
//! applies `allowed_outbound_hosts` and, with `block_networks`, refuses
//! non-global addresses after DNS resolution.

use std::time::Duration;

use darkroom_core::ingest::{Hop, HopError, SourceHttp};
use darkroom_core::notify::{Answer, Outbound};
use wasi::clocks::monotonic_clock;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use wasi::io::poll;
use wasi::io::streams::StreamError;

/// How much of a body one read asks for.
const READ_BYTES: u64 = 64 * 1024;

/// Outbound HTTP through the component's `wasi:http` imports.
pub struct WasiSourceHttp;

/// How much of a request body one write hands over (WASI's guaranteed
/// minimum for `blocking-write-and-flush`).
const WRITE_BYTES: usize = 4096;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn unreachable(what: impl std::fmt::Display) -> HopError {
    HopError::Unreachable(what.to_string())
}

/// A `wasi:http` error as the core's: the runtime's refusals are final.
fn hop_error(e: &ErrorCode) -> HopError {
    match e {
        ErrorCode::DestinationIpProhibited | ErrorCode::HttpRequestDenied => {
            HopError::Forbidden(explain(e))
        }
        _ => HopError::Unreachable(explain(e)),
    }
}

/// What a `wasi:http` error means, in words for the status document.
fn explain(e: &ErrorCode) -> String {
    match e {
        ErrorCode::DnsTimeout | ErrorCode::DnsError(_) => {
            "the host name could not be resolved".into()
        }
        ErrorCode::DestinationNotFound | ErrorCode::DestinationUnavailable => {
            "the host is unavailable".into()
        }
        ErrorCode::DestinationIpProhibited | ErrorCode::DestinationIpUnroutable => {
            "the runtime refused the address (block_networks)".into()
        }
        ErrorCode::ConnectionRefused => "the connection was refused".into(),
        ErrorCode::ConnectionTerminated => "the connection was closed".into(),
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout => "the connection timed out".into(),
        ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => "the TLS handshake failed".into(),
        ErrorCode::HttpRequestDenied => {
            "the runtime does not allow this host (allowed_outbound_hosts, ingest_outbound)".into()
        }
        other => format!("{other:?}"),
    }
}

impl SourceHttp for WasiSourceHttp {
    fn get(&self, url: &url::Url, max_bytes: u64, timeout: Duration) -> Result<Hop, HopError> {
        let deadline = monotonic_clock::now().saturating_add(nanos(timeout));
        let timer = monotonic_clock::subscribe_instant(deadline);
        let headers = [
            ("user-agent", b"darkroom-fetcher".to_vec()),
            ("accept", b"image/*".to_vec()),
        ];
        let response = send(&Method::Get, url, &headers, &[], timeout, &timer)?;
        let status = response.status();
        if (300..400).contains(&status) {
            let location = header(&response, "location");
            return Ok(Hop::Redirect { status, location });
        }
        if !(200..300).contains(&status) {
            return Ok(Hop::Body {
                status,
                bytes: Vec::new(),
            });
        }
        let declared =
            header(&response, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_bytes) {
            return Ok(Hop::TooLarge);
        }
        let body = response
            .consume()
            .map_err(|()| unreachable("the response body cannot be read"))?;
        read_body(&body, max_bytes, declared, &timer, timeout).map(|read| match read {
            Some(bytes) => Hop::Body { status, bytes },
            None => Hop::TooLarge,
        })
    }
}

impl Outbound for WasiSourceHttp {
    fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Answer, HopError> {
        let url = url::Url::parse(url).map_err(|e| unreachable(format!("{url}: {e}")))?;
        let deadline = monotonic_clock::now().saturating_add(nanos(timeout));
        let timer = monotonic_clock::subscribe_instant(deadline);
        // A known length rather than chunked encoding: every receiver reads it.
        let mut fields: Vec<(&str, Vec<u8>)> = vec![
            ("user-agent", b"darkroom-notifier".to_vec()),
            ("content-length", body.len().to_string().into_bytes()),
        ];
        fields.extend(headers.iter().map(|(k, v)| (*k, v.as_bytes().to_vec())));
        let response = send(&Method::Post, &url, &fields, body, timeout, &timer)?;
        let retry_after = header(&response, "retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Ok(Answer {
            status: response.status(),
            retry_after,
        })
    }
}

fn send(
    method: &Method,
    url: &url::Url,
    headers: &[(&str, Vec<u8>)],
    body: &[u8],
    timeout: Duration,
    timer: &poll::Pollable,
) -> Result<IncomingResponse, HopError> {
    let list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let headers =
        Fields::from_list(&list).map_err(|e| unreachable(format!("request headers: {e:?}")))?;
    let request = OutgoingRequest::new(headers);
    let scheme = if url.scheme() == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return Err(unreachable("the URL has no host")),
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let set = [
        request.set_method(method),
        request.set_scheme(Some(&scheme)),
        request.set_authority(Some(&authority)),
        request.set_path_with_query(Some(&path)),
    ];
    if set.iter().any(Result::is_err) {
        return Err(unreachable(format!("{url} cannot be requested")));
    }
    let options = RequestOptions::new();
    let limits = [
        options.set_connect_timeout(Some(nanos(timeout))),
        options.set_first_byte_timeout(Some(nanos(timeout))),
        options.set_between_bytes_timeout(Some(nanos(timeout))),
    ];
    if limits.iter().any(Result::is_err) {
        // The deadline below holds either way.
        eprintln!(
            "darkroom: the runtime takes no request timeouts; the fetch's own deadline applies"
        );
    }
    let outgoing = request
        .body()
        .map_err(|()| unreachable("the request body cannot be opened"))?;
    let pending = outgoing_handler::handle(request, Some(options)).map_err(|e| hop_error(&e))?;
    if !body.is_empty() {
        let stream = outgoing
            .write()
            .map_err(|()| unreachable("the request body cannot be written"))?;
        for chunk in body.chunks(WRITE_BYTES) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| unreachable(format!("the request body broke off: {e:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| unreachable(explain(&e)))?;
    let answer = pending.subscribe();
    loop {
        if let Some(result) = pending.get() {
            return match result {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) => Err(hop_error(&e)),
                Err(()) => Err(unreachable("the response was already taken")),
            };
        }
        if timer.ready() {
            return Err(HopError::Timeout(timeout));
        }
        poll::poll(&[&answer, timer]);
    }
}

fn header(response: &IncomingResponse, name: &str) -> Option<String> {
    response
        .headers()
        .get(&name.to_owned())
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

/// The body, or `None` once it passes `max_bytes`.
fn read_body(
    body: &IncomingBody,
    max_bytes: u64,
    declared: Option<u64>,
    timer: &poll::Pollable,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, HopError> {
    let stream = body
        .stream()
        .map_err(|()| unreachable("the response body cannot be read"))?;
    let ready = stream.subscribe();
    let mut bytes =
        Vec::with_capacity(declared.map_or(0, |l| usize::try_from(l.min(max_bytes)).unwrap_or(0)));
    loop {
        match stream.read(READ_BYTES) {
            Ok(chunk) if chunk.is_empty() => {
                if timer.ready() {
                    return Err(HopError::Timeout(timeout));
                }
                poll::poll(&[&ready, timer]);
            }
            Ok(chunk) => {
                if (bytes.len() + chunk.len()) as u64 > max_bytes {
                    return Ok(None);
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(Some(bytes)),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(unreachable(format!(
                    "the body broke off: {}",
                    e.to_debug_string()
                )));
            }
        }
    }
}
