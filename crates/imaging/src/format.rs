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
    /// processed; the upload itself holds none of it ([`Arriving`]).
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
/// bytes, the dimensions in the header, the structure around the image
/// data. Decodes no pixels. The same checks as an upload streamed through
/// [`Arriving`].
///
/// # Errors
/// An [`InvalidImage`] saying which rule the upload breaks.
pub fn inspect(bytes: &[u8], limits: Limits) -> Result<ImageInfo, InvalidImage> {
    let mut arriving = Arriving::new(limits);
    arriving.push(bytes)?;
    arriving.finish()
}

/// The most of a file's first bytes kept until its header has been read:
/// a JPEG's frame header may follow a few large metadata segments (an ICC
/// profile split over many), a PNG's first image data chunk a large
/// `iCCP`. A header not found within it is unreadable.
pub const HEAD_LIMIT: usize = 4 << 20;

/// The first head length at which the header is looked for; then at each
/// doubling up to [`HEAD_LIMIT`], and at the end of the file.
const FIRST_HEAD_TRY: usize = 16 << 10;

/// An upload checked as it arrives, in pieces of any size. It holds the
/// first bytes until the header is read (at most [`HEAD_LIMIT`]), and after
/// that only the few bytes of a structure's header (`skim`).
///
/// Each [`Arriving::push`] refuses as early as the bytes allow: over the
/// size limit, not an image, a header that declares too many pixels. The
/// checks that need the whole file (frames, a WebP's chunks, the memory
/// estimate with the file's size) come at [`Arriving::finish`].
#[derive(Debug)]
pub struct Arriving {
    limits: Limits,
    len: u64,
    head: Vec<u8>,
    next_try: usize,
    format: Option<ImageFormat>,
    opened: Option<crate::cost::Head>,
    skim: Option<crate::skim::Skim>,
}

impl Arriving {
    /// Nothing arrived yet.
    pub const fn new(limits: Limits) -> Self {
        Self {
            limits,
            len: 0,
            head: Vec::new(),
            next_try: FIRST_HEAD_TRY,
            format: None,
            opened: None,
            skim: None,
        }
    }

    /// The format, once the first bytes have told it.
    pub const fn format(&self) -> Option<ImageFormat> {
        self.format
    }

