//! Replays every input kept in `fuzz/regressions` (the fuzzer's seeds and
//! anything it ever found) through validation and the pipeline: none may
//! panic. Errors are expected for most of them.

use darkroom_imaging::format::{Limits, inspect};
use darkroom_imaging::pipeline::render;

#[test]
fn every_kept_fuzz_input_is_handled_without_a_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let limits = Limits {
        max_upload_bytes: 1 << 20,
        max_pixels: 4_000_000,
        max_frames: 100,
        ..Limits::default()
    };
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions exists") {
        let path = entry.expect("readable entry").path();
        let data = std::fs::read(&path).expect("readable input");
        if inspect(&data, limits).is_ok() {
            drop(render(&data, limits));
        }
        seen += 1;
    }
    assert!(seen >= 6, "expected the seed inputs, found {seen}");
}
