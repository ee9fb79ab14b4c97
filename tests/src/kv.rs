//! `fermyon:spin/key-value@2.0.0` in memory: one map per store label,
//! shared by every component of one app and fresh for every app. As in
//! Spin, a component may open only the stores listed in its
//! `key_value_stores` (else `access-denied`), and only `default` exists
//! without a runtime config (else `no-such-store`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::component::Resource;

use crate::bindings::imports::fermyon::spin2_0_0::key_value::{Error, Host, HostStore};
use crate::host::HostState;

/// The only store that exists without a runtime config file.
pub const DEFAULT_STORE: &str = "default";

/// Every store of one app.
#[derive(Debug, Default)]
pub struct KvData {
    stores: Mutex<HashMap<String, BTreeMap<String, Vec<u8>>>>,
}

impl KvData {
    fn with<T>(&self, label: &str, f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> T) -> T {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        f(stores.entry(label.to_owned()).or_default())
    }

    /// A copy of one store's contents, for tests that inspect state.
    pub fn snapshot(&self, label: &str) -> BTreeMap<String, Vec<u8>> {
        self.with(label, |m| m.clone())
    }
}

/// An open store: the label, checked at `open`.
pub struct StoreHandle {
    label: String,
    data: Arc<KvData>,
}

impl Host for HostState {}

impl HostStore for HostState {
    async fn open(&mut self, label: String) -> Result<Resource<StoreHandle>, Error> {
        if !self.component.key_value_stores.contains(&label) {
            return Err(Error::AccessDenied);
        }
        if label != DEFAULT_STORE {
            return Err(Error::NoSuchStore);
        }
        let handle = StoreHandle {
            label,
            data: self.app.kv.clone(),
        };
        self.table
            .push(handle)
            .map_err(|e| Error::Other(e.to_string()))
    }

    async fn get(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        let s = self.kv_store(&store)?;
        Ok(s.data.with(&s.label, |m| m.get(&key).cloned()))
    }

    async fn set(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        let s = self.kv_store(&store)?;
        s.data.with(&s.label, |m| m.insert(key, value));
        Ok(())
    }

    async fn delete(&mut self, store: Resource<StoreHandle>, key: String) -> Result<(), Error> {
        let s = self.kv_store(&store)?;
        s.data.with(&s.label, |m| m.remove(&key));
        Ok(())
    }

    async fn exists(&mut self, store: Resource<StoreHandle>, key: String) -> Result<bool, Error> {
        let s = self.kv_store(&store)?;
        Ok(s.data.with(&s.label, |m| m.contains_key(&key)))
    }

    async fn get_keys(&mut self, store: Resource<StoreHandle>) -> Result<Vec<String>, Error> {
        let s = self.kv_store(&store)?;
        Ok(s.data.with(&s.label, |m| m.keys().cloned().collect()))
    }

    async fn drop(&mut self, store: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl HostState {
    fn kv_store(&self, store: &Resource<StoreHandle>) -> Result<&StoreHandle, Error> {
        self.table
            .get(store)
            .map_err(|e| Error::Other(e.to_string()))
    }
}
