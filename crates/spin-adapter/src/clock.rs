//! The system clock and randomness as the core's [`Clock`] and [`Random`]
//! ports (`wasi:clocks`, `wasi:random`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use darkroom_core::ports::{Clock, Random};
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

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The host's random source.
pub struct SystemRandom;

impl Random for SystemRandom {
    fn unit(&self) -> f64 {
        // 53 random bits: every f64 in [0, 1) at that spacing, equally likely.
        // A host without randomness gets the middle of the backoff range.
        getrandom::u64().map_or(0.5, |bits| (bits >> 11) as f64 / (1u64 << 53) as f64)
    }
}
