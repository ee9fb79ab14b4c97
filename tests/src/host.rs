//! The runtime: compiles the app's components once, then runs a fresh
//! instance per HTTP request and per Redis message, as `spin up` does.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::bindings::imports::SpinImports;
use crate::bindings::imports::fermyon::spin2_0_0::variables;
use crate::bindings::redis_trigger::RedisTriggerPre;
use crate::kv::KvData;
use crate::manifest::Manifest;
use crate::outbound::AllowedHosts;
use crate::routes::{RouteMatch, Router};
use crate::runtime_config::RuntimeConfig;
use crate::variables::Variables;

/// How to run an app.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The app's `spin.toml`.
    pub manifest: PathBuf,
    /// Where to listen; port 0 picks a free one. An app with no HTTP
    /// trigger does not listen, and refuses an explicit address as
    /// `spin up` refuses `--listen` ([`RunningApp::start`]).
    pub listen: Listen,
    /// Variable values, as if set with `SPIN_VARIABLE_<NAME>`.
    pub variables: BTreeMap<String, String>,
    /// Cap on each instance's linear memory, like `spin up --max-instance-memory`.
    pub max_instance_memory: Option<usize>,
    /// Print guest output as it happens instead of only collecting it.
    pub echo_guest_output: bool,
    /// Run only these components, like `spin up --component-id`; `None` runs all.
    pub components: Option<Vec<String>>,
    /// Key-value data shared with another running app, as several `spin up`
    /// processes share a store backend; `None` opens the app's own from
    /// `state_dir` and `runtime_config`.
    pub kv: Option<Arc<KvData>>,
    /// `spin up --state-dir`: the `default` store lives in
    /// `sqlite_key_value.db` there; `None` keeps it in memory.
    pub state_dir: Option<PathBuf>,
    /// `spin up --runtime-config-file` ([`crate::runtime_config`]).
    pub runtime_config: Option<PathBuf>,
}

impl HostConfig {
    /// Defaults for `manifest`: loopback on a free port, no overrides, no cap.
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            listen: Listen::Default(SocketAddr::from(([127, 0, 0, 1], 0))),
            variables: BTreeMap::new(),
            max_instance_memory: None,
            echo_guest_output: false,
            components: None,
            kv: None,
            state_dir: None,
            runtime_config: None,
        }
    }
}

/// Where an app's HTTP trigger listens.
#[derive(Clone, Copy, Debug)]
pub enum Listen {
    /// Used only if the app has an HTTP trigger (`spin up` without `--listen`).
    Default(SocketAddr),
    /// Asked for (`spin up --listen`): an app without an HTTP trigger is refused.
    Explicit(SocketAddr),
}

/// What one component may do, resolved from the manifest at start.
pub struct ComponentInfo {
    /// The component id.
    pub id: String,
    /// `key_value_stores`.
    pub key_value_stores: Vec<String>,
    /// `allowed_outbound_hosts`, rendered.
    pub allowed_outbound_hosts: AllowedHosts,
    /// Component variables, rendered.
    pub variables: BTreeMap<String, String>,
}

struct LoadedComponent {
    info: Arc<ComponentInfo>,
    pre: InstancePre<HostState>,
}

/// State shared by every instance of one app.
pub struct AppShared {
    /// The key-value stores.
    pub kv: Arc<KvData>,
    logs: Mutex<String>,
    echo: bool,
    /// Set by [`RunningApp::kill`]: every instance traps at its next check
    /// and host calls are refused, as if the process died.
    pub killed: AtomicBool,
    /// Why the app terminated on its own (a trigger ended), once it has.
    exit: Mutex<Option<String>>,
    /// Becomes `true` when the app terminates: the listener and every open
    /// connection close.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl AppShared {
    /// Adds a line to the app's log (printed by the test suite when a test fails).
    pub fn log(&self, line: &str) {
        if self.echo {
            eprintln!("{line}");
        }
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.push_str(line);
        if !line.ends_with('\n') {
            logs.push('\n');
        }
    }

    /// Ends the whole app as `spin up` does when one of its triggers exits:
    /// the process goes, taking the HTTP listener, open connections and
    /// running instances with it.
    fn terminate(&self, reason: String) {
        self.exit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.killed.store(true, Ordering::Relaxed);
        self.shutdown.send_replace(true);
    }
}

