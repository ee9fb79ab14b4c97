//! What a job's attempt costs around the pipeline: each photo uploaded to
//! the real components in the test host (a front app and a processor app,
//! `DARKROOM_TEST_KV` choosing the key-value backend: `sqlite` for the
//! `--state-dir` file a plain `spin up` uses), with a real Redis. Per photo:
//! the pipeline's own time and the whole attempt's (both from the job's
//! `history`, measured by the processor), their ratio, and the key-value
//! calls and bytes of the upload and of the processor. Prints a Markdown
//! table; `scripts/bench.sh` writes it into BENCHMARKS.md.
//!
//! `attempt PHOTO...` (absolute paths) with the components built and
//! `DARKROOM_TEST_REDIS_URL` naming a Redis server. With
//! `DARKROOM_BENCH_VIPS_JOB` naming `scripts/vips_job.py`, each photo is
//! also processed by libvips in-process (pyvips, one thread) right after
//! Darkroom's runs, and the table gets its times and the attempt's ratio
//! to them.
//!
//! The limits are raised (200 MiB uploads, 2 GiB `max_memory_mib`) so that
//! every kind is timed, also those a hosted instance refuses.

#[expect(dead_code, reason = "the suite's helpers; the benchmark uses a few")]
#[path = "../e2e/helpers.rs"]
mod helpers;

/// The answers the helpers return are held to the description here too.
#[path = "../e2e/contract.rs"]
mod contract;

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Context as _;
use darkroom_tests::kv::KvCalls;
use helpers::{Options, TestApp};

/// Runs of each photo; the table shows the median attempt.
const RUNS: usize = 3;

fn main() -> anyhow::Result<()> {
    let photos: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    anyhow::ensure!(!photos.is_empty(), "usage: attempt PHOTO...");
    let vips_job = std::env::var("DARKROOM_BENCH_VIPS_JOB").ok();
    let mut table = String::from(
        "| photo | file | time to 202 | pipeline | attempt | attempt / pipeline | upload: KV calls (bytes) | processor: KV gets (bytes) | processor: KV sets (bytes) | processor: deletes |",
    );
    if vips_job.is_some() {
        table.push_str(" libvips: 200 + 800 px | libvips: full-size copy | attempt / libvips |");
    }
    table.push_str("\n|---|---|---|---|---|---|---|---|---|---|");
    if vips_job.is_some() {
        table.push_str("---|---|---|");
    }
    table.push('\n');
    for photo in &photos {
        let bytes = std::fs::read(photo).with_context(|| format!("reading {photo}"))?;
        let name = std::path::Path::new(photo)
            .file_name()
            .map_or_else(|| photo.clone(), |n| n.to_string_lossy().into_owned());
        let mut runs: Vec<Run> = (0..RUNS)
            .map(|_| one_job(&bytes))
            .collect::<anyhow::Result<_>>()?;
        runs.sort_by_key(|r| r.attempt_ms);
        let r = &runs[RUNS / 2];
        let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
        write!(
            table,
            "| {name} | {} | {} ms | {} ms | {} ms | {:.2} | {} ({}) | {} ({}) | {} ({}) | {} |",
            mb(bytes.len() as u64),
            r.accepted_ms,
            r.pipeline_ms,
            r.attempt_ms,
            r.attempt_ms as f64 / r.pipeline_ms.max(1) as f64,
            r.upload.gets + r.upload.sets + r.upload.deletes + r.upload.others,
            mb(r.upload.bytes_read + r.upload.bytes_written),
            r.processor.gets,
            mb(r.processor.bytes_read),
            r.processor.sets,
            mb(r.processor.bytes_written),
            r.processor.deletes,
        )?;
        if let Some(script) = &vips_job {
            let (thumbnails, copy) = vips_times(script, photo)?;
            write!(
                table,
                " {thumbnails} ms | {copy} ms | {:.2} |",
                r.attempt_ms as f64 / (thumbnails + copy).max(1) as f64
            )?;
        }
        table.push('\n');
    }
    #[expect(clippy::print_stdout, reason = "the table is the benchmark's output")]
    {
        print!("{table}");
    }
    Ok(())
}

/// libvips' medians for `photo`: the two thumbnails, and the full-size copy
/// (`scripts/vips_job.py`).
fn vips_times(script: &str, photo: &str) -> anyhow::Result<(u64, u64)> {
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(RUNS.to_string())
        .arg(photo)
        .output()
        .context("running python3 (scripts/bench.sh installs pyvips)")?;
    anyhow::ensure!(
        output.status.success(),
        "{script} {photo}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let mut times = text.split_whitespace().map(str::parse::<u64>);
    match (times.next(), times.next()) {
        (Some(Ok(thumbnails)), Some(Ok(copy))) => Ok((thumbnails, copy)),
        _ => anyhow::bail!("{script} printed {text:?}"),
    }
}

struct Run {
    accepted_ms: u128,
    pipeline_ms: u64,
    attempt_ms: u64,
    upload: KvCalls,
    processor: KvCalls,
}

/// One upload, processed by a processor app of its own.
fn one_job(bytes: &[u8]) -> anyhow::Result<Run> {
    let limits = vec![
        ("max_upload_bytes", "209715200"),
        ("max_memory_mib", "2048"),
    ];
    let front = TestApp::start(Options {
        components: Some(&["upload", "status"]),
        variables: limits.clone(),
        ..Options::default()
    });
    let processor = TestApp::start(Options {
        components: Some(&["processor"]),
        share_state_with: Some(&front),
        variables: limits,
        ..Options::default()
    });
    let start = Instant::now();
    let id = front.upload(bytes.to_vec());
    let accepted_ms = start.elapsed().as_millis();
    let done = front.wait_until_finished(&id);
    anyhow::ensure!(done["status"] == "completed", "not completed: {done}");
    let attempt = &done["history"][0];
    let at = |field: &str| -> anyhow::Result<u64> {
        let text = attempt[field].as_str().context("a timestamp")?;
        let t = humantime::parse_rfc3339(text)?;
        Ok(t.duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
            .try_into()?)
    };
    let attempt_ms = at("ended_at")? - at("started_at")?;
    let pipeline_ms = attempt["pipeline_ms"].as_u64().context("pipeline_ms")?;
    let front_calls = front
        .kv_calls()
        .context("the test host counts key-value calls")?;
    let processor_calls = processor
        .kv_calls()
        .context("the test host counts key-value calls")?;
    Ok(Run {
        accepted_ms,
        pipeline_ms,
        attempt_ms,
        upload: front_calls.get("upload").copied().unwrap_or_default(),
        processor: processor_calls
            .get("processor")
            .copied()
            .unwrap_or_default(),
    })
}
