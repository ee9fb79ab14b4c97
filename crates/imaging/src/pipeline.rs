//! The image pipeline: original bytes in, derivatives out. Every path checks
//! the header against the limits before any pixel is decoded.
//!
//! **JPEG** (most uploads, and the costly ones): never decoded at full size.
//! - The optimized copy is the original with its metadata removed losslessly
//!   ([`crate::jpeg::strip_metadata`]), keeping only the EXIF orientation,
//!   and, for a sequential JPEG, its entropy data re-coded with optimal
//!   Huffman tables ([`crate::jpeg_recode`], as `jpegtran -optimize`): no
//!   re-quantization, the same pixels, never larger than the original, and
//!   no 24 MP decode.
//! - The derivatives are decoded at 1/2, 1/4 or 1/8 scale in the DCT (shrink
//!   on load, as libvips does), turned upright, then resized.
//!
//! **PNG, GIF (first frame) and lossy WebP without alpha**: never decoded
//! whole unless a copy is made from the full-size pixels and they fit in
//! `max_memory`: the derivatives come from rows streamed into a box shrink
//! (the private `rows` module), and the optimized copy is the original
//! without its metadata (borrowed when there is none to strip), or the
//! original itself when EXIF turns it.
//!
//! **Lossless or transparent WebP, CMYK or 16-bit JPEG, and copies made
//! from pixels**:
//! decoded in full, turned upright; the optimized copy is the re-encoded
//! image or the original without its metadata
//! ([`crate::metadata::strip`]), whichever is smaller (a PNG, WebP or GIF
//! original only when it needed no turning).
//!
//! Colour: the thumbnail and the preview are converted from the original's
//! ICC profile to sRGB; a re-encoded optimized copy keeps the profile
//! (the private `icc` module).
//!
//! Resizing: `fast_image_resize` (SIMD), Lanczos3, in linear light (averaging
//! gamma-encoded values darkens fine detail). Sources more than 4x the target
//! are first box-shrunk in sRGB to 2x, which bounds memory and time.
//! Encoding: JPEG (progressive, optimised Huffman tables) for opaque images,
//! PNG when any pixel is transparent. The preview is made from the decoded
//! image and the thumbnail from the preview.

use std::io::Cursor;
use std::sync::OnceLock;

use fast_image_resize::images::Image;
use fast_image_resize::{
    FilterType, PixelComponentMapper, PixelType, ResizeAlg, ResizeOptions, Resizer,
};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};
use thiserror::Error;

use crate::format::{ImageFormat, InvalidImage, Limits};
use crate::icc::RgbProfile;
pub use crate::metadata::Piece;

/// JPEG quality of every output: visually lossless for photographs at a
/// third of the size of quality 95.
pub const JPEG_QUALITY: u8 = 82;

/// How the optimized copy is made: the `optimize` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Optimize {
    /// Every pixel kept. A JPEG keeps its coefficients (metadata stripped,
    /// Huffman tables made optimal, written progressive when that is
    /// smaller); a PNG is the original without its
    /// metadata or, up to a few megapixels, a stronger re-compression,
    /// whichever is smaller; WebP and GIF are the original without their
    /// metadata; an image EXIF turns upright is re-encoded as PNG when
    /// its full-size pixels fit in `max_memory`, and kept as it is (turned
    /// by its EXIF) when they do not.
    #[default]
    Lossless,
    /// Smaller, at `quality` (1–100, libjpeg's scale): a sequential JPEG is
    /// re-quantized in the DCT domain ([`crate::jpeg_recode::requantize`];
    /// 4:4:4 and 4:2:2 chroma become 4:2:0 below quality 90);
    /// any other image is re-encoded at that quality (JPEG when opaque,
    /// PNG when not) unless the original without metadata is smaller. A
    /// progressive JPEG gets the lossless copy.
    Lossy {
        /// The JPEG quality.
        quality: u8,
    },
}

impl Optimize {
    /// The lossy setting's default quality.
    pub const DEFAULT_QUALITY: u8 = JPEG_QUALITY;
}

/// The largest image encoded as progressive JPEG with optimised Huffman
/// tables (both need every DCT block in memory); larger ones are encoded
/// baseline, row by row.
const BUFFERED_ENCODE_MAX_PIXELS: u64 = 4_000_000;

/// The derivatives Darkroom makes of every upload.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// 200 px wide.
    Thumbnail,
    /// 800 px wide.
    Preview,
    /// The original's size, re-encoded without metadata.
    Optimized,
}

impl Variant {
    /// Every variant.
    pub const ALL: [Self; 3] = [Self::Thumbnail, Self::Preview, Self::Optimized];

    /// The variant's name in keys, links and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Thumbnail => "thumbnail",
            Self::Preview => "preview",
            Self::Optimized => "optimized",
        }
    }

    /// The variant named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The width the variant is made at; `None` keeps the original's size.
    /// Narrower originals are never upscaled.
    pub const fn target_width(self) -> Option<u32> {
        match self {
            Self::Thumbnail => Some(200),
            Self::Preview => Some(800),
            Self::Optimized => None,
        }
    }
}

/// One encoded derivative; an optimized copy may borrow the original it
/// was made from (a PNG or GIF with nothing to strip is its own copy, not
/// a second one in memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendition<'a> {
    /// Which derivative.
    pub variant: Variant,
    /// Its encoding.
    pub format: ImageFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The encoded file.
    pub bytes: Encoded<'a>,
}

/// An output's bytes: one buffer, or pieces to write one after another
/// (an original without its metadata: ranges of the original and the few
/// bytes that change, never a copy of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded<'a> {
    /// What the [`Piece::Kept`] ranges are of.
    source: &'a [u8],
    pieces: Vec<Piece>,
}

impl<'a> Encoded<'a> {
    /// `pieces` of `source`.
    pub const fn of(source: &'a [u8], pieces: Vec<Piece>) -> Self {
        Self { source, pieces }
    }

    /// What the kept ranges are of, and the pieces: for a store that can
    /// keep a copy as ranges of the original it already holds.
    pub fn parts(&self) -> (&'a [u8], &[Piece]) {
        (self.source, &self.pieces)
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.pieces().map(<[u8]>::len).sum()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces' bytes, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.pieces.iter().map(|p| p.bytes(self.source))
    }

    /// The bytes in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.pieces().flatten().copied().collect()
    }

    /// Whether these are `bytes`, exactly.
    pub fn is(&self, bytes: &[u8]) -> bool {
        let mut rest = bytes;
        self.len() == bytes.len()
            && self.pieces().all(|piece| {
                let (head, tail) = rest.split_at(piece.len());
                rest = tail;
                head == piece
            })
    }
}

impl<'a> From<&'a [u8]> for Encoded<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self::of(bytes, vec![Piece::Kept(0..bytes.len())])
    }
}

impl From<Vec<u8>> for Encoded<'_> {
    fn from(bytes: Vec<u8>) -> Self {
        Self::of(&[], vec![Piece::Own(bytes)])
    }
}

impl PartialEq<Vec<u8>> for Encoded<'_> {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.is(other)
    }
}

