//! HTTP routing as Spin does it (`spin-http` `routes.rs`): the same
//! `routefinder` crate, `/...` wildcard tails turned into `/*`, `:param`
//! segments, private routes left out, and the request headers Spin's
//! `compute_default_headers` sets (`spin-full-url`, `spin-path-info`,
//! `spin-matched-route`, `spin-base-path`, `spin-raw-component-route`,
//! `spin-component-route`, `spin-client-addr`, `spin-path-match-<name>`).

use std::net::SocketAddr;

use anyhow::anyhow;

use crate::manifest::{HttpTrigger, RouteDef};

#[derive(Clone, Debug)]
struct Handler {
    component: String,
    raw_route: String,
}

/// The app's public routes.
pub struct Router {
    inner: routefinder::Router<Handler>,
}

/// The outcome of routing one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// The component that serves the path.
    pub component: String,
    /// Headers to add to the request, Spin's names and values.
    pub headers: Vec<(String, String)>,
}

impl Router {
    /// Builds the router from the manifest's HTTP triggers. As in Spin, a
    /// later duplicate route replaces an earlier one.
    ///
    /// # Errors
    /// When a route does not parse.
    pub fn build(triggers: &[HttpTrigger]) -> anyhow::Result<Self> {
        let mut inner = routefinder::Router::new();
        let mut seen = std::collections::HashMap::new();
        for t in triggers {
            if let RouteDef::Path(route) = &t.route {
                seen.insert(route.clone(), t.component.clone());
            }
        }
        for t in triggers {
            let RouteDef::Path(raw_route) = &t.route else {
                continue;
            };
            if seen.get(raw_route) != Some(&t.component) {
                continue;
            }
            let based = absolutize(raw_route.trim_end_matches('/'));
            let spec = match based.strip_suffix("/...") {
                Some(prefix) => format!("{prefix}/*"),
                None => based.clone(),
            };
            let handler = Handler {
                component: t.component.clone(),
                raw_route: raw_route.clone(),
            };
            inner
                .add(spec.as_str(), handler)
                .map_err(|e| anyhow!("route {raw_route:?}: {e}"))?;
        }
        Ok(Self { inner })
    }

    /// Routes `path`; `None` means Spin answers 404.
    pub fn route(&self, path: &str, full_url: &str, client: SocketAddr) -> Option<RouteMatch> {
        let m = self.inner.best_match(path)?;
        let handler = m.handler();
        let captures = m.captures();
        let path_info = match (captures.wildcard(), path.ends_with('/')) {
            (None, _) => String::new(),
            (Some(""), false) => String::new(),
            (Some(""), true) => "/".to_owned(),
            (Some(w), false) => format!("/{w}"),
            (Some(w), true) => format!("/{w}/"),
        };
        let mut headers = vec![
            ("spin-path-info".to_owned(), path_info),
            ("spin-full-url".to_owned(), full_url.to_owned()),
            ("spin-matched-route".to_owned(), handler.raw_route.clone()),
            ("spin-base-path".to_owned(), "/".to_owned()),
            (
                "spin-raw-component-route".to_owned(),
                handler.raw_route.clone(),
            ),
            (
                "spin-component-route".to_owned(),
                handler
                    .raw_route
                    .strip_suffix("/...")
                    .unwrap_or(&handler.raw_route)
                    .to_owned(),
            ),
            ("spin-client-addr".to_owned(), client.to_string()),
        ];
        for (name, value) in captures.iter() {
            let name = format!(
                "spin-path-match-{}",
                name.to_ascii_lowercase().replace('_', "-")
            );
            headers.push((name, value.to_owned()));
        }
        Some(RouteMatch {
            component: handler.component.clone(),
            headers,
        })
    }

    /// The headers Spin sets for a service-chained request to `component`:
    /// matched as if by the wildcard route `/...`.
    pub fn synthetic(
        component: &str,
        path_and_query: &str,
        full_url: &str,
        client: SocketAddr,
    ) -> RouteMatch {
        let path = path_and_query.split('?').next().unwrap_or_default();
        RouteMatch {
            component: component.to_owned(),
            headers: vec![
                ("spin-path-info".to_owned(), path.to_owned()),
                ("spin-full-url".to_owned(), full_url.to_owned()),
                ("spin-matched-route".to_owned(), "/...".to_owned()),
                ("spin-base-path".to_owned(), "/".to_owned()),
                ("spin-raw-component-route".to_owned(), "/...".to_owned()),
                ("spin-component-route".to_owned(), String::new()),
                ("spin-client-addr".to_owned(), client.to_string()),
            ],
        }
    }
}

fn absolutize(route: &str) -> String {
    if route.starts_with('/') {
        route.to_owned()
    } else {
        format!("/{route}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let triggers: Vec<HttpTrigger> = routes
            .iter()
            .map(|(route, component)| HttpTrigger {
                route: RouteDef::Path((*route).to_owned()),
                component: (*component).to_owned(),
            })
            .collect();
        Router::build(&triggers).expect("routes")
    }

    fn client() -> SocketAddr {
        "127.0.0.1:5000".parse().expect("addr")
    }

    fn header<'a>(m: &'a RouteMatch, name: &str) -> &'a str {
        m.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .expect(name)
    }

    #[test]
    fn exact_routes_beat_parameters_and_wildcards() {
        let r = router(&[
            ("/api/...", "wild"),
            ("/api/images", "exact"),
            ("/api/:thing", "param"),
        ]);
        assert_eq!(
            r.route("/api/images", "", client())
                .expect("match")
                .component,
            "exact"
        );
        assert_eq!(
            r.route("/api/other", "", client())
                .expect("match")
                .component,
            "param"
        );
        assert_eq!(
            r.route("/api/a/b", "", client()).expect("match").component,
            "wild"
        );
        assert_eq!(r.route("/elsewhere", "", client()), None);
    }

    #[test]
    fn parameters_become_spin_path_match_headers() {
        let r = router(&[("/api/images/:id/files/:name", "files")]);
        let m = r
            .route("/api/images/abc/files/thumbnail", "http://h/x", client())
            .expect("match");
        assert_eq!(header(&m, "spin-path-match-id"), "abc");
        assert_eq!(header(&m, "spin-path-match-name"), "thumbnail");
        assert_eq!(
            header(&m, "spin-matched-route"),
            "/api/images/:id/files/:name"
        );
        assert_eq!(header(&m, "spin-full-url"), "http://h/x");
        assert_eq!(header(&m, "spin-client-addr"), "127.0.0.1:5000");
    }

    #[test]
    fn wildcard_tails_become_path_info_as_in_spin() {
        let r = router(&[("/foo/...", "foo")]);
        let info = |path| {
            header(
                &r.route(path, "", client()).expect("match"),
                "spin-path-info",
            )
            .to_owned()
        };
        assert_eq!(info("/foo"), "");
        assert_eq!(info("/foo/"), "/");
        assert_eq!(info("/foo/bar"), "/bar");
        assert_eq!(info("/foo/bar/"), "/bar/");
        let m = r.route("/foo/bar", "", client()).expect("match");
        assert_eq!(header(&m, "spin-component-route"), "/foo");
        assert_eq!(header(&m, "spin-raw-component-route"), "/foo/...");
    }

    #[test]
    fn private_routes_are_not_routable() {
        let triggers = vec![HttpTrigger {
            route: RouteDef::Private { private: true },
            component: "sweep".into(),
        }];
        let r = Router::build(&triggers).expect("routes");
        assert_eq!(r.route("/", "", client()), None);
    }
}
