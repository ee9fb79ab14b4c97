//! `darkroom-bench RUNS FILE...`: runs the processor's pipeline on each file
//! RUNS times and prints one tab-separated line per file: name, width,
//! height, bytes, median ms of the whole job (thumbnail + preview +
//! optimized copy), median ms of the optimized copy alone (for a JPEG:
//! metadata removal and the Huffman re-coding), the optimized copy's
//! size in bytes, then the same two for `optimize = lossy` at quality 82
//! (for a JPEG, the time of the DCT-domain re-quantization). The same source
//! is built natively and for wasm32-wasip2, so the two are comparable.

use std::time::{Duration, Instant};

use darkroom_imaging::format::{ImageFormat, Limits, inspect};
use darkroom_imaging::pipeline::{Optimize, Variant, render, render_with};

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .and_then(|r| r.parse().ok())
        .ok_or("usage: darkroom-bench RUNS FILE...")?;
    // Measure every kind, also those the memory estimate would refuse at
    // upload: the figures are what the estimate is calibrated on.
    let limits = Limits {
        max_memory: u64::MAX,
        max_upload_bytes: u64::MAX,
        ..Limits::default()
    };
    for path in args {
        let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        let info = inspect(&bytes, limits).map_err(|e| format!("{path}: {e}"))?;
        let mut job = Vec::with_capacity(runs);
        let mut optimized = Vec::with_capacity(runs);
        let mut optimized_bytes = 0;
        let mut lossy = Vec::with_capacity(runs);
        // DARKROOM_BENCH_TABLE_ONLY: the default job alone, so that the wasm
        // instance's peak is that job's (a lossy re-encode decodes in full).
        let table_only = std::env::var_os("DARKROOM_BENCH_TABLE_ONLY").is_some();
        let lossy_bytes = if table_only {
            0
        } else {
            render_with(
                &bytes,
                limits,
                Optimize::Lossy {
                    quality: Optimize::DEFAULT_QUALITY,
                },
            )
            .map_err(|e| format!("{path}: {e}"))?
            .into_iter()
            .find(|r| r.variant == Variant::Optimized)
            .map_or(0, |r| r.bytes.len())
        };
        for _ in 0..runs {
            let start = Instant::now();
            let out = render(&bytes, limits).map_err(|e| format!("{path}: {e}"))?;
            job.push(start.elapsed());
            if info.format == ImageFormat::Jpeg && !table_only {
                let start = Instant::now();
                let stripped = darkroom_imaging::jpeg::strip_metadata(&bytes, 1)
                    .map_err(|e| format!("{path}: {e}"))?;
                std::hint::black_box(
                    darkroom_imaging::jpeg_recode::optimize_huffman(&stripped)
                        .map_err(|e| format!("{path}: {e}"))?,
                );
                optimized.push(start.elapsed());
                let start = Instant::now();
                std::hint::black_box(
                    darkroom_imaging::jpeg_recode::requantize(&stripped, Optimize::DEFAULT_QUALITY)
                        .map_err(|e| format!("{path}: {e}"))?,
                );
                lossy.push(start.elapsed());
            }
            optimized_bytes = out
                .iter()
                .find(|r| r.variant == Variant::Optimized)
                .map_or(0, |r| r.bytes.len());
            std::hint::black_box(out);
        }
        let name = path.rsplit('/').next().unwrap_or(&path);
        #[expect(clippy::print_stdout, reason = "the benchmark's output is its result")]
        {
            println!(
                "{name}\t{}\t{}\t{}\t{:.1}\t{:.1}\t{optimized_bytes}\t{:.1}\t{lossy_bytes}",
                info.width,
                info.height,
                info.bytes,
                median(job),
                median(optimized),
                median(lossy)
            );
        }
    }
    Ok(())
}
