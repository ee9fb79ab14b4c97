//! What processing an image will cost in memory, told from its header before
//! a pixel is decoded, so that an image that cannot fit in the processor's
//! instance (128 MiB on hosted Spin) is refused at upload with a clear
//! answer instead of running the processor out of memory five times.
//!
//! The figures are bytes per pixel of the whole job in wasm (decoded pixels,
//! the decoder's own buffers, conversions, the derivatives), measured with
//! `darkroom-bench-report` on 24 MP images of every kind (BENCHMARKS.md) and
//! rounded up; the original is counted twice (the upload and its
//! metadata-stripped copy).

use std::io::Cursor;

use image::{ColorType, ImageDecoder};

use crate::format::{ImageFormat, InvalidImage, Limits};

/// Memory held whatever the image: allocator slack, resize intermediates,
/// encoder state. In quarter bytes per pixel, like every figure here.
const SLACK_QUARTERS: u64 = 8;

/// The WebP decoder's own buffers: YUV planes for a lossy image; with
/// alpha, also the alpha plane and an RGBA staging buffer; a 32-bit ARGB
/// buffer for a lossless one.
const WEBP_LOSSY: u64 = 2;
const WEBP_LOSSY_ALPHA: u64 = 20;
const WEBP_LOSSLESS: u64 = 12;

/// What decides an image's cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub width: u32,
    pub height: u32,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A JPEG decoded at 1/`denominator` scale in the DCT.
    ScaledJpeg { progressive: bool, denominator: u32 },
    /// Decoded at full size to `color`, with `extra_quarters` of the
    /// decoder's own buffers per pixel.
    FullDecode {
        color: ColorType,
        extra_quarters: u64,
    },
}

fn unreadable(format: ImageFormat, e: impl std::fmt::Display) -> InvalidImage {
    InvalidImage::UnreadableHeader {
        format,
        reason: e.to_string(),
    }
}

/// The scale the JPEG path decodes a `width`-wide image at.
pub(crate) fn jpeg_denominator(shown_width: u32, wanted: u32) -> u32 {
    [8, 4, 2, 1]
        .into_iter()
        .find(|d| shown_width.div_ceil(*d) >= wanted.min(shown_width))
        .unwrap_or(1)
}

/// Reads the header of `bytes` (already sniffed as `format`).
pub(crate) fn read_header(format: ImageFormat, bytes: &[u8]) -> Result<Header, InvalidImage> {
    if format == ImageFormat::Jpeg {
        let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
        decoder.read_info().map_err(|e| unreadable(format, e))?;
        let info = decoder
            .info()
            .ok_or_else(|| unreadable(format, "no frame header"))?;
        let (width, height) = (u32::from(info.width), u32::from(info.height));
        let kind = match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8 => Kind::ScaledJpeg {
                progressive: info.coding_process == jpeg_decoder::CodingProcess::DctProgressive,
                // Either side may end up as the shown width.
                denominator: jpeg_denominator(width.min(height), 800),
            },
            // The general path: the planes inside the decoder, then RGB.
            jpeg_decoder::PixelFormat::CMYK32 => Kind::FullDecode {
                color: ColorType::Rgb8,
                extra_quarters: 16,
            },
            jpeg_decoder::PixelFormat::L16 => Kind::FullDecode {
                color: ColorType::L16,
                extra_quarters: 0,
            },
        };
        return Ok(Header {
            width,
            height,
            kind,
        });
    }
    let decoder = image::ImageReader::with_format(Cursor::new(bytes), format.codec())
        .into_decoder()
        .map_err(|e| unreadable(format, e))?;
    let (width, height) = decoder.dimensions();
    let color = decoder.color_type();
    let extra_quarters = match format {
        ImageFormat::Webp if crate::webp::is_lossless(bytes) => WEBP_LOSSLESS,
        ImageFormat::Webp if color.has_alpha() => WEBP_LOSSY_ALPHA,
        ImageFormat::Webp => WEBP_LOSSY,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif => 0,
    };
    Ok(Header {
        width,
        height,
        kind: Kind::FullDecode {
            color,
            extra_quarters,
        },
    })
}

impl Header {
    /// Memory per pixel, in quarter bytes.
    fn quarters_per_pixel(self) -> u64 {
        let working = match self.kind {
            Kind::ScaledJpeg {
                progressive,
                denominator,
            } => {
                // The scaled pixels, and for a progressive JPEG the
                // coefficients kept per 8x8 block of each of 3 components:
                // side² values of 2 bytes, plus an 8-byte mask below 8x8.
                let scaled = 12_u64.div_ceil(u64::from(denominator * denominator));
                let side = u64::from(8 / denominator);
                let block = side * side * 2 + if side < 8 { 8 } else { 0 };
                let coefficients = if progressive { 3 * block * 4 / 64 } else { 0 };
                scaled + coefficients
            }
            Kind::FullDecode {
                color,
                extra_quarters,
            } => {
                let decoded = u64::from(color.bytes_per_pixel()) * 4;
                // The pipeline works on 8-bit grey, RGB or RGBA: anything
                // else is converted once, to one of them.
                let converted = match color {
                    ColorType::L8 | ColorType::Rgb8 | ColorType::Rgba8 => 0,
                    c if c.has_alpha() => 16,
                    c if c.channel_count() == 1 => 4,
                    _ => 12,
                };
                decoded + converted + extra_quarters
            }
        };
        working + SLACK_QUARTERS
    }

