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
//!
//! What bounds the rate is measured over the same interval, from Linux's
//! counters: the machine's busy time (`/proc/stat`, both cores), the test
//! host's threads by name (`/proc/self/task/*/stat`: `spin-redis` and
//! `spin-rt` are the processors, where the processor component runs;
//! `spin-rt-http` the front's HTTP components), and the Redis server's
//! process (its pid from `INFO server`). Each is given in cores (CPU
//! seconds per second of the drain); "rest" is this process's other
//! threads (the client uploading and polling, the epoch ticker).

#[expect(dead_code, reason = "the suite's helpers; the benchmark uses a few")]
#[path = "../e2e/helpers.rs"]
mod helpers;

/// The answers the helpers return are held to the description here too.
#[path = "../e2e/contract.rs"]
mod contract;

use std::collections::HashMap;
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
        "| processors | jobs of {name} | time to drain | jobs/s | speed-up | CPU busy (cores of 2) | processors | front | Redis | rest |\n|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let mut one = None;
    for processors in 1..=3 {
        let (elapsed, cpu) = drain(processors, jobs, &bytes)?;
        let seconds = elapsed.as_secs_f64();
        let rate = (jobs + 1) as f64 / seconds;
        let base = *one.get_or_insert(rate);
        let cores = |cpu_seconds: f64| cpu_seconds / seconds;
        writeln!(
            table,
            "| {processors} | {} | {seconds:.2} s | {rate:.2} | {:.2}x | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            jobs + 1,
            rate / base,
            cores(cpu.machine),
            cores(cpu.processors),
            cores(cpu.front),
            cores(cpu.redis),
            cores(cpu.rest),
        )?;
    }
    #[expect(clippy::print_stdout, reason = "the table is the benchmark's output")]
    {
        print!("{table}");
    }
    Ok(())
}

/// Linux's clock ticks per second (`getconf CLK_TCK`), 100 on every
/// Linux build this runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds spent, as counted by Linux.
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// The whole machine's busy time, every core.
    machine: f64,
    /// The processors' threads.
    processors: f64,
    /// The front's threads.
    front: f64,
    /// The Redis server.
    redis: f64,
    /// This process's other threads.
    rest: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            machine: self.machine - o.machine,
            processors: self.processors - o.processors,
            front: self.front - o.front,
            redis: self.redis - o.redis,
            rest: self.rest - o.rest,
        }
    }
}

/// utime + stime of a `/proc/.../stat` line, in seconds, and its name.
fn stat_cpu(stat: &str) -> Option<(String, f64)> {
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = tail.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `tail` starts at field 3.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((name, ticks / TICKS_PER_SECOND))
}

fn cpu_now(redis_pid: u32) -> anyhow::Result<Cpu> {
    let mut cpu = Cpu::default();
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("an empty /proc/stat")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal …: busy is all but idle and iowait.
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    cpu.machine = (total - idle) / TICKS_PER_SECOND;
    let mut by_name: HashMap<String, f64> = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path().join("stat");
        // A thread may end between the listing and the read.
        if let Ok(stat) = std::fs::read_to_string(path)
            && let Some((name, seconds)) = stat_cpu(&stat)
        {
            *by_name.entry(name).or_default() += seconds;
        }
    }
    for (name, seconds) in by_name {
        match name.as_str() {
            "spin-redis" | "spin-rt" => cpu.processors += seconds,
            "spin-rt-http" => cpu.front += seconds,
            _ => cpu.rest += seconds,
        }
    }
    let redis = std::fs::read_to_string(format!("/proc/{redis_pid}/stat"))?;
    cpu.redis = stat_cpu(&redis).context("Redis's stat")?.1;
    Ok(cpu)
}

/// The Redis server's process id.
fn redis_pid() -> anyhow::Result<u32> {
    let mut conn = redis::Client::open(helpers::redis_url())?.get_connection()?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn)?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .context("no process_id in INFO server")?
        .trim()
        .parse()
        .context("process_id")
}

/// The time `processors` processors take to complete `jobs` queued jobs
/// and the one whose upload wakes them, and the CPU time spent meanwhile.
fn drain(processors: usize, jobs: usize, bytes: &[u8]) -> anyhow::Result<(Duration, Cpu)> {
    let redis = redis_pid()?;
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

    let before = cpu_now(redis)?;
    let start = Instant::now();
    ids.push(front.upload(bytes.to_vec()));
    for id in &ids {
        let done = front.wait_until_finished(id);
        assert_eq!(done["status"], "completed", "{done}");
    }
    let elapsed = start.elapsed();
    Ok((elapsed, cpu_now(redis)? - before))
}
