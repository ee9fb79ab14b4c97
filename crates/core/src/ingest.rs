//! Ingest by URL: which source URLs may be fetched (checked at `POST` and
//! again on every redirect hop), the outbound-HTTP port the fetcher uses,
//! and how a fetch's answers become an original or a failure with a code.
//!
//! The address rule matches the one Spin applies for
//! `block_networks = ["private"]` (`crates/factor-outbound-networking`,
//! `ip_network`'s `is_global`), so the guest refuses at once, with a clear
//! answer, what the runtime would refuse after DNS resolution anyway. Host
//! *names* that resolve to private addresses are the runtime's business: a
//! Spin guest cannot see DNS answers.

use std::net::IpAddr;
use std::time::Duration;

use thiserror::Error;

use crate::format::InvalidImage;
use crate::job::{Failure, FailureCode};
use crate::ports::Clock;

/// How many redirects a fetch follows.
pub const MAX_REDIRECTS: usize = 3;

/// What a source URL must satisfy (`ingest_*` settings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestRules {
    /// `ingest_allow_http`: plain `http` as well as `https`.
    pub allow_http: bool,
    /// `ingest_allow_private`: IP literals in non-global ranges too (local
    /// development and tests only).
    pub allow_private: bool,
    /// `ingest_allowed_hosts`: when not empty, the only hosts (exact, or
    /// `*.suffix`) a source may be on.
    pub allowed_hosts: Vec<String>,
}

impl IngestRules {
    /// Parses `ingest_allowed_hosts` (comma-separated; blanks ignored).
    pub fn parse_hosts(list: &str) -> Vec<String> {
        list.split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect()
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allowed_hosts.is_empty()
            || self.allowed_hosts.iter().any(|allowed| {
                allowed == host
                    || allowed
                        .strip_prefix("*.")
                        .is_some_and(|suffix| host.ends_with(&format!(".{suffix}")))
            })
    }
}

/// Why a URL may not be fetched.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RefusedUrl {
    /// Not a URL at all.
    #[error("not an absolute URL: {0}")]
    Malformed(String),
    /// Not `https` (or `http` where allowed).
    #[error("the scheme {0:?} is not allowed; use https")]
    Scheme(String),
    /// `user:password@` in the URL.
    #[error("a URL with credentials (user:password@) is not allowed")]
    Userinfo,
    /// No host.
    #[error("the URL has no host")]
    NoHost,
    /// An IP literal in a private, loopback, link-local or other non-global range.
    #[error("the address {0} is not a public one")]
    PrivateAddress(IpAddr),
    /// Not on `ingest_allowed_hosts`.
    #[error("the host {0:?} is not on the allowed list")]
    HostNotAllowed(String),
}

/// Checks `raw` against `rules`; the URL to fetch.
///
/// # Errors
/// [`RefusedUrl`].
pub fn check(raw: &str, rules: &IngestRules) -> Result<url::Url, RefusedUrl> {
    let url = url::Url::parse(raw.trim()).map_err(|e| RefusedUrl::Malformed(e.to_string()))?;
    check_parsed(url, rules)
}

fn check_parsed(url: url::Url, rules: &IngestRules) -> Result<url::Url, RefusedUrl> {
    match url.scheme() {
        "https" => {}
        "http" if rules.allow_http => {}
        other => return Err(RefusedUrl::Scheme(other.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RefusedUrl::Userinfo);
    }
    let host = match url.host() {
        None => return Err(RefusedUrl::NoHost),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = host
        && !rules.allow_private
        && !is_global(ip)
    {
        return Err(RefusedUrl::PrivateAddress(ip));
    }
    let name = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if !rules.host_allowed(&name) {
        return Err(RefusedUrl::HostNotAllowed(name));
    }
    Ok(url)
}

/// Whether `ip` is globally routable, as `block_networks = ["private"]` judges it.
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => ip_network::Ipv4Network::from(v4).is_global(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ip_network::Ipv4Network::from(v4).is_global(),
            None => ip_network::Ipv6Network::from(v6).is_global(),
        },
    }
}

/// The redirect target `location` of a response to `from`, checked again.
///
/// # Errors
/// [`RefusedUrl`].
pub fn next_hop(
    from: &url::Url,
    location: &str,
    rules: &IngestRules,
) -> Result<url::Url, RefusedUrl> {
    let next = from
        .join(location.trim())
        .map_err(|e| RefusedUrl::Malformed(e.to_string()))?;
    check_parsed(next, rules)
}

/// One answer to one GET (the adapter follows no redirects itself).
#[derive(Debug, PartialEq, Eq)]
pub enum Hop {
    /// A 3xx with its `Location` (the body is not read).
    Redirect {
        /// The status.
        status: u16,
        /// The `Location` header, if any.
        location: Option<String>,
    },
    /// Any other status, with the whole body (a non-2xx body is dropped).
    Body {
        /// The status.
        status: u16,
        /// The body; empty for a non-2xx answer.
        bytes: Vec<u8>,
    },
    /// The body grew past the limit and was abandoned.
    TooLarge,
}

