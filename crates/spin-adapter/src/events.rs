//! `GET /api/images/{id}/events`: the job's event log as server-sent events.
//!
//! Spin's outbound Redis has no SUBSCRIBE, so the stream looks at the job's
//! record every [`POLL`] (one key-value read each time: the events live in
//! the record, see `darkroom_core::job::Event`). It first replays what the
//! client missed (after `Last-Event-ID`), then follows the job, sends a
//! comment every [`HEARTBEAT`], ends after the terminal event, and ends
//! itself before `stream_seconds` with a `retry:` hint so that a browser's
//! `EventSource` reconnects and resumes where it was: no event lost or
//! repeated.

use std::time::Duration;

use darkroom_core::JobId;
use darkroom_core::job::{Event, EventKind};
use darkroom_core::ports::{Clock, KeyValue, PortError};
use darkroom_core::service::{FileName, load_job};
use darkroom_core::time::Timestamp;
use serde_json::json;

use crate::routes;

/// How often an open stream reads the job's record.
pub const POLL: Duration = Duration::from_millis(500);

/// How often an idle stream sends a comment, so that proxies keep it open.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// What a client reconnecting after the stream ended itself waits (ms).
const RETRY_MS: u32 = 1000;

/// The stream's pieces, produced as the job changes. Each `next` blocks
/// (sleeping [`POLL`] at a time) until there is something to send.
pub struct EventStream<'a> {
    kv: &'a dyn KeyValue,
    clock: &'a dyn Clock,
    id: JobId,
    after: u32,
    ends_at: Timestamp,
    next_beat: Timestamp,
    finished: bool,
}

impl<'a> EventStream<'a> {
    /// A stream of job `id`'s events after `after`, ending by `budget`.
    pub fn new(
        kv: &'a dyn KeyValue,
        clock: &'a dyn Clock,
        id: JobId,
        after: u32,
        budget: Duration,
    ) -> Self {
        let now = clock.now();
        Self {
            kv,
            clock,
            id,
            after,
            ends_at: now.plus(budget),
            next_beat: now.plus(HEARTBEAT),
            finished: false,
        }
    }

    /// The events after the last one sent, as SSE text; `None` when the job
    /// is gone (deleted, or removed by retention).
    fn fresh(&mut self) -> Result<Option<String>, PortError> {
        let Some(job) = load_job(self.kv, self.id)? else {
            return Ok(None);
        };
        let mut text = String::new();
        let after = self.after;
        for event in job.events.iter().filter(|e| e.seq > after) {
            text.push_str(&frame(self.id, event));
            self.after = event.seq;
            if event.kind.is_terminal() {
                self.finished = true;
            }
        }
        Ok(Some(text))
    }
}

/// One event as SSE: `id`, `event` and one line of JSON `data`.
pub fn frame(id: JobId, event: &Event) -> String {
    let mut data = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
    if let serde_json::Value::Object(map) = &mut data {
        map.insert("id".into(), json!(id.to_string()));
        if let EventKind::Output { variant, .. } = &event.kind {
            map.insert(
                "link".into(),
                json!(routes::file(id, FileName::Derivative(*variant))),
            );
        }
    }
    format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        event.seq,
        event.kind.name()
    )
}

impl Iterator for EventStream<'_> {
    type Item = Result<Vec<u8>, PortError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            match self.fresh() {
                Err(e) => return Some(Err(e)),
                Ok(None) => {
                    self.finished = true;
                    return None;
                }
                Ok(Some(text)) if !text.is_empty() => return Some(Ok(text.into_bytes())),
                Ok(Some(_)) => {}
            }
            let now = self.clock.now();
            if now.plus(POLL) >= self.ends_at {
                // Ends itself before the platform's limit; the client's
                // EventSource comes back with Last-Event-ID.
                self.finished = true;
                return Some(Ok(format!("retry: {RETRY_MS}\n\n").into_bytes()));
            }
            if now >= self.next_beat {
                self.next_beat = now.plus(HEARTBEAT);
                return Some(Ok(b": keep-alive\n\n".to_vec()));
            }
            self.clock.sleep(POLL);
        }
    }
}
