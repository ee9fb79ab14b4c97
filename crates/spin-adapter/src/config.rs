//! Configuration from Spin variables (`SPIN_VARIABLE_*` or
//! `spin up --variable`), with the defaults declared in `spin.toml`.

use std::time::Duration;

use darkroom_core::access::Tokens;
use darkroom_core::format::Limits;
use darkroom_core::pipeline::Optimize;
use darkroom_core::queue::RetryPolicy;
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

fn get_positive_u32(name: &'static str) -> Result<u32, ConfigError> {
    let value = get_positive(name)?;
    u32::try_from(value).map_err(|_| ConfigError::Invalid {
        name,
        value: value.to_string(),
        expected: "a number below 2^32",
    })
}

/// The upload limits (`max_upload_bytes`, `max_pixels`, `max_gif_frames`,
/// `max_memory_mib`).
///
/// # Errors
/// [`ConfigError`].
pub fn limits() -> Result<Limits, ConfigError> {
    Ok(Limits {
        max_upload_bytes: get_positive("max_upload_bytes")?,
        max_pixels: get_positive("max_pixels")?,
        max_frames: get_positive_u32("max_gif_frames")?,
        max_memory: get_positive("max_memory_mib")?.saturating_mul(1 << 20),
    })
}

/// How the optimized copy is made (`optimize`: `lossless` or `lossy`, with
/// `optimize_quality` from 1 to 100 for `lossy`).
///
/// # Errors
/// [`ConfigError`].
pub fn optimize() -> Result<Optimize, ConfigError> {
    let mode = get("optimize")?;
    match mode.trim() {
        "lossless" => Ok(Optimize::Lossless),
        "lossy" => {
            let value = get("optimize_quality")?;
            match value.trim().parse::<u8>() {
                Ok(quality @ 1..=100) => Ok(Optimize::Lossy { quality }),
                _ => Err(ConfigError::Invalid {
                    name: "optimize_quality",
                    value,
                    expected: "a whole number from 1 to 100",
                }),
            }
        }
        _ => Err(ConfigError::Invalid {
            name: "optimize",
            value: mode,
            expected: "`lossless` or `lossy`",
        }),
    }
}

/// Where jobs are announced.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// `redis_url`, e.g. `redis://127.0.0.1:6379`.
    pub redis_url: String,
    /// `queue_channel`.
    pub channel: String,
    /// `fetch_channel`: the fetcher's queue and doorbell.
    pub fetch_channel: String,
    /// `notify_channel`: the notifier's queue and doorbell.
    pub notify_channel: String,
}

/// `worker_url`: where to ask for the queue to be drained after a response
/// (the HTTP-only profile sets it to the worker's `*.spin.internal` route);
/// `None` when the component has no such variable or it is empty, as with
/// the Redis trigger (`spin.toml`).
pub fn worker_url() -> Option<String> {
    optional("worker_url")
}

/// `fetch_worker_url`: as [`worker_url`], for the fetcher's queue (the
/// HTTP-only profile's `fetch-worker`).
pub fn fetch_worker_url() -> Option<String> {
    optional("fetch_worker_url")
}

/// `notify_worker_url`: as [`worker_url`], for the notifier's queue (the
/// HTTP-only profile's `notify-worker`).
pub fn notify_worker_url() -> Option<String> {
    optional("notify_worker_url")
}

fn optional(name: &str) -> Option<String> {
    spin_sdk::variables::get(name)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// The bearer tokens that may upload, cancel and delete (`api_keys`,
/// comma-separated); empty when the guard is off.
///
/// # Errors
/// [`ConfigError`].
pub fn api_keys() -> Result<Tokens, ConfigError> {
    Ok(Tokens::parse(&get("api_keys")?))
}

/// Whether status and files need a key too (`private_reads`).
///
/// # Errors
/// [`ConfigError`] unless `true` or `false`.
pub fn private_reads() -> Result<bool, ConfigError> {
    get_bool("private_reads")
}

/// How long an `Idempotency-Key` is remembered (`idempotency_key_hours`).
///
/// # Errors
/// [`ConfigError`].
pub fn idempotency_ttl() -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(
        get_positive("idempotency_key_hours")? * 3600,
    ))
}

