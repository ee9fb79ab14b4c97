//! The bodies the notifier sends: a Standard Webhooks payload
//! (`{"type", "timestamp", "data"}`, with absolute links from
//! `public_base_url`) and an e-mail API request in Resend's shape
//! (`POST /emails` with `from`, `to`, `subject`, `text`, `html`), which
//! Resend and the APIs compatible with it accept.

use std::collections::BTreeMap;

use darkroom_core::JobState;
use darkroom_core::job::{Event, EventKind, FailureCode, Job};
use darkroom_core::notify::Render;
use darkroom_core::pipeline::Variant;
use darkroom_core::service::FileName;
use serde_json::{Value, json};

use crate::routes;

/// The longest failure message carried (the body must stay under 20 KB).
const MAX_MESSAGE_CHARS: usize = 1000;

/// Renders notices with absolute links.
pub struct Messages {
    /// `public_base_url`, without a trailing slash.
    pub base_url: String,
    /// `email_from`.
    pub from: String,
}

impl Messages {
    fn absolute(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn links(&self, job: &Job) -> BTreeMap<&'static str, String> {
        let mut links = BTreeMap::from([
            ("self", self.absolute(&routes::status(job.id))),
            ("events", self.absolute(&routes::events(job.id))),
            (
                "original",
                self.absolute(&routes::file(job.id, FileName::Original)),
            ),
        ]);
        if matches!(job.state, JobState::Completed { .. }) {
            for v in Variant::ALL {
                links.insert(
                    v.name(),
                    self.absolute(&routes::file(job.id, FileName::Derivative(v))),
                );
            }
        }
        links
    }
}

/// The job's status as of `kind`.
const fn status_of(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Queued | EventKind::Retrying { .. } => "queued",
        EventKind::Processing { .. } | EventKind::Output { .. } => "processing",
        EventKind::Completed => "completed",
        EventKind::Failed { .. } => "failed",
        EventKind::Cancelled => "cancelled",
    }
}

/// What a failure code means, for people.
const fn in_words(code: FailureCode) -> &'static str {
    match code {
        FailureCode::UndecodableImage => "the file looks like an image but cannot be decoded",
        FailureCode::LimitsExceeded => "the image is larger than this service processes",
        FailureCode::OriginalMissing => "the uploaded file was lost from storage",
        FailureCode::StorageUnavailable => "storage was unavailable on every attempt",
        FailureCode::ProcessorLost => "processing stopped before finishing on every attempt",
        FailureCode::Cancelled => "it was cancelled",
        FailureCode::SourceUnreachable => "the image's URL could not be reached",
        FailureCode::SourceRefused => "the image's URL refused the request",
        FailureCode::SourceNotImage => "the image's URL did not serve an image",
        FailureCode::SourceTooLarge => "the image at the URL is too large",
        FailureCode::SourceTooManyPixels => "the image at the URL has too many pixels",
    }
}

fn clipped(message: &str) -> String {
    message.chars().take(MAX_MESSAGE_CHARS).collect()
}

impl Render for Messages {
    fn webhook(&self, job: &Job, event: &Event) -> Vec<u8> {
        let mut data = json!({
            "id": job.id.to_string(),
            "status": status_of(&event.kind),
            "links": self.links(job),
        });
        match &event.kind {
            EventKind::Failed { error } => {
                data["error"] = json!({ "code": error.code, "message": clipped(&error.message) });
            }
            EventKind::Retrying { error, retry_at } => {
                data["error"] = json!({ "code": error.code, "message": clipped(&error.message) });
                data["retry_at"] = json!(retry_at.to_string());
            }
            EventKind::Processing { attempt, .. } => data["attempt"] = json!(attempt),
            EventKind::Output { variant, output } => {
                data["output"] = json!({
                    "variant": variant.name(),
                    "content_type": output.format.mime(),
                    "width": output.width,
                    "height": output.height,
                    "bytes": output.bytes,
                    "href": self.absolute(&routes::file(job.id, FileName::Derivative(*variant))),
                });
            }
            EventKind::Completed => {
                if let JobState::Completed { outputs } = &job.state {
                    let views: BTreeMap<&str, Value> = Variant::ALL
                        .into_iter()
                        .map(|v| {
                            let o = outputs.get(v);
                            (
                                v.name(),
                                json!({
                                    "content_type": o.format.mime(),
                                    "width": o.width,
                                    "height": o.height,
                                    "bytes": o.bytes,
                                }),
                            )
                        })
                        .collect();
                    data["outputs"] = json!(views);
                }
            }
            EventKind::Queued | EventKind::Cancelled => {}
        }
        serde_json::to_vec(&json!({
            "type": event.kind.name(),
            "timestamp": event.at.to_string(),
            "data": data,
        }))
        .unwrap_or_default()
    }

    fn email(&self, job: &Job, event: &Event, to: &str) -> Vec<u8> {
        let links = self.links(job);
        let (subject, lines) =
            match &event.kind {
                EventKind::Failed { error } => (
                    "Your image could not be processed".to_owned(),
                    vec![
                        format!(
                            "Your image {} could not be processed: {}.",
                            job.id,
                            in_words(error.code)
                        ),
                        format!("Details: {}", clipped(&error.message)),
                        format!("Status: {}", links["self"]),
                    ],
                ),
                _ => {
                    let mut lines = vec![format!("Your image {} is ready. Its files:", job.id)];
                    lines.extend(Variant::ALL.into_iter().filter_map(|v| {
                        links.get(v.name()).map(|l| format!("- {}: {l}", v.name()))
                    }));
                    lines.push(format!("- original: {}", links["original"]));
                    lines.push(format!("Status: {}", links["self"]));
                    ("Your image is ready".to_owned(), lines)
                }
            };
        let text = lines.join("\n");
        let html = lines
            .iter()
            .map(|l| format!("<p>{}</p>", escape(l)))
            .collect::<String>();
        serde_json::to_vec(&json!({
            "from": self.from,
            "to": [to],
            "subject": subject,
            "text": text,
            "html": html,
        }))
        .unwrap_or_default()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
