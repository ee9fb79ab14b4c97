//! `spin up --runtime-config-file`: the parts of Spin's runtime config that
//! Darkroom ships files for, parsed as Spin parses them.
//!
//! - `[key_value_store.<label>]` with `type = "redis"` and `url`, or
//!   `type = "spin"` and `path` (relative to the file), as
//!   `crates/key-value-redis` and `crates/key-value-spin` (`MakeKeyValueStore`)
//!   read them; other types are refused, naming them.
//! - `[outbound_networking]` (`block_networks`, Spin >= 3.4,
//!   `crates/factor-outbound-networking/src/runtime_config/spin.rs`) is read
//!   and checked (`"private"` or CIDRs) but **not enforced**: the test host
//!   does not resolve and filter outbound addresses.
//!
//! Any other top-level table is refused, so that a config whose meaning the
//! host would silently drop never passes for tested.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::kv::StoreConfig;

/// What a runtime config file sets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Key-value stores by label.
    pub key_value_stores: BTreeMap<String, StoreConfig>,
    /// `[outbound_networking] block_networks`, as written.
    pub block_networks: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    key_value_store: BTreeMap<String, StoreToml>,
    outbound_networking: Option<OutboundNetworking>,
}

#[derive(Deserialize)]
struct StoreToml {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundNetworking {
    #[serde(default)]
    block_networks: Vec<String>,
}

impl RuntimeConfig {
    /// Reads `path`.
    ///
    /// # Errors
    /// When the file cannot be read or sets something the host does not know.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the runtime config {}", path.display()))?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, dir).with_context(|| format!("runtime config {}", path.display()))
    }

    /// Parses a runtime config whose relative paths are relative to `dir`.
    ///
    /// # Errors
    /// When the text is not a runtime config the host understands.
    pub fn parse(text: &str, dir: &Path) -> anyhow::Result<Self> {
        let file: File = toml::from_str(text)?;
        let mut config = Self::default();
        for (label, store) in file.key_value_store {
            let backend = match (store.kind.as_str(), store.url, store.path) {
                ("redis", Some(url), None) => StoreConfig::Redis(url),
                ("spin", None, Some(path)) => StoreConfig::Sqlite(dir.join(path)),
                ("redis", ..) => bail!("key_value_store.{label}: type \"redis\" takes `url`"),
                ("spin", ..) => bail!(
                    "key_value_store.{label}: type \"spin\" takes `path` (an in-memory SQLite store is not reproduced)"
                ),
                (other, ..) => bail!(
                    "key_value_store.{label}: type {other:?} is not reproduced by the test host"
                ),
            };
            config.key_value_stores.insert(label, backend);
        }
        if let Some(net) = file.outbound_networking {
            for network in &net.block_networks {
                let valid = network == "private"
                    || network.split_once('/').is_some_and(|(ip, bits)| {
                        ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
                    });
                if !valid {
                    bail!(
                        "outbound_networking.block_networks: {network:?} is neither \"private\" nor a CIDR"
                    );
                }
            }
            config.block_networks = net.block_networks;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_key_value_store_is_read_as_spin_reads_it() {
        let config = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6380\"\n",
            Path::new("/app"),
        )
        .expect("valid");
        assert_eq!(
            config.key_value_stores["default"],
            StoreConfig::Redis("redis://127.0.0.1:6380".into())
        );
    }

    #[test]
    fn a_sqlite_path_is_relative_to_the_config_file() {
        let config = RuntimeConfig::parse(
            "[key_value_store.cache]\ntype = \"spin\"\npath = \"data/kv.db\"\n",
            Path::new("/app/rc"),
        )
        .expect("valid");
        assert_eq!(
            config.key_value_stores["cache"],
            StoreConfig::Sqlite("/app/rc/data/kv.db".into())
        );
    }

    #[test]
    fn blocked_networks_are_checked_and_unknown_tables_refused() {
        let config = RuntimeConfig::parse(
            "[outbound_networking]\nblock_networks = [\"private\", \"100.64.0.0/10\"]\n",
            Path::new("."),
        )
        .expect("valid");
        assert_eq!(config.block_networks, ["private", "100.64.0.0/10"]);
        assert!(
            RuntimeConfig::parse(
                "[outbound_networking]\nblock_networks = [\"lan\"]\n",
                Path::new(".")
            )
            .is_err()
        );
        assert!(RuntimeConfig::parse("[llm_compute]\ntype = \"spin\"\n", Path::new(".")).is_err());
        assert!(
            RuntimeConfig::parse(
                "[key_value_store.default]\ntype = \"azure_cosmos\"\n",
                Path::new(".")
            )
            .is_err()
        );
    }
}
