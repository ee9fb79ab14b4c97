//! `TestApp`: one running Darkroom with fresh state, driven through typed
//! helpers so that tests never build URLs or parse responses by hand.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use darkroom_tests::host::{HostConfig, RunningApp};
use darkroom_tests::kv::{KvCalls, KvData};
use darkroom_tests::manifest::Manifest;
use reqwest::blocking::{Client, multipart};
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
    Spin(Mutex<Child>),
}

/// Which manifest the suite runs: `spin.toml`, or the HTTP-only profile
/// (`DARKROOM_TEST_MANIFEST=spin.http-only.toml`, set by scripts/test.sh).
pub fn manifest_file() -> String {
    std::env::var("DARKROOM_TEST_MANIFEST").unwrap_or_else(|_| "spin.toml".to_owned())
}

/// Whether the suite runs the HTTP-only profile (no Redis trigger).
pub fn http_only() -> bool {
    manifest_file() != "spin.toml"
}

/// Whether this pass keeps the key-value store on Redis
/// (`DARKROOM_TEST_KV=redis`): every deployment gets a Redis server of its
/// own for it, named in a runtime config file.
fn kv_on_redis() -> bool {
    std::env::var("DARKROOM_TEST_KV").is_ok_and(|v| v == "redis")
}

/// Whether this pass keeps the key-value store in the deployment's
/// `--state-dir` SQLite file, as a plain `spin up` does
/// (`DARKROOM_TEST_KV=sqlite`; the test host only: Spin does so anyway).
fn kv_in_sqlite() -> bool {
    std::env::var("DARKROOM_TEST_KV").is_ok_and(|v| v == "sqlite")
}

/// What the processes of one deployment share: the queue's Redis and
/// channel, the bucket, and the key-value store (the test host's memory, a
/// `spin up --state-dir`, or a Redis named by a runtime config). Cloned into
/// every app of the deployment, and into a supervisor's thread.
#[derive(Clone)]
pub struct Deployment {
    redis_url: String,
    channel: String,
    bucket: Option<String>,
    state_dir: Arc<tempfile::TempDir>,
    memory_kv: Option<Arc<KvData>>,
    kv_redis: Option<(Arc<PrivateRedis>, Arc<tempfile::TempDir>)>,
}

impl Deployment {
    fn runtime_config(&self) -> Option<PathBuf> {
        self.kv_redis
            .as_ref()
            .map(|(_, dir)| dir.path().join("runtime-config.toml"))
    }
}

