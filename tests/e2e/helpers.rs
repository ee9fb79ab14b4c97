//! `TestApp`: one running Darkroom with fresh state, driven through typed
//! helpers so that tests never build URLs or parse responses by hand.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use darkroom_tests::host::{HostConfig, RunningApp};
use reqwest::blocking::{Client, Response, multipart};
use rusty_s3::S3Action;
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
        state_dir: Arc<tempfile::TempDir>,
    },
}

/// A running app with its own key-value data and queue channel (unless it
/// shares another app's).
pub struct TestApp {
    runtime: Option<Runtime>,
    base: String,
    client: Client,
    redis_url: String,
    /// The Redis channel this app's queue uses.
    pub channel: String,
    /// The app's own bucket in the S3 pass.
    bucket: Option<String>,
}

/// The S3 server of the suite's S3 pass (`DARKROOM_TEST_BLOB_STORE=s3`, set
/// up by scripts/test.sh).
struct S3 {
    endpoint: String,
    access_key: String,
    secret_key: String,
}

impl S3 {
    fn from_env() -> Option<Self> {
        if std::env::var("DARKROOM_TEST_BLOB_STORE").ok()? != "s3" {
            return None;
        }
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set for the S3 pass"))
        };
        Some(Self {
            endpoint: var("DARKROOM_TEST_S3_ENDPOINT"),
            access_key: var("DARKROOM_TEST_S3_ACCESS_KEY"),
            secret_key: var("DARKROOM_TEST_S3_SECRET_KEY"),
        })
    }

    /// `name` on this server, path-style.
    fn bucket(&self, name: &str) -> rusty_s3::Bucket {
        rusty_s3::Bucket::new(
            self.endpoint.parse().expect("S3 endpoint URL"),
            rusty_s3::UrlStyle::Path,
            name.to_owned(),
            "us-east-1",
        )
        .expect("bucket URL")
    }

    fn credentials(&self) -> rusty_s3::Credentials {
        rusty_s3::Credentials::new(&self.access_key, &self.secret_key)
    }

    /// Creates a bucket of the test's own through the S3 API, so that every
    /// app starts with empty object storage.
    fn create_bucket(&self) -> String {
        let name = format!(
            "darkroom-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let url = S3Action::sign(
            &rusty_s3::actions::CreateBucket::new(&self.bucket(&name), &self.credentials()),
            Duration::from_secs(60),
        );
        let response = Client::new()
            .put(url)
            .header("content-length", "0")
            .send()
            .expect("CreateBucket reaches the S3 server");
        assert!(
            response.status().is_success(),
            "CreateBucket {name}: {}",
            response.status()
        );
        name
    }

    /// The keys of the objects in `bucket`, listed through the S3 API.
    fn object_keys(&self, bucket: &str) -> Vec<String> {
        let (bucket, credentials) = (self.bucket(bucket), self.credentials());
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let mut list = rusty_s3::actions::ListObjectsV2::new(&bucket, Some(&credentials));
            if let Some(token) = &token {
                list.with_continuation_token(String::clone(token));
            }
            let url = S3Action::sign(&list, Duration::from_secs(60));
            let response = Client::new()
                .get(url)
                .send()
                .expect("ListObjectsV2 reaches the S3 server");
            assert!(
                response.status().is_success(),
                "ListObjectsV2: {}",
                response.status()
            );
            let page = rusty_s3::actions::ListObjectsV2::parse_response(
                &response.text().expect("a listing"),
            )
            .expect("a ListObjectsV2 document");
            keys.extend(page.contents.into_iter().map(|o| o.key));
            token = page.next_continuation_token;
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }
}

/// How to start a [`TestApp`].
#[derive(Default)]
pub struct Options<'a> {
    /// The Redis server; the suite's by default.
    pub redis_url: Option<String>,
    /// Spin variables to override.
    pub variables: Vec<(&'a str, &'a str)>,
    /// Run only these components (`spin up --component-id`).
    pub components: Option<&'a [&'a str]>,
    /// Share this app's key-value data, Redis and queue channel, as several
    /// `spin up` processes (or SpinKube replicas) of one deployment do.
    pub share_state_with: Option<&'a TestApp>,
    /// Cap each instance's memory (`spin up --max-instance-memory`).
    pub max_instance_memory: Option<usize>,
}

impl TestApp {
    /// An app with the manifest's defaults.
    pub fn spawn() -> Self {
        Self::start(Options::default())
    }

    /// An app with some variables overridden.
    pub fn spawn_with(variables: &[(&str, &str)]) -> Self {
        Self::start(Options {
            variables: variables.to_vec(),
            ..Options::default()
        })
    }

