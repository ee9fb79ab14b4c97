//! Test images, generated so that every property under test is known.

use darkroom_core::testing::{encode_jpeg_with_orientation, encode_png, encode_with, gradient};

/// An opaque 1600x1000 JPEG.
pub fn jpeg() -> Vec<u8> {
    encode_with(&gradient(1600, 1000, false), image::ImageFormat::Jpeg)
}

/// A small JPEG, quick to process.
pub fn small_jpeg() -> Vec<u8> {
    encode_with(&gradient(320, 240, false), image::ImageFormat::Jpeg)
}

/// A 1000x500 PNG with real transparency.
pub fn png_with_alpha() -> Vec<u8> {
    png_with_alpha_sized(1000, 500)
}

/// A `width` x `height` PNG with real transparency.
pub fn png_with_alpha_sized(width: u32, height: u32) -> Vec<u8> {
    encode_png(&gradient(width, height, true))
}

/// A 600x400 image in `format`.
pub fn in_format(format: image::ImageFormat) -> Vec<u8> {
    encode_with(&gradient(600, 400, false), format)
}

/// A 900x300 landscape JPEG whose EXIF says "rotate 90° clockwise".
pub fn rotated_jpeg() -> Vec<u8> {
    encode_jpeg_with_orientation(&gradient(900, 300, false), 6)
}

/// A PNG whose header is valid but whose pixel data is garbage.
pub fn corrupt_png() -> Vec<u8> {
    let mut bytes = encode_png(&gradient(300, 200, false));
    let idat = bytes
        .windows(4)
        .position(|w| w == b"IDAT")
        .expect("an IDAT chunk");
    let end = bytes.len();
    bytes[idat + 8..end - 20].fill(0x5A);
    bytes
}

/// A PNG header declaring `width` x `height` over a single tiny IDAT: cheap
/// to send, expensive to decode.
pub fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = encode_png(&gradient(4, 4, false));
    // IHDR data starts at 16: width and height, big-endian, then the chunk's CRC.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// A 6000x4000 (24 MP) JPEG: a real camera's worth of pixels.
pub fn photo_24mp() -> Vec<u8> {
    encode_with(&gradient(6000, 4000, false), image::ImageFormat::Jpeg)
}

/// A real `width` x `height` PNG (a gradient compresses well, so the upload stays small).
pub fn png_declaring_real(width: u32, height: u32) -> Vec<u8> {
    encode_png(&gradient(width, height, false))
}

/// A 6000x4000 JPEG tagged "rotate 90°", as phones take portraits.
pub fn photo_24mp_rotated() -> Vec<u8> {
    encode_jpeg_with_orientation(&gradient(6000, 4000, false), 6)
}

/// Random noise at JPEG quality 100: the least compressible photo-like file.
pub fn noisy_jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100)
        .encode_image(&noise(width, height))
        .expect("encode noise");
    out
}

/// A `width` x `height` PNG of noise: it hardly compresses, so the file is
/// about 3 bytes a pixel.
pub fn incompressible_png(width: u32, height: u32) -> Vec<u8> {
    encode_png(&image::DynamicImage::ImageRgb8(noise(width, height)))
}

/// A 6000x4000 progressive JPEG without chroma subsampling: the costliest
/// kind of JPEG to decode, since every scan refines the whole image.
pub fn photo_24mp_progressive() -> Vec<u8> {
    let image = gradient(6000, 4000, false).to_rgb8();
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    encoder.set_progressive(true);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
    encoder
        .encode(&image, 6000, 4000, jpeg_encoder::ColorType::Rgb)
        .expect("encode");
    out
}

/// Pseudo-random pixels (xorshift64: deterministic, dependency-free, and
/// plenty random for zlib and JPEG).
fn noise(width: u32, height: u32) -> image::RgbImage {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    image::RgbImage::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let [r, g, b, ..] = state.to_le_bytes();
        image::Rgb([r, g, b])
    })
}

/// A 120x80 animated GIF of `frames` frames.
pub fn animated_gif(frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut out);
        for _ in 0..frames {
            let frame = image::Frame::new(gradient(120, 80, true).to_rgba8());
            encoder.encode_frame(frame).expect("encode a frame");
        }
    }
    out
}
