//! In-memory implementations of the ports for unit tests here and in the
//! adapter, and (re-exported from `darkroom-imaging`) small generated images. They are real implementations (with
//! switchable failures), not mocks that script answers.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use std::time::Duration;

use crate::id::JobId;
use crate::ports::{Clock, KeyValue, PortError, Random};
use crate::queue::{Queue, QueueStats};
use crate::time::Timestamp;

pub use darkroom_imaging::testing::{
    encode_jpeg_with_orientation, encode_png, encode_with, encode_with_icc, gradient, noise,
};

/// A key-value store in a map. `fail_sets_after(n)` makes every `set` after
/// the next `n` fail, as a full or unreachable store would.
#[derive(Default)]
pub struct MemoryKv {
    map: RefCell<BTreeMap<String, Vec<u8>>>,
    sets_left: Cell<Option<usize>>,
    failing_sets: Cell<usize>,
}

impl MemoryKv {
    /// Lets `n` more `set`s succeed, then fails the rest.
    pub fn fail_sets_after(&self, n: usize) {
        self.sets_left.set(Some(n));
    }

    /// Makes the next `n` `set`s fail, and the ones after succeed (a blip).
    pub fn fail_next_sets(&self, n: usize) {
        self.failing_sets.set(n);
    }

    /// Makes every operation succeed again.
    pub fn heal(&self) {
        self.sets_left.set(None);
        self.failing_sets.set(0);
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Every stored key.
    pub fn keys(&self) -> Vec<String> {
        self.map.borrow().keys().cloned().collect()
    }

    /// Every stored value.
    pub fn values(&self) -> impl Iterator<Item = Vec<u8>> {
        self.map
            .borrow()
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
    }
}

impl KeyValue for MemoryKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        Ok(self.map.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), PortError> {
        if self.failing_sets.get() > 0 {
            self.failing_sets.set(self.failing_sets.get() - 1);
            return Err(PortError::new("memory store: write refused"));
        }
        match self.sets_left.get() {
            Some(0) => return Err(PortError::new("memory store: write refused")),
            Some(n) => self.sets_left.set(Some(n - 1)),
            None => {}
        }
        self.map.borrow_mut().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), PortError> {
        self.map.borrow_mut().remove(key);
        Ok(())
    }
}

/// The durable queue in memory, with the same claim/lease/defer semantics as
/// the Redis one. `down` makes every call fail, as an unreachable Redis would.
#[derive(Default)]
pub struct MemoryQueue {
    ready: RefCell<BTreeMap<JobId, (Timestamp, u64)>>,
    leases: RefCell<BTreeMap<JobId, Timestamp>>,
    dead: RefCell<Vec<JobId>>,
    seq: Cell<u64>,
    durations: RefCell<Vec<Duration>>,
    catalogue: RefCell<std::collections::BTreeSet<String>>,
    /// How many times the doorbell rang.
    pub rings: Cell<u32>,
    /// How many claims were tried, answered or not.
    pub claims: Cell<u32>,
    /// When set, every call fails.
    pub down: Cell<bool>,
}

impl MemoryQueue {
    fn check(&self) -> Result<(), PortError> {
        if self.down.get() {
            Err(PortError::new("memory queue: down"))
        } else {
            Ok(())
        }
    }

    /// Ids waiting, in claim order.
    pub fn waiting(&self) -> Vec<JobId> {
        let ready = self.ready.borrow();
        let mut ids: Vec<_> = ready
            .iter()
            .map(|(id, (at, seq))| (*at, *seq, *id))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, _, id)| id).collect()
    }

    /// Loses every job, lease and dead letter, as a Redis restarted without
    /// persistence does.
    pub fn forget_everything(&self) {
        self.ready.borrow_mut().clear();
        self.leases.borrow_mut().clear();
        self.dead.borrow_mut().clear();
    }

    /// The catalogue's members, in order.
    pub fn catalogue(&self) -> Vec<String> {
        self.catalogue.borrow().iter().cloned().collect()
    }

    /// Ids currently leased.
    pub fn leased(&self) -> Vec<JobId> {
        self.leases.borrow().keys().copied().collect()
    }

    fn push(&self, id: JobId, at: Timestamp) {
        self.seq.set(self.seq.get() + 1);
        self.ready.borrow_mut().insert(id, (at, self.seq.get()));
    }
}

impl Queue for MemoryQueue {
    fn enqueue(&self, id: JobId, at: Timestamp) -> Result<(), PortError> {
        self.check()?;
        self.leases.borrow_mut().remove(&id);
        self.dead.borrow_mut().retain(|d| *d != id);
        self.push(id, at);
        self.rings.set(self.rings.get() + 1);
        Ok(())
    }

    fn claim(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<JobId>, PortError> {
        self.claims.set(self.claims.get() + 1);
        self.check()?;
        let lapsed: Vec<(JobId, Timestamp)> = self
            .leases
            .borrow()
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(id, t)| (*id, *t))
            .collect();
        for (id, until) in lapsed {
            self.leases.borrow_mut().remove(&id);
            self.push(id, until);
        }
        let due = self
            .waiting()
            .into_iter()
            .find(|id| self.ready.borrow()[id].0 <= now);
        if let Some(id) = due {
            self.ready.borrow_mut().remove(&id);
            self.leases.borrow_mut().insert(id, lease_until);
        }
        Ok(due)
    }

