//! Queue throughput: the same batch of jobs drained by 1, 2 and 3
//! processors sharing one queue, as `spin up` instances or SpinKube replicas
//! of one deployment do. Prints a Markdown table; `scripts/bench.sh` writes
//! it into BENCHMARKS.md.
//!
//! `throughput PHOTO [JOBS]` (PHOTO absolute: cargo runs benchmarks in
//! the package's folder) with the components built and
//! `DARKROOM_TEST_REDIS_URL` naming a Redis server (scripts/bench.sh does
//! both). The jobs are uploaded while no processor runs; the clock starts
//! when the processors have subscribed and one more upload rings the
//! doorbell, and stops when the last job has completed.

#[expect(dead_code, reason = "the suite's helpers; the benchmark uses a few")]
#[path = "../e2e/helpers.rs"]
mod helpers;

/// The answers the helpers return are held to the description here too.
#[path = "../e2e/contract.rs"]
mod contract;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use helpers::{Options, TestApp};

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(photo) = args.first() else {
        anyhow::bail!("usage: throughput PHOTO [JOBS]");
    };
    let jobs: usize = args.get(1).map_or(Ok(16), |n| n.parse())?;
    let bytes = std::fs::read(photo).with_context(|| format!("reading {photo}"))?;
    let name = std::path::Path::new(photo)
        .file_name()
        .map_or_else(|| photo.clone(), |n| n.to_string_lossy().into_owned());

    let mut table = format!(
        "| processors | jobs of {name} | time to drain | jobs/s | speed-up |\n|---|---|---|---|---|\n"
    );
    let mut one = None;
    for processors in 1..=3 {
        let elapsed = drain(processors, jobs, &bytes);
        let rate = (jobs + 1) as f64 / elapsed.as_secs_f64();
        let base = *one.get_or_insert(rate);
        writeln!(
            table,
            "| {processors} | {} | {:.2} s | {rate:.2} | {:.2}x |",
            jobs + 1,
            elapsed.as_secs_f64(),
            rate / base
        )?;
    }
    #[expect(clippy::print_stdout, reason = "the table is the benchmark's output")]
    {
        print!("{table}");
    }
    Ok(())
}

/// The time `processors` processors take to complete `jobs` queued jobs
/// and the one whose upload wakes them.
fn drain(processors: usize, jobs: usize, bytes: &[u8]) -> Duration {
    let front = TestApp::start(Options {
        components: Some(&["upload", "status"]),
        ..Options::default()
    });
    let mut ids: Vec<String> = (0..jobs).map(|_| front.upload(bytes.to_vec())).collect();
    let _processors: Vec<TestApp> = (0..processors)
        .map(|_| {
            TestApp::start(Options {
                components: Some(&["processor"]),
                share_state_with: Some(&front),
                ..Options::default()
            })
        })
        .collect();
    front.wait_for_subscribers(i64::try_from(processors).unwrap_or(i64::MAX));

    let start = Instant::now();
    ids.push(front.upload(bytes.to_vec()));
    for id in &ids {
        let done = front.wait_until_finished(id);
        assert_eq!(done["status"], "completed", "{done}");
    }
    start.elapsed()
}
