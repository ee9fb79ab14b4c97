//! Test helpers for images: photo-like generated content and encoders that
//! write it with the `image` crate's codecs, for this crate's tests and for
//! the job domain's (`darkroom_core::testing` re-exports them).

use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};

/// A smooth colour gradient, optionally with an alpha ramp: photo-like
/// content that codecs treat realistically.
pub fn gradient(width: u32, height: u32, alpha: bool) -> DynamicImage {
    let channel = |v: u32, max: u32| u8::try_from(v * 255 / max.max(1)).unwrap_or(u8::MAX);
    if alpha {
        DynamicImage::ImageRgba8(RgbaImage::from_fn(width, height, |x, y| {
            Rgba([
                channel(x, width),
                channel(y, height),
                128,
                channel(x + y, width + height),
            ])
        }))
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            Rgb([
                channel(x, width),
                channel(y, height),
                channel(x ^ y, width.max(height)),
            ])
        }))
    }
}

/// Seeded RGB noise: content no codec compresses, so a file as large as
/// its pixels.
pub fn noise(width: u32, height: u32) -> DynamicImage {
    let mut state = 0x2545_F491_u32;
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |_, _| {
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        };
        Rgb([next(), next(), next()])
    }))
}

/// `image` encoded in `format` with the `image` crate's encoders.
///
/// # Panics
/// If encoding fails, which for these small images is a bug in the test.
pub fn encode_with(image: &DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let image = match format {
        image::ImageFormat::Jpeg | image::ImageFormat::Gif => {
            DynamicImage::ImageRgb8(image.to_rgb8())
        }
        _ => image.clone(),
    };
    #[expect(clippy::unwrap_used, reason = "test helper; see # Panics")]
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// `image` as PNG.
pub fn encode_png(image: &DynamicImage) -> Vec<u8> {
    encode_with(image, image::ImageFormat::Png)
}

/// `image` as JPEG with an EXIF block holding `orientation` (1..=8).
pub fn encode_jpeg_with_orientation(image: &DynamicImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode_with(image, image::ImageFormat::Jpeg);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&crate::jpeg::exif_orientation_segment(orientation));
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// `image` as JPEG or PNG with `icc` embedded as its colour profile.
///
/// # Panics
/// If encoding fails or `format` is neither JPEG nor PNG, which is a bug in
/// the test.
pub fn encode_with_icc(image: &DynamicImage, format: image::ImageFormat, icc: &[u8]) -> Vec<u8> {
    use image::codecs::{jpeg::JpegEncoder, png::PngEncoder};
    use image::{ImageEncoder, ImageError};
    fn write(
        mut encoder: impl ImageEncoder,
        image: &DynamicImage,
        icc: &[u8],
    ) -> image::ImageResult<()> {
        encoder
            .set_icc_profile(icc.to_vec())
            .map_err(ImageError::Unsupported)?;
        let (width, height) = (image.width(), image.height());
        encoder.write_image(image.as_bytes(), width, height, image.color().into())
    }
    let mut out = Vec::new();
    let written = match format {
        image::ImageFormat::Jpeg => {
            let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
            write(JpegEncoder::new_with_quality(&mut out, 90), &rgb, icc)
        }
        image::ImageFormat::Png => write(PngEncoder::new(&mut out), image, icc),
        other => panic!("no ICC embedding for {other:?} in the tests"),
    };
    #[expect(clippy::unwrap_used, reason = "test helper; see # Panics")]
    written.unwrap();
    out
}

/// A RIFF chunk (a WebP's): `fourcc`, the little-endian size, `data`, and
/// a pad byte after odd-sized data.
pub fn riff_chunk(fourcc: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = fourcc.to_vec();
    c.extend_from_slice(&u32::try_from(data.len()).expect("small").to_le_bytes());
    c.extend_from_slice(data);
    if data.len() % 2 == 1 {
        c.push(0);
    }
    c
}

/// A WebP container around `chunks`.
pub fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body = chunks.concat();
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&u32::try_from(body.len() + 4).expect("small").to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&body);
    out
}