struct AppInner {
    router: Router,
    components: HashMap<String, LoadedComponent>,
    shared: Arc<AppShared>,
    max_memory: Option<usize>,
    /// Whether the app runs HTTP and Redis triggers together: `spin up` then
    /// runs one trigger process per type and says so when one ends.
    multi_trigger: bool,
}

/// The per-instance store data.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    /// Resources of this instance.
    pub table: ResourceTable,
    hooks: OutboundHttp,
    limits: StoreLimits,
    /// What this component may do.
    pub component: Arc<ComponentInfo>,
    /// The app's shared state.
    pub app: Arc<AppShared>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl variables::Host for HostState {
    async fn get(&mut self, name: String) -> Result<String, variables::Error> {
        if !crate::variables::is_valid_name(&name) {
            return Err(variables::Error::InvalidName(name));
        }
        self.component
            .variables
            .get(&name)
            .cloned()
            .ok_or(variables::Error::Undefined(name))
    }
}

/// Outbound HTTP: `allowed_outbound_hosts` first, then either service
/// chaining to `<component>.spin.internal` or a real request.
struct OutboundHttp {
    allowed: Arc<ComponentInfo>,
    app: std::sync::Weak<AppInner>,
}

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        let uri = request.uri().to_string();
        let allowed =
            url::Url::parse(&uri).is_ok_and(|u| self.allowed.allowed_outbound_hosts.allows_url(&u));
        let app = self.app.upgrade();
        let component = self.allowed.id.clone();
        Box::new(async move {
            let Some(app) = app else {
                return Err(wasmtime_wasi_http::Error::InternalError(Some(
                    "app stopped".into(),
                )));
            };
            if !allowed {
                app.shared.log(&format!(
                    "[host] component {component:?} may not send a request to {uri}: not in allowed_outbound_hosts"
                ));
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            let host = request.uri().host().unwrap_or_default().to_owned();
            if let Some(target) = host.strip_suffix(".spin.internal") {
                let target = target.to_owned();
                let response = app.chain(&target, request).await?;
                let done: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send> =
                    Box::new(async { Ok(()) });
                return Ok((
                    response.map(|b| b.map_err(wasmtime_wasi_http::Error::from).boxed_unsync()),
                    done,
                ));
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let io: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send> =
                Box::new(io);
            Ok((response.map(BodyExt::boxed_unsync), io))
        })
    }
}

/// How often running guests check whether their app was killed.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// One wasmtime engine for the whole process: compiled code is shared.
/// Epoch interruption lets [`RunningApp::kill`] stop guests mid-computation.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        #[expect(clippy::expect_used, reason = "a fixed, valid configuration")]
        let engine = Engine::new(&config).expect("wasmtime engine");
        let ticker = engine.weak();
        std::thread::spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
        engine
    })
}

/// Compiled components by path and modification time, so that a test
/// binary compiles each `.wasm` once however many apps it starts.
fn compile(path: &Path) -> anyhow::Result<Component> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, (SystemTime, Component)>>> = OnceLock::new();
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| {
            format!(
                "{} does not exist; build the components first",
                path.display()
            )
        })?;
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some((when, c)) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(path)
        && *when == modified
    {
        return Ok(c.clone());
    }
    let component = Component::from_file(engine(), path)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling {}", path.display()))?;
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(path.to_path_buf(), (modified, component.clone()));
    Ok(component)
}

fn linker() -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    SpinImports::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    // `inbound-redis` uses types from this interface, which has no functions.
    linker.instance("fermyon:spin/redis-types")?;
    Ok(linker)
}