/// Why an image cannot be processed. All of these are permanent: retrying
/// the same bytes gives the same answer.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The image breaks a limit or is not an accepted format.
    #[error(transparent)]
    Invalid(#[from] InvalidImage),
    /// The bytes cannot be decoded.
    #[error("the image cannot be decoded: {0}")]
    Decode(String),
    /// An output cannot be produced.
    #[error("the image cannot be encoded: {0}")]
    Encode(String),
}

/// Makes every [`Variant`] of `original`.
///
/// # Errors
/// [`PipelineError`] when the image is unsupported, over the limits, corrupt,
/// or cannot be encoded (JPEG allows at most 65 535 px a side).
pub fn render(original: &[u8], limits: Limits) -> Result<Vec<Rendition<'_>>, PipelineError> {
    render_with(original, limits, Optimize::Lossless)
}

/// Makes every [`Variant`] of `original`, the optimized copy as `optimize` says.
///
/// # Errors
/// As [`render`].
pub fn render_with(
    original: &[u8],
    limits: Limits,
    optimize: Optimize,
) -> Result<Vec<Rendition<'_>>, PipelineError> {
    // The upload's checks again (the limits may have changed since): the
    // format, the container, the pixel, frame and memory limits. The paths
    // below rely on them.
    let format = crate::format::inspect(original, limits)?.format;
    if format == ImageFormat::Jpeg
        && let Some(renditions) = render_jpeg(original, optimize)?
    {
        return Ok(renditions);
    }
    let source = match format {
        ImageFormat::Png => Some(crate::rows::Source::png(original)?),
        ImageFormat::Gif => Some(crate::rows::Source::gif(original)?),
        ImageFormat::Webp => crate::rows::Source::webp(original)?,
        ImageFormat::Jpeg => None,
    };
    if let Some(source) = source {
        // Full-size pixels only for a copy made from them (a PNG small
        // enough to re-compress strongly, an image EXIF turns upright, a
        // lossy re-encode), and only when they fit.
        let (width, height) = source.dimensions();
        let large = u64::from(width) * u64::from(height) > BUFFERED_ENCODE_MAX_PIXELS;
        let wants_pixels = match optimize {
            Optimize::Lossless => {
                source.orientation() != Orientation::NoTransforms
                    || (format == ImageFormat::Png && !large && source.eight_bit())
            }
            Optimize::Lossy { .. } => true,
        };
        if !wants_pixels || crate::cost::full_decode_needed(format, original)? > limits.max_memory {
            return render_streamed(source, original, format);
        }
    }
    render_decoded(original, format, limits, optimize)
}

/// The PNG, GIF and lossy WebP path when no full-size pixels are wanted, or none fit:
/// the derivatives from rows streamed into a box shrink (`rows`), never
/// the whole decoded image. The optimized copy is the original without its
/// metadata, or, for an image EXIF turns, the original as it is (the
/// orientation it carries is what shows it upright).
fn render_streamed<'a>(
    source: crate::rows::Source<'_>,
    original: &'a [u8],
    format: ImageFormat,
) -> Result<Vec<Rendition<'a>>, PipelineError> {
    let orientation = source.orientation();
    let profile = source
        .icc_profile()
        .map(<[u8]>::to_vec)
        .and_then(RgbProfile::read);
    let (width, height) = source.dimensions();
    let (shown_width, shown_height) = if turns(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    let preview_width = Variant::Preview.target_width().unwrap_or(shown_width);
    let image = source.shrink(crate::rows::factor(shown_width, preview_width))?;
    // Pieces of the original, not a copy of it.
    let optimized = if orientation == Orientation::NoTransforms {
        crate::metadata::strip_pieces(format, original)
    } else {
        None
    };
    let optimized = Rendition {
        variant: Variant::Optimized,
        format,
        width: shown_width,
        height: shown_height,
        bytes: optimized.map_or_else(|| original.into(), |p| Encoded::of(original, p)),
    };
    // Resized as stored, then turned: the turn copies the preview, not the
    // larger shrunk image.
    let mut working = Pixels::from_image(image);
    working.convert_to_srgb(profile.as_ref());
    // The preview's size from the original's, not from the shrunk image's
    // (whose last bins may be partial).
    let preview = if preview_width >= shown_width {
        working
    } else {
        let preview_height = proportional(shown_height, preview_width, shown_width);
        if turns(orientation) {
            working.resized_to(preview_height, preview_width)?
        } else {
            working.resized_to(preview_width, preview_height)?
        }
    };
    let preview = preview.oriented(orientation);
    let thumbnail = preview.resized_to_width(Variant::Thumbnail.target_width())?;
    Ok(vec![
        thumbnail.encode(Variant::Thumbnail, None)?,
        preview.encode(Variant::Preview, None)?,
        optimized,
    ])
}

/// 8-bit grey, RGB or RGBA pixels (as `pixel_type` says) as an `image`
/// crate image; `None` when `buffer` is not `width` × `height` of them.
pub(crate) fn dynamic_image(
    width: u32,
    height: u32,
    buffer: Vec<u8>,
    pixel_type: PixelType,
) -> Option<DynamicImage> {
    match pixel_type {
        PixelType::U8 => {
            image::GrayImage::from_raw(width, height, buffer).map(DynamicImage::ImageLuma8)
        }
        PixelType::U8x4 => {
            image::RgbaImage::from_raw(width, height, buffer).map(DynamicImage::ImageRgba8)
        }
        _ => image::RgbImage::from_raw(width, height, buffer).map(DynamicImage::ImageRgb8),
    }
}

/// `side` scaled by `to / from`, rounded, at least 1.
fn proportional(side: u32, to: u32, from: u32) -> u32 {
    let scaled = (u64::from(side) * u64::from(to) + u64::from(from) / 2) / u64::from(from.max(1));
    u32::try_from(scaled.max(1)).unwrap_or(u32::MAX)
}

/// Whether `orientation` swaps width and height.
pub(crate) fn turns(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

pub(crate) fn decode_error(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Decode(e.to_string())
}

/// The JPEG path: lossless optimized copy, shrink-on-load derivatives.
/// `None` for colour models it leaves to the general path (CMYK, 16-bit).
fn render_jpeg(
    bytes: &[u8],
    optimize: Optimize,
) -> Result<Option<Vec<Rendition<'static>>>, PipelineError> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().map_err(decode_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| decode_error("no frame header"))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let grey = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => false,
        jpeg_decoder::PixelFormat::L8 => true,
        jpeg_decoder::PixelFormat::L16 | jpeg_decoder::PixelFormat::CMYK32 => return Ok(None),
    };
    // Invalid or missing orientation values mean "as stored".
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let (shown_width, shown_height) = if turns(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    let stripped = crate::jpeg::strip_metadata(bytes, u16::from(orientation.to_exif()))
        .map_err(decode_error)?;
    let optimized = optimized_jpeg(stripped, optimize)?;
    let profile = decoder.icc_profile().and_then(RgbProfile::read);

    // The smallest DCT scale that still leaves the preview's width.
    let wanted = Variant::Preview
        .target_width()
        .map_or(shown_width, |t| t.min(shown_width));
    let denominator = crate::cost::jpeg_denominator(shown_width, wanted);
    let request = |v: u32| u16::try_from(v.div_ceil(denominator)).unwrap_or(u16::MAX);
    let (w, h) = decoder
        .scale(request(width), request(height))
        .map_err(decode_error)?;
    let pixels = decoder.decode().map_err(decode_error)?;
    let (w, h) = (u32::from(w), u32::from(h));
    let image = if grey {
        image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
    };
    let mut image = image.ok_or_else(|| decode_error("the decoder returned too few pixels"))?;
    image.apply_orientation(orientation);

    let mut small = Pixels::from_image(image).into_working_size(Variant::Preview.target_width())?;
    small.convert_to_srgb(profile.as_ref());
    let preview = small.resized_to_width(Variant::Preview.target_width())?;
    let thumbnail = preview.resized_to_width(Variant::Thumbnail.target_width())?;
    Ok(Some(vec![
        thumbnail.encode(Variant::Thumbnail, None)?,
        preview.encode(Variant::Preview, None)?,
        Rendition {
            variant: Variant::Optimized,
            format: ImageFormat::Jpeg,
            width: shown_width,
            height: shown_height,
            bytes: optimized.into(),
        },
    ]))
}

