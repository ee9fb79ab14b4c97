//! The system clock as the core's [`Clock`] port (`wasi:clocks/wall-clock`).

use std::time::{SystemTime, UNIX_EPOCH};

use darkroom_core::ports::Clock;
use darkroom_core::time::Timestamp;

/// The host's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // A host clock before 1970 is a broken host; show it as the epoch.
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Timestamp::from_unix_millis(millis)
    }
}