fn text_response(status: u16, body: &str) -> hyper::Response<HyperOutgoingBody> {
    let mut response = hyper::Response::new(
        Full::new(Bytes::from(body.to_owned()))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

impl AppInner {
    fn new_store(&self, component: &LoadedComponent, this: &Arc<Self>) -> Store<HostState> {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let stderr = MemoryOutputPipe::new(1 << 20);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        let mut limits = StoreLimitsBuilder::new();
        if let Some(max) = self.max_memory {
            limits = limits.memory_size(max);
        }
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHttp {
                allowed: component.info.clone(),
                app: Arc::downgrade(this),
            },
            limits: limits.build(),
            component: component.info.clone(),
            app: self.shared.clone(),
            stdout,
            stderr,
        };
        let mut store = Store::new(engine(), state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if ctx.data().app.killed.load(Ordering::Relaxed) {
                return Err(wasmtime::Error::msg("the app was killed"));
            }
            Ok(wasmtime::UpdateDeadline::Continue(1))
        });
        store
    }

    fn collect_output(&self, id: &str, state: &HostState) {
        for (stream, pipe) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
            let text = String::from_utf8_lossy(&pipe.contents()).into_owned();
            for line in text.lines() {
                self.shared.log(&format!("[{id} {stream}] {line}"));
            }
        }
    }

    /// Runs `request` in a fresh instance of the matched component.
    async fn dispatch_http(
        self: &Arc<Self>,
        route: RouteMatch,
        mut request: hyper::Request<wasmtime_wasi_http::WasiBody>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let Some(component) = self.components.get(&route.component) else {
            return text_response(500, "no such component");
        };
        for (name, value) in &route.headers {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                request.headers_mut().insert(n, v);
            }
        }
        let mut store = self.new_store(component, self);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let setup = async {
            let pre = ProxyPre::new(component.pre.clone())
                .map_err(anyhow::Error::from)
                .context("the component does not export wasi:http/incoming-handler")?;
            let proxy = pre
                .instantiate_async(&mut store)
                .await
                .map_err(anyhow::Error::from)
                .context("instantiating")?;
            let req = store.data_mut().http().new_incoming_request(
                wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
                request,
            )?;
            let out = store.data_mut().http().new_response_outparam(sender)?;
            anyhow::Ok((proxy, req, out))
        };
        let (proxy, req, out) = match setup.await {
            Ok(parts) => parts,
            Err(e) => {
                self.shared
                    .log(&format!("[host] {}: {e:#}", route.component));
                return text_response(500, "component failed to start");
            }
        };
        let app = self.clone();
        let id = route.component.clone();
        let task = tokio::spawn(async move {
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await;
            app.collect_output(&id, store.data());
            if let Err(e) = result {
                app.shared.log(&format!("[host] {id} trapped: {e:?}"));
            }
        });
        match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => {
                self.shared.log(&format!(
                    "[host] {} answered with error {code:?}",
                    route.component
                ));
                text_response(500, "")
            }
            Err(_) => {
                // The guest trapped or returned without setting a response.
                if let Err(e) = task.await {
                    self.shared
                        .log(&format!("[host] {} task failed: {e}", route.component));
                }
                text_response(500, "")
            }
        }
    }

    /// Service chaining: `http://<component>.spin.internal/...`, routed as if
    /// by the wildcard route `/...`, private routes included.
    async fn chain(
        self: &Arc<Self>,
        target: &str,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, wasmtime_wasi_http::Error> {
        if !self.components.contains_key(target) {
            return Err(wasmtime_wasi_http::Error::DestinationNotFound);
        }
        let path_and_query = request
            .uri()
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default();
        let full_url = request.uri().to_string();
        // Spin removes a service-chaining Host header.
        request.headers_mut().remove(http::header::HOST);
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("localhost"),
        );
        let client = SocketAddr::from(([127, 0, 0, 1], 0));
        let route = Router::synthetic(target, &path_and_query, &full_url, client);
        Ok(self.dispatch_http(route, request).await)
    }

    /// Runs one Redis message through a fresh instance, as Spin's trigger does.
    async fn dispatch_redis(self: &Arc<Self>, component_id: &str, payload: Vec<u8>) {
        let Some(component) = self.components.get(component_id) else {
            return;
        };
        let mut store = self.new_store(component, self);
        let result = async {
            let pre = RedisTriggerPre::new(component.pre.clone())
                .map_err(anyhow::Error::from)
                .context("the component does not export fermyon:spin/inbound-redis")?;
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .map_err(anyhow::Error::from)
                .context("instantiating")?;
            instance
                .fermyon_spin_inbound_redis()
                .call_handle_message(&mut store, &payload)
                .await
                .map_err(anyhow::Error::from)
        }
        .await;
        self.collect_output(component_id, store.data());
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.shared.log(&format!(
                "[host] {component_id}: Redis handler returned an error: {e:?}"
            )),
            Err(e) => self
                .shared
                .log(&format!("[host] {component_id} trapped: {e:?}")),
        }
    }
}

/// A running app. Dropping it stops the HTTP listener and the Redis triggers.
pub struct RunningApp {
    inner: Arc<AppInner>,
    addr: Option<SocketAddr>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Arc<AtomicBool>,
    subscribers: Vec<JoinHandle<()>>,
}

