//! The part of Spin's manifest v2 (`spin.toml`) that the test host reads:
//! application variables, HTTP and Redis triggers, and per-component
//! `source`, `key_value_stores`, `allowed_outbound_hosts` and `variables`.
//! Unknown fields are ignored, as they do not change how the app runs here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// A parsed `spin.toml`.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// Must be 2.
    pub spin_manifest_version: u32,
    /// `[application]`.
    pub application: Application,
    /// `[variables]`.
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDef>,
    /// `[[trigger.*]]`.
    #[serde(default)]
    pub trigger: Triggers,
    /// `[component.<id>]`.
    #[serde(default)]
    pub component: BTreeMap<String, ComponentDef>,
    /// The directory relative paths are resolved from.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// `[application]`.
#[derive(Debug, Deserialize)]
pub struct Application {
    /// The app's name.
    pub name: String,
    /// `[application.trigger.*]`.
    #[serde(default)]
    pub trigger: AppTriggers,
}

/// `[application.trigger]`.
#[derive(Debug, Default, Deserialize)]
pub struct AppTriggers {
    /// `[application.trigger.redis]`.
    pub redis: Option<AppRedis>,
}

/// `[application.trigger.redis]`.
#[derive(Debug, Deserialize)]
pub struct AppRedis {
    /// The default Redis address (may be a `{{ variable }}` template).
    pub address: String,
}

/// One entry of `[variables]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDef {
    /// The value when nothing overrides it.
    pub default: Option<String>,
    /// Whether a value must be provided.
    #[serde(default)]
    pub required: bool,
    /// Whether the value is a secret (not shown in logs).
    #[serde(default)]
    pub secret: bool,
}

/// `[[trigger.http]]` and `[[trigger.redis]]`.
#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    /// HTTP routes.
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
    /// Redis channels.
    #[serde(default)]
    pub redis: Vec<RedisTrigger>,
}

/// `[[trigger.http]]`.
#[derive(Debug, Deserialize)]
pub struct HttpTrigger {
    /// A route pattern, or `{ private = true }`.
    pub route: RouteDef,
    /// The component that serves it.
    pub component: String,
}

/// A route as written in the manifest.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteDef {
    /// `/path`, `/path/...`, `/path/:param`.
    Path(String),
    /// `{ private = true }`: reachable only by service chaining.
    Private {
        /// Must be true.
        private: bool,
    },
}

/// `[[trigger.redis]]`.
#[derive(Debug, Deserialize)]
pub struct RedisTrigger {
    /// The channel (may be a template).
    pub channel: String,
    /// The component that handles it.
    pub component: String,
    /// Overrides the application's Redis address.
    pub address: Option<String>,
}

/// `[component.<id>]`.
#[derive(Debug, Deserialize)]
pub struct ComponentDef {
    /// Path of the `.wasm`, relative to the manifest.
    pub source: String,
    /// Key-value stores the component may open.
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// Hosts the component may reach (templates allowed).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Component variables: name → template over application variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

impl Manifest {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// When the file cannot be read or is not a manifest this host supports.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut manifest: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if manifest.spin_manifest_version != 2 {
            bail!("only spin_manifest_version = 2 is supported");
        }
        manifest.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for t in &manifest.trigger.http {
            if !manifest.component.contains_key(&t.component) {
                bail!("trigger.http routes to unknown component {:?}", t.component);
            }
            if let RouteDef::Private { private: false } = t.route {
                bail!(
                    "component {:?}: route must be a pattern or {{ private = true }}",
                    t.component
                );
            }
        }
        for t in &manifest.trigger.redis {
            if !manifest.component.contains_key(&t.component) {
                bail!("trigger.redis names unknown component {:?}", t.component);
            }
        }
        Ok(manifest)
    }

    /// The `.wasm` path of component `id`.
    pub fn source_path(&self, def: &ComponentDef) -> PathBuf {
        self.dir.join(&def.source)
    }
}
