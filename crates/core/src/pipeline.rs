//! The image pipeline: original bytes in, derivatives out.
//!
//! decode (the header is checked against the limits before any pixel is
//! decoded) → EXIF orientation → drop metadata (nothing but pixels survives
//! decoding) → resize with `fast_image_resize` (SIMD, Lanczos3) → encode:
//! JPEG (progressive, optimised Huffman tables) for opaque images, PNG for
//! images with transparency.
//!
//! The preview is made from the full image and the thumbnail from the
//! preview, so the large image is walked once for both.

use std::io::Cursor;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageReader};
use thiserror::Error;

use crate::format::{ImageFormat, InvalidImage, Limits, check_pixels};

/// JPEG quality of every output: visually lossless for photographs at a
/// third of the size of quality 95.
pub const JPEG_QUALITY: u8 = 82;

/// The derivatives Darkroom makes of every upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// One encoded derivative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendition {
    /// Which derivative.
    pub variant: Variant,
    /// Its encoding.
    pub format: ImageFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The encoded file.
    pub bytes: Vec<u8>,
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
pub fn render(original: &[u8], limits: Limits) -> Result<Vec<Rendition>, PipelineError> {
    let image = decode(original, limits)?;
    let pixels = Pixels::from_image(image);
    let preview = pixels.resized_to_width(Variant::Preview.target_width())?;
    let thumbnail = preview.resized_to_width(Variant::Thumbnail.target_width())?;
    Ok(vec![
        thumbnail.encode(Variant::Thumbnail)?,
        preview.encode(Variant::Preview)?,
        pixels.encode(Variant::Optimized)?,
    ])
}

/// Decodes the first frame, upright, holding the header to `limits` first.
fn decode(bytes: &[u8], limits: Limits) -> Result<DynamicImage, PipelineError> {
    let format = ImageFormat::sniff(bytes).ok_or(InvalidImage::UnsupportedFormat)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.codec());
    let mut codec_limits = image::Limits::default();
    // RGBA16 is the widest decoded form: 8 bytes a pixel.
    codec_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(1 << 20));
    reader.limits(codec_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| PipelineError::Decode(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    // A broken EXIF block must not sink an otherwise good image.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| PipelineError::Decode(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Decoded 8-bit pixels, RGB or RGBA.
struct Pixels {
    image: Image<'static>,
}

impl Pixels {
    fn from_image(image: DynamicImage) -> Self {
        let (width, height) = (image.width(), image.height());
        let rgba = image.color().has_alpha().then(|| image.to_rgba8());
        let image = match rgba {
            Some(rgba) if rgba.pixels().any(|p| p.0[3] != u8::MAX) => {
                Image::from_vec_u8(width, height, rgba.into_raw(), PixelType::U8x4)
            }
            _ => Image::from_vec_u8(width, height, image.into_rgb8().into_raw(), PixelType::U8x3),
        };
        Self {
            image: image.unwrap_or_else(|_| unreachable!("image's buffers are tightly packed")),
        }
    }

    fn has_alpha(&self) -> bool {
        self.image.pixel_type() == PixelType::U8x4
    }

    /// A copy no wider than `target`, keeping the aspect ratio; never upscaled.
    fn resized_to_width(&self, target: Option<u32>) -> Result<Self, PipelineError> {
        let (width, height) = (self.image.width(), self.image.height());
        let Some(target) = target.filter(|&t| t < width) else {
            return Ok(Self {
                image: self.image.copy(),
            });
        };
        let target_height =
            (u64::from(height) * u64::from(target) + u64::from(width) / 2) / u64::from(width);
        let target_height = u32::try_from(target_height.max(1)).unwrap_or(u32::MAX);
        let mut out = Image::new(target, target_height, self.image.pixel_type());
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        Resizer::new()
            .resize(&self.image, &mut out, &options)
            .map_err(|e| PipelineError::Encode(e.to_string()))?;
        Ok(Self { image: out })
    }

    fn encode(&self, variant: Variant) -> Result<Rendition, PipelineError> {
        let (width, height) = (self.image.width(), self.image.height());
        let (format, bytes) = if self.has_alpha() {
            (ImageFormat::Png, self.encode_png()?)
        } else {
            (ImageFormat::Jpeg, self.encode_jpeg()?)
        };
        Ok(Rendition {
            variant,
            format,
            width,
            height,
            bytes,
        })
    }

    fn encode_jpeg(&self) -> Result<Vec<u8>, PipelineError> {
        let too_big = |_| PipelineError::Encode("JPEG allows at most 65535 pixels a side".into());
        let width = u16::try_from(self.image.width()).map_err(too_big)?;
        let height = u16::try_from(self.image.height()).map_err(too_big)?;
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY);
        encoder.set_progressive(true);
        encoder.set_optimized_huffman_tables(true);
        encoder
            .encode(
                self.image.buffer(),
                width,
                height,
                jpeg_encoder::ColorType::Rgb,
            )
            .map_err(|e| PipelineError::Encode(e.to_string()))?;
        Ok(out)
    }

    fn encode_png(&self) -> Result<Vec<u8>, PipelineError> {
        use image::ImageEncoder;
        use image::codecs::png::{CompressionType, FilterType, PngEncoder};
        let mut out = Vec::new();
        PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
            .write_image(
                self.image.buffer(),
                self.image.width(),
                self.image.height(),
                image::ExtendedColorType::Rgba8,
            )
            .map_err(|e| PipelineError::Encode(e.to_string()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_jpeg_with_orientation, encode_png, encode_with, gradient};

    fn decode_output(r: &Rendition) -> DynamicImage {
        image::load_from_memory_with_format(&r.bytes, r.format.codec()).expect("output decodes")
    }

    fn by_variant(renditions: &[Rendition], v: Variant) -> &Rendition {
        renditions
            .iter()
            .find(|r| r.variant == v)
            .expect("variant present")
    }

    #[test]
    fn a_large_opaque_image_gets_a_200_and_an_800_wide_jpeg_and_a_full_size_copy() {
        let png = encode_png(&gradient(1600, 1000, false));
        let out = render(&png, Limits::default()).expect("render");
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
    fn an_alpha_channel_that_is_fully_opaque_gives_jpeg() {
        let mut img = gradient(300, 200, true).to_rgba8();
        img.pixels_mut().for_each(|p| p.0[3] = 255);
        let png = encode_png(&DynamicImage::ImageRgba8(img));
        let out = render(&png, Limits::default()).expect("render");
        assert!(out.iter().all(|r| r.format == ImageFormat::Jpeg));
    }

    #[test]
    fn exif_orientation_is_applied_and_not_carried_over() {
        // 6 = "rotate 90° clockwise to display": a 400x100 landscape is shown 100x400.
        let jpeg = encode_jpeg_with_orientation(&gradient(400, 100, false), 6);
        let out = render(&jpeg, Limits::default()).expect("render");
        let optimized = by_variant(&out, Variant::Optimized);
        assert_eq!((optimized.width, optimized.height), (100, 400));
        assert!(
            !optimized.bytes.windows(6).any(|w| w == b"Exif\0\0"),
            "no EXIF block in the output"
        );
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
        assert!(matches!(err, PipelineError::Decode(_)), "{err}");
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