impl RunningApp {
    /// Loads the manifest, compiles the components, subscribes the Redis
    /// triggers and starts serving HTTP. Returns once all of it is ready.
    ///
    /// # Errors
    /// When the manifest, a component, a variable or the Redis server is wrong.
    pub fn start(config: &HostConfig) -> anyhow::Result<Self> {
        let mut manifest = Manifest::load(&config.manifest)?;
        if let Some(only) = &config.components {
            if let Some(unknown) = only.iter().find(|c| !manifest.component.contains_key(*c)) {
                bail!("no component {unknown:?} in the manifest");
            }
            manifest.component.retain(|id, _| only.contains(id));
            manifest
                .trigger
                .http
                .retain(|t| only.contains(&t.component));
            manifest
                .trigger
                .redis
                .retain(|t| only.contains(&t.component));
        }
        let variables = Variables::resolve(&manifest.variables, &config.variables)?;
        let linker = linker()?;
        let mut components = HashMap::new();
        for (id, def) in &manifest.component {
            let component = compile(&manifest.source_path(def))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("linking component {id:?}"))?;
            let rendered: Vec<String> = def
                .allowed_outbound_hosts
                .iter()
                .map(|h| variables.render(h))
                .collect::<anyhow::Result<_>>()?;
            let component_vars = def
                .variables
                .iter()
                .map(|(k, v)| Ok((k.clone(), variables.render(v)?)))
                .collect::<anyhow::Result<_>>()?;
            let info = ComponentInfo {
                id: id.clone(),
                key_value_stores: def.key_value_stores.clone(),
                allowed_outbound_hosts: AllowedHosts::parse(rendered.iter().map(String::as_str))?,
                variables: component_vars,
            };
            components.insert(
                id.clone(),
                LoadedComponent {
                    info: Arc::new(info),
                    pre,
                },
            );
        }
        let runtime_config = match &config.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let kv = match &config.kv {
            Some(kv) => kv.clone(),
            None => Arc::new(KvData::open(
                &runtime_config.key_value_stores,
                config.state_dir.as_deref(),
            )?),
        };
        let has_http = !manifest.trigger.http.is_empty();
        let has_redis = !manifest.trigger.redis.is_empty();
        let listen = match (config.listen, has_http) {
            (Listen::Default(addr) | Listen::Explicit(addr), true) => Some(addr),
            (Listen::Default(_), false) => None,
            // `spin up` hands `--listen` to the only trigger there is; the
            // Redis trigger takes no options, so clap refuses it.
            (Listen::Explicit(_), false) => bail!("error: unexpected argument '--listen' found"),
        };
        let inner = Arc::new(AppInner {
            router: Router::build(&manifest.trigger.http)?,
            components,
            shared: Arc::new(AppShared {
                kv,
                logs: Mutex::default(),
                echo: config.echo_guest_output,
                killed: AtomicBool::new(false),
                exit: Mutex::new(None),
                shutdown: tokio::sync::watch::Sender::new(false),
            }),
            max_memory: config.max_instance_memory,
            multi_trigger: has_http && has_redis,
        });

