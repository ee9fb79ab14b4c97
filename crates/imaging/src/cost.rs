//! What processing an image will cost in memory, told from its header before
//! a pixel is decoded, so that an image that cannot fit in the processor's
//! instance (128 MiB on hosted Spin) is refused at upload with a clear
//! answer instead of running the processor out of memory five times.
//!
//! Three kinds of work, three models:
//! - a JPEG decoded at 1/2–1/8 scale in the DCT: bytes per pixel of the
//!   scaled image (and a progressive file's kept coefficients);
//! - a PNG, GIF or lossy WebP without alpha streamed row by row into a box
//!   shrink (`rows`): the
//!   shrunk image and its copies, about twice the preview's width whatever
//!   the original's size, plus a fixed allowance for the decoder's rows;
//! - anything else decoded whole (lossless or transparent WebP, CMYK or
//!   16-bit JPEG): bytes per
//!   pixel of the whole job in wasm (decoded pixels, the decoder's own
//!   buffers, conversions, the derivatives).
//!
//! The figures were measured with `darkroom-bench-report` on 24 MP images
//! of every kind (BENCHMARKS.md) and rounded up. A decoded image's
//! original is counted twice (the file and its re-encode or stripped copy);
//! a streamed one's once, as its copy without metadata is pieces of it.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{ColorType, ImageDecoder};

use crate::format::{ImageFormat, InvalidImage, Limits};
use crate::skim::Facts;

/// Memory held whatever the image: allocator slack, resize intermediates,
/// encoder state. In quarter bytes per pixel, like every figure here.
const SLACK_QUARTERS: u64 = 8;

/// The WebP decoder's own buffers: YUV planes for a lossy image; with
/// alpha, also the alpha plane and an RGBA staging buffer; a 32-bit ARGB
/// buffer for a lossless one.
const WEBP_LOSSY: u64 = 2;
const WEBP_LOSSY_ALPHA: u64 = 20;
const WEBP_LOSSLESS: u64 = 12;

/// What the streamed path holds whatever the image's size: the decoder's
/// rows (two of up to 8 bytes a pixel for a 16-bit PNG 65,535 px wide),
/// its inflate window, the encoders of the small outputs, and the
/// allocator's slack (measured: 89 MiB in wasm for a 57.4 MB 24 MP RGB PNG
/// with nothing to strip, BENCHMARKS.md).
const STREAMED_FIXED: u64 = 12 << 20;

/// What the blob store's writer holds while it stores a copy made of
/// pieces of the original: one S3 part of 8 MiB and the outbound request's
/// copy of it (a key-value chunk is 1 MB).
const STORE_WRITER: u64 = 16 << 20;

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
    /// Streamed row by row into a box shrink of `channels` 8-bit channels;
    /// `grid`: rows out of order (interlaced), so a sum per shrunk pixel;
    /// `turned`: EXIF turns it, so its height is the width shown; `clean`:
    /// no metadata to strip, so the original is its own optimized copy;
    /// `decoder_copy`: the decoder copies the compressed data into buffers
    /// of its own (VP8's partitions).
    Streamed {
        channels: u64,
        grid: bool,
        turned: bool,
        clean: bool,
        decoder_copy: bool,
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

/// What a file's first bytes tell: its dimensions, its decoded colour type,
/// and for a JPEG how it is decoded. A WebP's come from its chunks instead
/// ([`webp_head`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub width: u32,
    pub height: u32,
    color: ColorType,
    jpeg: Option<Kind>,
}