    /// The estimated peak of processing the image, for a file of `file_len` bytes.
    pub(crate) fn memory_needed(self, file_len: u64) -> u64 {
        let pixels = u64::from(self.width) * u64::from(self.height);
        (pixels * self.quarters_per_pixel()).div_ceil(4) + 2 * file_len
    }

    /// Holds the estimate to [`Limits::max_memory`].
    pub(crate) fn check(self, file_len: u64, limits: Limits) -> Result<(), InvalidImage> {
        let needed = self.memory_needed(file_len);
        if needed <= limits.max_memory {
            return Ok(());
        }
        let room = limits.max_memory.saturating_sub(2 * file_len);
        Err(InvalidImage::TooMuchMemory {
            width: self.width,
            height: self.height,
            needed_mib: needed.div_ceil(1 << 20),
            limit_mib: limits.max_memory >> 20,
            max_pixels: room * 4 / self.quarters_per_pixel(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_png, encode_with, gradient};

    const MIB: u64 = 1 << 20;

    fn header(bytes: &[u8]) -> Header {
        let format = ImageFormat::sniff(bytes).expect("an image");
        read_header(format, bytes).expect("a header")
    }

    #[test]
    fn the_estimates_cover_what_24_mp_images_were_measured_to_take_in_wasm() {
        // (header kind, measured whole-job peak in wasm for 24 MP, BENCHMARKS.md)
        let full = |color, extra_quarters| Kind::FullDecode {
            color,
            extra_quarters,
        };
        let cases = [
            (full(ColorType::Rgb8, 0), 100),          // PNG
            (full(ColorType::Rgba8, 0), 132),         // PNG with alpha, GIF (127)
            (full(ColorType::Rgb16, 0), 210),         // 16-bit PNG
            (full(ColorType::L8, 0), 35),             // grey PNG
            (full(ColorType::Rgb8, WEBP_LOSSY), 113), // lossy WebP
            (full(ColorType::Rgba8, WEBP_LOSSY_ALPHA), 244),
            (full(ColorType::Rgb8, WEBP_LOSSLESS), 172),
            (
                Kind::ScaledJpeg {
                    progressive: false,
                    denominator: 4,
                },
                25,
            ),
        ];
        for (kind, measured_mib) in cases {
            let h = Header {
                width: 6000,
                height: 4000,
                kind,
            };
            let estimate = h.memory_needed(0) / MIB;
            assert!(
                estimate >= measured_mib && estimate <= measured_mib * 2 + 8,
                "{kind:?}: estimated {estimate} MiB, measured {measured_mib} MiB"
            );
        }
    }

    #[test]
    fn headers_tell_the_decoded_colour_and_the_jpeg_scale() {
        let png = encode_png(&gradient(300, 200, true));
        assert_eq!(
            header(&png).kind,
            Kind::FullDecode {
                color: ColorType::Rgba8,
                extra_quarters: 0
            }
        );
        let lossless = encode_with(&gradient(300, 200, false), image::ImageFormat::WebP);
        assert_eq!(
            header(&lossless).kind,
            Kind::FullDecode {
                color: ColorType::Rgb8,
                extra_quarters: WEBP_LOSSLESS
            }
        );
        let jpeg = encode_with(&gradient(4000, 3000, false), image::ImageFormat::Jpeg);
        assert_eq!(
            header(&jpeg).kind,
            Kind::ScaledJpeg {
                progressive: false,
                denominator: 2
            }
        );
    }

    #[test]
    fn an_image_over_the_memory_limit_is_refused_with_the_pixels_its_kind_may_have() {
        let limits = Limits {
            max_memory: 120 * MIB,
            ..Limits::default()
        };
        let rgba = Header {
            width: 6000,
            height: 4000,
            kind: Kind::FullDecode {
                color: ColorType::Rgba8,
                extra_quarters: 0,
            },
        };
        let err = rgba.check(1_000_000, limits).expect_err("over");
        let InvalidImage::TooMuchMemory {
            needed_mib,
            limit_mib,
            max_pixels,
            ..
        } = err
        else {
            panic!("{err}");
        };
        assert_eq!(limit_mib, 120);
        assert!(needed_mib > 120, "{needed_mib}");
        assert!(
            (20_000_000..24_000_000).contains(&max_pixels),
            "{max_pixels}"
        );
        let rgb = Header {
            kind: Kind::FullDecode {
                color: ColorType::Rgb8,
                extra_quarters: 0,
            },
            ..rgba
        };
        assert_eq!(rgb.check(1_000_000, limits), Ok(()));
    }
}
