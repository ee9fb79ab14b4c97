//! Fuzzes what a hostile upload reaches: validation from the header, then the
//! whole pipeline. Neither may panic, hang or allocate beyond the limits;
//! errors are fine. Small limits keep each input cheap.

#![no_main]

use darkroom_imaging::format::{Limits, inspect};
use darkroom_imaging::pipeline::render;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_upload_bytes: 1 << 20,
        max_pixels: 4_000_000,
        max_frames: 100,
        ..Limits::default()
    };
    if inspect(data, limits).is_ok() {
        drop(render(data, limits));
    }
});
