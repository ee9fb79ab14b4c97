//! What an upload is, decided from its bytes alone: the format by magic
//! bytes (never the client's Content-Type) and the dimensions from the
//! header, checked against the limits before anything is decoded.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The input formats Darkroom accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// JPEG / JFIF / EXIF.
    Jpeg,
    /// PNG.
    Png,
    /// GIF 87a / 89a; only the first frame is used.
    Gif,
    /// WebP, lossy or lossless.
    Webp,
}

impl ImageFormat {
    /// Every accepted format, in the order error messages list them.
    pub const ALL: [Self; 4] = [Self::Jpeg, Self::Png, Self::Webp, Self::Gif];

    /// Recognises a format from the first bytes of a file.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Self::Png),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Self::Gif),
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Some(Self::Webp),
            _ => None,
        }
    }

    /// The IANA media type.
    pub const fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    /// The usual file extension, without the dot.
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }

    /// A human list of the accepted media types, for error messages.
    pub fn supported_list() -> String {
        Self::ALL.map(Self::mime).join(", ")
    }

    pub(crate) const fn codec(self) -> image::ImageFormat {
        match self {
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Png => image::ImageFormat::Png,
            Self::Gif => image::ImageFormat::Gif,
            Self::Webp => image::ImageFormat::WebP,
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

/// The limits every upload is held to; configured per deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest accepted body, in bytes.
    pub max_upload_bytes: u64,
    /// The largest accepted width × height, read from the header.
    pub max_pixels: u64,
    /// The most frames an animated GIF may have (only the first is
    /// processed, but the file may be kept as the optimized copy).
    pub max_frames: u32,
    /// The most memory, in bytes, that processing one image may be
    /// estimated to need, from its header (see `cost.rs`).
    pub max_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 20 * 1024 * 1024,
            max_pixels: 50_000_000,
            max_frames: 1000,
            max_memory: 120 << 20,
        }
    }
}

impl Limits {
    /// The largest file accepted: `max_upload_bytes`, or half of
    /// `max_memory` when that is smaller. Processing holds the original and
    /// its stripped copy (see `cost.rs`), so a larger file could never be
    /// processed, and reading it whole would only put the upload's own
    /// memory at risk.
    pub const fn max_file_bytes(&self) -> u64 {
        let by_memory = self.max_memory / 2;
        if by_memory < self.max_upload_bytes {
            by_memory
        } else {
            self.max_upload_bytes
        }
    }
}

/// What the header says about an accepted image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The format found by magic bytes.
    pub format: ImageFormat,
    /// Width in pixels, as stored (before EXIF orientation).
    pub width: u32,
    /// Height in pixels, as stored (before EXIF orientation).
    pub height: u32,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// Why an upload is refused before it is stored.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidImage {
    /// Nothing was uploaded.
    #[error("the upload is empty")]
    Empty,
    /// The file is larger than [`Limits::max_file_bytes`].
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The magic bytes match no accepted format.
    #[error(
        "the file is not a supported image; supported formats are {}",
        ImageFormat::supported_list()
    )]
    UnsupportedFormat,
    /// The format is known but the header cannot be read.
    #[error("the {format} header cannot be read: {reason}")]
    UnreadableHeader {
        /// The sniffed format.
        format: ImageFormat,
        /// What the decoder said.
        reason: String,
    },
    /// The header declares more pixels than [`Limits::max_pixels`].
    #[error(
        "the image is {width}x{height} ({pixels} pixels), more than the limit of {limit} pixels"
    )]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// `width * height`.
        pixels: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The header declares a zero dimension.
    #[error("the image declares a zero width or height")]
    ZeroDimension,
    /// Processing would need more memory than [`Limits::max_memory`].
    #[error(
        "a {width}x{height} image of this kind needs about {needed_mib} MiB to process, more than \
         the {limit_mib} MiB available; images of this kind may have at most {max_pixels} pixels"
    )]
    TooMuchMemory {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The estimate.
        needed_mib: u64,
        /// The configured limit.
        limit_mib: u64,
        /// The most pixels an image of this kind and file size may have.
        max_pixels: u64,
    },
    /// An animated GIF with more frames than [`Limits::max_frames`].
    #[error("the animation has more than the limit of {limit} frames")]
    TooManyFrames {
        /// The configured limit.
        limit: u32,
    },
}

/// Checks an upload against the limits from its bytes alone: size, magic
/// bytes, and the dimensions in the header. Decodes no pixels.
///
/// # Errors
/// An [`InvalidImage`] saying which rule the upload breaks.
pub fn inspect(bytes: &[u8], limits: Limits) -> Result<ImageInfo, InvalidImage> {
    let len = bytes.len() as u64;
    if len == 0 {
        return Err(InvalidImage::Empty);
    }
    if len > limits.max_file_bytes() {
        return Err(InvalidImage::TooLarge {
            limit: limits.max_file_bytes(),
        });
    }
    let format = ImageFormat::sniff(bytes).ok_or(InvalidImage::UnsupportedFormat)?;
    check_container(format, bytes)?;
    let header = crate::cost::read_header(format, bytes)?;
    let (width, height) = (header.width, header.height);
    check_pixels(width, height, limits)?;
    check_frames(format, bytes, limits)?;
    header.check(len, limits)?;
    Ok(ImageInfo {
        format,
        width,
        height,
        bytes: len,
    })
}