/// A running app (one `spin up` process) with its own deployment's state
/// unless it joins another's.
pub struct TestApp {
    runtime: Option<Runtime>,
    base: Option<String>,
    client: Client,
    deployment: Deployment,
    /// The Redis channel this app's queue uses.
    pub channel: String,
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
    /// The same, from a [`Deployment`] (for apps started on another thread).
    pub join: Option<Deployment>,
    /// The manifest, if not the pass's ([`manifest_file`]).
    pub manifest: Option<&'a str>,
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
        Self::try_start(options).unwrap_or_else(|e| panic!("the app did not start: {e}"))
    }

    /// [`Self::start`], or why the app did not start (for a supervisor that
    /// expects failures while Redis is down).
    pub fn try_start(options: Options<'_>) -> Result<Self, String> {
        let deployment = match options
            .share_state_with
            .map(Self::deployment)
            .or(options.join)
        {
            Some(d) => d,
            None => new_deployment(options.redis_url.unwrap_or_else(redis_url)),
        };
        let mut vars: BTreeMap<String, String> = BTreeMap::from([
            ("redis_url".to_owned(), deployment.redis_url.clone()),
            ("queue_channel".to_owned(), deployment.channel.clone()),
            (
                "fetch_channel".to_owned(),
                fetch_channel(&deployment.channel),
            ),
            (
                "notify_channel".to_owned(),
                notify_channel(&deployment.channel),
            ),
        ]);
        if let (Some(s3), Some(bucket)) = (S3::from_env(), &deployment.bucket) {
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
        let manifest = options.manifest.map_or_else(manifest_file, str::to_owned);
        let (runs_http, listens_on) = triggers_of(&manifest, components.as_deref());
        let (runtime, base) = match std::env::var("DARKROOM_TEST_RUNTIME").as_deref() {
            Ok("spin") => {
                let (child, port) = spawn_spin(
                    &manifest,
                    &vars,
                    &deployment,
                    components.as_deref(),
                    options.max_instance_memory,
                    runs_http,
                )?;
                (
                    Runtime::Spin(Mutex::new(child)),
                    port.map(|p| format!("http://127.0.0.1:{p}")),
                )
            }
            Ok("host") | Err(_) => {
                let mut config = HostConfig::new(app_root().join(&manifest));
                config.variables = vars;
                config.components = components;
                config.max_instance_memory = options.max_instance_memory;
                config.kv = deployment.memory_kv.clone();
                if kv_in_sqlite() {
                    config.state_dir = Some(deployment.state_dir.path().to_owned());
                }
                config.runtime_config = deployment.runtime_config();
                let app = RunningApp::start(&config).map_err(|e| format!("{e:#}"))?;
                let base = app.addr().map(|a| format!("http://{a}"));
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
            channel: deployment.channel.clone(),
            deployment,
        };
        for channel in listens_on {
            let channel = match channel.as_str() {
                "{{ fetch_channel }}" => fetch_channel(&app.channel),
                "{{ notify_channel }}" => notify_channel(&app.channel),
                _ => app.channel.clone(),
            };
            app.await_subscribers_on(&channel, 1, Duration::from_secs(30))?;
        }
        Ok(app)
    }

    /// What another process of this deployment must share.
    pub fn deployment(&self) -> Deployment {
        self.deployment.clone()
    }

    /// Why the app's process ended on its own (a trigger exited), or `None`
    /// while it runs.
    pub fn exited(&self) -> Option<String> {
        match &self.runtime {
            Some(Runtime::Host(app)) => app.exit_reason(),
            Some(Runtime::Spin(child)) => match lock(child).try_wait() {
                Ok(Some(status)) => Some(format!("spin up exited: {status}")),
                Ok(None) => None,
                Err(e) => Some(format!("spin up cannot be waited for: {e}")),
            },
            None => Some("killed by the test".to_owned()),
        }
    }

    /// Waits until the app's process ends on its own, and says why; fails the
    /// test after `within`.
    pub fn wait_for_exit(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(reason) = self.exited() {
                return reason;
            }
            assert!(
                Instant::now() < deadline,
                "the app did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the app abruptly, like `kill -9` of `spin up`.
    pub fn kill(mut self) {
        match self.runtime.take() {
            Some(Runtime::Host(app)) => app.kill(),
            Some(Runtime::Spin(child)) => {
                let mut child = child.into_inner().unwrap_or_else(PoisonError::into_inner);
                child.kill().expect("SIGKILL spin up");
                child.wait().expect("reap spin up");
            }
            None => {}
        }
    }

    /// Waits until `n` processors listen on the app's channel: a doorbell
    /// rung before that is not heard (Redis pub/sub is at-most-once).
    pub fn wait_for_subscribers(&self, n: i64) {
        if let Err(e) = self.await_subscribers(n, Duration::from_secs(30)) {
            panic!("{e}");
        }
    }

    /// How many processes listen on the app's queue channel now.
    pub fn subscribers(&self) -> i64 {
        let mut conn = redis::Client::open(self.deployment.redis_url.as_str())
            .and_then(|c| c.get_connection())
            .expect("the test Redis answers");
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&self.channel)
            .query(&mut conn)
            .expect("PUBSUB NUMSUB");
        counts.first().map_or(0, |(_, n)| *n)
    }

    /// [`Self::wait_for_subscribers`], failing (with the reason) when the
    /// app's process ends first or `within` passes.
    fn await_subscribers(&self, n: i64, within: Duration) -> Result<(), String> {
        self.await_subscribers_on(&self.channel, n, within)
    }

    fn await_subscribers_on(&self, channel: &str, n: i64, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(reason) = self.exited() {
                return Err(format!("{reason}\n{}", self.logs()));
            }
            let counts: Result<Vec<(String, i64)>, _> =
                redis::Client::open(self.deployment.redis_url.as_str())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut conn| {
                        redis::cmd("PUBSUB")
                            .arg("NUMSUB")
                            .arg(channel)
                            .query(&mut conn)
                    });
            if counts.is_ok_and(|c| c.first().is_some_and(|(_, count)| *count >= n)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{n} processes did not subscribe to {channel} within {within:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `Authorization: Bearer <token>` with every later request
    /// (`None`: no such header).
    pub fn use_bearer(&mut self, token: Option<&str>) {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse().expect("a header value"),
            );
        }
        self.client = Client::builder()
            .timeout(Duration::from_secs(60))
            .default_headers(headers)
            .build()
            .expect("http client");
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        let base = self
            .base
            .as_deref()
            .expect("this app runs no HTTP trigger: send requests to the front");
        format!("{base}{path}")
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
            .send_checked()
    }

    /// Begins a raw upload that declares `declared` bytes and sends the
    /// first `sent` of them; the client goes away when the returned
    /// connection is dropped.
    pub fn begin_upload(&self, sent: &[u8], declared: usize, content_type: &str) -> TcpStream {
        use std::io::Write as _;
        let url = url::Url::parse(&self.url("/api/images")).expect("the app's URL");
        let address = url.socket_addrs(|| None).expect("an address")[0];
        let mut stream = TcpStream::connect(address).expect("connected");
        let head = format!(
            "POST /api/images HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("head sent");
        stream.write_all(sent).expect("body sent");
        stream.flush().expect("flushed");
        stream
    }

    /// `POST /api/images` with the image as the whole body, sent chunked
    /// (no `Content-Length`: its size is known only as it arrives) over a
    /// plain connection, which goes on to read the answer when the app
    /// answers before the body is all sent (as it does past the limit);
    /// reqwest gives up on the write instead. The status and the JSON body.
    pub fn upload_chunked(&self, bytes: Vec<u8>, content_type: &str) -> (u16, Value) {
        use std::io::{BufRead as _, Read as _, Write as _};
        let url = url::Url::parse(&self.url("/api/images")).expect("the app's URL");
        let address = url.socket_addrs(|| None).expect("an address")[0];
        let stream = TcpStream::connect(address).expect("connected");
        let mut writer = stream.try_clone().expect("a second handle");
        let head = format!(
            "POST /api/images HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        let sender = std::thread::spawn(move || -> std::io::Result<()> {
            writer.write_all(head.as_bytes())?;
            for chunk in bytes.chunks(64 * 1024) {
                write!(writer, "{:x}\r\n", chunk.len())?;
                writer.write_all(chunk)?;
                writer.write_all(b"\r\n")?;
            }
            writer.write_all(b"0\r\n\r\n")
        });
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("a status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {line:?}"));
        let mut length = None;
        loop {
            line.clear();
            reader.read_line(&mut line).expect("a header line");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = Some(value.trim().parse().expect("a length"));
            }
        }
        let mut body = Vec::new();
        if let Some(length) = length {
            body.resize(length, 0);
            reader.read_exact(&mut body).expect("the body");
        } else {
            // Chunked: a hex size line, the chunk, CRLF; size 0 ends it.
            loop {
                line.clear();
                reader.read_line(&mut line).expect("a chunk size");
                let size = usize::from_str_radix(line.trim(), 16).expect("a hex chunk size");
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).expect("a chunk");
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        // The app may close the connection before the body is all sent.
        drop(reader);
        drop(sender.join());
        (status, serde_json::from_slice(&body).expect("a JSON body"))
    }

    /// `POST /api/images` with the image as the whole body.
    pub fn upload_raw(&self, bytes: Vec<u8>, content_type: Option<&str>) -> Response {
        let mut req = self.client.post(self.url("/api/images")).body(bytes);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send_checked()
    }

    /// `POST /api/images` as multipart (a fresh boundary each time, as
    /// every client draws) with an `Idempotency-Key` header.
    pub fn upload_with_key(&self, bytes: Vec<u8>, key: &str) -> Response {
        let part = multipart::Part::bytes(bytes)
            .file_name("photo.jpg")
            .mime_str("image/jpeg")
            .expect("mime");
        self.client
            .post(self.url("/api/images"))
            .header("idempotency-key", key)
            .multipart(multipart::Form::new().part("file", part))
            .send_checked()
    }

    /// A request with a JSON body (an ingest by URL).
    pub fn request_json(&self, method: reqwest::Method, path: &str, body: &Value) -> Response {
        self.client
            .request(method, self.url(path))
            .json(body)
            .send_checked()
    }

    /// [`Self::request_json`] with an `Idempotency-Key` header.
    pub fn request_json_with_key(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        key: &str,
    ) -> Response {
        self.client
            .request(method, self.url(path))
            .header("idempotency-key", key)
            .json(body)
            .send_checked()
    }

    /// `POST path` with a multipart form.
    pub fn post_form(&self, path: &str, form: multipart::Form) -> Response {
        self.client
            .post(self.url(path))
            .multipart(form)
            .send_checked()
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

    /// `POST /api/images/{id}/cancel`.
    pub fn cancel(&self, id: &str) -> Response {
        self.client
            .post(self.url(&format!("/api/images/{id}/cancel")))
            .send_checked()
    }

    /// `DELETE /api/images/{id}`.
    pub fn delete(&self, id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/api/images/{id}")))
            .send_checked()
    }

    /// Every key of the app's key-value and blob stores that names job `id`.
    pub fn keys_of(&self, id: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .kv_keys()
            .into_iter()
            .chain(self.blob_keys())
            .filter(|k| k.contains(id))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// `GET` an app path or link.
    pub fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send_checked()
    }

    /// Any request, with extra headers and an optional body.
    pub fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        request.send_checked()
    }

    /// `GET` an app path with one extra request header.
    pub fn get_with_header(&self, path: &str, extra: Option<(&str, &str)>) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.send_checked()
    }

    /// `GET` an app path or link without following a redirect.
    pub fn get_unfollowed(&self, path: &str) -> Response {
        Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client")
            .get(self.url(path))
            .send_checked()
    }

    /// Whether this is the S3 pass (`blob_store = s3`).
    pub fn uses_s3(&self) -> bool {
        self.deployment.bucket.is_some()
    }

    /// A request to an admin route with the token the tests configure.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth("s3cret")
            .send_checked()
    }

    /// A request with any method, for method and routing tests.
    pub fn request(&self, method: reqwest::Method, path: &str) -> Response {
        self.client.request(method, self.url(path)).send_checked()
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
            Some(Runtime::Spin(_)) => spin_logs(self.deployment.state_dir.path()),
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
        if let (Some(s3), Some(bucket)) = (S3::from_env(), &self.deployment.bucket) {
            return s3.object_keys(bucket);
        }
        self.kv_keys()
            .iter()
            .filter_map(|k| k.strip_prefix("blob/"))
            .filter(|k| !k.contains('#'))
            .map(str::to_owned)
            .collect()
    }

    /// The key-value calls each component of this app made so far (the
    /// test host counts them; `None` under `spin up`).
    pub fn kv_calls(&self) -> Option<BTreeMap<String, KvCalls>> {
        match &self.runtime {
            Some(Runtime::Host(app)) => Some(app.kv().calls()),
            _ => None,
        }
    }

    /// The keys in the app's `default` store: in its own Redis in the
    /// key-value-on-Redis pass, else the test host's, or those in the SQLite
    /// file `spin up` keeps it in.
    pub fn kv_keys(&self) -> Vec<String> {
        if let Some((redis, _)) = &self.deployment.kv_redis {
            let mut conn = redis::Client::open(redis.url())
                .and_then(|c| c.get_connection())
                .expect("the key-value Redis answers");
            let mut keys: Vec<String> = redis::cmd("KEYS")
                .arg("*")
                .query(&mut conn)
                .expect("KEYS *");
            keys.sort();
            return keys;
        }
        match &self.runtime {
            Some(Runtime::Host(app)) => app.kv().keys("default").expect("the default store"),
            Some(Runtime::Spin(_)) => spin_kv_keys(self.deployment.state_dir.path()),
            None => panic!("the app was killed; its store is gone"),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- app log ({}) ----\n{}---- end of app log ----",
                self.base.as_deref().unwrap_or("no HTTP trigger"),
                self.logs()
            );
        }
        if let Some(Runtime::Spin(child)) = &mut self.runtime {
            let child = child.get_mut().unwrap_or_else(PoisonError::into_inner);
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

/// A new deployment's shared state: a channel and bucket of its own, a fresh
/// state dir, and the key-value store this pass keeps (memory for the test
/// host, a Redis of its own with `DARKROOM_TEST_KV=redis`).
fn new_deployment(redis_url: String) -> Deployment {
    let kv_redis = kv_on_redis().then(|| {
        let server = PrivateRedis::start();
        let dir = tempfile::tempdir().expect("runtime config dir");
        std::fs::write(
            dir.path().join("runtime-config.toml"),
            format!(
                "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
                server.url()
            ),
        )
        .expect("write the runtime config");
        (Arc::new(server), Arc::new(dir))
    });
    let host = !matches!(
        std::env::var("DARKROOM_TEST_RUNTIME").as_deref(),
        Ok("spin")
    );
    Deployment {
        channel: format!("darkroom-test-{}", uuid::Uuid::new_v4()),
        bucket: S3::from_env().map(|s3| s3.create_bucket()),
        state_dir: Arc::new(tempfile::tempdir().expect("state dir")),
        memory_kv: (host && kv_redis.is_none() && !kv_in_sqlite())
            .then(|| Arc::new(KvData::default())),
        kv_redis,
        redis_url,
    }
}

/// Whether the manifest's triggers for `components` (all when `None`)
/// include an HTTP route, and a Redis channel.
/// Whether the selected components have an HTTP route, and the channels
/// (as written in the manifest) their Redis triggers listen on.
fn triggers_of(manifest: &str, components: Option<&[String]>) -> (bool, Vec<String>) {
    let manifest = Manifest::load(&app_root().join(manifest)).expect("the manifest loads");
    let selected = |c: &String| components.is_none_or(|only| only.contains(c));
    (
        manifest.trigger.http.iter().any(|t| selected(&t.component)),
        manifest
            .trigger
            .redis
            .iter()
            .filter(|t| selected(&t.component))
            .map(|t| t.channel.clone())
            .collect(),
    )
}

/// The fetcher's channel of a deployment whose queue channel is `channel`.
pub fn fetch_channel(channel: &str) -> String {
    format!("{channel}-fetch")
}

/// The notifier's channel of a deployment whose queue channel is `channel`.
pub fn notify_channel(channel: &str) -> String {
    format!("{channel}-notify")
}

/// Starts `spin up` for `deployment`: on a free port when the selected
/// components have an HTTP route (a processor-only `spin up` refuses
/// `--listen`), with the deployment's `--state-dir` and runtime config.
/// Returns once it listens (or at once without HTTP: the caller waits for
/// its subscription), or why it ended first.
fn spawn_spin(
    manifest: &str,
    vars: &BTreeMap<String, String>,
    deployment: &Deployment,
    components: Option<&[String]>,
    max_instance_memory: Option<usize>,
    listens: bool,
) -> Result<(Child, Option<u16>), String> {
    let bin = std::env::var("SPIN_BIN").unwrap_or_else(|_| "spin".to_owned());
    let port = listens.then(free_port);
    let mut cmd = Command::new(&bin);
    cmd.current_dir(app_root())
        .args(["up", "--from", manifest])
        .arg("--state-dir")
        .arg(deployment.state_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(port) = port {
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}"));
    }
    if let Some(config) = deployment.runtime_config() {
        cmd.arg("--runtime-config-file").arg(config);
    }
    for c in components.unwrap_or_default() {
        cmd.args(["--component-id", c]);
    }
    if let Some(max) = max_instance_memory {
        cmd.arg("--max-instance-memory").arg(max.to_string());
    }
    for (k, v) in vars {
        cmd.env(format!("SPIN_VARIABLE_{}", k.to_ascii_uppercase()), v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("DARKROOM_TEST_RUNTIME=spin but `{bin}` cannot be started ({e}); install Spin or set SPIN_BIN")
    });
    let Some(port) = port else {
        return Ok((child, None));
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "spin up exited ({status}) before listening\n{}",
                spin_logs(deployment.state_dir.path())
            ));
        }
        if Instant::now() >= deadline {
            // Best effort: the test fails either way.
            if let Err(e) = child.kill() {
                eprintln!("stopping spin up: {e}");
            }
            return Err(format!("spin up did not listen on port {port} within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((child, Some(port)))
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

/// The test's stand-in for the supervisor loop of `scripts/up.sh`: keeps one
/// processor of a deployment running, starts it again with capped
/// exponential backoff whenever it exits or fails to start (Spin ends a
/// processor whose Redis connection broke), and records why each time.
pub struct Supervised {
    stop: Arc<AtomicBool>,
    /// Why each processor ended, in order.
    exits: Arc<Mutex<Vec<String>>>,
    /// Every processor's log, one after the other.
    logs: Arc<Mutex<String>>,
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervised {
    /// Supervises a processor of `front`'s deployment; returns once the
    /// first one listens.
    pub fn processor(front: &TestApp, variables: &[(&'static str, &'static str)]) -> Self {
        let deployment = front.deployment();
        let variables = variables.to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        let exits = Arc::new(Mutex::new(Vec::new()));
        let logs = Arc::new(Mutex::new(String::new()));
        let running = Arc::new(AtomicBool::new(false));
        let (s, e, l, r) = (stop.clone(), exits.clone(), logs.clone(), running.clone());
        let thread = std::thread::spawn(move || {
            let mut delay = Duration::from_millis(100);
            while !s.load(Ordering::Relaxed) {
                let started = TestApp::try_start(Options {
                    components: Some(&["processor"]),
                    join: Some(deployment.clone()),
                    variables: variables.clone(),
                    ..Options::default()
                });
                match started {
                    Ok(app) => {
                        delay = Duration::from_millis(100);
                        r.store(true, Ordering::Relaxed);
                        let reason = loop {
                            if s.load(Ordering::Relaxed) {
                                break None;
                            }
                            if let Some(reason) = app.exited() {
                                break Some(reason);
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        };
                        r.store(false, Ordering::Relaxed);
                        lock(&l).push_str(&app.logs());
                        match reason {
                            Some(reason) => lock(&e).push(reason),
                            None => return,
                        }
                    }
                    Err(why) => lock(&e).push(format!("did not start: {why}")),
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        });
        let supervised = Self {
            stop,
            exits,
            logs,
            running,
            thread: Some(thread),
        };
        supervised.wait_until_running(Duration::from_secs(30));
        supervised
    }

    /// Waits until a processor runs; fails the test after `within`.
    pub fn wait_until_running(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.running.load(Ordering::Relaxed) {
            assert!(
                Instant::now() < deadline,
                "no processor ran within {within:?}; exits: {:?}",
                self.exits()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the running processor has ended; fails after `within`.
    pub fn wait_until_stopped(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.running.load(Ordering::Relaxed) {
            assert!(
                Instant::now() < deadline,
                "the processor still ran after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Why each processor so far ended or failed to start.
    pub fn exits(&self) -> Vec<String> {
        lock(&self.exits).clone()
    }

    /// The logs of every processor that has ended so far.
    pub fn logs(&self) -> String {
        lock(&self.logs).clone()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("the supervisor thread panicked");
        }
        if std::thread::panicking() {
            eprintln!(
                "---- supervised processors: exits {:?} ----\n{}---- end ----",
                self.exits(),
                self.logs()
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Kills the server (SIGKILL): an outage. [`Self::resume`] ends it.
    pub fn go_down(&mut self) {
        self.stop();
    }

    /// Starts the server again on the same port with the same data.
    pub fn resume(&mut self) {
        self.stop();
        *self = Self::launch(self.port, self.data.take());
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
    child: RefCell<Option<Child>>,
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
            child: RefCell::new(None),
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

impl PrivateS3 {
    /// The Spin variables that point an app at this server through a proxy
    /// that breaks off its first `broken` connections (reads the request,
    /// then closes without an answer, as a server that falls over under
    /// load does) and relays every later one. The proxy counts the
    /// connections it broke.
    pub fn variables_through_a_proxy_breaking(
        &self,
        broken: usize,
    ) -> (Vec<(String, String)>, BreakingProxy) {
        let proxy = BreakingProxy::start(self.port, broken);
        let variables = self
            .variables()
            .into_iter()
            .map(|(name, value)| {
                let value = if name == "s3_endpoint" {
                    format!("http://127.0.0.1:{}", proxy.port)
                } else {
                    value.to_owned()
                };
                (name.to_owned(), value)
            })
            .collect();
        (variables, proxy)
    }
}

/// A TCP relay in front of a local server that breaks off its first few
/// connections ([`PrivateS3::variables_through_a_proxy_breaking`]).
pub struct BreakingProxy {
    port: u16,
    broke: Arc<std::sync::atomic::AtomicUsize>,
}

impl BreakingProxy {
    fn start(target: u16, broken: usize) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let broke = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&broke);
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if count.load(Ordering::SeqCst) < broken {
                    // Read what the client sent, then hang up unanswered.
                    let mut head = [0_u8; 1024];
                    let _read = std::io::Read::read(&mut &client, &mut head);
                    count.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                relay(client, server);
            }
        });
        Self { port, broke }
    }

    /// How many connections it broke off so far.
    pub fn broken(&self) -> usize {
        self.broke.load(Ordering::SeqCst)
    }
}

/// Copies bytes both ways between `a` and `b` until either side closes.
fn relay(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    for (mut from, mut to) in [(a, b), (b2, a2)] {
        std::thread::spawn(move || {
            let _copied = std::io::copy(&mut from, &mut to);
            let _closed = to.shutdown(std::net::Shutdown::Write);
        });
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

/// An answer from the app, read whole and held to the OpenAPI description
/// ([`crate::contract::check`]) before a test sees it.
pub struct Response {
    status: reqwest::StatusCode,
    headers: reqwest::header::HeaderMap,
    url: reqwest::Url,
    body: Vec<u8>,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> reqwest::StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &reqwest::header::HeaderMap {
        &self.headers
    }

    /// The body as JSON.
    ///
    /// # Errors
    /// When it is not.
    pub fn json<T: serde::de::DeserializeOwned>(self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text.
    ///
    /// # Errors
    /// When it is not UTF-8.
    pub fn text(self) -> Result<String, std::string::FromUtf8Error> {
        String::from_utf8(self.body)
    }

    /// The body's bytes.
    ///
    /// # Errors
    /// Never; a `Result` as reqwest's is.
    pub fn bytes(self) -> Result<Vec<u8>, std::convert::Infallible> {
        Ok(self.body)
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("url", &self.url.as_str())
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish_non_exhaustive()
    }
}

/// Reads `response` whole and holds it to the description.
pub fn checked(method: &reqwest::Method, response: reqwest::blocking::Response) -> Response {
    let status = response.status();
    let headers = response.headers().clone();
    let url = response.url().clone();
    let body = response.bytes().expect("the response body").to_vec();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    crate::contract::check(method, &url, status.as_u16(), content_type, &body);
    Response {
        status,
        headers,
        url,
        body,
    }
}

/// Sends a request to the app and [`checked`]s the answer.
pub trait SendChecked {
    /// Sends, expecting an answer, and checks it.
    fn send_checked(self) -> Response;
}

impl SendChecked for reqwest::blocking::RequestBuilder {
    fn send_checked(self) -> Response {
        let (client, request) = self.build_split();
        let request = request.expect("a well-formed request");
        let method = request.method().clone();
        let response = client.execute(request).expect("the app answers");
        checked(&method, response)
    }
}