/// Reads the header of a JPEG, PNG or GIF from its first bytes (already
/// sniffed as `format`): up to a JPEG's frame header, a PNG's first image
/// data chunk, a GIF's screen descriptor. Fails on a head too short.
pub(crate) fn read_head(format: ImageFormat, head: &[u8]) -> Result<Head, InvalidImage> {
    if format == ImageFormat::Jpeg {
        let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(head));
        decoder.read_info().map_err(|e| unreadable(format, e))?;
        let info = decoder
            .info()
            .ok_or_else(|| unreadable(format, "no frame header"))?;
        let (width, height) = (u32::from(info.width), u32::from(info.height));
        let (kind, color) = match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8 => (
                Kind::ScaledJpeg {
                    progressive: info.coding_process == jpeg_decoder::CodingProcess::DctProgressive,
                    // Either side may end up as the shown width.
                    denominator: jpeg_denominator(width.min(height), PREVIEW_WIDTH),
                },
                ColorType::Rgb8,
            ),
            // The general path: the planes inside the decoder, then RGB.
            jpeg_decoder::PixelFormat::CMYK32 => (
                Kind::FullDecode {
                    color: ColorType::Rgb8,
                    extra_quarters: 16,
                },
                ColorType::Rgb8,
            ),
            jpeg_decoder::PixelFormat::L16 => (
                Kind::FullDecode {
                    color: ColorType::L16,
                    extra_quarters: 0,
                },
                ColorType::L16,
            ),
        };
        return Ok(Head {
            width,
            height,
            color,
            jpeg: Some(kind),
        });
    }
    let (width, height, color) = decoded_header(format, head)?;
    Ok(Head {
        width,
        height,
        color,
        jpeg: None,
    })
}

/// A WebP's dimensions and colour type from its first chunk, as
/// `image-webp` reads them: `VP8X`'s canvas and alpha flag, a `VP8 ` frame
/// header, or a `VP8L` header and its alpha hint.
pub(crate) fn webp_head(facts: &Facts) -> Result<Head, InvalidImage> {
    let bad = |reason: &str| unreadable(ImageFormat::Webp, reason);
    let Some((fourcc, first)) = &facts.webp_first else {
        return Err(bad("no chunk after the RIFF header"));
    };
    let u24 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], 0]);
    let (width, height, alpha) = match (fourcc, first.as_slice()) {
        (b"VP8 ", [tag, _, _, 0x9d, 0x01, 0x2a, w0, w1, h0, h1]) if tag & 1 == 0 => {
            let width = u32::from(u16::from_le_bytes([*w0, *w1]) & 0x3FFF);
            let height = u32::from(u16::from_le_bytes([*h0, *h1]) & 0x3FFF);
            if width == 0 || height == 0 {
                return Err(bad("a side of zero pixels"));
            }
            (width, height, false)
        }
        (b"VP8L", [0x2f, b0, b1, b2, b3, ..]) => {
            let header = u32::from_le_bytes([*b0, *b1, *b2, *b3]);
            if header >> 29 != 0 {
                return Err(bad("unknown lossless version"));
            }
            let width = (1 + header) & 0x3FFF;
            let height = (1 + (header >> 14)) & 0x3FFF;
            (width, height, (header >> 28) & 1 != 0)
        }
        (b"VP8X", [flags, _, _, _, rest @ ..]) if rest.len() == 6 => {
            (u24(&rest[..3]) + 1, u24(&rest[3..]) + 1, flags & 0x10 != 0)
        }
        _ => return Err(bad("the first chunk is not an image header")),
    };
    Ok(Head {
        width,
        height,
        color: if alpha {
            ColorType::Rgba8
        } else {
            ColorType::Rgb8
        },
        jpeg: None,
    })
}

/// The header of a whole file: what its head says, completed by the walk
/// of the rest (metadata to strip, orientation, a WebP's chunks).
pub(crate) fn header(format: ImageFormat, head: Head, facts: &Facts) -> Header {
    let orientation = facts
        .exif
        .as_deref()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let turned = crate::pipeline::turns(orientation);
    let kind = match format {
        ImageFormat::Jpeg => head.jpeg.unwrap_or(Kind::FullDecode {
            color: head.color,
            extra_quarters: 0,
        }),
        ImageFormat::Png => Kind::Streamed {
            channels: streamed_channels(head.color),
            grid: facts.interlaced,
            turned,
            // A turned image's copy is the original itself.
            clean: turned || facts.clean,
            decoder_copy: false,
        },
        // Only the first frame's flag tells; assume the costlier order.
        ImageFormat::Gif => Kind::Streamed {
            channels: 4,
            grid: true,
            turned: false,
            clean: facts.clean,
            decoder_copy: false,
        },
        ImageFormat::Webp if facts.webp_vp8 && !facts.webp_not_streamed => Kind::Streamed {
            channels: 3,
            grid: false,
            turned,
            clean: turned,
            decoder_copy: true,
        },
        ImageFormat::Webp => Kind::FullDecode {
            color: head.color,
            extra_quarters: if facts.webp_lossless {
                WEBP_LOSSLESS
            } else if head.color.has_alpha() {
                WEBP_LOSSY_ALPHA
            } else {
                WEBP_LOSSY
            },
        },
    };
    Header {
        width: head.width,
        height: head.height,
        kind,
    }
}