/// Checks the container structure that decoders trust for allocation sizes.
/// A WebP chunk declaring more bytes than the file holds would make the
/// decoder allocate that much up front (found by fuzzing: a 353-byte file
/// asking for 3.9 GB while its EXIF was read).
///
/// # Errors
/// [`InvalidImage::UnreadableHeader`] when a chunk does not fit in the file.
pub fn check_container(format: ImageFormat, bytes: &[u8]) -> Result<(), InvalidImage> {
    if format != ImageFormat::Webp {
        return Ok(());
    }
    crate::webp::chunks(bytes)
        .try_for_each(|chunk| chunk.map(drop))
        .map_err(|reason| InvalidImage::UnreadableHeader {
            format,
            reason: reason.to_owned(),
        })
}

/// Holds an animated GIF to the frame limit, walking its blocks without
/// decoding them.
///
/// # Errors
/// [`InvalidImage::TooManyFrames`].
pub fn check_frames(format: ImageFormat, bytes: &[u8], limits: Limits) -> Result<(), InvalidImage> {
    if format == ImageFormat::Gif
        && crate::gif::count_frames(bytes, limits.max_frames) > limits.max_frames
    {
        return Err(InvalidImage::TooManyFrames {
            limit: limits.max_frames,
        });
    }
    Ok(())
}

/// Holds declared dimensions to the pixel limit.
///
/// # Errors
/// [`InvalidImage::ZeroDimension`] or [`InvalidImage::TooManyPixels`].
pub fn check_pixels(width: u32, height: u32, limits: Limits) -> Result<(), InvalidImage> {
    if width == 0 || height == 0 {
        return Err(InvalidImage::ZeroDimension);
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(InvalidImage::TooManyPixels {
            width,
            height,
            pixels,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_png, gradient};

    #[test]
    fn formats_are_recognised_by_magic_bytes() {
        let cases: [(&[u8], Option<ImageFormat>); 7] = [
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", Some(ImageFormat::Jpeg)),
            (b"\x89PNG\r\n\x1A\n\0\0", Some(ImageFormat::Png)),
            (b"GIF89a\x01\0", Some(ImageFormat::Gif)),
            (b"GIF87a\x01\0", Some(ImageFormat::Gif)),
            (b"RIFF\x10\0\0\0WEBPVP8 ", Some(ImageFormat::Webp)),
            (b"RIFF\x10\0\0\0WAVEfmt ", None),
            (b"<svg xmlns=", None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(ImageFormat::sniff(bytes), expected, "{bytes:?}");
        }
    }

    #[test]
    fn an_empty_upload_is_refused() {
        assert_eq!(inspect(b"", Limits::default()), Err(InvalidImage::Empty));
    }

    #[test]
    fn text_is_unsupported_whatever_it_claims_to_be() {
        let err = inspect(b"hello, I am a jpeg", Limits::default()).expect_err("text");
        assert_eq!(err, InvalidImage::UnsupportedFormat);
        assert!(
            err.to_string()
                .contains("image/jpeg, image/png, image/webp, image/gif")
        );
    }

    #[test]
    fn an_upload_over_the_byte_limit_is_refused_before_sniffing() {
        let limits = Limits {
            max_upload_bytes: 4,
            ..Limits::default()
        };
        assert_eq!(
            inspect(b"12345", limits),
            Err(InvalidImage::TooLarge { limit: 4 })
        );
    }

    #[test]
    fn a_png_reports_its_header_dimensions() {
        let png = encode_png(&gradient(30, 20, false));
        let info = inspect(&png, Limits::default()).expect("valid png");
        assert_eq!(
            (info.format, info.width, info.height),
            (ImageFormat::Png, 30, 20)
        );
        assert_eq!(info.bytes, png.len() as u64);
    }

    #[test]
    fn a_header_declaring_too_many_pixels_is_refused_without_decoding() {
        let png = encode_png(&gradient(30, 20, false));
        let limits = Limits {
            max_pixels: 599,
            ..Limits::default()
        };
        assert_eq!(
            inspect(&png, limits),
            Err(InvalidImage::TooManyPixels {
                width: 30,
                height: 20,
                pixels: 600,
                limit: 599
            })
        );
    }

    #[test]
    fn a_webp_chunk_claiming_more_than_the_file_is_refused_before_any_decoder_allocates() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/regressions/webp-exif-chunk-claims-3.9GB.webp"
        );
        let bytes = std::fs::read(path).expect("the fuzzer's finding is kept");
        let err = inspect(&bytes, Limits::default()).expect_err("forged chunk size");
        assert!(err.to_string().contains("larger than the file"), "{err}");
        let real = crate::testing::encode_with(&gradient(30, 20, false), image::ImageFormat::WebP);
        assert!(
            inspect(&real, Limits::default()).is_ok(),
            "a real WebP passes"
        );
    }

    #[test]
    fn a_truncated_header_is_unreadable_not_a_panic() {
        let png = encode_png(&gradient(30, 20, false));
        let err = inspect(&png[..12], Limits::default()).expect_err("truncated");
        assert!(
            matches!(
                err,
                InvalidImage::UnreadableHeader {
                    format: ImageFormat::Png,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn an_animated_gif_over_the_frame_limit_is_refused_from_its_blocks() {
        let mut gif = Vec::new();
        {
            let mut encoder = image::codecs::gif::GifEncoder::new(&mut gif);
            for _ in 0..4 {
                let frame = image::Frame::new(gradient(20, 10, true).to_rgba8());
                encoder.encode_frame(frame).expect("frame");
            }
        }
        let limits = |max_frames| Limits {
            max_frames,
            ..Limits::default()
        };
        assert_eq!(
            inspect(&gif, limits(3)),
            Err(InvalidImage::TooManyFrames { limit: 3 })
        );
        assert!(inspect(&gif, limits(4)).is_ok());
    }
}
