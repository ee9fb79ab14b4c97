//! The core's durable [`Queue`] on Redis, through Spin's outbound Redis.
//!
//! Jobs live in sorted sets (ready, leases, dead; see
//! [`darkroom_core::keys::QueueKeys`]); every multi-step change is one Lua
//! script, so two processors can never claim the same job. A `PUBLISH` on
//! the channel is the doorbell that wakes the Redis-triggered processors.
//! With Redis persistence (AOF) on, as production Redis runs, accepted jobs
//! survive a Redis restart.

use std::time::Duration;

use darkroom_core::JobId;
use darkroom_core::keys::QueueKeys;
use darkroom_core::ports::{OnceStore, PortError};
use darkroom_core::queue::{Queue, QueueStats};
use darkroom_core::time::Timestamp;
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

/// Adds a job (removing any lease or dead letter of it) and rings.
/// KEYS: ready, leases, dead. ARGV: due ms, id, channel.
const ENQUEUE: &str = r"
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return redis.call('PUBLISH', ARGV[3], ARGV[2])";

/// Adds a job that is neither waiting nor leased, and rings; 1 if added.
/// KEYS: ready, leases. ARGV: due ms, id, channel.
const RESTORE: &str = r"
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1";

/// Returns lapsed leases to ready, then leases the first due job.
/// KEYS: ready, leases. ARGV: now ms, lease-until ms.
const CLAIM: &str = r"
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], ARGV[1], id)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due == 0 then return false end
redis.call('ZREM', KEYS[1], due[1])
redis.call('ZADD', KEYS[2], ARGV[2], due[1])
return due[1]";

/// KEYS: ready, leases, dead. ARGV: id.
const FORGET: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[3], ARGV[1])";

/// KEYS: ready, leases. ARGV: id.
const ACK: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])";

/// KEYS: ready, leases. ARGV: due ms, id.
const DEFER: &str = r"
redis.call('ZREM', KEYS[2], ARGV[2])
return redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])";

/// KEYS: ready, leases, dead. ARGV: now ms, id.
const DEAD_LETTER: &str = r"
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])";

/// KEYS: ready, leases, average. Returns depth, average ms (or nil).
const STATS: &str = r"
return {redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]), redis.call('GET', KEYS[3])}";

/// An exponentially weighted average. KEYS: average. ARGV: ms.
const RECORD: &str = r"
local old = tonumber(redis.call('GET', KEYS[1]))
local new = tonumber(ARGV[1])
if old then new = old * 0.8 + new * 0.2 end
return redis.call('SET', KEYS[1], tostring(math.floor(new)))";

/// The durable queue behind one channel.
pub struct RedisQueue {
    connection: std::rc::Rc<Connection>,
    channel: String,
    keys: QueueKeys,
}

fn text(bytes: &[u8]) -> Result<String, PortError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| PortError::new("redis returned a non-UTF-8 value"))
}

fn integer(result: &RedisResult) -> Result<Option<u64>, PortError> {
    match result {
        RedisResult::Nil => Ok(None),
        RedisResult::Int64(i) => Ok(u64::try_from(*i).ok()),
        RedisResult::Binary(b) => {
            let s = text(b)?;
            s.parse::<f64>()
                .map(|f| Some(f.max(0.0) as u64))
                .map_err(|_| PortError::new(format!("redis returned {s:?}, expected a number")))
        }
        RedisResult::Status(s) => Err(PortError::new(format!(
            "redis returned status {s:?}, expected a number"
        ))),
    }
}

fn job_id(result: &RedisResult) -> Result<Option<JobId>, PortError> {
    match result {
        RedisResult::Nil => Ok(None),
        RedisResult::Binary(b) => {
            let s = text(b)?;
            JobId::parse(&s).map(Some).map_err(|_| {
                PortError::new(format!("the queue holds {s:?}, which is not a job id"))
            })
        }
        other => Err(PortError::new(format!(
            "redis returned {other:?}, expected a job id"
        ))),
    }
}

