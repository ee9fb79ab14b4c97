//! Darkroom's image work, free of jobs and of any runtime: original bytes
//! in, derivatives out.
//!
//! - [`format`](mod@format): what an upload is, from its bytes alone (format by magic
//!   bytes, dimensions from the header), held to the [`format::Limits`],
//!   with the memory a kind of image needs (the private `cost` module).
//! - [`pipeline`]: the thumbnail, the preview and the optimized copy.
//! - [`jpeg`], [`metadata`]: lossless metadata removal; [`jpeg_recode`]:
//!   a JPEG's entropy data re-coded (optimal Huffman tables, progressive
//!   scans) and re-quantized in the DCT domain.
//!
//! Nothing here knows about jobs, storage, Spin or I/O; `darkroom-core`
//! drives it.

pub mod format;
pub mod jpeg;
pub mod jpeg_recode;
pub mod metadata;
pub mod pipeline;
pub mod testing;

mod cost;
mod gif;
mod icc;
mod rows;
mod skim;
mod webp;