/// A JPEG without its metadata made smaller as `optimize` says (optimal
/// Huffman tables, or re-quantized too); the smaller copy wins.
fn optimized_jpeg(stripped: Vec<u8>, optimize: Optimize) -> Result<Vec<u8>, PipelineError> {
    if let Optimize::Lossy { quality } = optimize {
        match crate::jpeg_recode::requantize(&stripped, quality) {
            Ok(Some(lossy)) if lossy.len() < stripped.len() => return Ok(lossy),
            Ok(_) => {}
            Err(e) => return Err(decode_error(e)),
        }
    }
    // Optimal Huffman tables, losslessly.
    match crate::jpeg_recode::optimize_huffman(&stripped) {
        Ok(Some(recoded)) if recoded.len() < stripped.len() => Ok(recoded),
        Ok(_) => Ok(stripped),
        Err(e) => Err(decode_error(e)),
    }
}

/// The general path: full decode, upright, every output from the pixels.
fn render_decoded(
    original: &[u8],
    format: ImageFormat,
    limits: Limits,
    optimize: Optimize,
) -> Result<Vec<Rendition<'_>>, PipelineError> {
    let (image, orientation, profile) = decode(original, format, limits)?;
    // Pixels are worked on in 8 bits: a deeper image's only lossless copy
    // is its own.
    let eight_bit = matches!(
        image.color(),
        image::ColorType::L8
            | image::ColorType::La8
            | image::ColorType::Rgb8
            | image::ColorType::Rgba8
    );
    let pixels = Pixels::from_image(image);
    // The full-size copy first: the derivatives are made from pixels that
    // may be premultiplied in place. The original without its metadata
    // competes with the re-encode. JPEG keeps its orientation as a tag;
    // other formats only qualify when upright.
    let exif_orientation = u16::from(orientation.to_exif());
    let stripped = (format == ImageFormat::Jpeg || orientation == Orientation::NoTransforms)
        .then(|| crate::metadata::strip(format, original, exif_orientation))
        .flatten();
    let (width, height) = (pixels.image.width(), pixels.image.height());
    let large = u64::from(width) * u64::from(height) > BUFFERED_ENCODE_MAX_PIXELS;
    let as_stored = |bytes: Vec<u8>| Rendition {
        variant: Variant::Optimized,
        format,
        width,
        height,
        bytes: bytes.into(),
    };
    let smaller = |stripped: Option<Vec<u8>>, encoded: Rendition<'static>| match stripped {
        Some(stripped) if stripped.len() < encoded.bytes.len() => as_stored(stripped),
        _ => encoded,
    };
    let optimized = match (optimize, stripped) {
        // A CMYK or 16-bit JPEG keeps its coefficients like any other.
        (Optimize::Lossless, Some(stripped)) if format == ImageFormat::Jpeg => {
            as_stored(optimized_jpeg(stripped, optimize)?)
        }
        // A PNG re-compressed strongly, while the copy is small enough to
        // hold next to the pixels.
        (Optimize::Lossless, Some(stripped))
            if format == ImageFormat::Png && !large && eight_bit =>
        {
            let encoded = pixels.encode_lossless(profile.as_ref(), true)?;
            smaller(Some(stripped), encoded)
        }
        (Optimize::Lossless, Some(stripped)) => as_stored(stripped),
        // Turned upright: only a re-encode shows it so, losslessly as PNG.
        (Optimize::Lossless, None) => pixels.encode_lossless(profile.as_ref(), false)?,
        // A full-size PNG re-encode is held whole in memory and rarely beats
        // the original's own compression: a large one is not attempted.
        (Optimize::Lossy { .. }, Some(stripped)) if large && pixels.has_alpha() => {
            as_stored(stripped)
        }
        (Optimize::Lossy { quality }, stripped) => {
            let encoded = pixels.encode_at(Variant::Optimized, profile.as_ref(), quality)?;
            smaller(stripped, encoded)
        }
    };
    let mut working = pixels.into_working_size(Variant::Preview.target_width())?;
    working.convert_to_srgb(profile.as_ref());
    let preview = working.resized_to_width(Variant::Preview.target_width())?;
    drop(working);
    let thumbnail = preview.resized_to_width(Variant::Thumbnail.target_width())?;
    Ok(vec![
        thumbnail.encode(Variant::Thumbnail, None)?,
        preview.encode(Variant::Preview, None)?,
        optimized,
    ])
}

/// Decodes the first frame, upright, and reads its RGB colour profile; the
/// decoder may allocate no more than the widest decode of `max_pixels` (the
/// header was checked by `render`).
fn decode(
    bytes: &[u8],
    format: ImageFormat,
    limits: Limits,
) -> Result<(DynamicImage, Orientation, Option<RgbProfile>), PipelineError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.codec());
    let mut codec_limits = image::Limits::default();
    // RGBA16 is the widest decoded form: 8 bytes a pixel.
    codec_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(1 << 20));
    reader.limits(codec_limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    // A broken EXIF block must not sink an otherwise good image.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let profile = decoder
        .icc_profile()
        .ok()
        .flatten()
        .and_then(RgbProfile::read);
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    Ok((image, orientation, profile))
}

/// Decoded 8-bit pixels: grey, RGB or RGBA.
struct Pixels {
    image: Image<'static>,
}

pub(crate) fn srgb_mapper() -> &'static PixelComponentMapper {
    static MAPPER: OnceLock<PixelComponentMapper> = OnceLock::new();
    MAPPER.get_or_init(fast_image_resize::create_srgb_mapper)
}

fn resize(src: &Image<'_>, dst: &mut Image<'_>, filter: FilterType) -> Result<(), PipelineError> {
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    Resizer::new()
        .resize(src, dst, &options)
        .map_err(|e| PipelineError::Encode(e.to_string()))
}