    /// An app using the Redis server at `redis_url`.
    pub fn spawn_against(redis_url: &str, variables: &[(&str, &str)]) -> Self {
        Self::start(Options {
            redis_url: Some(redis_url.to_owned()),
            variables: variables.to_vec(),
            ..Options::default()
        })
    }

    /// An app started as `options` say. Returns once its processor (if it
    /// runs one) listens on the queue channel.
    pub fn start(options: Options<'_>) -> Self {
        let shared = options.share_state_with;
        let redis_url = shared
            .map(|a| a.redis_url.clone())
            .or(options.redis_url)
            .unwrap_or_else(redis_url);
        let channel = shared.map_or_else(
            || format!("darkroom-test-{}", uuid::Uuid::new_v4()),
            |a| a.channel.clone(),
        );
        let mut vars: BTreeMap<String, String> = BTreeMap::from([
            ("redis_url".to_owned(), redis_url.clone()),
            ("queue_channel".to_owned(), channel.clone()),
        ]);
        let bucket = S3::from_env().map(|s3| {
            shared
                .and_then(|a| a.bucket.clone())
                .unwrap_or_else(|| s3.create_bucket())
        });
        if let (Some(s3), Some(bucket)) = (S3::from_env(), &bucket) {
            vars.extend([
                ("blob_store".to_owned(), "s3".to_owned()),
                ("s3_endpoint".to_owned(), s3.endpoint),
                ("s3_bucket".to_owned(), bucket.clone()),
                ("s3_access_key_id".to_owned(), s3.access_key),
                ("s3_secret_access_key".to_owned(), s3.secret_key),
            ]);
        }
        for (k, v) in &options.variables {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let components: Option<Vec<String>> = options
            .components
            .map(|c| c.iter().map(|s| (*s).to_owned()).collect());
        let runs_processor = components
            .as_ref()
            .is_none_or(|c| c.iter().any(|c| c == "processor"));
        let (runtime, base) = match std::env::var("DARKROOM_TEST_RUNTIME").as_deref() {
            Ok("spin") => {
                let state_dir = match shared.and_then(|a| a.runtime.as_ref()) {
                    Some(Runtime::Spin { state_dir, .. }) => state_dir.clone(),
                    _ => Arc::new(tempfile::tempdir().expect("state dir")),
                };
                spawn_spin(
                    &vars,
                    state_dir,
                    components.as_deref(),
                    options.max_instance_memory,
                )
            }
            Ok("host") | Err(_) => {
                let mut config = HostConfig::new(app_root().join("spin.toml"));
                config.variables = vars;
                config.components = components;
                config.max_instance_memory = options.max_instance_memory;
                config.kv = match shared.and_then(|a| a.runtime.as_ref()) {
                    Some(Runtime::Host(app)) => Some(app.kv().clone()),
                    _ => None,
                };
                let app = RunningApp::start(&config).expect("the test host starts the app");
                let base = format!("http://{}", app.addr());
                (Runtime::Host(app), base)
            }
            Ok(other) => panic!("DARKROOM_TEST_RUNTIME={other:?}: expected `host` or `spin`"),
        };
        let app = Self {
            runtime: Some(runtime),
            base,
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            redis_url,
            channel,
            bucket,
        };
        if runs_processor {
            app.wait_for_subscribers(1);
        }
        app
    }

    /// Stops the app abruptly, like `kill -9` of `spin up`.
    pub fn kill(mut self) {
        match self.runtime.take() {
            Some(Runtime::Host(app)) => app.kill(),
            Some(Runtime::Spin { mut child, .. }) => {
                child.kill().expect("SIGKILL spin up");
                child.wait().expect("reap spin up");
            }
            None => {}
        }
    }

    /// Waits until `n` processors listen on the app's channel: a doorbell
    /// rung before that is not heard (Redis pub/sub is at-most-once).
    pub fn wait_for_subscribers(&self, n: i64) {
        let client = redis::Client::open(self.redis_url.as_str()).expect("redis url");
        let mut conn = client.get_connection().expect("connect to the test Redis");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&self.channel)
                .query(&mut conn)
                .expect("PUBSUB NUMSUB");
            if counts.first().is_some_and(|(_, count)| *count >= n) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{n} processors did not subscribe to {} within 30 s",
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

    /// Uploads `n` copies of `bytes` at once, each from its own thread, and
    /// returns the job ids.
    pub fn upload_concurrently(&self, n: usize, bytes: &[u8]) -> Vec<String> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| s.spawn(|| self.upload(bytes.to_vec())))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("upload thread"))
                .collect()
        })
    }

    /// `GET` the status resource of `id`.
    pub fn status(&self, id: &str) -> Response {
        self.get(&format!("/api/images/{id}/status"))
    }

    /// `GET` an app path or link.
    pub fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().expect("GET request")
    }

    /// `GET` an app path or link without following a redirect.
    pub fn get_unfollowed(&self, path: &str) -> Response {
        Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client")
            .get(self.url(path))
            .send()
            .expect("GET request")
    }

    /// Whether this is the S3 pass (`blob_store = s3`).
    pub fn uses_s3(&self) -> bool {
        self.bucket.is_some()
    }

    /// A request to an admin route with the token the tests configure.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth("s3cret")
            .send()
            .expect("admin request")
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
        self.wait_for_status(id, &["completed", "failed"], FINISH_TIMEOUT)
    }

    /// Polls the status of `id` until it is one of `wanted`, and returns the
    /// document; fails the test after `within`, saying what it saw last.
    pub fn wait_for_status(&self, id: &str, wanted: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let response = self.status(id);
            assert_eq!(response.status().as_u16(), 200, "status of {id}");
            last = response.json().expect("status JSON");
            if last["status"].as_str().is_some_and(|s| wanted.contains(&s)) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("job {id} was not {wanted:?} within {within:?}; last status: {last}");
    }

    /// The app's log so far: guest stdout/stderr and host notes.
    pub fn logs(&self) -> String {
        match &self.runtime {
            Some(Runtime::Host(app)) => app.logs(),
            Some(Runtime::Spin { state_dir, .. }) => spin_logs(state_dir.path()),
            None => "(killed)".to_owned(),
        }
    }

    /// How many derivative objects job `id` has in the blob store.
    pub fn derivative_count(&self, id: &str) -> usize {
        let prefix = format!("derived/{id}/");
        self.blob_keys()
            .iter()
            .filter(|k| k.starts_with(&prefix))
            .count()
    }

    /// The keys of every blob in the app's blob store (`original/<id>`,
    /// `derived/<id>/<file>`): the app's own bucket in the S3 pass, else the
    /// blob entries of the key-value store.
    pub fn blob_keys(&self) -> Vec<String> {
        if let (Some(s3), Some(bucket)) = (S3::from_env(), &self.bucket) {
            return s3.object_keys(bucket);
        }
        self.kv_keys()
            .iter()
            .filter_map(|k| k.strip_prefix("blob/"))
            .filter(|k| !k.contains('#'))
            .map(str::to_owned)
            .collect()
    }

    /// The keys in the app's `default` store: the test host's, or those in
    /// the SQLite file `spin up` keeps it in.
    pub fn kv_keys(&self) -> Vec<String> {
        match &self.runtime {
            Some(Runtime::Host(app)) => app.kv().snapshot("default").into_keys().collect(),
            Some(Runtime::Spin { state_dir, .. }) => spin_kv_keys(state_dir.path()),
            None => panic!("the app was killed; its store is gone"),
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
        if let Some(Runtime::Spin { child, .. }) = &mut self.runtime {
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

/// Starts `spin up` on a free port with `state_dir` (fresh, or shared with
/// another `spin up` of the same deployment).
fn spawn_spin(
    vars: &BTreeMap<String, String>,
    state_dir: Arc<tempfile::TempDir>,
    components: Option<&[String]>,
    max_instance_memory: Option<usize>,
) -> (Runtime, String) {
    let bin = std::env::var("SPIN_BIN").unwrap_or_else(|_| "spin".to_owned());
    let port = free_port();
    let mut cmd = Command::new(&bin);
    cmd.current_dir(app_root())
        .args(["up", "--from", "spin.toml", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--state-dir")
        .arg(state_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for c in components.unwrap_or_default() {
        cmd.args(["--component-id", c]);
    }
    if let Some(max) = max_instance_memory {
        cmd.arg("--max-instance-memory").arg(max.to_string());
    }
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

/// The keys of the `default` store in `spin up`'s SQLite file
/// (`<state-dir>/sqlite_key_value.db`, table `spin_key_value(store, key,
/// value)`, as Spin's `key-value-spin` crate creates it). No file yet means
/// nothing was stored: Spin creates it when a component first opens a store.
fn spin_kv_keys(state_dir: &std::path::Path) -> Vec<String> {
    let path = state_dir.join("sqlite_key_value.db");
    if !path.exists() {
        return Vec::new();
    }
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // A running `spin up` may be writing: wait for its lock, not fail.
    db.busy_timeout(Duration::from_secs(10))
        .expect("set a busy timeout");
    let mut query = db
        .prepare("SELECT key FROM spin_key_value WHERE store = 'default' ORDER BY key")
        .expect("spin_key_value table");
    query
        .query_map([], |row| row.get(0))
        .expect("query spin_key_value")
        .collect::<Result<_, _>>()
        .expect("read spin_key_value")
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
    child: Option<Child>,
    port: u16,
    data: Option<tempfile::TempDir>,
}

impl PrivateRedis {
    /// Starts `redis-server` (from `PATH`) without persistence.
    pub fn start() -> Self {
        Self::launch(free_port(), None)
    }

    /// Starts `redis-server` with the append-only file on and fsynced on
    /// every write, as a production Redis that must not lose jobs runs.
    pub fn start_persistent() -> Self {
        Self::launch(
            free_port(),
            Some(tempfile::tempdir().expect("redis data dir")),
        )
    }

    fn launch(port: u16, data: Option<tempfile::TempDir>) -> Self {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        match &data {
            Some(dir) => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                    .arg(dir.path());
            }
            None => {
                cmd.args(["--appendonly", "no"]);
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test.sh installs it)");
        let redis = Self {
            child: Some(child),
            port,
            data,
        };
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

    /// Kills the server (SIGKILL) and starts it again on the same port with
    /// the same data directory.
    pub fn restart(mut self) -> Self {
        self.stop();
        Self::launch(self.port, self.data.take())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = child.kill() {
                eprintln!("stopping redis-server: {e}");
            }
            if let Err(e) = child.wait() {
                eprintln!("waiting for redis-server: {e}");
            }
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An `s3s-fs` server owned by one test (on `PATH`; scripts/test.sh installs
/// it), on a free port with its own folder and one bucket, stopped on drop.
pub struct PrivateS3 {
    child: std::cell::RefCell<Option<Child>>,
    server: S3,
    bucket: String,
    port: u16,
    root: tempfile::TempDir,
}

impl PrivateS3 {
    /// Starts the server and creates a bucket.
    pub fn start() -> Self {
        let root = tempfile::tempdir().expect("S3 root folder");
        let port = free_port();
        let server = S3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key: "private-test".to_owned(),
            secret_key: format!("private-secret-{}", uuid::Uuid::new_v4().simple()),
        };
        let mut s3 = Self {
            child: std::cell::RefCell::new(None),
            server,
            bucket: String::new(),
            port,
            root,
        };
        s3.launch();
        s3.bucket = s3.server.create_bucket();
        s3
    }

    fn launch(&self) {
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", &self.server.access_key])
            .args(["--secret-key", &self.server.secret_key])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs on PATH (scripts/test.sh installs it)");
        *self.child.borrow_mut() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL); [`Self::resume`] starts it again.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.borrow_mut().take() {
            if let Err(e) = child.kill() {
                eprintln!("stopping s3s-fs: {e}");
            }
            if let Err(e) = child.wait() {
                eprintln!("waiting for s3s-fs: {e}");
            }
        }
    }

    /// Starts the server again on the same port and folder.
    pub fn resume(&self) {
        self.stop();
        self.launch();
    }

    /// The Spin variables that point an app at this server's bucket.
    pub fn variables(&self) -> Vec<(&str, &str)> {
        vec![
            ("blob_store", "s3"),
            ("s3_endpoint", &self.server.endpoint),
            ("s3_bucket", &self.bucket),
            ("s3_access_key_id", &self.server.access_key),
            ("s3_secret_access_key", &self.server.secret_key),
        ]
    }

    /// The keys of the objects in the bucket.
    pub fn object_keys(&self) -> Vec<String> {
        self.server.object_keys(&self.bucket)
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn the_keys_of_spins_default_store_are_read_from_its_sqlite_file() {
    let state_dir = tempfile::tempdir().expect("state dir");
    assert!(spin_kv_keys(state_dir.path()).is_empty(), "no file yet");
    // The table as Spin's `key-value-spin` crate creates it.
    let db = rusqlite::Connection::open(state_dir.path().join("sqlite_key_value.db")).expect("db");
    db.execute_batch(
        "CREATE TABLE spin_key_value (store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                                      PRIMARY KEY (store, key));
         INSERT INTO spin_key_value VALUES ('default', 'job/b', x'00'), ('default', 'job/a', x'00'),
                                           ('other', 'job/c', x'00');",
    )
    .expect("seed");
    assert_eq!(spin_kv_keys(state_dir.path()), ["job/a", "job/b"]);
}