    fn ack(&self, id: JobId) -> Result<(), PortError> {
        self.check()?;
        self.leases.borrow_mut().remove(&id);
        self.ready.borrow_mut().remove(&id);
        Ok(())
    }

    fn defer(&self, id: JobId, at: Timestamp) -> Result<(), PortError> {
        self.check()?;
        self.leases.borrow_mut().remove(&id);
        self.push(id, at);
        Ok(())
    }

    fn dead_letter(&self, id: JobId, _now: Timestamp) -> Result<(), PortError> {
        self.ack(id)?;
        self.dead.borrow_mut().push(id);
        Ok(())
    }

    fn dead_letters(&self) -> Result<Vec<JobId>, PortError> {
        self.check()?;
        Ok(self.dead.borrow().clone())
    }

    fn catalogue_add(&self, member: &str) -> Result<(), PortError> {
        self.check()?;
        self.catalogue.borrow_mut().insert(member.to_owned());
        Ok(())
    }

    fn catalogue_remove(&self, member: &str) -> Result<(), PortError> {
        self.check()?;
        self.catalogue.borrow_mut().remove(member);
        Ok(())
    }

    fn catalogue_before(&self, before: Option<&str>, n: usize) -> Result<Vec<String>, PortError> {
        self.check()?;
        Ok(self
            .catalogue
            .borrow()
            .iter()
            .rev()
            .filter(|m| before.is_none_or(|b| m.as_str() < b))
            .take(n)
            .cloned()
            .collect())
    }

    fn catalogue_after(&self, after: Option<&str>, n: usize) -> Result<Vec<String>, PortError> {
        self.check()?;
        Ok(self
            .catalogue
            .borrow()
            .iter()
            .filter(|m| after.is_none_or(|a| m.as_str() > a))
            .take(n)
            .cloned()
            .collect())
    }

    fn withdraw(&self, id: JobId) -> Result<bool, PortError> {
        self.check()?;
        Ok(self.ready.borrow_mut().remove(&id).is_some())
    }

    fn forget(&self, id: JobId) -> Result<(), PortError> {
        self.ack(id)?;
        self.dead.borrow_mut().retain(|d| *d != id);
        Ok(())
    }

    fn restore(&self, id: JobId, at: Timestamp) -> Result<bool, PortError> {
        self.check()?;
        if self.ready.borrow().contains_key(&id) || self.leases.borrow().contains_key(&id) {
            return Ok(false);
        }
        self.push(id, at);
        self.rings.set(self.rings.get() + 1);
        Ok(true)
    }

    fn ring(&self) -> Result<(), PortError> {
        self.check()?;
        self.rings.set(self.rings.get() + 1);
        Ok(())
    }

    fn next_due(&self) -> Result<Option<Timestamp>, PortError> {
        self.check()?;
        let waiting = self.ready.borrow().values().map(|(at, _)| *at).min();
        let leased = self.leases.borrow().values().copied().min();
        Ok(waiting.into_iter().chain(leased).min())
    }

    fn stats(&self) -> Result<QueueStats, PortError> {
        self.check()?;
        let durations = self.durations.borrow();
        let average_job = (!durations.is_empty()).then(|| {
            durations.iter().sum::<Duration>() / u32::try_from(durations.len()).unwrap_or(u32::MAX)
        });
        Ok(QueueStats {
            depth: (self.ready.borrow().len() + self.leases.borrow().len()) as u64,
            workers: 1,
            average_job,
        })
    }

    fn record_duration(&self, took: Duration) -> Result<(), PortError> {
        self.check()?;
        self.durations.borrow_mut().push(took);
        Ok(())
    }
}

/// A [`crate::ports::OnceStore`] in a map; nothing expires unless
/// [`MemoryOnce::expire_all`] says so.
#[derive(Default)]
pub struct MemoryOnce {
    map: RefCell<BTreeMap<String, Vec<u8>>>,
}

impl MemoryOnce {
    /// Lets every record expire.
    pub fn expire_all(&self) {
        self.map.borrow_mut().clear();
    }

    /// How many records live.
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// Whether no record lives.
    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }
}

impl crate::ports::OnceStore for MemoryOnce {
    fn insert_new(&self, key: &str, value: &[u8], _ttl: Duration) -> Result<bool, PortError> {
        let mut map = self.map.borrow_mut();
        if map.contains_key(key) {
            return Ok(false);
        }
        map.insert(key.to_owned(), value.to_vec());
        Ok(true)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        Ok(self.map.borrow().get(key).cloned())
    }

    fn replace(&self, key: &str, value: &[u8]) -> Result<(), PortError> {
        if let Some(slot) = self.map.borrow_mut().get_mut(key) {
            *slot = value.to_vec();
        }
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<(), PortError> {
        self.map.borrow_mut().remove(key);
        Ok(())
    }
}

/// Randomness that always draws the same number.
pub struct FixedRandom(pub f64);

impl Random for FixedRandom {
    fn unit(&self) -> f64 {
        self.0
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(Cell<u64>);

impl ManualClock {
    /// A clock showing `millis` after the epoch.
    pub const fn at(millis: u64) -> Self {
        Self(Cell::new(millis))
    }

    /// Moves the clock forward.
    pub fn advance(&self, millis: u64) {
        self.0.set(self.0.get() + millis);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.0.get())
    }

    fn sleep(&self, d: Duration) {
        self.advance(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
}