impl Pixels {
    /// Takes over the decoded buffer. 8-bit grey, RGB and RGBA are used in
    /// place (an opaque RGBA buffer is compacted to RGB in place); other
    /// colour types are converted once. Opaque grey stays one channel: a
    /// third of the memory and of the resizing and encoding work of RGB.
    fn from_image(image: DynamicImage) -> Self {
        let (width, height) = (image.width(), image.height());
        let buffer = if image.color().has_alpha() {
            let mut rgba = image.into_rgba8().into_raw();
            if rgba.chunks_exact(4).all(|p| p[3] == u8::MAX) {
                let pixels = rgba.len() / 4;
                for i in 0..pixels {
                    rgba.copy_within(4 * i..4 * i + 3, 3 * i);
                }
                rgba.truncate(3 * pixels);
                rgba.shrink_to_fit();
                (rgba, PixelType::U8x3)
            } else {
                (rgba, PixelType::U8x4)
            }
        } else if image.color().channel_count() == 1 {
            (image.into_luma8().into_raw(), PixelType::U8)
        } else {
            (image.into_rgb8().into_raw(), PixelType::U8x3)
        };
        let image = Image::from_vec_u8(width, height, buffer.0, buffer.1);
        Self {
            image: image.unwrap_or_else(|_| unreachable!("image's buffers are tightly packed")),
        }
    }

    fn has_alpha(&self) -> bool {
        self.image.pixel_type() == PixelType::U8x4
    }

    fn is_grey(&self) -> bool {
        self.image.pixel_type() == PixelType::U8
    }

