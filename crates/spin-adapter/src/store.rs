//! Spin's key-value store as the core's [`KeyValue`] port, and the blob
//! store chosen by configuration on top of it.

use darkroom_core::ports::{KeyValue, PortError};
use spin_sdk::key_value::Store;

/// The key-value store every component is granted (`key_value_stores`).
pub const STORE_LABEL: &str = "default";

/// A Spin key-value store.
pub struct SpinKv(Store);

impl SpinKv {
    /// Opens the [`STORE_LABEL`] store.
    ///
    /// # Errors
    /// [`PortError`] when the component is not granted the store or the host refuses it.
    pub fn open_default() -> Result<Self, PortError> {
        Store::open(STORE_LABEL)
            .map(Self)
            .map_err(|e| PortError::new(format!("key-value store {STORE_LABEL:?}: {e}")))
    }
}

fn port_error(op: &str, key: &str, e: &spin_sdk::key_value::Error) -> PortError {
    PortError::new(format!("key-value {op} {key:?}: {e}"))
}

impl KeyValue for SpinKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        self.0.get(key).map_err(|e| port_error("get", key, &e))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), PortError> {
        self.0
            .set(key, value)
            .map_err(|e| port_error("set", key, &e))
    }

    fn delete(&self, key: &str) -> Result<(), PortError> {
        self.0
            .delete(key)
            .map_err(|e| port_error("delete", key, &e))
    }
}

/// The configured blob store: chunks in `kv`, or an S3 bucket.
///
/// # Errors
/// [`crate::problem::ApiError`] when the configuration is wrong.
pub fn blob_store<'a>(
    kv: &'a SpinKv,
) -> Result<Box<dyn darkroom_core::ports::BlobStore + 'a>, crate::problem::ApiError> {
    blob_store_for(kv, crate::config::blob_store()?)
}

/// The blob store `config` names, for a caller that has read the settings
/// already.
///
/// # Errors
/// [`crate::problem::ApiError`] when the S3 settings do not form a bucket URL.
pub fn blob_store_for(
    kv: &SpinKv,
    config: crate::config::BlobStoreConfig,
) -> Result<Box<dyn darkroom_core::ports::BlobStore + '_>, crate::problem::ApiError> {
    Ok(match config {
        crate::config::BlobStoreConfig::KeyValue => {
            Box::new(darkroom_core::blob::KvBlobStore::new(kv))
        }
        crate::config::BlobStoreConfig::S3(config) => Box::new(
            crate::s3::S3BlobStore::new(&config)
                .map_err(crate::problem::ApiError::StorageUnavailable)?,
        ),
    })
}
