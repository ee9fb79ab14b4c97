//! `fermyon:spin/key-value@2.0.0` with the backends `spin up` offers, read
//! from Spin's `key-value-spin` and `key-value-redis` crates:
//!
//! - **memory** (the tests' default): one map per store label, fresh for
//!   every app, shared only with the apps it is handed to;
//! - **SQLite** (`spin up --state-dir DIR`, or `type = "spin"` with a `path`
//!   in a runtime config): the table `spin_key_value(store, key, value)` in
//!   `DIR/sqlite_key_value.db`, written with the same statements, so two
//!   processes on one machine share it as two `spin up` do;
//! - **Redis** (`type = "redis"`, `url`): every key as a plain Redis string
//!   under its own name, **whatever the store's label** (Spin ignores it),
//!   `get-keys` as `KEYS *` over the whole database; a lost connection fails
//!   the call and the next call connects again (Spin's `ConnectionManager`).
//!
//! As in Spin, a component may open only the stores listed in its
//! `key_value_stores` (else `access-denied`), and only `default` and the
//! labels a runtime config defines exist (else `no-such-store`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use wasmtime::component::Resource;

use crate::bindings::imports::fermyon::spin2_0_0::key_value::{Error, Host, HostStore};
use crate::host::HostState;

/// The only store that exists without a runtime config file.
pub const DEFAULT_STORE: &str = "default";

/// Where one store label keeps its data.
enum Backend {
    Memory(Mutex<BTreeMap<String, Vec<u8>>>),
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Redis(RedisKv),
}

/// Every store of one app.
pub struct KvData {
    stores: HashMap<String, Backend>,
    /// What each component asked of the stores, for benchmarks.
    calls: Mutex<BTreeMap<String, KvCalls>>,
}

/// The key-value calls of one component and the bytes they moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvCalls {
    /// `get` calls.
    pub gets: u64,
    /// Bytes `get` returned.
    pub bytes_read: u64,
    /// `set` calls.
    pub sets: u64,
    /// Bytes `set` wrote (values only).
    pub bytes_written: u64,
    /// `delete` calls.
    pub deletes: u64,
    /// `exists` and `get-keys` calls.
    pub others: u64,
}

impl Default for KvData {
    fn default() -> Self {
        Self::from_backends(HashMap::new(), || Backend::Memory(Mutex::default()))
    }
}

impl std::fmt::Debug for KvData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvData")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A key-value backend a runtime config names for one store label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// `type = "spin"`, `path = "…"` (relative to the runtime config file).
    Sqlite(std::path::PathBuf),
    /// `type = "redis"`, `url = "redis://…"`.
    Redis(String),
}

impl KvData {
    fn from_backends(
        mut stores: HashMap<String, Backend>,
        default: impl FnOnce() -> Backend,
    ) -> Self {
        stores
            .entry(DEFAULT_STORE.to_owned())
            .or_insert_with(default);
        Self {
            stores,
            calls: Mutex::default(),
        }
    }

    /// The calls each component made so far, by component id.
    pub fn calls(&self) -> BTreeMap<String, KvCalls> {
        lock(&self.calls).clone()
    }

    fn count(&self, component: &str, f: impl FnOnce(&mut KvCalls)) {
        f(lock(&self.calls).entry(component.to_owned()).or_default());
    }