/// Why a GET got no answer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HopError {
    /// The time ran out (connecting, waiting for the answer or its body).
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// DNS, connect, TLS, a broken connection.
    #[error("{0}")]
    Unreachable(String),
    /// The runtime refused the destination (`block_networks`,
    /// `allowed_outbound_hosts`): asking again cannot help.
    #[error("{0}")]
    Forbidden(String),
}

/// Outbound HTTP for ingest (Spin's outbound HTTP in `darkroom-spin`).
pub trait SourceHttp {
    /// `GET url`, reading at most `max_bytes` of a 2xx body, all within `timeout`.
    ///
    /// # Errors
    /// [`HopError`].
    fn get(&self, url: &url::Url, max_bytes: u64, timeout: Duration) -> Result<Hop, HopError>;
}

/// Fetches `source`, following at most [`MAX_REDIRECTS`] redirects (each
/// hop checked against `rules`), all within `timeout`; the bytes, not yet
/// judged as an image.
///
/// # Errors
/// A [`Failure`] with a `source_*` code.
pub fn fetch_source(
    http: &dyn SourceHttp,
    clock: &dyn Clock,
    source: &str,
    rules: &IngestRules,
    max_bytes: u64,
    timeout: Duration,
) -> Result<Vec<u8>, Failure> {
    let fail = |code, message: String| Failure { code, message };
    let mut url =
        check(source, rules).map_err(|e| fail(FailureCode::SourceRefused, e.to_string()))?;
    let started = clock.now();
    for _ in 0..=MAX_REDIRECTS {
        let remaining = timeout.saturating_sub(clock.now().since(started));
        if remaining.is_zero() {
            return Err(fail(
                FailureCode::SourceUnreachable,
                format!("{url}: no complete answer within {timeout:?}"),
            ));
        }
        let hop = http.get(&url, max_bytes, remaining).map_err(|e| {
            let code = match e {
                HopError::Forbidden(_) => FailureCode::SourceRefused,
                HopError::Timeout(_) | HopError::Unreachable(_) => FailureCode::SourceUnreachable,
            };
            fail(code, format!("{url}: {e}"))
        })?;
        match hop {
            Hop::Redirect { status, location } => {
                let location = location.ok_or_else(|| {
                    fail(
                        FailureCode::SourceRefused,
                        format!("{url} answered {status} without a Location"),
                    )
                })?;
                url = next_hop(&url, &location, rules).map_err(|e| {
                    fail(
                        FailureCode::SourceRefused,
                        format!("{url} redirected to {location}, which may not be fetched: {e}"),
                    )
                })?;
            }
            Hop::Body { status, bytes } if (200..300).contains(&status) => return Ok(bytes),
            Hop::Body { status, .. } if status >= 500 => {
                return Err(fail(
                    FailureCode::SourceUnreachable,
                    format!("{url} answered {status}"),
                ));
            }
            Hop::Body { status, .. } => {
                return Err(fail(
                    FailureCode::SourceRefused,
                    format!("{url} answered {status}"),
                ));
            }
            Hop::TooLarge => {
                return Err(fail(
                    FailureCode::SourceTooLarge,
                    format!("{url}: the body is larger than {max_bytes} bytes"),
                ));
            }
        }
    }
    Err(fail(
        FailureCode::SourceRefused,
        format!("more than {MAX_REDIRECTS} redirects"),
    ))
}