/// The queue settings (`redis_url`, `queue_channel`).
///
/// # Errors
/// [`ConfigError`].
pub fn queue() -> Result<QueueConfig, ConfigError> {
    let channel_named = |name: &'static str| {
        let channel = get(name)?;
        if channel.trim().is_empty() {
            return Err(ConfigError::Invalid {
                name,
                value: channel,
                expected: "a channel name",
            });
        }
        Ok(channel)
    };
    let channel = channel_named("queue_channel")?;
    let fetch_channel = channel_named("fetch_channel")?;
    let notify_channel = channel_named("notify_channel")?;
    if fetch_channel == channel {
        return Err(ConfigError::Invalid {
            name: "fetch_channel",
            value: fetch_channel,
            expected: "a channel other than queue_channel",
        });
    }
    if notify_channel == channel || notify_channel == fetch_channel {
        return Err(ConfigError::Invalid {
            name: "notify_channel",
            value: notify_channel,
            expected: "a channel other than queue_channel and fetch_channel",
        });
    }
    Ok(QueueConfig {
        redis_url: get("redis_url")?,
        channel,
        fetch_channel,
        notify_channel,
    })
}

fn get_bool(name: &'static str) -> Result<bool, ConfigError> {
    let value = get(name)?;
    match value.trim() {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name,
            value,
            expected: "true or false",
        }),
    }
}

/// Which source URLs may be ingested (`ingest_allow_http`,
/// `ingest_allow_private`, `ingest_allowed_hosts`).
///
/// # Errors
/// [`ConfigError`].
pub fn ingest_rules() -> Result<darkroom_core::ingest::IngestRules, ConfigError> {
    Ok(darkroom_core::ingest::IngestRules {
        allow_http: get_bool("ingest_allow_http")?,
        allow_private: get_bool("ingest_allow_private")?,
        allowed_hosts: darkroom_core::ingest::IngestRules::parse_hosts(&get(
            "ingest_allowed_hosts",
        )?),
    })
}

/// How long one fetch of a source may take (`fetch_timeout_seconds`).
///
/// # Errors
/// [`ConfigError`].
pub fn fetch_timeout() -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(get_positive("fetch_timeout_seconds")?))
}

/// How long one event stream stays open before it ends itself with a
/// `retry:` hint (`stream_seconds`, at most 28: under the hosted 30 s).
///
/// # Errors
/// [`ConfigError`].
pub fn stream_budget() -> Result<Duration, ConfigError> {
    let seconds = get_positive("stream_seconds")?;
    if seconds > 28 {
        return Err(ConfigError::Invalid {
            name: "stream_seconds",
            value: seconds.to_string(),
            expected: "at most 28 (hosted platforms end a handler at 30 s)",
        });
    }
    Ok(Duration::from_secs(seconds))
}

/// How long finished jobs are kept (`retention_hours`, 0 = forever; a
/// decimal such as `0.5` is allowed).
///
/// # Errors
/// [`ConfigError`].
pub fn retention() -> Result<darkroom_core::service::Retention, ConfigError> {
    let value = get("retention_hours")?;
    let invalid = || ConfigError::Invalid {
        name: "retention_hours",
        value: value.clone(),
        expected: "a number of hours, 0 or more (0 keeps jobs forever)",
    };
    let hours: f64 = value.trim().parse().map_err(|_| invalid())?;
    if !hours.is_finite() || hours < 0.0 {
        return Err(invalid());
    }
    Ok(darkroom_core::service::Retention(
        (hours > 0.0).then(|| Duration::from_secs_f64(hours * 3600.0)),
    ))
}