    /// The stores of an app: those `configured` (by a runtime config file),
    /// and `default`, unless configured, in `state_dir`'s SQLite file (as
    /// `spin up --state-dir`) or, without one, in memory.
    ///
    /// # Errors
    /// When a SQLite file cannot be opened or a Redis URL is malformed.
    pub fn open(
        configured: &BTreeMap<String, StoreConfig>,
        state_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let mut stores = HashMap::new();
        for (label, config) in configured {
            let backend = match config {
                StoreConfig::Sqlite(path) => Backend::Sqlite(open_sqlite(path)?),
                StoreConfig::Redis(url) => Backend::Redis(RedisKv::new(url)?),
            };
            stores.insert(label.clone(), backend);
        }
        let default = match state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the state dir {}", dir.display()))?;
                Backend::Sqlite(open_sqlite(&dir.join("sqlite_key_value.db"))?)
            }
            None => Backend::Memory(Mutex::default()),
        };
        Ok(Self::from_backends(stores, || default))
    }

    /// The keys of one store, sorted, for tests that inspect state.
    ///
    /// # Errors
    /// When the store does not exist or its backend cannot be read.
    pub fn keys(&self, label: &str) -> anyhow::Result<Vec<String>> {
        let backend = self
            .stores
            .get(label)
            .with_context(|| format!("no store {label:?}"))?;
        let mut keys = match backend {
            Backend::Memory(map) => lock(map).keys().cloned().collect(),
            Backend::Sqlite(db) => sqlite_keys(&lock(db), label)?,
            Backend::Redis(redis) => {
                let mut conn = redis.client.get_connection()?;
                redis::cmd("KEYS").arg("*").query(&mut conn)?
            }
        };
        keys.sort();
        Ok(keys)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open_sqlite(path: &Path) -> anyhow::Result<Arc<Mutex<rusqlite::Connection>>> {
    let db = rusqlite::Connection::open(path)
        .with_context(|| format!("opening the key-value file {}", path.display()))?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS spin_key_value (
            store TEXT NOT NULL,
            key   TEXT NOT NULL,
            value BLOB NOT NULL,

            PRIMARY KEY (store, key)
        )",
        [],
    )?;
    Ok(Arc::new(Mutex::new(db)))
}

fn sqlite_keys(db: &rusqlite::Connection, label: &str) -> rusqlite::Result<Vec<String>> {
    db.prepare_cached("SELECT key FROM spin_key_value WHERE store=$1")?
        .query_map([label], |row| row.get(0))?
        .collect()
}

/// Spin's Redis key-value backend: one connection, opened on first use and
/// again after it broke.
struct RedisKv {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl RedisKv {
    fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: redis::Client::open(url)
                .with_context(|| format!("key-value Redis URL {url:?}"))?,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        let mut slot = self.connection.lock().await;
        let mut conn = match slot.as_ref() {
            Some(conn) => conn.clone(),
            None => {
                let conn = self
                    .client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(other)?;
                *slot = Some(conn.clone());
                conn
            }
        };
        drop(slot);
        let result = cmd.query_async(&mut conn).await;
        if let Err(e) = &result
            && (e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error())
        {
            *self.connection.lock().await = None;
        }
        result.map_err(other)
    }
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

/// An open store: the app's data and the label, checked at `open`.
pub struct StoreHandle {
    label: String,
    data: Arc<KvData>,
}

impl StoreHandle {
    fn backend(&self) -> Result<&Backend, Error> {
        self.data.stores.get(&self.label).ok_or(Error::NoSuchStore)
    }

    fn sqlite<T>(
        &self,
        db: &Mutex<rusqlite::Connection>,
        f: impl FnOnce(&rusqlite::Connection, &str) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        f(&lock(db), &self.label).map_err(other)
    }
}

impl Host for HostState {}

impl HostStore for HostState {
    async fn open(&mut self, label: String) -> Result<Resource<StoreHandle>, Error> {
        if !self.component.key_value_stores.contains(&label) {
            return Err(Error::AccessDenied);
        }
        if !self.app.kv.stores.contains_key(&label) {
            return Err(Error::NoSuchStore);
        }
        let handle = StoreHandle {
            label,
            data: self.app.kv.clone(),
        };
        self.table.push(handle).map_err(other)
    }

    async fn get(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        let value = self.get_value(&store, key).await?;
        let read = value.as_ref().map_or(0, Vec::len) as u64;
        self.app.kv.count(&self.component.id, |c| {
            c.gets += 1;
            c.bytes_read += read;
        });
        Ok(value)
    }

    async fn set(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        let written = value.len() as u64;
        self.app.kv.count(&self.component.id, |c| {
            c.sets += 1;
            c.bytes_written += written;
        });
        self.set_value(&store, key, value).await
    }

