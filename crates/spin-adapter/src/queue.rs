//! The core's [`Queue`] port on Redis: a job is announced by publishing its
//! id, and nothing else, to the processors' channel.

use darkroom_core::JobId;
use darkroom_core::ports::{PortError, Queue};
use spin_sdk::redis::Connection;

/// Publishes job ids to a Redis channel over Spin's outbound Redis.
pub struct RedisQueue {
    connection: Connection,
    channel: String,
}

impl RedisQueue {
    /// Connects to `address` (which must be in `allowed_outbound_hosts`).
    ///
    /// # Errors
    /// [`PortError`] when the address is refused or Redis cannot be reached.
    pub fn connect(address: &str, channel: &str) -> Result<Self, PortError> {
        let connection = Connection::open(address)
            .map_err(|e| PortError::new(format!("redis {address}: {e}")))?;
        Ok(Self {
            connection,
            channel: channel.to_owned(),
        })
    }
}

impl Queue for RedisQueue {
    fn enqueue(&self, id: JobId) -> Result<(), PortError> {
        self.connection
            .publish(&self.channel, &id.to_string().into_bytes())
            .map_err(|e| PortError::new(format!("redis publish to {:?}: {e}", self.channel)))
    }
}