fn arg(s: impl ToString) -> RedisParameter {
    RedisParameter::Binary(s.to_string().into_bytes())
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
            connection: std::rc::Rc::new(connection),
            channel: channel.to_owned(),
            keys: QueueKeys::for_channel(channel),
        })
    }

    /// The queue behind `channel` on the same connection (the fetcher's
    /// queue next to the processor's).
    pub fn sibling(&self, channel: &str) -> Self {
        Self {
            connection: std::rc::Rc::clone(&self.connection),
            channel: channel.to_owned(),
            keys: QueueKeys::for_channel(channel),
        }
    }

    fn execute(
        &self,
        command: &str,
        args: &[RedisParameter],
    ) -> Result<Vec<RedisResult>, PortError> {
        self.connection
            .execute(command, args)
            .map_err(|e| PortError::new(format!("redis {command}: {e}")))
    }

    fn eval(
        &self,
        script: &str,
        keys: &[&str],
        argv: &[String],
    ) -> Result<Vec<RedisResult>, PortError> {
        let mut args = vec![arg(script), RedisParameter::Int64(keys.len() as i64)];
        args.extend(keys.iter().map(arg));
        args.extend(argv.iter().map(arg));
        self.execute("EVAL", &args)
    }

    fn single(
        &self,
        script: &str,
        keys: &[&str],
        argv: &[String],
    ) -> Result<RedisResult, PortError> {
        self.eval(script, keys, argv)?
            .into_iter()
            .next()
            .ok_or_else(|| PortError::new("redis returned no reply"))
    }
}

impl RedisQueue {
    /// Up to `n` catalogue members from `from` to `to`, by `command`
    /// (`ZRANGEBYLEX` oldest first, `ZREVRANGEBYLEX` newest first).
    fn catalogue_range(
        &self,
        command: &str,
        from: &str,
        to: &str,
        n: usize,
    ) -> Result<Vec<String>, PortError> {
        let args = [
            arg(&self.keys.catalogue),
            arg(from),
            arg(to),
            arg("LIMIT"),
            arg(0),
            arg(n),
        ];
        self.execute(command, &args)?
            .iter()
            .map(|r| match r {
                RedisResult::Binary(b) => text(b),
                other => Err(PortError::new(format!("{command} returned {other:?}"))),
            })
            .collect()
    }
}

fn ms(t: Timestamp) -> String {
    t.unix_millis().to_string()
}

impl Queue for RedisQueue {
    fn enqueue(&self, id: JobId, at: Timestamp) -> Result<(), PortError> {
        let k = &self.keys;
        self.eval(
            ENQUEUE,
            &[&k.ready, &k.leases, &k.dead],
            &[ms(at), id.to_string(), self.channel.clone()],
        )
        .map(drop)
    }