    async fn delete(&mut self, store: Resource<StoreHandle>, key: String) -> Result<(), Error> {
        self.app.kv.count(&self.component.id, |c| c.deletes += 1);
        self.delete_key(&store, key).await
    }

    async fn exists(&mut self, store: Resource<StoreHandle>, key: String) -> Result<bool, Error> {
        self.app.kv.count(&self.component.id, |c| c.others += 1);
        self.key_exists(&store, key).await
    }

    async fn get_keys(&mut self, store: Resource<StoreHandle>) -> Result<Vec<String>, Error> {
        self.app.kv.count(&self.component.id, |c| c.others += 1);
        self.all_keys(&store).await
    }

    async fn drop(&mut self, store: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl HostState {
    async fn get_value(
        &mut self,
        store: &Resource<StoreHandle>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        let s = self.kv_store(store)?;
        match s.backend()? {
            Backend::Memory(map) => Ok(lock(map).get(&key).cloned()),
            Backend::Sqlite(db) => s.sqlite(db, |db, label| {
                db.prepare_cached("SELECT value FROM spin_key_value WHERE store=$1 AND key=$2")?
                    .query_map([label, key.as_str()], |row| row.get(0))?
                    .next()
                    .transpose()
            }),
            Backend::Redis(redis) => redis.query(redis::cmd("GET").arg(&key)).await,
        }
    }

    async fn set_value(
        &mut self,
        store: &Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        let s = self.kv_store(store)?;
        match s.backend()? {
            Backend::Memory(map) => {
                lock(map).insert(key, value);
                Ok(())
            }
            Backend::Sqlite(db) => s.sqlite(db, |db, label| {
                db.prepare_cached(
                    "INSERT INTO spin_key_value (store, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT(store, key) DO UPDATE SET value=$3",
                )?
                .execute(rusqlite::params![label, key, value])
                .map(drop)
            }),
            Backend::Redis(redis) => redis.query(redis::cmd("SET").arg(&key).arg(value)).await,
        }
    }

    async fn delete_key(
        &mut self,
        store: &Resource<StoreHandle>,
        key: String,
    ) -> Result<(), Error> {
        let s = self.kv_store(store)?;
        match s.backend()? {
            Backend::Memory(map) => {
                lock(map).remove(&key);
                Ok(())
            }
            Backend::Sqlite(db) => s.sqlite(db, |db, label| {
                db.prepare_cached("DELETE FROM spin_key_value WHERE store=$1 AND key=$2")?
                    .execute([label, key.as_str()])
                    .map(drop)
            }),
            Backend::Redis(redis) => redis.query(redis::cmd("DEL").arg(&key)).await,
        }
    }

    async fn key_exists(
        &mut self,
        store: &Resource<StoreHandle>,
        key: String,
    ) -> Result<bool, Error> {
        let s = self.kv_store(store)?;
        match s.backend()? {
            Backend::Memory(map) => Ok(lock(map).contains_key(&key)),
            Backend::Sqlite(db) => s.sqlite(db, |db, label| {
                db.prepare_cached("SELECT 1 FROM spin_key_value WHERE store=$1 AND key=$2 LIMIT 1")?
                    .exists([label, key.as_str()])
            }),
            Backend::Redis(redis) => redis.query(redis::cmd("EXISTS").arg(&key)).await,
        }
    }

    async fn all_keys(&mut self, store: &Resource<StoreHandle>) -> Result<Vec<String>, Error> {
        let s = self.kv_store(store)?;
        match s.backend()? {
            Backend::Memory(map) => Ok(lock(map).keys().cloned().collect()),
            Backend::Sqlite(db) => s.sqlite(db, sqlite_keys),
            Backend::Redis(redis) => redis.query(redis::cmd("KEYS").arg("*")).await,
        }
    }

    fn kv_store(&self, store: &Resource<StoreHandle>) -> Result<&StoreHandle, Error> {
        self.table.get(store).map_err(other)
    }
}
