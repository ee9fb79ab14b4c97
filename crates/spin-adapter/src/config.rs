//! Configuration from Spin variables (`SPIN_VARIABLE_*` or
//! `spin up --variable`), with the defaults declared in `spin.toml`.

use darkroom_core::format::Limits;
use thiserror::Error;

/// A variable is missing or does not parse.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The host has no value for the variable.
    #[error("variable {name}: {source}")]
    Unavailable {
        /// The variable.
        name: &'static str,
        /// The host's answer.
        source: spin_sdk::variables::Error,
    },
    /// The value does not parse.
    #[error("variable {name} = {value:?}: {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

fn get(name: &'static str) -> Result<String, ConfigError> {
    spin_sdk::variables::get(name).map_err(|source| ConfigError::Unavailable { name, source })
}

fn get_positive(name: &'static str) -> Result<u64, ConfigError> {
    let value = get(name)?;
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::Invalid {
            name,
            value,
            expected: "a positive whole number",
        }),
    }
}

/// The upload limits (`max_upload_bytes`, `max_pixels`).
///
/// # Errors
/// [`ConfigError`].
pub fn limits() -> Result<Limits, ConfigError> {
    Ok(Limits {
        max_upload_bytes: get_positive("max_upload_bytes")?,
        max_pixels: get_positive("max_pixels")?,
    })
}

/// Where jobs are announced.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// `redis_url`, e.g. `redis://127.0.0.1:6379`.
    pub redis_url: String,
    /// `queue_channel`.
    pub channel: String,
}

/// The queue settings (`redis_url`, `queue_channel`).
///
/// # Errors
/// [`ConfigError`].
pub fn queue() -> Result<QueueConfig, ConfigError> {
    let channel = get("queue_channel")?;
    if channel.trim().is_empty() {
        return Err(ConfigError::Invalid {
            name: "queue_channel",
            value: channel,
            expected: "a channel name",
        });
    }
    Ok(QueueConfig {
        redis_url: get("redis_url")?,
        channel,
    })
}