/// The retry policy (`max_attempts`, `retry_base_delay_ms`, `lease_seconds`).
///
/// # Errors
/// [`ConfigError`].
pub fn retry_policy() -> Result<RetryPolicy, ConfigError> {
    Ok(RetryPolicy {
        max_attempts: get_positive_u32("max_attempts")?,
        base_delay: Duration::from_millis(get_positive("retry_base_delay_ms")?),
        lease: Duration::from_secs(get_positive("lease_seconds")?),
        ..RetryPolicy::default()
    })
}

/// The bearer token of the admin routes; `None` when unset (routes disabled).
///
/// # Errors
/// [`ConfigError`].
pub fn admin_token() -> Result<Option<Tokens>, ConfigError> {
    let token = get("admin_token")?;
    Ok((!token.trim().is_empty()).then(|| Tokens::parse(token.trim())))
}

/// Which blob store to use (`blob_store`), with the S3 settings when `s3`.
#[derive(Clone, Debug)]
pub enum BlobStoreConfig {
    /// Blobs in the key-value store (the default).
    KeyValue,
    /// Blobs in an S3-compatible bucket.
    S3(crate::s3::S3Config),
}

/// The blob store settings (`blob_store`, `s3_*`).
///
/// # Errors
/// [`ConfigError`].
pub fn blob_store() -> Result<BlobStoreConfig, ConfigError> {
    let kind = get("blob_store")?;
    match kind.trim() {
        "kv" => Ok(BlobStoreConfig::KeyValue),
        "s3" => {
            let style = get("s3_url_style")?;
            let path_style = match style.trim() {
                "path" => true,
                "virtual" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "s3_url_style",
                        value: style,
                        expected: "`path` or `virtual`",
                    });
                }
            };
            Ok(BlobStoreConfig::S3(crate::s3::S3Config {
                endpoint: get("s3_endpoint")?,
                bucket: get("s3_bucket")?,
                region: get("s3_region")?,
                path_style,
                access_key_id: get("s3_access_key_id")?,
                secret_access_key: get("s3_secret_access_key")?,
            }))
        }
        _ => Err(ConfigError::Invalid {
            name: "blob_store",
            value: kind,
            expected: "`kv` or `s3`",
        }),
    }
}

/// How result links reach objects in an S3 bucket (`s3_links`); only the
/// `files` component reads these settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum S3Links {
    /// The `files` component reads the object and sends the bytes (default).
    Proxy,
    /// The `files` component answers `307` to a presigned GET URL.
    Redirect {
        /// `s3_public_endpoint`: where clients reach the bucket; `None`
        /// (empty) means `s3_endpoint`.
        public_endpoint: Option<String>,
        /// `s3_link_seconds`: how long a presigned URL stays valid.
        ttl: Duration,
    },
}

/// The link settings (`s3_links`, `s3_link_seconds`, `s3_public_endpoint`).
///
/// # Errors
/// [`ConfigError`].
pub fn s3_links() -> Result<S3Links, ConfigError> {
    let mode = get("s3_links")?;
    match mode.trim() {
        "proxy" => Ok(S3Links::Proxy),
        "redirect" => {
            let seconds = get_positive("s3_link_seconds")?;
            if seconds > 7 * 24 * 3600 {
                return Err(ConfigError::Invalid {
                    name: "s3_link_seconds",
                    value: seconds.to_string(),
                    expected: "at most 604800 (7 days, SigV4's limit)",
                });
            }
            let public = get("s3_public_endpoint")?;
            Ok(S3Links::Redirect {
                public_endpoint: (!public.trim().is_empty()).then(|| public.trim().to_owned()),
                ttl: Duration::from_secs(seconds),
            })
        }
        _ => Err(ConfigError::Invalid {
            name: "s3_links",
            value: mode,
            expected: "`proxy` or `redirect`",
        }),
    }
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        expected,
    }
}

