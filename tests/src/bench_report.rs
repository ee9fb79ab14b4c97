//! `darkroom-bench-report RUNS PHOTO...`: times Darkroom's pipeline on the
//! same photographs natively, in wasm (wasmtime, as Spin runs it, with the
//! peak linear memory of the instance), and libvips' CLI (`vipsthumbnail`
//! for 200 and 800 px, `vips copy …[strip]` for the full-size copy) side by
//! side in one run, and prints a Markdown table (scripts/bench.sh puts it in
//! BENCHMARKS.md). Medians of RUNS runs. A second table compares the size
//! of Darkroom's lossless optimized copy of each JPEG with what
//! `jpegtran` (libjpeg-turbo) makes losslessly from the same file, and of
//! its lossy one (quality 82) with libvips' re-encode at the same quality.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command as WasiCommand;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// One line of `darkroom-bench` output.
struct Timing {
    name: String,
    width: u32,
    height: u32,
    bytes: u64,
    job_ms: f64,
    optimized_ms: f64,
    optimized_bytes: u64,
    lossy_ms: f64,
    lossy_bytes: u64,
}

fn parse(output: &str) -> anyhow::Result<Vec<Timing>> {
    output
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [
                name,
                width,
                height,
                bytes,
                job,
                optimized,
                optimized_bytes,
                lossy,
                lossy_bytes,
            ] = f.as_slice()
            else {
                bail!("unexpected benchmark line {line:?}");
            };
            Ok(Timing {
                name: (*name).to_owned(),
                width: width.parse()?,
                height: height.parse()?,
                bytes: bytes.parse()?,
                job_ms: job.parse()?,
                optimized_ms: optimized.parse()?,
                optimized_bytes: optimized_bytes.parse()?,
                lossy_ms: lossy.parse()?,
                lossy_bytes: lossy_bytes.parse()?,
            })
        })
        .collect()
}

struct Guest {
    wasi: WasiCtx,
    table: ResourceTable,
    peak: PeakMemory,
}

impl WasiView for Guest {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Records the largest linear memory the instance asked for.
#[derive(Default)]
struct PeakMemory(usize);

impl wasmtime::ResourceLimiter for PeakMemory {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.0 = self.0.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Runs the wasm build on one photo in a fresh instance; returns its timing
/// line and the instance's peak linear memory in bytes.
fn run_wasm(
    engine: &Engine,
    component: &Component,
    runs: usize,
    photo: &Path,
) -> anyhow::Result<(Timing, usize)> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    let dir = photo.parent().context("photo without a folder")?;
    let name = photo
        .file_name()
        .and_then(|n| n.to_str())
        .context("photo name")?;
    let stdout = MemoryOutputPipe::new(1 << 16);
    let mut wasi = WasiCtx::builder();
    if let Some(value) = std::env::var_os("DARKROOM_BENCH_TABLE_ONLY") {
        wasi.env("DARKROOM_BENCH_TABLE_ONLY", value.to_string_lossy());
    }
    wasi.args(&["darkroom-bench", &runs.to_string(), &format!("/in/{name}")])
        .stdout(stdout.clone())
        .inherit_stderr()
        .preopened_dir(dir, "/in", FsPerms::ReadOnly)?;
    let mut store = Store::new(
        engine,
        Guest {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            peak: PeakMemory::default(),
        },
    );
    store.limiter(|g| &mut g.peak);
    let command = WasiCommand::instantiate(&mut store, component, &linker)?;
    if command.wasi_cli_run().call_run(&mut store)?.is_err() {
        bail!("the wasm benchmark failed on {}", photo.display());
    }
    let text = String::from_utf8_lossy(&stdout.contents()).into_owned();
    let timing = parse(&text)?.pop().context("no timing line")?;
    Ok((timing, store.data().peak.0))
}

/// Median wall time of `runs` runs of a command; `None` if it cannot run.
fn time_command(runs: usize, program: &str, args: &[&str]) -> Option<f64> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let status = Command::new(program).args(args).status().ok()?;
        if !status.success() {
            return None;
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    samples
        .get(runs / 2)
        .map(|d: &Duration| d.as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .and_then(|r| r.parse().ok())
        .context("usage: darkroom-bench-report RUNS PHOTO...")?;
    let photos: Vec<PathBuf> = args.map(PathBuf::from).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let native_bin = root.join("target/release/darkroom-bench");
    let wasm_bin = root.join("target/wasm32-wasip2/release/darkroom-bench.wasm");

    let native = Command::new(&native_bin)
        .arg(runs.to_string())
        .args(&photos)
        .output()
        .with_context(|| format!("running {}", native_bin.display()))?;
    if !native.status.success() {
        bail!(
            "native benchmark failed: {}",
            String::from_utf8_lossy(&native.stderr)
        );
    }
    let native = parse(&String::from_utf8_lossy(&native.stdout))?;

    let engine = Engine::default();
    let component = Component::from_file(&engine, &wasm_bin)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("loading {}", wasm_bin.display()))?;

    #[expect(clippy::print_stdout, reason = "the report is the output")]
    {
        println!(
            "| photo | pixels | file | native job | wasm job | wasm peak memory | vips 200 px | vips 800 px | vips copy | vips total | wasm / vips |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for (photo, n) in photos.iter().zip(&native) {
            let (wasm, peak) = run_wasm(&engine, &component, runs, photo)?;
            let p = photo.to_str().context("photo path")?;
            let thumb = time_command(
                runs,
                "vipsthumbnail",
                &[p, "-s", "200", "-o", "/tmp/darkroom-vips-200.jpg"],
            );
            let preview = time_command(
                runs,
                "vipsthumbnail",
                &[p, "-s", "800", "-o", "/tmp/darkroom-vips-800.jpg"],
            );
            let copy = time_command(
                runs,
                "vips",
                &[
                    "copy",
                    p,
                    "/tmp/darkroom-vips-copy.jpg[strip,optimize_coding]",
                ],
            );
            let ms =
                |v: Option<f64>| v.map_or("not installed".to_owned(), |v| format!("{v:.0} ms"));
            let total = thumb.zip(preview).zip(copy).map(|((a, b), c)| a + b + c);
            println!(
                "| {} | {}x{} ({:.1} MP) | {:.1} MB | {:.0} ms | {:.0} ms | {:.0} MiB | {} | {} | {} | {} | {} |",
                n.name,
                n.width,
                n.height,
                f64::from(n.width) * f64::from(n.height) / 1e6,
                n.bytes as f64 / 1e6,
                n.job_ms,
                wasm.job_ms,
                peak as f64 / f64::from(1u32 << 20),
                ms(thumb),
                ms(preview),
                ms(copy),
                ms(total),
                total.map_or("—".to_owned(), |t| format!("{:.2}", wasm.job_ms / t)),
            );
        }
    }
    if std::env::var_os("DARKROOM_BENCH_TABLE_ONLY").is_none() {
        sizes(&photos, &native);
        lossy_sizes(&photos, &native);
    }
    Ok(())
}

/// The bytes `jpegtran` writes for `photo` with `args`, if it runs.
fn jpegtran(photo: &Path, args: &[&str]) -> Option<u64> {
    let out = Command::new("jpegtran")
        .args(args)
        .arg(photo)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout.len() as u64)
}

