//! `TestApp`: one running Darkroom with fresh state, driven through typed
//! helpers so that tests never build URLs or parse responses by hand.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use darkroom_tests::host::{HostConfig, RunningApp};
use reqwest::blocking::{Client, Response, multipart};
use serde_json::Value;

/// Longest wait for a job to finish before the test fails.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// The app's root folder (where `spin.toml` is).
pub fn app_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Redis server the tests use.
pub fn redis_url() -> String {
    std::env::var("DARKROOM_TEST_REDIS_URL")
        .expect("DARKROOM_TEST_REDIS_URL is not set: run the suite with scripts/test.sh, which starts a Redis server")
}

enum Runtime {
    Host(RunningApp),
    Spin {
        child: Child,
        state_dir: tempfile::TempDir,
    },
}

/// A running app with its own key-value data and queue channel.
pub struct TestApp {
    runtime: Runtime,
    base: String,
    client: Client,
    /// The Redis channel this app's queue uses.
    pub channel: String,
}

impl TestApp {
    /// An app with the manifest's defaults.
    pub fn spawn() -> Self {
        Self::spawn_with(&[])
    }

    /// An app with some variables overridden.
    pub fn spawn_with(variables: &[(&str, &str)]) -> Self {
        Self::spawn_against(&redis_url(), variables)
    }