/// Who is told of which events app-wide (`webhook_urls`, `webhook_events`).
///
/// # Errors
/// [`ConfigError`].
pub fn subscriptions() -> Result<darkroom_core::notify::Subscriptions, ConfigError> {
    let (urls, events) = (get("webhook_urls")?, get("webhook_events")?);
    darkroom_core::notify::Subscriptions::parse(&urls, &events).map_err(|why| {
        eprintln!("darkroom: {why}");
        invalid(
            "webhook_urls/webhook_events",
            &format!("{urls} / {events}"),
            "http(s) URLs, and event types from image.processing, image.output, image.retrying, image.completed, image.failed, image.cancelled",
        )
    })
}

/// What a `callback_url` must satisfy (`webhook_allow_http`, `webhook_allow_private`).
///
/// # Errors
/// [`ConfigError`].
pub fn callback_rules() -> Result<darkroom_core::ingest::IngestRules, ConfigError> {
    Ok(darkroom_core::notify::callback_rules(
        get_bool("webhook_allow_http")?,
        get_bool("webhook_allow_private")?,
    ))
}

/// The signing secrets (`webhook_secret`, space-separated `whsec_…`).
///
/// # Errors
/// [`ConfigError`] (the value is never repeated).
pub fn webhook_secrets() -> Result<Vec<darkroom_core::notify::Secret>, ConfigError> {
    darkroom_core::notify::Secret::parse_all(&get("webhook_secret")?).map_err(|why| {
        eprintln!("darkroom: {why}");
        invalid(
            "webhook_secret",
            "(secret)",
            "whsec_ and base64 of at least 24 bytes, space-separated",
        )
    })
}

/// The notifier's retries (`webhook_max_attempts`, `webhook_backoff_ms`,
/// `webhook_timeout_seconds`, `lease_seconds`).
///
/// # Errors
/// [`ConfigError`].
pub fn notify_policy() -> Result<darkroom_core::notify::NotifyPolicy, ConfigError> {
    let timeout = Duration::from_secs(get_positive("webhook_timeout_seconds")?);
    let lease = Duration::from_secs(get_positive("lease_seconds")?);
    if lease <= timeout {
        return Err(invalid(
            "lease_seconds",
            &lease.as_secs().to_string(),
            "more than webhook_timeout_seconds (a notice is never sent past the lease)",
        ));
    }
    Ok(darkroom_core::notify::NotifyPolicy {
        max_attempts: get_positive_u32("webhook_max_attempts")?,
        first_delay: Duration::from_millis(get_positive("webhook_backoff_ms")?),
        timeout,
        lease,
    })
}

/// The e-mail API (`email_api_url`, `email_api_key`); `None` when the URL is
/// empty (no e-mail is sent, and `notify_email` is refused at upload).
///
/// # Errors
/// [`ConfigError`].
pub fn email_api() -> Result<Option<darkroom_core::notify::EmailApi>, ConfigError> {
    let url = get("email_api_url")?;
    if url.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(darkroom_core::notify::EmailApi {
        url: url.trim().to_owned(),
        key: get("email_api_key")?,
    }))
}

/// Whether this deployment sends e-mail (`email_api_url` is set).
///
/// # Errors
/// [`ConfigError`].
pub fn sends_email() -> Result<bool, ConfigError> {
    Ok(!get("email_api_url")?.trim().is_empty())
}

/// `email_from`: the sender of notification e-mail.
///
/// # Errors
/// [`ConfigError`].
pub fn email_from() -> Result<String, ConfigError> {
    get("email_from")
}

/// `public_base_url`: where clients reach the app, for the absolute links of
/// webhooks and e-mail (no trailing slash).
///
/// # Errors
/// [`ConfigError`] unless an http(s) URL.
pub fn public_base_url() -> Result<String, ConfigError> {
    let value = get("public_base_url")?;
    let trimmed = value.trim().trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(trimmed.to_owned()),
        _ => Err(invalid(
            "public_base_url",
            &value,
            "an http(s) URL such as https://images.example.com",
        )),
    }
}