        // Named so that a benchmark can tell the front's CPU time from a
        // processor's (tests/benches/throughput.rs).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(if has_http { "spin-rt-http" } else { "spin-rt" })
            .enable_all()
            .build()?;
        let addr = match listen {
            Some(listen) => {
                let listener = runtime.block_on(tokio::net::TcpListener::bind(listen))?;
                let addr = listener.local_addr()?;
                runtime.spawn(serve(inner.clone(), listener));
                Some(addr)
            }
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));

        let mut subscribers = Vec::new();
        let default_address = manifest
            .application
            .trigger
            .redis
            .as_ref()
            .map(|r| r.address.as_str());
        for t in &manifest.trigger.redis {
            let address = t
                .address
                .as_deref()
                .or(default_address)
                .ok_or_else(|| anyhow!("trigger.redis for {:?} has no address", t.component))?;
            let address = variables.render(address)?;
            let channel = variables.render(&t.channel)?;
            subscribers.push(subscribe(
                inner.clone(),
                runtime.handle().clone(),
                &address,
                channel,
                t.component.clone(),
                stop.clone(),
            )?);
        }
        Ok(Self {
            inner,
            addr,
            runtime: Some(runtime),
            stop,
            subscribers,
        })
    }

    /// The address the app listens on; `None` without an HTTP trigger.
    pub const fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Why the app terminated on its own (a Redis trigger lost its
    /// connection), or `None` while it runs.
    pub fn exit_reason(&self) -> Option<String> {
        self.inner
            .shared
            .exit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Everything the guests printed and the host noted, so far.
    pub fn logs(&self) -> String {
        self.inner
            .shared
            .logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The app's key-value data (to inspect, or to share with another app).
    pub fn kv(&self) -> &Arc<KvData> {
        &self.inner.shared.kv
    }

    /// Stops the app abruptly, like `kill -9` of `spin up`: running guests
    /// trap at their next epoch check, host calls are refused, nothing is
    /// cleaned up or finished.
    pub fn kill(self) {
        self.inner.shared.killed.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Blocks until the app terminates on its own, and says why (for the
    /// CLI, which then exits with an error as `spin up` does).
    pub fn wait(&self) -> String {
        loop {
            if let Some(reason) = self.exit_reason() {
                return reason;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.subscribers.drain(..) {
            if s.join().is_err() {
                eprintln!("[host] a Redis subscriber panicked");
            }
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Serves HTTP until the app terminates; then the listener is closed (new
/// connections are refused) and open connections are dropped, as when the
/// `spin up` process exits.
async fn serve(app: Arc<AppInner>, listener: tokio::net::TcpListener) {
    let mut shutdown = app.shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|down| *down) => return,
        };
        let Ok((stream, client)) = accepted else {
            continue;
        };
        let app = app.clone();
        let mut shutdown = app.shared.shutdown.subscribe();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(route_request(&app, req, client).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                // Clients hanging up mid-response is normal; nothing to report.
                result = connection => drop(result),
                _ = shutdown.wait_for(|down| *down) => {}
            }
        });
    }
}

async fn route_request(
    app: &Arc<AppInner>,
    req: hyper::Request<Incoming>,
    client: SocketAddr,
) -> hyper::Response<HyperOutgoingBody> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let full_url = format!("http://{host}{path_and_query}");
    let Some(route) = app.router.route(req.uri().path(), &full_url, client) else {
        return text_response(404, "");
    };
    let (mut parts, body) = req.into_parts();
    match http::Uri::try_from(full_url.as_str()) {
        Ok(uri) => parts.uri = uri,
        Err(_) => return text_response(400, ""),
    }
    let body = body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync();
    app.dispatch_http(route, hyper::Request::from_parts(parts, body))
        .await
}

/// Subscribes to `channel` and hands each message, one at a time, to a fresh
/// instance of `component` (Spin's Redis trigger). Returns once subscribed.
fn subscribe(
    app: Arc<AppInner>,
    runtime: tokio::runtime::Handle,
    address: &str,
    channel: String,
    component: String,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let client = redis::Client::open(address)
        .with_context(|| format!("redis trigger address {address:?}"))?;
    let server = client.get_connection_info().addr.to_string();
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .with_context(|| format!("Redis trigger failed to connect to {address}"))?;
    conn.set_read_timeout(Some(Duration::from_millis(100)))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // The Redis-triggered component runs on this thread (`block_on`).
    let handle = std::thread::Builder::new().name("spin-redis".into()).spawn(move || {
        let mut pubsub = conn.as_pubsub();
        if let Err(e) = pubsub.subscribe(&channel) {
            let _sent = ready_tx.send(Err(anyhow!("subscribing to {channel:?}: {e}")));
            return;
        }
        let _sent = ready_tx.send(Ok(()));
        while !stop.load(Ordering::Relaxed) && !app.shared.killed.load(Ordering::Relaxed) {
            match pubsub.get_message() {
                Ok(msg) => {
                    let payload = msg.get_payload_bytes().to_vec();
                    runtime.block_on(app.dispatch_redis(&component, payload));
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => {
                    // Spin's subscriber ends when its message stream does
                    // (`run_listener`: "disconnected from <addr>"), its
                    // trigger process exits with that error, and `spin up`
                    // kills the other trigger processes and exits.
                    app.shared.log(&format!(
                        "[host] ERROR spin_trigger::cli: Trigger executor failed: disconnected from {server} ({e})"
                    ));
                    if app.multi_trigger {
                        app.shared
                            .log("[host] A trigger exited unexpectedly. Terminating.");
                    }
                    app.shared
                        .terminate(format!("Error: disconnected from {server}"));
                    return;
                }
            }
        }
    })?;
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("timed out subscribing to the Redis trigger channel"),
    }
}