/// The optimized copy's size next to `jpegtran`'s lossless re-codings,
/// for the JPEG photos (Darkroom keeps the ICC profile: so does
/// `-copy icc`, for a like-for-like comparison).
fn sizes(photos: &[PathBuf], native: &[Timing]) {
    size_table(
        "| photo | original | Darkroom optimized (lossless) | saved | time (native) | `jpegtran -copy icc -optimize` | `… -optimize -progressive` |",
        photos,
        native,
        |n| (n.optimized_bytes, n.optimized_ms),
        [
            &|photo| jpegtran(photo, &["-copy", "icc", "-optimize"]),
            &|photo| jpegtran(photo, &["-copy", "icc", "-optimize", "-progressive"]),
        ],
    );
}

/// Another tool's size for a photo (`None`: not installed or failed).
type OtherTool = dyn Fn(&Path) -> Option<u64>;

/// One size table for the JPEG photos: Darkroom's size and time (`ours`),
/// then two other tools' sizes, each with its share of the original.
#[expect(clippy::print_stdout, reason = "the report is the output")]
fn size_table(
    header: &str,
    photos: &[PathBuf],
    native: &[Timing],
    ours: impl Fn(&Timing) -> (u64, f64),
    others: [&OtherTool; 2],
) {
    println!();
    println!("{header}");
    println!("|---|---|---|---|---|---|---|");
    for (photo, n) in photos.iter().zip(native) {
        if photo.extension().and_then(|e| e.to_str()) != Some("jpg") {
            continue;
        }
        let cell = |b: Option<u64>| {
            b.map_or("not installed".to_owned(), |b| {
                format!("{b} ({:.1} %)", 100.0 * b as f64 / n.bytes as f64)
            })
        };
        let (bytes, ms) = ours(n);
        println!(
            "| {} | {} | {bytes} | {:.1} % | {ms:.0} ms | {} | {} |",
            n.name,
            n.bytes,
            100.0 * (n.bytes.saturating_sub(bytes)) as f64 / n.bytes as f64,
            cell(others[0](photo)),
            cell(others[1](photo)),
        );
    }
}

/// The bytes libvips writes for `photo` re-encoded at quality 82 (through
/// pixels, libjpeg's tables, 4:2:0 below quality 90) with `options`.
fn vips_lossy(photo: &Path, options: &str) -> Option<u64> {
    let out = std::env::temp_dir().join("darkroom-vips-lossy.jpg");
    let target = format!("{}[Q=82,strip,optimize_coding{options}]", out.display());
    let status = Command::new("vips")
        .arg("copy")
        .arg(photo)
        .arg(&target)
        .output()
        .ok()?;
    let bytes = status
        .status
        .success()
        .then(|| std::fs::metadata(&out).ok().map(|m| m.len()))
        .flatten();
    // A leftover temporary file is harmless.
    std::fs::remove_file(&out).ok();
    bytes
}

/// The lossy optimized copy's size next to libvips' re-encodes.
fn lossy_sizes(photos: &[PathBuf], native: &[Timing]) {
    size_table(
        "| photo | original | Darkroom optimized (`lossy`, 82) | saved | time (native) | `vips copy …[Q=82,strip,optimize_coding]` | `…,interlace]` |",
        photos,
        native,
        |n| (n.lossy_bytes, n.lossy_ms),
        [&|photo| vips_lossy(photo, ""), &|photo| {
            vips_lossy(photo, ",interlace")
        }],
    );
}
