//! The VP8 (lossy WebP) decoder of image-webp 0.2.4, changed to hand out
//! the picture a line at a time: it holds two macroblock rows (32 lines)
//! instead of the whole frame, and converts each line to RGB as it is
//! final. A 24 MP lossy WebP decoded whole is 36 MB of YUV planes and
//! 72 MB of RGB; line by line, about 40 bytes per pixel of width.
//!
//! Upstream's prediction, inverse transforms, loop filter and colour
//! conversion are unchanged (see README.md for what changed); the tests
//! compare every pixel with upstream's `WebPDecoder`.
//!
//! ```no_run
//! # fn f(vp8: &[u8]) -> Result<(), vp8_rows::DecodingError> {
//! let decoder = vp8_rows::Decoder::new(std::io::Cursor::new(vp8))?;
//! let (width, height) = decoder.dimensions();
//! decoder.decode_rows(|y, rgb| assert_eq!(rgb.len(), 3 * usize::from(width)))?;
//! # Ok(()) }
//! ```

mod error;
mod loop_filter;
mod transform;
mod vp8;
mod vp8_arithmetic_decoder;
mod yuv;

use std::io::Read;

pub use error::DecodingError;

/// A VP8 keyframe (the payload of a WebP's `VP8 ` chunk) opened past its
/// header.
pub struct Decoder<R>(vp8::Vp8Decoder<R>);

impl<R: Read> Decoder<R> {
    /// Reads the frame header and the first partition.
    ///
    /// # Errors
    /// When the data is not a VP8 keyframe or ends early.
    pub fn new(r: R) -> Result<Self, DecodingError> {
        vp8::Vp8Decoder::open(r).map(Self)
    }

    /// The picture's width and height.
    pub fn dimensions(&self) -> (u16, u16) {
        self.0.dimensions()
    }

    /// Decodes the picture and gives `sink` each line, top to bottom: its
    /// index and its RGB bytes (3 per pixel).
    ///
    /// # Errors
    /// When the bitstream is corrupt; the lines before the error were given.
    pub fn decode_rows(self, mut sink: impl FnMut(u32, &[u8])) -> Result<(), DecodingError> {
        self.0.decode_rows(&mut sink)
    }
}
