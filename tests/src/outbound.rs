//! `allowed_outbound_hosts`: Spin's deny-by-default egress rules, applied to
//! outbound HTTP and Redis. Patterns are `scheme://host[:port]` where scheme,
//! host and port may be `*`, a host may be `*.suffix`, and a missing port
//! means the scheme's default port.

use anyhow::{Context as _, bail};

/// One allowed-host pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: String,
    host: String,
    port: Option<String>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "redis" => Some(6379),
        "rediss" => Some(6380),
        _ => None,
    }
}

impl AllowedHost {
    /// Parses a rendered pattern.
    ///
    /// # Errors
    /// When the pattern has no scheme or carries a path.
    pub fn parse(pattern: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = pattern
            .split_once("://")
            .with_context(|| format!("allowed_outbound_hosts entry {pattern:?} has no scheme"))?;
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            bail!("allowed_outbound_hosts entry {pattern:?} must not have a path");
        }
        // Credentials in a Redis URL are not part of the host.
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                (host, Some(port.to_owned()))
            }
            _ => (rest, None),
        };
        Ok(Self {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether this pattern allows `scheme://host:port`.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme_ok = self.scheme == "*" || self.scheme == scheme;
        let host = host.to_ascii_lowercase();
        let host_ok = self.host == "*"
            || self.host == host
            || self
                .host
                .strip_prefix("*.")
                .is_some_and(|suffix| host.ends_with(&format!(".{suffix}")));
        let port = port.or_else(|| default_port(scheme));
        let port_ok = match (&self.port, port) {
            (Some(p), _) if p == "*" => true,
            (Some(p), Some(port)) => p.parse::<u16>().is_ok_and(|p| p == port),
            (None, Some(port)) => default_port(scheme) == Some(port),
            (_, None) => false,
        };
        scheme_ok && host_ok && port_ok
    }
}

/// A component's allowed hosts.
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts(Vec<AllowedHost>);

impl AllowedHosts {
    /// From rendered patterns.
    ///
    /// # Errors
    /// When a pattern does not parse.
    pub fn parse<'a>(patterns: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Self> {
        patterns
            .into_iter()
            .map(AllowedHost::parse)
            .collect::<anyhow::Result<_>>()
            .map(Self)
    }

    /// Whether any pattern allows the URL.
    pub fn allows_url(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.0
            .iter()
            .any(|h| h.allows(url.scheme(), host, url.port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[&str], url: &str) -> bool {
        let hosts = AllowedHosts::parse(patterns.iter().copied()).expect("patterns");
        hosts.allows_url(&url::Url::parse(url).expect("url"))
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!allows(&[], "https://example.com/"));
    }

    #[test]
    fn exact_hosts_need_the_same_scheme_and_port() {
        assert!(allows(
            &["redis://127.0.0.1:6379"],
            "redis://127.0.0.1:6379"
        ));
        assert!(allows(&["redis://127.0.0.1:6379"], "redis://127.0.0.1"));
        assert!(!allows(
            &["redis://127.0.0.1:6379"],
            "redis://127.0.0.1:6380"
        ));
        assert!(!allows(
            &["redis://127.0.0.1:6379"],
            "http://127.0.0.1:6379"
        ));
        assert!(allows(&["https://example.com"], "https://example.com/x"));
        assert!(!allows(
            &["https://example.com"],
            "https://example.com:8443/x"
        ));
    }

    #[test]
    fn wildcards_cover_schemes_subdomains_and_ports() {
        assert!(allows(&["*://*:*"], "http://anything:1234/"));
        assert!(allows(&["https://*.example.com"], "https://a.example.com/"));
        assert!(!allows(
            &["https://*.example.com"],
            "https://example.com.evil/"
        ));
        assert!(allows(&["http://localhost:*"], "http://localhost:9000/"));
        assert!(allows(
            &["http://*.spin.internal"],
            "http://processor.spin.internal/x"
        ));
    }

    #[test]
    fn credentials_in_redis_urls_are_not_part_of_the_host() {
        assert!(allows(
            &["redis://user:pw@cache:6379"],
            "redis://cache:6379"
        ));
    }
}