/// The channels the streamed path works in: grey, RGB, or RGBA (grey with
/// alpha included).
fn streamed_channels(color: ColorType) -> u64 {
    if color.has_alpha() {
        4
    } else {
        u64::from(color.channel_count())
    }
}

/// The estimated peak of decoding a PNG, GIF or lossy WebP whole instead of streaming
/// it (what a full-size re-encode needs): the pipeline streams whenever
/// this is over [`Limits::max_memory`].
pub(crate) fn full_decode_needed(format: ImageFormat, bytes: &[u8]) -> Result<u64, InvalidImage> {
    let (width, height, color) = decoded_header(format, bytes)?;
    let kind = Kind::FullDecode {
        color,
        // Only a lossy WebP without alpha is streamed.
        extra_quarters: if format == ImageFormat::Webp {
            WEBP_LOSSY
        } else {
            0
        },
    };
    Ok(Header {
        width,
        height,
        kind,
    }
    .memory_needed(bytes.len() as u64))
}

/// The dimensions and decoded colour type the `image` crate reads from a
/// header.
fn decoded_header(
    format: ImageFormat,
    bytes: &[u8],
) -> Result<(u32, u32, ColorType), InvalidImage> {
    let decoder = image::ImageReader::with_format(Cursor::new(bytes), format.codec())
        .into_decoder()
        .map_err(|e| unreadable(format, e))?;
    let (width, height) = decoder.dimensions();
    Ok((width, height, decoder.color_type()))
}

