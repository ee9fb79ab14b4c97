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
    in_format_sized(format, 600, 400)
}

/// A `width` x `height` image in `format`.
pub fn in_format_sized(format: image::ImageFormat, width: u32, height: u32) -> Vec<u8> {
    encode_with(&gradient(width, height, false), format)
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

/// `channels` samples a pixel (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) of a
/// photograph's worth of detail: smooth gradients under a seeded noise
/// bit, so that PNG, GIF and WebP files come out at least as large as a
/// real photograph's (a 24 MP RGB PNG of a photograph is about 24 MB, a
/// third of a byte a sample; these come out at about 0.38). The
/// alpha channel is a smooth ramp that never reaches 255.
pub fn photo_like(width: u32, height: u32, channels: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut out = Vec::with_capacity(width as usize * height as usize * channels);
    for y in 0..height {
        for x in 0..width {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = state.to_le_bytes();
            let base = [
                x * 200 / width.max(1),
                y * 200 / height.max(1),
                (x + y) * 100 / (width + height).max(1) + 50,
            ];
            for c in 0..channels {
                let sample = if channels.is_multiple_of(2) && c == channels - 1 {
                    // Alpha: a ramp from 60 to 250, no noise.
                    60 + x * 190 / width.max(1)
                } else {
                    let n = u32::from(noise[c] & 1);
                    base[c % 3] + 16 + n
                };
                out.push(u8::try_from(sample.min(255)).unwrap_or(u8::MAX));
            }
        }
    }
    out
}

/// Gradients with five bits of seeded noise as a lossy WebP (libwebp at
/// `quality`): [`photo_like`]'s one bit of noise is what a lossy encoder
/// drops first, so its files come out far smaller than a photograph's.
pub fn photo_like_webp(width: u32, height: u32, quality: f32) -> Vec<u8> {
    let mut pixels = photo_like(width, height, 3);
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    for sample in &mut pixels {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *sample = sample.saturating_add((state >> 40) as u8 & 31);
    }
    let mut config = webp::WebPConfig::new().expect("libwebp's defaults");
    config.quality = quality;
    // The fastest method: the same kind of file, in a fraction of the time.
    config.method = 0;
    webp::Encoder::from_rgb(&pixels, width, height)
        .encode_advanced(&config)
        .expect("libwebp encodes")
        .to_vec()
}

/// [`photo_like`] pixels as a PNG (`bits` 8 or 16, each 16-bit sample the
/// 8-bit one over two bits of noise), at the default compression; `interlaced` writes Adam7, which the `png` crate cannot.
pub fn photo_like_png(
    width: u32,
    height: u32,
    channels: usize,
    bits: u8,
    interlaced: bool,
) -> Vec<u8> {
    let samples = photo_like(width, height, channels);
    let samples: Vec<u8> = if bits == 16 {
        // Two bits of noise in each low byte, as a camera's 16-bit output
        // has (a 16 MP photo's 16-bit PNG: about 43 MB).
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        samples
            .iter()
            .flat_map(|&hi| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                [hi, (state as u8) & 0xC0]
            })
            .collect()
    } else {
        samples
    };
    let color_type: u8 = match channels {
        1 => 0,
        2 => 4,
        3 => 2,
        _ => 6,
    };
    let bytes_per_pixel = channels * usize::from(bits / 8);
    let mut raw = Vec::with_capacity(samples.len() + height as usize * 8);
    let mut add_rows =
        |xs: std::ops::Range<u32>, x_step: u32, ys: std::iter::StepBy<std::ops::Range<u32>>| {
            for y in ys {
                raw.push(0); // filter: none
                for x in xs.clone().step_by(x_step as usize) {
                    let at = (y as usize * width as usize + x as usize) * bytes_per_pixel;
                    raw.extend_from_slice(&samples[at..at + bytes_per_pixel]);
                }
            }
        };
    if interlaced {
        for (xs, xo, ys, yo) in [
            (8, 0, 8, 0),
            (8, 4, 8, 0),
            (4, 0, 8, 4),
            (4, 2, 4, 0),
            (2, 0, 4, 2),
            (2, 1, 2, 0),
            (1, 0, 2, 1),
        ] {
            if xo < width && yo < height {
                add_rows(xo..width, xs, (yo..height).step_by(ys as usize));
            }
        }
    } else {
        add_rows(0..width, 1, (0..height).step_by(1));
    }
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut zlib, &raw).expect("deflate");
    let idat = zlib.finish().expect("deflate");
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[bits, color_type, 0, 0, u8::from(interlaced)]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", &ihdr[..]),
        (b"IDAT", &idat[..]),
        (b"IEND", &[][..]),
    ] {
        png.extend_from_slice(&u32::try_from(data.len()).expect("a chunk").to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32fast::hash(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    png
}

/// `png` with a `tEXt` chunk (metadata the optimized copy leaves out)
/// after its header.
pub fn with_text(png: &[u8], keyword: &str, text: &str) -> Vec<u8> {
    let mut chunk = u32::try_from(keyword.len() + 1 + text.len())
        .expect("a chunk")
        .to_be_bytes()
        .to_vec();
    chunk.extend_from_slice(b"tEXt");
    chunk.extend_from_slice(keyword.as_bytes());
    chunk.push(0);
    chunk.extend_from_slice(text.as_bytes());
    let crc = crc32fast::hash(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    // The signature (8) and IHDR (25) come first.
    [&png[..33], &chunk, &png[33..]].concat()
}

/// [`photo_like`] pixels as a one-frame GIF of 256 greys and colours.
pub fn photo_like_gif(width: u32, height: u32) -> Vec<u8> {
    let grey = photo_like(width, height, 1);
    let palette: Vec<u8> = (0..=255_u8)
        .flat_map(|v| [v, v / 2 + 64, 255 - v])
        .collect();
    let mut out = Vec::new();
    {
        let w = u16::try_from(width).expect("GIF width");
        let h = u16::try_from(height).expect("GIF height");
        let mut encoder = gif::Encoder::new(&mut out, w, h, &palette).expect("GIF encoder");
        let frame = gif::Frame {
            width: w,
            height: h,
            buffer: std::borrow::Cow::Owned(grey),
            ..gif::Frame::default()
        };
        encoder.write_frame(&frame).expect("GIF frame");
    }
    out
}