    /// An app using the Redis server at `redis_url`.
    pub fn spawn_against(redis_url: &str, variables: &[(&str, &str)]) -> Self {
        let channel = format!("darkroom-test-{}", uuid::Uuid::new_v4());
        let mut vars: BTreeMap<String, String> = BTreeMap::from([
            ("redis_url".to_owned(), redis_url.to_owned()),
            ("queue_channel".to_owned(), channel.clone()),
        ]);
        for (k, v) in variables {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let (runtime, base) = match std::env::var("DARKROOM_TEST_RUNTIME").as_deref() {
            Ok("spin") => spawn_spin(&vars),
            Ok("host") | Err(_) => {
                let mut config = HostConfig::new(app_root().join("spin.toml"));
                config.variables = vars;
                let app = RunningApp::start(&config).expect("the test host starts the app");
                let base = format!("http://{}", app.addr());
                (Runtime::Host(app), base)
            }
            Ok(other) => panic!("DARKROOM_TEST_RUNTIME={other:?}: expected `host` or `spin`"),
        };
        let app = Self {
            runtime,
            base,
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            channel,
        };
        app.wait_for_subscriber(redis_url);
        app
    }

    /// Waits until a processor listens on the app's channel: a job published
    /// before that would be lost (Redis pub/sub is at-most-once).
    fn wait_for_subscriber(&self, redis_url: &str) {
        let client = redis::Client::open(redis_url).expect("redis url");
        let mut conn = client.get_connection().expect("connect to the test Redis");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&self.channel)
                .query(&mut conn)
                .expect("PUBSUB NUMSUB");
            if counts.first().is_some_and(|(_, n)| *n > 0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no processor subscribed to {} within 30 s",
                self.channel
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/images` as a browser form or `curl -F file=@...` sends it.
    pub fn upload_multipart(&self, bytes: Vec<u8>, filename: &str, mime: &str) -> Response {
        let part = multipart::Part::bytes(bytes)
            .file_name(filename.to_owned())
            .mime_str(mime)
            .expect("mime");
        let form = multipart::Form::new()
            .text("title", "holiday")
            .part("file", part);
        self.client
            .post(self.url("/api/images"))
            .multipart(form)
            .send()
            .expect("upload request")
    }

    /// `POST /api/images` with the image as the whole body.
    pub fn upload_raw(&self, bytes: Vec<u8>, content_type: Option<&str>) -> Response {
        let mut req = self.client.post(self.url("/api/images")).body(bytes);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send().expect("upload request")
    }

    /// Uploads `bytes` as multipart, expects `202 Accepted`, and returns the job id.
    pub fn upload(&self, bytes: Vec<u8>) -> String {
        let response = self.upload_multipart(bytes, "photo.bin", "application/octet-stream");
        let status = response.status().as_u16();
        let body: Value = response.json().expect("202 body is JSON");
        assert_eq!(status, 202, "upload not accepted: {body}");
        body["id"].as_str().expect("id").to_owned()
    }

    /// `GET` the status resource of `id`.
    pub fn status(&self, id: &str) -> Response {
        self.get(&format!("/api/images/{id}/status"))
    }

    /// `GET` an app path or link.
    pub fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().expect("GET request")
    }

    /// A request with any method, for method and routing tests.
    pub fn request(&self, method: reqwest::Method, path: &str) -> Response {
        self.client
            .request(method, self.url(path))
            .send()
            .expect("request")
    }

    /// Polls the status of `id` until it is `completed` or `failed`.
    pub fn wait_until_finished(&self, id: &str) -> Value {
        let deadline = Instant::now() + FINISH_TIMEOUT;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let response = self.status(id);
            assert_eq!(response.status().as_u16(), 200, "status of {id}");
            last = response.json().expect("status JSON");
            if matches!(last["status"].as_str(), Some("completed" | "failed")) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("job {id} did not finish within {FINISH_TIMEOUT:?}; last status: {last}");
    }

    /// The app's log so far: guest stdout/stderr and host notes.
    pub fn logs(&self) -> String {
        match &self.runtime {
            Runtime::Host(app) => app.logs(),
            Runtime::Spin { state_dir, .. } => spin_logs(state_dir.path()),
        }
    }

    /// The keys in the app's `default` store, when the runtime lets a test see them.
    pub fn kv_keys(&self) -> Option<Vec<String>> {
        match &self.runtime {
            Runtime::Host(app) => Some(app.kv().snapshot("default").into_keys().collect()),
            Runtime::Spin { .. } => None,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- app log ({}) ----\n{}---- end of app log ----",
                self.base,
                self.logs()
            );
        }
        if let Runtime::Spin { child, .. } = &mut self.runtime {
            if let Err(e) = child.kill() {
                eprintln!("stopping spin up: {e}");
            }
            if let Err(e) = child.wait() {
                eprintln!("waiting for spin up: {e}");
            }
        }
    }
}

/// A header's value as text.
pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Asserts that `response` is an RFC 9457 problem with `status`, and returns its body.
pub fn assert_problem(response: Response, status: u16) -> Value {
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/problem+json"),
        "content type of a {status} problem"
    );
    let actual = response.status().as_u16();
    let body: Value = response.json().expect("problem body is JSON");
    assert_eq!(actual, status, "{body}");
    assert_eq!(body["status"], status, "{body}");
    for field in ["type", "title", "detail"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "problem without {field}: {body}"
        );
    }
    body
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `spin up` with a fresh state directory on a free port.
fn spawn_spin(vars: &BTreeMap<String, String>) -> (Runtime, String) {
    let bin = std::env::var("SPIN_BIN").unwrap_or_else(|_| "spin".to_owned());
    let state_dir = tempfile::tempdir().expect("state dir");
    let port = free_port();
    let mut cmd = Command::new(&bin);
    cmd.current_dir(app_root())
        .args(["up", "--from", "spin.toml", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--state-dir")
        .arg(state_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(format!("SPIN_VARIABLE_{}", k.to_ascii_uppercase()), v);
    }
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("DARKROOM_TEST_RUNTIME=spin but `{bin}` cannot be started ({e}); install Spin or set SPIN_BIN")
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "spin up did not listen on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (
        Runtime::Spin { child, state_dir },
        format!("http://127.0.0.1:{port}"),
    )
}

fn spin_logs(state_dir: &std::path::Path) -> String {
    let mut out = String::new();
    if let Ok(entries) = std::fs::read_dir(state_dir.join("logs")) {
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            out.push_str(&format!("== {}\n{text}", entry.path().display()));
        }
    }
    out
}

/// A `redis-server` owned by one test, on a free port, stopped on drop.
pub struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    /// Starts `redis-server` (from `PATH`) and waits until it answers.
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test.sh installs it)");
        let redis = Self { child, port };
        let client = redis::Client::open(redis.url()).expect("url");
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.get_connection().is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("stopping redis-server: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("waiting for redis-server: {e}");
        }
    }
}