impl Header {
    /// Memory per pixel, in quarter bytes, of the kinds that scale with the
    /// image's pixels.
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
            Kind::Streamed { .. } => 0,
        };
        working + SLACK_QUARTERS
    }

    /// The estimated peak of processing the image, for a file of `file_len` bytes.
    pub(crate) fn memory_needed(self, file_len: u64) -> u64 {
        if let Kind::Streamed {
            channels,
            grid,
            turned,
            clean,
            decoder_copy,
        } = self.kind
        {
            // While the original is decoded: its bytes, the bins' 16-bit
            // means and their 8-bit sRGB copy (interlaced rows: a sum per
            // channel first, 16-bit for bins up to 4×4, 32-bit beyond,
            // dropped before the copy). Then the original beside the 8-bit
            // image and its linear copy for the resize (an image is turned
            // once resized), and with alpha the resizer's premultiplied copy
            // of that.
            let shown_width = if turned { self.height } else { self.width };
            let k = crate::rows::factor(shown_width, PREVIEW_WIDTH);
            let (w, h) = crate::rows::shrunk_size(self.width, self.height, k);
            let shrunk = u64::from(w) * u64::from(h) * channels;
            let sums = match (grid, k) {
                (false, _) => 1,
                (true, ..=4) => 4,
                (true, _) => 6,
            };
            // The VP8 decoder's copy of the partitions is made by reading
            // them whole, then copying them into its own buffers: three
            // copies of the file for a moment, before any bin exists.
            let decoding = if decoder_copy {
                (3 * file_len).max(2 * file_len + shrunk * sums.max(3))
            } else {
                file_len + shrunk * sums.max(3)
            };
            // The copy without metadata is pieces of the original, stored
            // through the blob store's writer: at most an S3 part and the
            // request's copy of it (no copy when there is nothing to strip).
            let writer = if clean {
                0
            } else {
                (2 * file_len).min(STORE_WRITER)
            };
            let encoding = file_len + writer + shrunk * if channels == 4 { 6 } else { 3 };
            return decoding.max(encoding) + STREAMED_FIXED;
        }
        let pixels = u64::from(self.width) * u64::from(self.height);
        (pixels * self.quarters_per_pixel()).div_ceil(4) + 2 * file_len
    }

    /// Holds the estimate to [`Limits::max_memory`].
    pub(crate) fn check(self, file_len: u64, limits: Limits) -> Result<(), InvalidImage> {
        let needed = self.memory_needed(file_len);
        if needed <= limits.max_memory {
            return Ok(());
        }
        Err(InvalidImage::TooMuchMemory {
            width: self.width,
            height: self.height,
            needed_mib: needed.div_ceil(1 << 20),
            limit_mib: limits.max_memory >> 20,
            max_pixels: self.most_pixels_within(file_len, limits.max_memory),
        })
    }

    /// The most pixels an image of this kind and shape (and file size) may
    /// have within `budget`: the largest scale of it that fits, found by
    /// bisection (the streamed kinds do not grow in proportion).
    fn most_pixels_within(self, file_len: u64, budget: u64) -> u64 {
        let scaled = |permille: u64| Header {
            width: u32::try_from(u64::from(self.width) * permille / 1000).unwrap_or(u32::MAX),
            height: u32::try_from(u64::from(self.height) * permille / 1000).unwrap_or(u32::MAX),
            ..self
        };
        let (mut fits, mut over) = (0, 1000);
        while over - fits > 1 {
            let mid = (fits + over) / 2;
            if scaled(mid).memory_needed(file_len) <= budget {
                fits = mid;
            } else {
                over = mid;
            }
        }
        let h = scaled(fits);
        u64::from(h.width) * u64::from(h.height)
    }
}

