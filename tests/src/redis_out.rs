//! `fermyon:spin/redis@2.0.0`: outbound Redis against a real server, with
//! the address checked against the component's `allowed_outbound_hosts`
//! first, as Spin does.

use redis::aio::MultiplexedConnection;
use wasmtime::component::Resource;

use crate::bindings::imports::fermyon::spin2_0_0::redis::{
    Error, Host, HostConnection, RedisParameter, RedisResult,
};
use crate::host::HostState;

/// An open connection.
pub struct RedisConnection {
    conn: MultiplexedConnection,
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

impl Host for HostState {}

impl HostState {
    /// Runs `cmd` on connection `c`, refusing once the app was killed. The
    /// connection is resolved before the returned future, which owns
    /// everything it needs (host futures must be `Send`).
    fn query<T: redis::FromRedisValue>(
        &self,
        c: &Resource<RedisConnection>,
        cmd: redis::Cmd,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'static {
        let conn = self.redis(c);
        async move { cmd.query_async(&mut conn?).await.map_err(other) }
    }

    fn redis(&self, c: &Resource<RedisConnection>) -> Result<MultiplexedConnection, Error> {
        if self.app.killed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(other("the app was killed"));
        }
        Ok(self.table.get(c).map_err(other)?.conn.clone())
    }
}

/// Spin flattens nested replies into one list.
fn flatten(value: redis::Value, out: &mut Vec<RedisResult>) {
    match value {
        redis::Value::Nil => out.push(RedisResult::Nil),
        redis::Value::Int(i) => out.push(RedisResult::Int64(i)),
        redis::Value::BulkString(b) => out.push(RedisResult::Binary(b)),
        redis::Value::SimpleString(s) => out.push(RedisResult::Status(s)),
        redis::Value::Okay => out.push(RedisResult::Status("OK".into())),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.into_iter().for_each(|v| flatten(v, out));
        }
        other => out.push(RedisResult::Binary(format!("{other:?}").into_bytes())),
    }
}

impl HostConnection for HostState {
    async fn open(&mut self, address: String) -> Result<Resource<RedisConnection>, Error> {
        let url = url::Url::parse(&address).map_err(|_| Error::InvalidAddress)?;
        if !self.component.allowed_outbound_hosts.allows_url(&url) {
            self.app.log(&format!(
                "[host] component {:?} may not connect to {address}: not in allowed_outbound_hosts",
                self.component.id
            ));
            return Err(Error::InvalidAddress);
        }
        let client = redis::Client::open(address.as_str()).map_err(|_| Error::InvalidAddress)?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(other)?;
        self.table.push(RedisConnection { conn }).map_err(other)
    }

    async fn publish(
        &mut self,
        c: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), Error> {
        let mut conn = self.redis(&c)?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(other)
    }

    async fn get(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.query(&c, redis::cmd("GET").arg(key).clone()).await
    }

    async fn set(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        self.query(&c, redis::cmd("SET").arg(key).arg(value).clone())
            .await
    }

    async fn incr(&mut self, c: Resource<RedisConnection>, key: String) -> Result<i64, Error> {
        let mut conn = self.redis(&c)?;
        redis::cmd("INCR")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| {
                if e.kind() == redis::ErrorKind::TypeError {
                    Error::TypeError
                } else {
                    other(e)
                }
            })
    }

    async fn del(&mut self, c: Resource<RedisConnection>, keys: Vec<String>) -> Result<u32, Error> {
        self.query(&c, redis::cmd("DEL").arg(keys).clone()).await
    }

    async fn sadd(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, Error> {
        self.query(&c, redis::cmd("SADD").arg(key).arg(values).clone())
            .await
    }

    async fn smembers(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> Result<Vec<String>, Error> {
        self.query(&c, redis::cmd("SMEMBERS").arg(key).clone())
            .await
    }

    async fn srem(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, Error> {
        self.query(&c, redis::cmd("SREM").arg(key).arg(values).clone())
            .await
    }

    async fn execute(
        &mut self,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> Result<Vec<RedisResult>, Error> {
        let mut conn = self.redis(&c)?;
        let mut cmd = redis::cmd(&command);
        for a in arguments {
            match a {
                RedisParameter::Int64(i) => cmd.arg(i),
                RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let value: redis::Value = cmd.query_async(&mut conn).await.map_err(other)?;
        let mut out = Vec::new();
        flatten(value, &mut out);
        Ok(out)
    }

    async fn drop(&mut self, c: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}