/// The `source_*` failure for fetched bytes that the upload rules refuse.
pub fn refusal(e: &InvalidImage) -> Failure {
    let code = match e {
        InvalidImage::TooLarge { .. } => FailureCode::SourceTooLarge,
        InvalidImage::TooManyPixels { .. }
        | InvalidImage::TooMuchMemory { .. }
        | InvalidImage::TooManyFrames { .. } => FailureCode::SourceTooManyPixels,
        _ => FailureCode::SourceNotImage,
    };
    Failure {
        code,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::testing::ManualClock;

    fn strict() -> IngestRules {
        IngestRules::default()
    }

    #[test]
    fn only_https_urls_without_credentials_on_public_addresses_pass_by_default() {
        assert!(check("https://images.example.com/a.jpg", &strict()).is_ok());
        assert!(check("https://93.184.216.34/a.jpg", &strict()).is_ok());
        assert_eq!(
            check("http://images.example.com/a.jpg", &strict()),
            Err(RefusedUrl::Scheme("http".into()))
        );
        assert_eq!(
            check("ftp://example.com/a.jpg", &strict()),
            Err(RefusedUrl::Scheme("ftp".into()))
        );
        assert_eq!(
            check("https://user:pw@example.com/a.jpg", &strict()),
            Err(RefusedUrl::Userinfo)
        );
        assert!(matches!(
            check("not a url", &strict()),
            Err(RefusedUrl::Malformed(_))
        ));
    }

    #[test]
    fn ip_literals_in_non_global_ranges_are_refused_unless_private_is_allowed() {
        for url in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest/meta-data",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://0.0.0.0/",
        ] {
            assert!(
                matches!(check(url, &strict()), Err(RefusedUrl::PrivateAddress(_))),
                "{url}"
            );
            let open = IngestRules {
                allow_private: true,
                ..strict()
            };
            assert!(check(url, &open).is_ok(), "{url}");
        }
    }

    #[test]
    fn an_allow_list_admits_exact_hosts_and_subdomains_only() {
        let rules = IngestRules {
            allowed_hosts: IngestRules::parse_hosts(" images.example.com, *.cdn.example.net ,"),
            ..strict()
        };
        assert!(check("https://images.example.com/x", &rules).is_ok());
        assert!(check("https://a.cdn.example.net/x", &rules).is_ok());
        assert!(matches!(
            check("https://cdn.example.net.evil/x", &rules),
            Err(RefusedUrl::HostNotAllowed(_))
        ));
        assert!(matches!(
            check("https://example.com/x", &rules),
            Err(RefusedUrl::HostNotAllowed(_))
        ));
    }

    struct Scripted(RefCell<Vec<Result<Hop, HopError>>>, RefCell<Vec<String>>);

    impl SourceHttp for Scripted {
        fn get(&self, url: &url::Url, _: u64, _: Duration) -> Result<Hop, HopError> {
            self.1.borrow_mut().push(url.to_string());
            self.0.borrow_mut().remove(0)
        }
    }

    fn fetch(answers: Vec<Result<Hop, HopError>>) -> (Result<Vec<u8>, Failure>, Vec<String>) {
        let http = Scripted(RefCell::new(answers), RefCell::new(Vec::new()));
        let clock = ManualClock::at(1_000);
        let result = fetch_source(
            &http,
            &clock,
            "https://a.example.com/x.jpg",
            &strict(),
            100,
            Duration::from_secs(20),
        );
        (result, http.1.into_inner())
    }

    fn redirect(to: &str) -> Result<Hop, HopError> {
        Ok(Hop::Redirect {
            status: 302,
            location: Some(to.into()),
        })
    }

    #[test]
    fn redirects_are_followed_relative_and_absolute_up_to_three() {
        let body = Ok(Hop::Body {
            status: 200,
            bytes: b"img".to_vec(),
        });
        let (result, asked) = fetch(vec![
            redirect("/y.jpg"),
            redirect("https://b.example.com/z.jpg"),
            redirect("w.jpg"),
            body,
        ]);
        assert_eq!(result.expect("fetched"), b"img");
        assert_eq!(
            asked,
            [
                "https://a.example.com/x.jpg",
                "https://a.example.com/y.jpg",
                "https://b.example.com/z.jpg",
                "https://b.example.com/w.jpg"
            ]
        );
        let (result, _) = fetch(vec![
            redirect("/1"),
            redirect("/2"),
            redirect("/3"),
            redirect("/4"),
        ]);
        assert_eq!(
            result.expect_err("too many").code,
            FailureCode::SourceRefused
        );
    }

    #[test]
    fn a_redirect_to_a_private_address_is_refused_without_being_fetched() {
        let (result, asked) = fetch(vec![redirect("https://169.254.169.254/latest/meta-data")]);
        let failure = result.expect_err("refused");
        assert_eq!(failure.code, FailureCode::SourceRefused);
        assert!(
            failure.message.contains("169.254.169.254"),
            "{}",
            failure.message
        );
        assert_eq!(asked.len(), 1);
    }

    #[test]
    fn answers_map_to_source_codes_transient_only_for_the_unreachable() {
        let code = |answer| fetch(vec![answer]).0.expect_err("failed").code;
        assert_eq!(
            code(Err(HopError::Timeout(Duration::from_secs(1)))),
            FailureCode::SourceUnreachable
        );
        assert_eq!(
            code(Err(HopError::Unreachable("dns".into()))),
            FailureCode::SourceUnreachable
        );
        assert_eq!(
            code(Ok(Hop::Body {
                status: 503,
                bytes: Vec::new()
            })),
            FailureCode::SourceUnreachable
        );
        assert_eq!(
            code(Ok(Hop::Body {
                status: 404,
                bytes: Vec::new()
            })),
            FailureCode::SourceRefused
        );
        assert_eq!(code(Ok(Hop::TooLarge)), FailureCode::SourceTooLarge);
        assert_eq!(
            code(Err(HopError::Forbidden("block_networks".into()))),
            FailureCode::SourceRefused
        );
        assert!(FailureCode::SourceUnreachable.is_transient());
        assert!(!FailureCode::SourceRefused.is_transient());
        assert!(!FailureCode::SourceTooLarge.is_transient());
    }
}