    fn claim(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<JobId>, PortError> {
        let k = &self.keys;
        job_id(&self.single(CLAIM, &[&k.ready, &k.leases], &[ms(now), ms(lease_until)])?)
    }

    fn ack(&self, id: JobId) -> Result<(), PortError> {
        self.eval(
            ACK,
            &[&self.keys.ready, &self.keys.leases],
            &[id.to_string()],
        )
        .map(drop)
    }

    fn defer(&self, id: JobId, at: Timestamp) -> Result<(), PortError> {
        self.eval(
            DEFER,
            &[&self.keys.ready, &self.keys.leases],
            &[ms(at), id.to_string()],
        )
        .map(drop)
    }

    fn dead_letter(&self, id: JobId, now: Timestamp) -> Result<(), PortError> {
        let k = &self.keys;
        self.eval(
            DEAD_LETTER,
            &[&k.ready, &k.leases, &k.dead],
            &[ms(now), id.to_string()],
        )
        .map(drop)
    }

    fn dead_letters(&self) -> Result<Vec<JobId>, PortError> {
        let replies = self.execute("ZRANGE", &[arg(&self.keys.dead), arg(0), arg(-1)])?;
        replies
            .iter()
            .map(|r| job_id(r)?.ok_or_else(|| PortError::new("nil in ZRANGE")))
            .collect()
    }

    fn catalogue_add(&self, member: &str) -> Result<(), PortError> {
        self.execute("ZADD", &[arg(&self.keys.catalogue), arg(0), arg(member)])
            .map(drop)
    }

    fn catalogue_remove(&self, member: &str) -> Result<(), PortError> {
        self.execute("ZREM", &[arg(&self.keys.catalogue), arg(member)])
            .map(drop)
    }

    fn catalogue_before(&self, before: Option<&str>, n: usize) -> Result<Vec<String>, PortError> {
        let max = before.map_or_else(|| "+".to_owned(), |b| format!("({b}"));
        self.catalogue_range("ZREVRANGEBYLEX", &max, "-", n)
    }

    fn catalogue_after(&self, after: Option<&str>, n: usize) -> Result<Vec<String>, PortError> {
        let min = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        self.catalogue_range("ZRANGEBYLEX", &min, "+", n)
    }

    fn withdraw(&self, id: JobId) -> Result<bool, PortError> {
        let removed = self.execute("ZREM", &[arg(&self.keys.ready), arg(id)])?;
        Ok(removed.first().map(integer).transpose()?.flatten() == Some(1))
    }

    fn forget(&self, id: JobId) -> Result<(), PortError> {
        let k = &self.keys;
        self.eval(FORGET, &[&k.ready, &k.leases, &k.dead], &[id.to_string()])
            .map(drop)
    }

    fn restore(&self, id: JobId, at: Timestamp) -> Result<bool, PortError> {
        let k = &self.keys;
        let added = self.single(
            RESTORE,
            &[&k.ready, &k.leases],
            &[ms(at), id.to_string(), self.channel.clone()],
        )?;
        Ok(integer(&added)? == Some(1))
    }

    fn ring(&self) -> Result<(), PortError> {
        self.execute("PUBLISH", &[arg(&self.channel), arg("wake")])
            .map(drop)
    }

    fn next_due(&self) -> Result<Option<Timestamp>, PortError> {
        let mut first = None;
        for set in [&self.keys.ready, &self.keys.leases] {
            let replies = self.execute("ZRANGE", &[arg(set), arg(0), arg(0), arg("WITHSCORES")])?;
            if let Some(score) = replies.get(1) {
                let at = integer(score)?.map(Timestamp::from_unix_millis);
                first = first.into_iter().chain(at).min();
            }
        }
        Ok(first)
    }

    fn stats(&self) -> Result<QueueStats, PortError> {
        let k = &self.keys;
        let replies = self.eval(STATS, &[&k.ready, &k.leases, &k.average_ms], &[])?;
        let depth = replies
            .first()
            .map(integer)
            .transpose()?
            .flatten()
            .unwrap_or(0);
        let average_job = replies
            .get(1)
            .map(integer)
            .transpose()?
            .flatten()
            .map(Duration::from_millis);
        // PUBSUB NUMSUB replies [channel, count]: the processors listening now.
        let numsub = self.execute("PUBSUB", &[arg("NUMSUB"), arg(&self.channel)])?;
        let workers = numsub
            .get(1)
            .map(integer)
            .transpose()?
            .flatten()
            .unwrap_or(0);
        Ok(QueueStats {
            depth,
            workers,
            average_job,
        })
    }

    fn record_duration(&self, took: Duration) -> Result<(), PortError> {
        self.eval(
            RECORD,
            &[&self.keys.average_ms],
            &[took.as_millis().to_string()],
        )
        .map(drop)
    }
}

/// Idempotency records live in the queue's Redis, under the queue's
/// namespace (`darkroom:{<channel>}:idempotency/<sha-256 of the key>`).
impl OnceStore for RedisQueue {
    fn insert_new(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, PortError> {
        let name = self.keys.namespaced(key);
        let reply = self.execute(
            "SET",
            &[
                arg(name),
                RedisParameter::Binary(value.to_vec()),
                arg("NX"),
                arg("PX"),
                arg(ttl.as_millis().max(1)),
            ],
        )?;
        Ok(matches!(reply.first(), Some(RedisResult::Status(_))))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        let reply = self.execute("GET", &[arg(self.keys.namespaced(key))])?;
        match reply.into_iter().next() {
            Some(RedisResult::Binary(b)) => Ok(Some(b)),
            Some(RedisResult::Nil) | None => Ok(None),
            Some(other) => Err(PortError::new(format!("redis GET returned {other:?}"))),
        }
    }

    fn replace(&self, key: &str, value: &[u8]) -> Result<(), PortError> {
        self.execute(
            "SET",
            &[
                arg(self.keys.namespaced(key)),
                RedisParameter::Binary(value.to_vec()),
                arg("XX"),
                arg("KEEPTTL"),
            ],
        )
        .map(drop)
    }

    fn remove(&self, key: &str) -> Result<(), PortError> {
        self.execute("DEL", &[arg(self.keys.namespaced(key))])
            .map(drop)
    }
}

/// Stands in for the queue when Redis could not be reached, so that reads
/// which only use the queue for hints (status) still answer.
pub struct UnreachableQueue(pub PortError);

impl Queue for UnreachableQueue {
    fn enqueue(&self, _: JobId, _: Timestamp) -> Result<(), PortError> {
        Err(self.0.clone())
    }
    fn claim(&self, _: Timestamp, _: Timestamp) -> Result<Option<JobId>, PortError> {
        Err(self.0.clone())
    }
    fn ack(&self, _: JobId) -> Result<(), PortError> {
        Err(self.0.clone())
    }
    fn defer(&self, _: JobId, _: Timestamp) -> Result<(), PortError> {
        Err(self.0.clone())
    }
    fn dead_letter(&self, _: JobId, _: Timestamp) -> Result<(), PortError> {
        Err(self.0.clone())
    }
    fn dead_letters(&self) -> Result<Vec<JobId>, PortError> {
        Err(self.0.clone())
    }
    fn restore(&self, _: JobId, _: Timestamp) -> Result<bool, PortError> {
        Err(self.0.clone())
    }
    fn withdraw(&self, _: JobId) -> Result<bool, PortError> {
        Err(self.0.clone())
    }
    fn catalogue_add(&self, _: &str) -> Result<(), PortError> {
        Err(self.0.clone())
    }
    fn catalogue_remove(&self, _: &str) -> Result<(), PortError> {
        Err(self.0.clone())
    }
    fn catalogue_before(&self, _: Option<&str>, _: usize) -> Result<Vec<String>, PortError> {
        Err(self.0.clone())
    }
    fn catalogue_after(&self, _: Option<&str>, _: usize) -> Result<Vec<String>, PortError> {
        Err(self.0.clone())
    }
    fn forget(&self, _: JobId) -> Result<(), PortError> {
        Err(self.0.clone())
    }
    fn ring(&self) -> Result<(), PortError> {
        Err(self.0.clone())
    }
    fn next_due(&self) -> Result<Option<Timestamp>, PortError> {
        Err(self.0.clone())
    }
    fn stats(&self) -> Result<QueueStats, PortError> {
        Err(self.0.clone())
    }
    fn record_duration(&self, _: Duration) -> Result<(), PortError> {
        Err(self.0.clone())
    }
}

/// The three queues ([`AllQueues`]), or stand-ins that report why they
/// could not be opened: for readers that still answer while Redis is down.
pub fn connect_all_or_unreachable(config: &crate::config::QueueConfig) -> [Box<dyn Queue>; 3] {
    match AllQueues::connect(config) {
        Ok(all) => [
            Box::new(all.jobs),
            Box::new(all.fetches),
            Box::new(all.notices),
        ],
        Err(e) => [
            Box::new(UnreachableQueue(e.clone())),
            Box::new(UnreachableQueue(e.clone())),
            Box::new(UnreachableQueue(e)),
        ],
    }
}

/// The processor's, the fetcher's and the notifier's queues on one connection.
pub struct AllQueues {
    /// `queue_channel`'s queue.
    pub jobs: RedisQueue,
    /// `fetch_channel`'s queue.
    pub fetches: RedisQueue,
    /// `notify_channel`'s queue.
    pub notices: RedisQueue,
}

impl AllQueues {
    /// Connects once for all three.
    ///
    /// # Errors
    /// [`PortError`] when Redis cannot be reached.
    pub fn connect(config: &crate::config::QueueConfig) -> Result<Self, PortError> {
        let jobs = RedisQueue::connect(&config.redis_url, &config.channel)?;
        let fetches = jobs.sibling(&config.fetch_channel);
        let notices = jobs.sibling(&config.notify_channel);
        Ok(Self {
            jobs,
            fetches,
            notices,
        })
    }

    /// The core's view of them, for a component that rings no notifier.
    pub fn ports(&self) -> darkroom_core::service::Queues<'_> {
        darkroom_core::service::Queues {
            jobs: &self.jobs,
            fetches: &self.fetches,
            notify: None,
        }
    }

    /// The core's view of them, ringing the notifier as `subscriptions` say.
    pub fn notifying<'a>(
        &'a self,
        subscriptions: &'a darkroom_core::notify::Subscriptions,
    ) -> darkroom_core::service::Queues<'a> {
        darkroom_core::service::Queues {
            notify: Some(darkroom_core::notify::Notifying {
                queue: &self.notices,
                subscriptions,
            }),
            ..self.ports()
        }
    }
}