    /// The original's profile, when it describes these pixels: an RGB
    /// profile on a grey image is a mistake, ignored like a broken one.
    fn applicable<'p>(&self, profile: Option<&'p RgbProfile>) -> Option<&'p RgbProfile> {
        profile.filter(|_| !self.is_grey())
    }

    /// For derivatives no wider than `target`: the pixels box-shrunk in sRGB
    /// to twice `target` when they are more than four times as wide, which
    /// bounds the memory and time of the linear-light resize (the linear
    /// copy of a 24 MP image alone would take 144 MB). Consumes the pixels
    /// so that transparency can be premultiplied in place rather than in a
    /// full-size copy.
    fn into_working_size(mut self, target: Option<u32>) -> Result<Self, PipelineError> {
        let (width, height) = (self.image.width(), self.image.height());
        let Some(target) = target.filter(|&t| width > t.saturating_mul(4)) else {
            return Ok(self);
        };
        let half_height = (u64::from(height) * u64::from(target) * 2 / u64::from(width)).max(1);
        let half_height = u32::try_from(half_height).unwrap_or(u32::MAX);
        let mut half_way = Image::new(target * 2, half_height, self.image.pixel_type());
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Box))
            .use_alpha(false);
        let failed = |e: &dyn std::fmt::Display| PipelineError::Encode(e.to_string());
        let muldiv = fast_image_resize::MulDiv::default();
        if self.has_alpha() {
            muldiv
                .multiply_alpha_inplace(&mut self.image)
                .map_err(|e| failed(&e))?;
        }
        Resizer::new()
            .resize(&self.image, &mut half_way, &options)
            .map_err(|e| failed(&e))?;
        if self.has_alpha() {
            muldiv
                .divide_alpha_inplace(&mut half_way)
                .map_err(|e| failed(&e))?;
        }
        Ok(Self { image: half_way })
    }

    /// A copy no wider than `target`, keeping the aspect ratio; never
    /// upscaled. Resampled in linear light.
    fn resized_to_width(&self, target: Option<u32>) -> Result<Self, PipelineError> {
        let (width, height) = (self.image.width(), self.image.height());
        match target.filter(|&t| t < width) {
            Some(target) => self.resized_to(target, proportional(height, target, width)),
            None => Ok(Self {
                image: self.image.copy(),
            }),
        }
    }

    /// The pixels turned upright as `orientation` says.
    fn oriented(self, orientation: Orientation) -> Self {
        if orientation == Orientation::NoTransforms {
            return self;
        }
        let (width, height) = (self.image.width(), self.image.height());
        let pixel_type = self.image.pixel_type();
        let image = dynamic_image(width, height, self.image.into_vec(), pixel_type);
        let mut image = image.unwrap_or_else(|| unreachable!("Pixels' buffers are tightly packed"));
        image.apply_orientation(orientation);
        Self::from_image(image)
    }

    /// Resampled in linear light to exactly `width` × `height`.
    fn resized_to(&self, width: u32, height: u32) -> Result<Self, PipelineError> {
        let pixel_type = self.image.pixel_type();
        let source = &self.image;
        let linear_type = match pixel_type {
            PixelType::U8 => PixelType::U16,
            PixelType::U8x4 => PixelType::U16x4,
            _ => PixelType::U16x3,
        };
        let map_error = |e: fast_image_resize::MappingError| PipelineError::Encode(e.to_string());
        let mut linear = Image::new(source.width(), source.height(), linear_type);
        srgb_mapper()
            .forward_map(source, &mut linear)
            .map_err(map_error)?;
        let mut resized = Image::new(width, height, linear_type);
        resize(&linear, &mut resized, FilterType::Lanczos3)?;
        drop(linear);
        let mut out = Image::new(width, height, pixel_type);
        srgb_mapper()
            .backward_map(&resized, &mut out)
            .map_err(map_error)?;
        Ok(Self { image: out })
    }

    /// Converts the pixels from `profile` to sRGB; without a profile they
    /// are sRGB already.
    fn convert_to_srgb(&mut self, profile: Option<&RgbProfile>) {
        if let Some(profile) = self.applicable(profile) {
            let alpha = self.has_alpha();
            profile.convert_to_srgb(self.image.buffer_mut(), alpha);
        }
    }

    /// Encodes the pixels, embedding `profile` when given (the pixels are
    /// in that colour space, not sRGB).
    fn encode(
        &self,
        variant: Variant,
        profile: Option<&RgbProfile>,
    ) -> Result<Rendition<'static>, PipelineError> {
        self.encode_at(variant, profile, JPEG_QUALITY)
    }

    /// As [`Self::encode`], a JPEG at `quality`.
    fn encode_at(
        &self,
        variant: Variant,
        profile: Option<&RgbProfile>,
        quality: u8,
    ) -> Result<Rendition<'static>, PipelineError> {
        let (width, height) = (self.image.width(), self.image.height());
        let profile = self.applicable(profile).map(RgbProfile::bytes);
        let (format, bytes) = if self.has_alpha() {
            (ImageFormat::Png, self.encode_png(profile, false)?)
        } else {
            (ImageFormat::Jpeg, self.encode_jpeg(profile, quality)?)
        };
        Ok(Rendition {
            variant,
            format,
            width,
            height,
            bytes: bytes.into(),
        })
    }

    /// The full-size copy as PNG, every pixel kept (`strong`: the slowest,
    /// smallest compression).
    fn encode_lossless(
        &self,
        profile: Option<&RgbProfile>,
        strong: bool,
    ) -> Result<Rendition<'static>, PipelineError> {
        let profile = self.applicable(profile).map(RgbProfile::bytes);
        Ok(Rendition {
            variant: Variant::Optimized,
            format: ImageFormat::Png,
            width: self.image.width(),
            height: self.image.height(),
            bytes: self.encode_png(profile, strong)?.into(),
        })
    }

    fn encode_jpeg(&self, profile: Option<&[u8]>, quality: u8) -> Result<Vec<u8>, PipelineError> {
        let too_big = |_| PipelineError::Encode("JPEG allows at most 65535 pixels a side".into());
        let width = u16::try_from(self.image.width()).map_err(too_big)?;
        let height = u16::try_from(self.image.height()).map_err(too_big)?;
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
        // Progressive and optimised tables take two passes over every DCT
        // block, which the encoder buffers (3 bytes a pixel at 4:2:0). Above
        // a few megapixels that costs more memory than the pixels
        // themselves, so large images go out baseline, streamed.
        let buffered = u64::from(width) * u64::from(height) <= BUFFERED_ENCODE_MAX_PIXELS;
        encoder.set_progressive(buffered);
        encoder.set_optimized_huffman_tables(buffered);
        if let Some(profile) = profile {
            encoder
                .add_icc_profile(profile)
                .map_err(|e| PipelineError::Encode(e.to_string()))?;
        }
        let color = if self.is_grey() {
            jpeg_encoder::ColorType::Luma
        } else {
            jpeg_encoder::ColorType::Rgb
        };
        encoder
            .encode(self.image.buffer(), width, height, color)
            .map_err(|e| PipelineError::Encode(e.to_string()))?;
        if !buffered {
            // Streamed with the standard tables: optimal ones cost a second
            // read of the output, not of every block.
            if let Ok(Some(recoded)) = crate::jpeg_recode::optimize_huffman(&out) {
                return Ok(recoded);
            }
        }
        Ok(out)
    }

    fn encode_png(&self, profile: Option<&[u8]>, strong: bool) -> Result<Vec<u8>, PipelineError> {
        use image::ImageEncoder;
        use image::codecs::png::{CompressionType, FilterType, PngEncoder};
        let mut out = Vec::new();
        let compression = if strong {
            CompressionType::Best
        } else {
            CompressionType::Default
        };
        let mut encoder = PngEncoder::new_with_quality(&mut out, compression, FilterType::Adaptive);
        if let Some(profile) = profile {
            encoder
                .set_icc_profile(profile.to_vec())
                .map_err(|e| PipelineError::Encode(e.to_string()))?;
        }
        encoder
            .write_image(
                self.image.buffer(),
                self.image.width(),
                self.image.height(),
                match self.image.pixel_type() {
                    PixelType::U8 => image::ExtendedColorType::L8,
                    PixelType::U8x3 => image::ExtendedColorType::Rgb8,
                    _ => image::ExtendedColorType::Rgba8,
                },
            )
            .map_err(|e| PipelineError::Encode(e.to_string()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_jpeg_with_orientation, encode_png, encode_with, gradient};

    fn decode_output(r: &Rendition<'_>) -> DynamicImage {
        image::load_from_memory_with_format(&r.bytes.to_vec(), r.format.codec())
            .expect("output decodes")
    }

    const LOSSY: Optimize = Optimize::Lossy {
        quality: Optimize::DEFAULT_QUALITY,
    };

    #[test]
    fn a_lossless_optimized_png_keeps_every_pixel_and_is_never_larger() {
        for image in [gradient(640, 400, false), gradient(640, 400, true)] {
            let png = encode_png(&image);
            let out = render(&png, Limits::default()).expect("render");
            let optimized = by_variant(&out, Variant::Optimized);
            assert_eq!(optimized.format, ImageFormat::Png);
            assert!(optimized.bytes.len() <= png.len());
            assert_eq!(
                decode_output(optimized).to_rgba8().as_raw(),
                image.to_rgba8().as_raw(),
                "every pixel kept"
            );
        }
    }

    #[test]
    fn a_lossy_optimized_jpeg_is_requantized_to_under_half_the_lossless_size_at_its_dimensions() {
        let mut photo = gradient(900, 600, false).to_rgb8();
        let mut seed = 7u32;
        for p in photo.iter_mut() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *p = p.saturating_add((seed >> 27) as u8);
        }
        let mut fine = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut fine, 97)
            .encode_image(&photo)
            .expect("encodes");
        let lossless = render(&fine, Limits::default()).expect("render");
        let lossy = render_with(&fine, Limits::default(), LOSSY).expect("render");
        let (a, b) = (
            by_variant(&lossless, Variant::Optimized),
            by_variant(&lossy, Variant::Optimized),
        );
        assert_eq!((b.format, b.width, b.height), (ImageFormat::Jpeg, 900, 600));
        assert!(
            b.bytes.len() * 2 < a.bytes.len(),
            "{} bytes lossy against {} lossless",
            b.bytes.len(),
            a.bytes.len()
        );
        assert_eq!(
            (decode_output(b).width(), decode_output(b).height()),
            (900, 600)
        );
    }

    fn by_variant<'r, 'a>(renditions: &'r [Rendition<'a>], v: Variant) -> &'r Rendition<'a> {
        renditions
            .iter()
            .find(|r| r.variant == v)
            .expect("variant present")
    }

    #[test]
    fn a_large_opaque_image_gets_a_200_and_an_800_wide_jpeg_and_a_lossy_full_size_jpeg() {
        let png = encode_png(&gradient(1600, 1000, false));
        let out = render_with(&png, Limits::default(), LOSSY).expect("render");
        let expected = [
            (Variant::Thumbnail, 200, 125),
            (Variant::Preview, 800, 500),
            (Variant::Optimized, 1600, 1000),
        ];
        for (variant, w, h) in expected {
            let r = by_variant(&out, variant);
            assert_eq!(
                (r.format, r.width, r.height),
                (ImageFormat::Jpeg, w, h),
                "{variant:?}"
            );
            let decoded = decode_output(r);
            assert_eq!(
                (decoded.width(), decoded.height()),
                (w, h),
                "{variant:?} as decoded"
            );
        }
    }

    #[test]
    fn a_narrow_image_is_never_upscaled() {
        let png = encode_png(&gradient(150, 90, false));
        let out = render(&png, Limits::default()).expect("render");
        for r in &out {
            assert_eq!((r.width, r.height), (150, 90), "{:?}", r.variant);
        }
    }

    #[test]
    fn shrinking_a_wide_transparent_image_ignores_the_colour_of_invisible_pixels() {
        // Over 4x the preview's width, so the box pre-shrink (premultiplied
        // in place) runs. Every other column is fully transparent green.
        let image = image::RgbaImage::from_fn(3400, 60, |x, _| {
            image::Rgba(if x % 2 == 0 {
                [200, 40, 40, 255]
            } else {
                [0, 255, 0, 0]
            })
        });
        let png = encode_png(&DynamicImage::ImageRgba8(image));
        let out = render(&png, Limits::default()).expect("render");
        for variant in [Variant::Preview, Variant::Thumbnail] {
            let r = by_variant(&out, variant);
            assert_eq!(r.format, ImageFormat::Png, "{variant:?}");
            let decoded = decode_output(r).to_rgba8();
            let p = decoded
                .get_pixel(decoded.width() / 2, decoded.height() / 2)
                .0;
            assert!(
                p[0].abs_diff(200) <= 6 && p[1].abs_diff(40) <= 6 && p[2].abs_diff(40) <= 6,
                "{variant:?}: colour {p:?} is tinted by invisible pixels"
            );
            assert!(p[3].abs_diff(128) <= 12, "{variant:?}: alpha {p:?}");
        }
    }

    #[test]
    fn transparency_survives_as_png() {
        let png = encode_png(&gradient(400, 300, true));
        let out = render(&png, Limits::default()).expect("render");
        let thumb = by_variant(&out, Variant::Thumbnail);
        assert_eq!(
            (thumb.format, thumb.width, thumb.height),
            (ImageFormat::Png, 200, 150)
        );
        let decoded = decode_output(thumb).to_rgba8();
        assert!(decoded.pixels().any(|p| p.0[3] < 255), "alpha kept");
    }

    #[test]
    fn an_alpha_channel_that_is_fully_opaque_gives_jpeg_derivatives() {
        let mut img = gradient(300, 200, true).to_rgba8();
        img.pixels_mut().for_each(|p| p.0[3] = 255);
        let png = encode_png(&DynamicImage::ImageRgba8(img));
        let out = render(&png, Limits::default()).expect("render");
        assert_eq!(
            by_variant(&out, Variant::Thumbnail).format,
            ImageFormat::Jpeg
        );
        assert_eq!(by_variant(&out, Variant::Preview).format, ImageFormat::Jpeg);
    }

    #[test]
    fn the_optimized_copy_is_never_bigger_than_the_original() {
        // One flat colour: lossless WebP and GIF beat any JPEG re-encode.
        let flat = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            400,
            300,
            image::Rgb([40, 90, 200]),
        ));
        let inputs = [
            encode_with(&flat, image::ImageFormat::WebP),
            encode_with(&flat, image::ImageFormat::Gif),
            encode_png(&gradient(400, 300, false)),
            encode_png(&gradient(400, 300, true)),
            encode_with(&gradient(400, 300, false), image::ImageFormat::Jpeg),
            encode_jpeg_with_orientation(&gradient(400, 300, false), 3),
            encode_with(&gradient(400, 300, false), image::ImageFormat::WebP),
            encode_with(&gradient(400, 300, true), image::ImageFormat::WebP),
            encode_with(&gradient(400, 300, false), image::ImageFormat::Gif),
        ];
        for input in inputs {
            let out = render(&input, Limits::default()).expect("render");
            let optimized = by_variant(&out, Variant::Optimized);
            assert!(
                optimized.bytes.len() <= input.len(),
                "{} > {}",
                optimized.bytes.len(),
                input.len()
            );
            assert_eq!((optimized.width, optimized.height), (400, 300));
        }
    }

    #[test]
    fn a_jpeg_optimized_copy_keeps_the_pixels_and_drops_the_metadata() {
        let jpeg = encode_jpeg_with_orientation(&gradient(1600, 1200, false), 1);
        let out = render(&jpeg, Limits::default()).expect("render");
        let optimized = by_variant(&out, Variant::Optimized);
        assert!(
            !optimized
                .bytes
                .to_vec()
                .windows(6)
                .any(|w| w == b"Exif\0\0"),
            "no EXIF at orientation 1"
        );
        let before = image::load_from_memory(&jpeg).expect("decodes").to_rgb8();
        let after = image::load_from_memory(&optimized.bytes.to_vec())
            .expect("decodes")
            .to_rgb8();
        assert_eq!(before, after, "no re-quantization");
    }

    fn embedded_profile(r: &Rendition<'_>) -> Option<Vec<u8>> {
        ImageReader::with_format(Cursor::new(r.bytes.to_vec()), r.format.codec())
            .into_decoder()
            .expect("output decodes")
            .icc_profile()
            .expect("profile readable")
    }

    #[test]
    fn derivatives_of_a_display_p3_image_are_converted_to_srgb_and_the_optimized_copy_keeps_its_profile()
     {
        let p3 = moxcms::ColorProfile::new_display_p3()
            .encode()
            .expect("moxcms encodes its profiles");
        // A flat orange, as a P3 camera would store it: in sRGB numbers the
        // same colour is redder and less blue.
        let orange = |alpha: bool| {
            DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
                1000,
                600,
                image::Rgba([200, 120, 60, if alpha { 200 } else { 255 }]),
            ))
        };
        let inputs = [
            (image::ImageFormat::Jpeg, false),
            (image::ImageFormat::Png, false),
            (image::ImageFormat::Png, true),
        ];
        for (format, alpha) in inputs {
            let image = orange(alpha);
            let (tagged, untagged) = (
                crate::testing::encode_with_icc(&image, format, &p3),
                encode_with(&image, format),
            );
            let tagged = render(&tagged, Limits::default()).expect("render");
            let untagged = render(&untagged, Limits::default()).expect("render");
            for variant in [Variant::Thumbnail, Variant::Preview] {
                let centre = |out: &[Rendition<'_>]| {
                    let decoded = decode_output(by_variant(out, variant)).to_rgba8();
                    decoded
                        .get_pixel(decoded.width() / 2, decoded.height() / 2)
                        .0
                };
                let (p, plain) = (centre(&tagged), centre(&untagged));
                let case = format!("{format:?} alpha={alpha} {variant:?}");
                assert!(
                    p[0] >= plain[0] + 10 && p[2] + 10 <= plain[2],
                    "{case}: {p:?} is not the P3 orange in sRGB (untagged: {plain:?})"
                );
                assert!(
                    plain[0].abs_diff(200) <= 3 && plain[2].abs_diff(60) <= 3,
                    "{case}: untagged {plain:?}"
                );
                assert_eq!(p[3], plain[3], "{case}: alpha");
                assert_eq!(
                    embedded_profile(by_variant(&tagged, variant)),
                    None,
                    "{case}: sRGB needs no profile"
                );
            }
            assert_eq!(
                embedded_profile(by_variant(&tagged, Variant::Optimized)).as_deref(),
                Some(p3.as_slice()),
                "{format:?} alpha={alpha}: the optimized copy keeps the original's colours and profile"
            );
        }
    }

    /// A 40x20 image whose top-left quadrant is red, top-right green,
    /// bottom-left blue, bottom-right white.
    fn quadrants() -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(400, 200, |x, y| {
            match (x < 200, y < 100) {
                (true, true) => image::Rgb([255, 0, 0]),
                (false, true) => image::Rgb([0, 255, 0]),
                (true, false) => image::Rgb([0, 0, 255]),
                (false, false) => image::Rgb([255, 255, 255]),
            }
        }))
    }

    fn dominant(p: image::Rgb<u8>) -> &'static str {
        match p.0 {
            [r, g, b] if r > 200 && g > 200 && b > 200 => "white",
            [r, _, _] if r > 200 => "red",
            [_, g, _] if g > 200 => "green",
            [_, _, b] if b > 200 => "blue",
            _ => "mixed",
        }
    }

    /// The top-left corner of [`quadrants`] shown for each orientation
    /// value, per the EXIF spec, and the thumbnail's size.
    const CORNERS: [(u16, &str, (u32, u32)); 8] = [
        (1, "red", (200, 100)),
        (2, "green", (200, 100)),
        (3, "white", (200, 100)),
        (4, "blue", (200, 100)),
        (5, "red", (200, 400)),
        (6, "blue", (200, 400)),
        (7, "white", (200, 400)),
        (8, "green", (200, 400)),
    ];

    /// `image` as a 16-bit PNG (which the pipeline streams) carrying an
    /// `eXIf` chunk with `orientation`.
    fn png16_with_orientation(image: &DynamicImage, orientation: u16) -> Vec<u8> {
        let rgb16 = image.to_rgb16();
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, image.width(), image.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Sixteen);
        let mut writer = encoder.write_header().expect("header");
        // An APP1 segment: marker, length, "Exif\0\0", then the TIFF data
        // that PNG's eXIf holds.
        let segment = crate::jpeg::exif_orientation_segment(orientation);
        writer
            .write_chunk(png::chunk::eXIf, &segment[10..])
            .expect("eXIf");
        let samples: Vec<u8> = rgb16
            .as_raw()
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        writer.write_image_data(&samples).expect("pixels");
        writer.finish().expect("finished");
        out
    }

    #[test]
    fn every_exif_orientation_is_applied_to_streamed_derivatives_and_a_turned_original_is_its_own_copy()
     {
        for (orientation, corner, (w, h)) in CORNERS {
            let png = png16_with_orientation(&quadrants(), orientation);
            let source = crate::rows::Source::png(&png).expect("opens");
            let out = render_streamed(source, &png, ImageFormat::Png).expect("render");
            let thumb = decode_output(by_variant(&out, Variant::Thumbnail)).to_rgb8();
            assert_eq!(thumb.dimensions(), (w, h), "orientation {orientation}");
            assert_eq!(
                dominant(*thumb.get_pixel(5, 5)),
                corner,
                "orientation {orientation}"
            );
            let optimized = by_variant(&out, Variant::Optimized);
            let shown = if h > w { (200, 400) } else { (400, 200) };
            assert_eq!((optimized.width, optimized.height), shown);
            if orientation == 1 {
                assert!(optimized.bytes.len() < png.len(), "eXIf stripped");
            } else {
                assert_eq!(optimized.bytes, png, "kept with the orientation it needs");
            }
        }
    }

    #[test]
    fn a_png_whose_full_decode_would_not_fit_is_streamed_and_keeps_its_stripped_original() {
        let png = encode_png(&gradient(8000, 600, false));
        let needed = crate::cost::full_decode_needed(ImageFormat::Png, &png).expect("header");
        let limits = Limits {
            max_memory: needed - 1,
            ..Limits::default()
        };
        let out = render_with(&png, limits, Optimize::Lossy { quality: 82 }).expect("render");
        let optimized = by_variant(&out, Variant::Optimized);
        assert_eq!(optimized.format, ImageFormat::Png);
        assert_eq!(optimized.bytes, png, "nothing to strip: the original");
        let preview = by_variant(&out, Variant::Preview);
        assert_eq!((preview.width, preview.height), (800, 60));
        // With room for the pixels, lossy re-encodes them.
        let out =
            render_with(&png, Limits::default(), Optimize::Lossy { quality: 82 }).expect("render");
        assert_eq!(
            by_variant(&out, Variant::Optimized).format,
            ImageFormat::Jpeg
        );
    }

    #[test]
    fn every_exif_orientation_is_applied_to_the_derivatives() {
        for (orientation, corner, (w, h)) in CORNERS {
            let jpeg = encode_jpeg_with_orientation(&quadrants(), orientation);
            let out = render(&jpeg, Limits::default()).expect("render");
            let thumb = decode_output(by_variant(&out, Variant::Thumbnail)).to_rgb8();
            assert_eq!(thumb.dimensions(), (w, h), "orientation {orientation}");
            assert_eq!(
                dominant(*thumb.get_pixel(5, 5)),
                corner,
                "orientation {orientation}"
            );
        }
    }

    #[test]
    fn invalid_orientation_values_are_ignored() {
        for orientation in [0, 9, 65535] {
            let jpeg = encode_jpeg_with_orientation(&quadrants(), orientation);
            let out = render(&jpeg, Limits::default()).expect("render");
            let thumb = decode_output(by_variant(&out, Variant::Thumbnail)).to_rgb8();
            assert_eq!(thumb.dimensions(), (200, 100), "orientation {orientation}");
            assert_eq!(
                dominant(*thumb.get_pixel(5, 5)),
                "red",
                "orientation {orientation}"
            );
        }
    }

    #[test]
    fn downscaling_averages_light_not_gamma_encoded_values() {
        // Alternating black and white columns: half the light, which sRGB
        // encodes as about 188, not 128.
        let stripes = DynamicImage::ImageRgb8(image::RgbImage::from_fn(800, 100, |x, _| {
            if x % 2 == 0 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        }));
        let png = encode_png(&stripes);
        let out = render(&png, Limits::default()).expect("render");
        let thumb = decode_output(by_variant(&out, Variant::Thumbnail)).to_rgb8();
        let mean = thumb.pixels().map(|p| u32::from(p.0[0])).sum::<u32>()
            / (thumb.width() * thumb.height());
        assert!((180..=196).contains(&mean), "mean grey {mean}");
    }

    #[test]
    fn a_greyscale_jpeg_is_processed() {
        let grey = DynamicImage::ImageLuma8(gradient(1000, 600, false).to_luma8());
        let jpeg = encode_with(&grey, image::ImageFormat::Jpeg);
        let out = render(&jpeg, Limits::default()).expect("render");
        assert_eq!(
            (
                by_variant(&out, Variant::Preview).width,
                by_variant(&out, Variant::Preview).height
            ),
            (800, 480)
        );
    }

    fn mean_luma(image: &DynamicImage) -> f64 {
        let luma = image.to_luma8();
        let sum: u64 = luma.pixels().map(|p| u64::from(p[0])).sum();
        sum as f64 / f64::from(luma.width() * luma.height())
    }

    /// A one-channel JPEG (`encode_with` writes every JPEG as RGB).
    fn grey_jpeg(grey: &image::GrayImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(grey)
            .expect("encode grey JPEG");
        out
    }

    #[test]
    fn a_grey_image_comes_out_grey_in_one_channel_from_every_path() {
        let grey = gradient(3000, 2000, false).to_luma8();
        let source_mean = mean_luma(&DynamicImage::ImageLuma8(grey.clone()));
        let grey16 = DynamicImage::ImageLuma16(DynamicImage::ImageLuma8(grey.clone()).to_luma16());
        let inputs = [
            ("PNG", encode_png(&DynamicImage::ImageLuma8(grey.clone()))),
            ("16-bit PNG", encode_png(&grey16)),
            ("JPEG", grey_jpeg(&grey)),
        ];
        for (kind, bytes) in inputs {
            let out = render(&bytes, Limits::default()).expect("render");
            for (variant, size) in [
                (Variant::Thumbnail, (200, 133)),
                (Variant::Preview, (800, 533)),
            ] {
                let r = by_variant(&out, variant);
                assert_eq!(r.format, ImageFormat::Jpeg, "{kind} {variant:?}");
                let decoded = decode_output(r);
                assert_eq!(decoded.color(), image::ColorType::L8, "{kind} {variant:?}");
                assert_eq!(
                    (decoded.width(), decoded.height()),
                    size,
                    "{kind} {variant:?}"
                );
                let mean = mean_luma(&decoded);
                assert!(
                    (mean - source_mean).abs() < 3.0,
                    "{kind} {variant:?}: mean {mean}, source {source_mean}"
                );
            }
            let optimized = decode_output(by_variant(&out, Variant::Optimized));
            assert_eq!(
                (optimized.width(), optimized.height()),
                (3000, 2000),
                "{kind}"
            );
            assert_eq!(optimized.color().channel_count(), 1, "{kind}: optimized");
        }
    }

    #[test]
    fn an_rgb_profile_on_a_grey_image_is_ignored() {
        let p3 = moxcms::ColorProfile::new_display_p3()
            .encode()
            .expect("moxcms encodes its profiles");
        // Noise, so that the re-encoded JPEG beats the PNG as the optimized
        // copy and the profile would have been embedded there.
        let mut state = 0x2545_f491_u32;
        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_fn(1000, 600, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            image::Luma([state.to_le_bytes()[0]])
        }));
        let tagged = crate::testing::encode_with_icc(&grey, image::ImageFormat::Png, &p3);
        let tagged = render_with(&tagged, Limits::default(), LOSSY).expect("render");
        let plain = encode_png(&grey);
        let plain = render_with(&plain, Limits::default(), LOSSY).expect("render");
        assert_eq!(
            by_variant(&tagged, Variant::Optimized).format,
            ImageFormat::Jpeg,
            "the re-encode is the optimized copy"
        );
        for variant in [Variant::Thumbnail, Variant::Preview, Variant::Optimized] {
            let (a, b) = (by_variant(&plain, variant), by_variant(&tagged, variant));
            assert!(
                decode_output(a).to_luma8().as_raw() == decode_output(b).to_luma8().as_raw(),
                "{variant:?}: the same pixels with and without the profile"
            );
            assert!(
                embedded_profile(b).is_none(),
                "{variant:?}: no RGB profile on grey"
            );
        }
    }

    #[test]
    fn exif_orientation_is_applied_to_derivatives_and_kept_as_the_only_metadata_of_the_optimized_jpeg()
     {
        // 6 = "rotate 90° clockwise to display": a 400x100 landscape is shown 100x400.
        let jpeg = encode_jpeg_with_orientation(&gradient(400, 100, false), 6);
        let out = render(&jpeg, Limits::default()).expect("render");
        let optimized = by_variant(&out, Variant::Optimized);
        assert_eq!(
            (optimized.width, optimized.height),
            (100, 400),
            "reported as shown"
        );
        let mut decoder =
            image::codecs::jpeg::JpegDecoder::new(Cursor::new(optimized.bytes.to_vec()))
                .expect("jpeg");
        assert_eq!(
            decoder.orientation().expect("orientation"),
            Orientation::Rotate90
        );
        let thumb = by_variant(&out, Variant::Thumbnail);
        assert!(
            !thumb.bytes.to_vec().windows(6).any(|w| w == b"Exif\0\0"),
            "no EXIF in derivatives"
        );
        assert_eq!(
            decode_output(thumb).to_rgb8().dimensions(),
            (100, 400),
            "derivatives are upright pixels"
        );
    }

    #[test]
    fn cmyk_and_ycck_jpegs_come_out_as_rgb_with_their_colours() {
        // Left half full cyan ink, right half no ink (white paper).
        let (w, h) = (400_u16, 300_u16);
        let cmyk: Vec<u8> = (0..h)
            .flat_map(|_| (0..w).flat_map(|x| if x < w / 2 { [255, 0, 0, 0] } else { [0; 4] }))
            .collect();
        for color in [
            jpeg_encoder::ColorType::Cmyk,
            jpeg_encoder::ColorType::CmykAsYcck,
        ] {
            let mut jpeg = Vec::new();
            jpeg_encoder::Encoder::new(&mut jpeg, 95)
                .encode(&cmyk, w, h, color)
                .expect("encode");
            let out = render(&jpeg, Limits::default()).expect("render");
            for variant in Variant::ALL {
                let r = by_variant(&out, variant);
                assert_eq!(r.format, ImageFormat::Jpeg, "{color:?} {variant:?}");
                let rgb = decode_output(r).to_rgb8();
                let (rw, rh) = rgb.dimensions();
                let cyan = rgb.get_pixel(rw / 4, rh / 2).0;
                let white = rgb.get_pixel(rw * 3 / 4, rh / 2).0;
                assert!(
                    cyan[0] < 60 && cyan[1] > 200 && cyan[2] > 200,
                    "{color:?} {variant:?}: cyan came out {cyan:?}"
                );
                assert!(
                    white.iter().all(|c| *c > 235),
                    "{color:?} {variant:?}: white came out {white:?}"
                );
            }
        }
    }

    #[test]
    fn webp_and_gif_inputs_are_decoded() {
        for format in [image::ImageFormat::WebP, image::ImageFormat::Gif] {
            let bytes = encode_with(&gradient(300, 200, false), format);
            let out = render(&bytes, Limits::default()).expect("render");
            assert_eq!(
                by_variant(&out, Variant::Thumbnail).width,
                200,
                "{format:?}"
            );
        }
    }

    #[test]
    fn corrupt_pixel_data_is_an_error_not_a_panic() {
        let mut jpeg = encode_jpeg_with_orientation(&gradient(300, 200, false), 1);
        let half = jpeg.len() / 2;
        jpeg[half..].fill(0xAB);
        jpeg.truncate(half + 64);
        // Decoders may recover from a damaged scan, so the only promise is: no panic,
        // and if it decodes, the output still has the declared size.
        match render(&jpeg, Limits::default()) {
            Ok(out) => assert_eq!(by_variant(&out, Variant::Optimized).width, 300),
            Err(e) => assert!(matches!(e, PipelineError::Decode(_)), "{e}"),
        }
    }

    #[test]
    fn bytes_that_are_not_an_image_are_refused() {
        let err =
            render(b"GIF89a\x02\x00\x02\x00\x00\x00\x00", Limits::default()).expect_err("garbage");
        assert!(
            matches!(
                err,
                PipelineError::Decode(_)
                    | PipelineError::Invalid(InvalidImage::UnreadableHeader { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn the_pixel_limit_is_checked_before_decoding() {
        let png = encode_png(&gradient(100, 100, false));
        let limits = Limits {
            max_pixels: 9_999,
            ..Limits::default()
        };
        let err = render(&png, limits).expect_err("over the limit");
        assert!(
            matches!(
                err,
                PipelineError::Invalid(InvalidImage::TooManyPixels { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn variants_are_found_by_their_names() {
        for v in Variant::ALL {
            assert_eq!(Variant::from_name(v.name()), Some(v));
        }
        assert_eq!(Variant::from_name("original"), None);
    }
}