    /// Takes the next piece of the file.
    ///
    /// # Errors
    /// [`InvalidImage`]: too large, not a supported format, an unreadable
    /// header (once [`HEAD_LIMIT`] bytes have not held it), too many pixels.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), InvalidImage> {
        self.len += bytes.len() as u64;
        if self.len > self.limits.max_file_bytes() {
            return Err(InvalidImage::TooLarge {
                limit: self.limits.max_file_bytes(),
            });
        }
        let before = self.head.len();
        let reading = self.format != Some(ImageFormat::Webp) && self.opened.is_none();
        if reading {
            let room = HEAD_LIMIT.saturating_sub(self.head.len());
            self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        }
        if let Some(skim) = &mut self.skim {
            skim.feed(bytes);
        } else if self.head.len() >= 12 {
            // Every byte before this piece is in the head (fewer than 12).
            self.sniff(before, bytes)?;
        }
        match self.format {
            Some(ImageFormat::Webp) => self.check_webp_pixels(),
            Some(format) if self.opened.is_none() && self.head.len() >= self.next_try => {
                match crate::cost::read_head(format, &self.head) {
                    Ok(head) => self.opened(head),
                    // Perhaps only cut short: tried again with more.
                    Err(_) if self.head.len() < HEAD_LIMIT => {
                        self.next_try = self.head.len().saturating_mul(2).min(HEAD_LIMIT);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            _ => Ok(()),
        }
    }

    /// The checks of the whole file, once every piece has arrived.
    ///
    /// # Errors
    /// [`InvalidImage`]: empty, not an image, an unreadable header or
    /// container, too many pixels or frames, more memory than allowed.
    pub fn finish(mut self) -> Result<ImageInfo, InvalidImage> {
        if self.len == 0 {
            return Err(InvalidImage::Empty);
        }
        if self.format.is_none() {
            // A file of fewer than 12 bytes, all in the head.
            self.sniff(self.head.len(), &[])?;
        }
        let format = self.format.ok_or(InvalidImage::UnsupportedFormat)?;
        let facts = self
            .skim
            .take()
            .map(crate::skim::Skim::finish)
            .unwrap_or_default();
        if let Some(reason) = facts.broken {
            return Err(InvalidImage::UnreadableHeader {
                format,
                reason: reason.to_owned(),
            });
        }
        if format != ImageFormat::Webp && self.opened.is_none() {
            self.opened(crate::cost::read_head(format, &self.head)?)?;
        }
        let head = match self.opened {
            Some(head) => head,
            None => crate::cost::webp_head(&facts)?,
        };
        check_pixels(head.width, head.height, self.limits)?;
        if facts.frames > self.limits.max_frames {
            return Err(InvalidImage::TooManyFrames {
                limit: self.limits.max_frames,
            });
        }
        crate::cost::header(format, head, &facts).check(self.len, self.limits)?;
        Ok(ImageInfo {
            format,
            width: head.width,
            height: head.height,
            bytes: self.len,
        })
    }

    /// Tells the format from the head, and starts the walk with the file so
    /// far: the head's first `earlier` bytes, then the piece `latest`.
    fn sniff(&mut self, earlier: usize, latest: &[u8]) -> Result<(), InvalidImage> {
        let format = ImageFormat::sniff(&self.head).ok_or(InvalidImage::UnsupportedFormat)?;
        let mut skim = crate::skim::Skim::new(format);
        skim.feed(&self.head[..earlier]);
        skim.feed(latest);
        self.skim = Some(skim);
        self.format = Some(format);
        Ok(())
    }

    /// Checks the pixels of a JPEG's, PNG's or GIF's header read from the
    /// head, and lets the head go.
    fn opened(&mut self, head: crate::cost::Head) -> Result<(), InvalidImage> {
        check_pixels(head.width, head.height, self.limits)?;
        self.opened = Some(head);
        self.head = Vec::new();
        Ok(())
    }

    /// A WebP's pixels, as soon as its first chunk is read; a WebP keeps
    /// no head, its walk reads all it needs.
    fn check_webp_pixels(&mut self) -> Result<(), InvalidImage> {
        self.head = Vec::new();
        let facts = self.skim.as_ref().map(crate::skim::Skim::facts);
        match facts.map(crate::cost::webp_head) {
            Some(Ok(head)) => check_pixels(head.width, head.height, self.limits),
            _ => Ok(()),
        }
    }
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

    fn arrived_in_pieces(
        bytes: &[u8],
        piece: usize,
        limits: Limits,
    ) -> Result<ImageInfo, InvalidImage> {
        let mut arriving = Arriving::new(limits);
        for p in bytes.chunks(piece) {
            arriving.push(p)?;
        }
        arriving.finish()
    }

    #[test]
    fn an_upload_arriving_in_pieces_is_judged_as_the_whole_file_is() {
        let jpeg =
            crate::testing::encode_with(&gradient(300, 200, false), image::ImageFormat::Jpeg);
        let files: Vec<Vec<u8>> = vec![
            jpeg.clone(),
            jpeg[..jpeg.len() / 2].to_vec(),
            include_bytes!("../tests/images/progressive.jpg").to_vec(),
            include_bytes!("../tests/images/rgb16.png").to_vec(),
            include_bytes!("../tests/images/interlaced.png").to_vec(),
            include_bytes!("../tests/images/lossy.webp").to_vec(),
            include_bytes!("../tests/images/lossy-alpha.webp").to_vec(),
            crate::testing::encode_with(&gradient(300, 200, true), image::ImageFormat::WebP),
            crate::testing::encode_with(&gradient(300, 200, true), image::ImageFormat::Gif),
            encode_png(&gradient(30, 20, true))[..40].to_vec(),
            b"RIFF\x10\0\0\0WEBPVP8 ".to_vec(),
            b"\xFF\xD8\xFF".to_vec(),
        ];
        let tight = Limits {
            max_pixels: 10_000,
            max_memory: 1 << 20,
            ..Limits::default()
        };
        let mut accepted = 0;
        for file in &files {
            for limits in [Limits::default(), tight] {
                let whole = inspect(file, limits);
                accepted += usize::from(whole.is_ok());
                for piece in [1, 7, 4096] {
                    assert_eq!(
                        arrived_in_pieces(file, piece, limits),
                        whole,
                        "{} bytes in pieces of {piece}",
                        file.len()
                    );
                }
            }
        }
        assert!(accepted >= 8, "{accepted}");
    }

    #[test]
    fn a_file_larger_than_the_head_is_walked_whole_in_one_piece_or_many() {
        let lossy = include_bytes!("../tests/images/lossy.webp");
        let junk = [
            &b"JUNK"[..],
            &(5_u32 << 20).to_le_bytes(),
            &vec![7; 5 << 20],
        ]
        .concat();
        let mut webp = [&lossy[..], &junk].concat();
        let riff_size = u32::try_from(webp.len() - 8).expect("small");
        webp[4..8].copy_from_slice(&riff_size.to_le_bytes());
        let png = encode_png(&crate::testing::noise(1400, 1400));
        for file in [webp, png] {
            assert!(file.len() > HEAD_LIMIT, "{}", file.len());
            let whole = inspect(&file, Limits::default());
            assert!(whole.is_ok(), "{whole:?}");
            assert_eq!(arrived_in_pieces(&file, 65536, Limits::default()), whole);
            // The memory estimate sees the whole walk: nothing to strip.
            let header = |arriving: Arriving| {
                let facts = arriving.skim.expect("walked").finish();
                (facts.clean, facts.broken)
            };
            let mut one = Arriving::new(Limits::default());
            one.push(&file).expect("accepted");
            let mut many = Arriving::new(Limits::default());
            file.chunks(4096)
                .for_each(|p| many.push(p).expect("accepted"));
            assert_eq!(header(one), header(many));
        }
    }

    #[test]
    fn a_header_declaring_too_many_pixels_is_refused_before_the_rest_arrives() {
        let png = encode_png(&crate::testing::noise(1000, 800));
        assert!(png.len() > 2 * FIRST_HEAD_TRY, "{}", png.len());
        let limits = Limits {
            max_pixels: 500_000,
            ..Limits::default()
        };
        let mut arriving = Arriving::new(limits);
        let refused = png
            .chunks(1000)
            .position(|p| arriving.push(p).is_err())
            .expect("refused");
        assert!(refused * 1000 <= FIRST_HEAD_TRY, "after {refused} pieces");
    }

    #[test]
    fn a_frame_header_after_megabytes_of_metadata_is_found_and_one_past_the_head_limit_is_not() {
        let jpeg =
            crate::testing::encode_with(&gradient(300, 200, false), image::ImageFormat::Jpeg);
        let app = |n: usize| {
            let segment = [&[0xFF, 0xE9, 0xFF, 0xFF][..], &[0; 65533]].concat();
            [&jpeg[..2], &segment.repeat(n), &jpeg[2..]].concat()
        };
        let limits = Limits {
            max_upload_bytes: 64 << 20,
            ..Limits::default()
        };
        let within = app(HEAD_LIMIT / 65537 - 1);
        let info = arrived_in_pieces(&within, 65536, limits).expect("read from the head");
        assert_eq!((info.width, info.height), (300, 200));
        let past = app(HEAD_LIMIT / 65537 + 1);
        assert!(matches!(
            arrived_in_pieces(&past, 65536, limits),
            Err(InvalidImage::UnreadableHeader { .. })
        ));
    }
}