/// The preview's width, which the scaled and streamed decodes aim at.
const PREVIEW_WIDTH: u32 = match crate::pipeline::Variant::Preview.target_width() {
    Some(width) => width,
    None => u32::MAX,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_png, encode_with, gradient};

    const MIB: u64 = 1 << 20;

    fn header(bytes: &[u8]) -> Header {
        let format = ImageFormat::sniff(bytes).expect("an image");
        let mut skim = crate::skim::Skim::new(format);
        skim.feed(bytes);
        let facts = skim.finish();
        let head = match format {
            ImageFormat::Webp => webp_head(&facts),
            _ => read_head(format, bytes),
        };
        super::header(format, head.expect("a header"), &facts)
    }

    #[test]
    fn the_streamed_estimates_cover_what_24_mp_pngs_were_measured_to_take_in_wasm() {
        // (file bytes, channels, clean, measured peak in wasm for 24 MP
        // Kleiber PNGs, BENCHMARKS.md: one run each)
        // The copy without metadata is pieces of the original: the pipeline
        // takes as much with metadata as without (89 and 122 MiB for both;
        // 143 and 179 MiB with metadata when the copy was a copy). The blob
        // store's writer, outside the pipeline, is counted on top.
        for (file, channels, clean, measured_mib) in [
            (57_400_000, 3, true, 89),
            (57_400_000, 3, false, 89),
            (60_000_000, 4, true, 122),
            (60_000_000, 4, false, 122),
        ] {
            let h = Header {
                width: 6000,
                height: 4000,
                kind: Kind::Streamed {
                    channels,
                    grid: false,
                    turned: false,
                    clean,
                    decoder_copy: false,
                },
            };
            let estimate = h.memory_needed(file) / MIB;
            let writer = if clean { 0 } else { STORE_WRITER / MIB };
            assert!(
                estimate >= measured_mib + writer && estimate <= measured_mib + writer + 16,
                "{channels} channels, clean {clean}: estimated {estimate} MiB, measured {measured_mib} MiB"
            );
        }
    }

    #[test]
    fn the_streamed_estimates_cover_what_lossy_webps_were_measured_to_take_in_wasm() {
        // (width, height, file bytes, measured peak in wasm for Kleiber's
        // lossy WebPs, BENCHMARKS.md: one run each, 2026-12-07)
        for (width, height, file, measured_mib) in
            [(6000, 4000, 849_030, 36), (8660, 5773, 1_683_102, 32)]
        {
            let h = Header {
                width,
                height,
                kind: Kind::Streamed {
                    channels: 3,
                    grid: false,
                    turned: false,
                    clean: false,
                    decoder_copy: true,
                },
            };
            let estimate = h.memory_needed(file).div_ceil(MIB);
            assert!(
                estimate >= measured_mib && estimate <= measured_mib + 16,
                "{width}x{height}: estimated {estimate} MiB, measured {measured_mib} MiB"
            );
        }
        // A file larger than the bins: the decoder's moment of three copies.
        let large = Header {
            width: 6000,
            height: 4000,
            kind: Kind::Streamed {
                channels: 3,
                grid: false,
                turned: false,
                clean: false,
                decoder_copy: true,
            },
        };
        assert!(large.memory_needed(40_000_000) >= 120_000_000);
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
            Kind::Streamed {
                channels: 4,
                grid: false,
                turned: false,
                clean: true,
                decoder_copy: false,
            }
        );
        // A lossy WebP without alpha is streamed (its decoder copies the
        // file's partitions); with alpha it is decoded whole.
        assert_eq!(
            header(include_bytes!("../tests/images/lossy.webp")).kind,
            Kind::Streamed {
                channels: 3,
                grid: false,
                turned: false,
                clean: false,
                decoder_copy: true,
            }
        );
        assert!(matches!(
            header(include_bytes!("../tests/images/lossy-alpha.webp")).kind,
            Kind::FullDecode {
                extra_quarters: WEBP_LOSSY_ALPHA,
                ..
            }
        ));
        let interlaced = include_bytes!("../tests/images/interlaced.png");
        assert_eq!(
            header(interlaced).kind,
            Kind::Streamed {
                channels: 3,
                grid: true,
                turned: false,
                // libvips wrote text chunks into it.
                clean: false,
                decoder_copy: false,
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

    #[test]
    fn a_streamed_png_or_gif_of_50_mp_fits_in_a_hosted_instance_beside_a_20_mb_file() {
        let limits = Limits::default();
        let streamed = |width, height, channels, grid, turned| Header {
            width,
            height,
            kind: Kind::Streamed {
                channels,
                grid,
                turned,
                clean: false,
                decoder_copy: false,
            },
        };
        for h in [
            streamed(8660, 5774, 4, true, false),
            streamed(8660, 5774, 3, false, true),
            streamed(5774, 8660, 3, true, false),
            streamed(7071, 7071, 3, false, false),
        ] {
            assert_eq!(h.check(20 * MIB, limits), Ok(()), "{h:?}");
        }
        // Shown upright from its side, a 50 MP image's preview is 1,200 px
        // tall: with transparency its working copies no longer fit.
        assert!(
            streamed(8660, 5774, 4, false, true)
                .check(20 * MIB, limits)
                .is_err()
        );
        // What does not fit is a file near the cap: held once, its copy
        // without metadata pieces of it (a 50 MP PNG of a detailed
        // photograph is 110 MB).
        let over = Header {
            width: 8660,
            height: 5774,
            kind: Kind::Streamed {
                channels: 3,
                grid: false,
                turned: false,
                clean: false,
                decoder_copy: false,
            },
        };
        assert!(over.check(100 * MIB, limits).is_err());
        assert_eq!(over.check(60 * MIB, limits), Ok(()));
        // Without metadata to strip, the file is held once: a detailed
        // photograph's 57 MB PNG of 24 MP fits.
        let clean = Header {
            width: 6000,
            height: 4000,
            kind: Kind::Streamed {
                channels: 3,
                grid: false,
                turned: false,
                clean: true,
                decoder_copy: false,
            },
        };
        assert_eq!(clean.check(57_000_000, limits), Ok(()));
    }
}
