//! Decoding PNG, GIF and lossy WebP a row at a time into a box shrink: shrink on load for
//! formats that have no scaled decode, as libvips' `shrink` does for them.
//! The derivatives of a 50 MP image then never need its decoded pixels (a
//! 50 MP RGBA PNG decoded whole is 200 MB, more than a hosted instance
//! has): the job holds the decoder's rows and the shrunk image, about twice
//! the preview's width.
//!
//! - PNG: the `png` crate's [`png::Reader::next_interlaced_row`], in 8 bits
//!   (palette and low depths expanded, 16 bits cut to 8, as the full decode
//!   does); Adam7 rows are placed by their pass and line.
//! - GIF: the first frame's rows from the `gif` crate
//!   ([`gif::Decoder::fill_buffer`]), interlaced rows placed by their pass,
//!   the frame put on its logical screen (transparent outside it, as the
//!   `image` crate renders a first frame).
//! - Lossy WebP without alpha: RGB lines from `vp8_rows` (Darkroom's fork of
//!   image-webp's VP8 decoder, `crates/vp8-decoder`), which holds two
//!   macroblock rows instead of the frame; the same pixels as the full
//!   decode.
//!
//! The shrink adds whole source pixels into bins of k×k (k the integer
//! factor that leaves at least twice the wanted width: libvips'
//! shrink-then-reduce), in linear light, colours weighted by their alpha so
//! that invisible pixels give no colour. Rows that arrive in order need one
//! band of sums; interlaced rows a sum per output pixel. Written here
//! because `fast_image_resize`, like every resizer on crates.io, takes the
//! whole source image.

use std::io::Cursor;
use std::sync::OnceLock;

use image::DynamicImage;
use image::metadata::Orientation;

use crate::pipeline::{PipelineError, decode_error};

/// A PNG, GIF or lossy WebP opened at its first row: what the pipeline decides on
/// before any pixel is decoded.
pub(crate) enum Source<'a> {
    /// A PNG reader past its header, set to 8-bit output.
    Png(Box<png::Reader<Cursor<&'a [u8]>>>),
    /// A GIF decoder at its first frame, set to RGBA output.
    Gif(Box<gif::Decoder<Cursor<&'a [u8]>>>),
    /// A lossy WebP's VP8 decoder past its frame header, with what the
    /// container says of the picture.
    Webp {
        decoder: Box<vp8_rows::Decoder<Cursor<&'a [u8]>>>,
        orientation: Orientation,
        icc_profile: Option<&'a [u8]>,
    },
}

impl<'a> Source<'a> {
    /// Opens a PNG.
    pub(crate) fn png(bytes: &'a [u8]) -> Result<Self, PipelineError> {
        let mut decoder = png::Decoder::new(Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        Ok(Self::Png(Box::new(
            decoder.read_info().map_err(decode_error)?,
        )))
    }

    /// Opens a GIF at its first frame.
    pub(crate) fn gif(bytes: &'a [u8]) -> Result<Self, PipelineError> {
        let mut options = gif::DecodeOptions::new();
        options.set_color_output(gif::ColorOutput::RGBA);
        let mut decoder = options
            .read_info(Cursor::new(bytes))
            .map_err(decode_error)?;
        decoder
            .next_frame_info()
            .map_err(decode_error)?
            .ok_or_else(|| decode_error("the GIF has no frame"))?;
        Ok(Self::Gif(Box::new(decoder)))
    }

    /// Opens a lossy WebP; `None` for one this module does not stream
    /// (lossless, with alpha, or animated: decoded whole).
    pub(crate) fn webp(bytes: &'a [u8]) -> Result<Option<Self>, PipelineError> {
        let Some(chunks) = StreamedWebp::find(bytes)? else {
            return Ok(None);
        };
        let decoder = vp8_rows::Decoder::new(Cursor::new(chunks.vp8)).map_err(decode_error)?;
        Ok(Some(Self::Webp {
            decoder: Box::new(decoder),
            orientation: chunks.orientation,
            icc_profile: chunks.icc_profile,
        }))
    }

    /// The image's stored width and height.
    pub(crate) fn dimensions(&self) -> (u32, u32) {
        match self {
            Self::Png(reader) => (reader.info().width, reader.info().height),
            Self::Gif(decoder) => (u32::from(decoder.width()), u32::from(decoder.height())),
            Self::Webp { decoder, .. } => {
                let (width, height) = decoder.dimensions();
                (u32::from(width), u32::from(height))
            }
        }
    }

    /// Whether the samples are 8 bits or fewer (a deeper image's only
    /// lossless copy is its own).
    pub(crate) fn eight_bit(&self) -> bool {
        match self {
            Self::Png(reader) => reader.info().bit_depth != png::BitDepth::Sixteen,
            Self::Gif(_) | Self::Webp { .. } => true,
        }
    }

    /// The EXIF orientation (PNG's `eXIf`); invalid or missing: as stored.
    pub(crate) fn orientation(&self) -> Orientation {
        match self {
            Self::Png(reader) => reader
                .info()
                .exif_metadata
                .as_deref()
                .and_then(Orientation::from_exif_chunk)
                .unwrap_or(Orientation::NoTransforms),
            Self::Gif(_) => Orientation::NoTransforms,
            Self::Webp { orientation, .. } => *orientation,
        }
    }

    /// The embedded ICC profile's bytes.
    pub(crate) fn icc_profile(&self) -> Option<&[u8]> {
        match self {
            Self::Png(reader) => reader.info().icc_profile.as_deref(),
            Self::Gif(_) => None,
            Self::Webp { icc_profile, .. } => *icc_profile,
        }
    }

    /// Decodes every row into a box shrink by `k` (see [`factor`]), as
    /// stored (not turned): 8-bit grey, RGB or RGBA.
    pub(crate) fn shrink(self, k: u32) -> Result<DynamicImage, PipelineError> {
        match self {
            Self::Png(reader) => shrink_png(*reader, k),
            Self::Gif(decoder) => shrink_gif(*decoder, k),
            Self::Webp { decoder, .. } => {
                let (width, height) = decoder.dimensions();
                let mut shrink = Shrink::new(u32::from(width), u32::from(height), 3, k, true);
                decoder
                    .decode_rows(|y, rgb| shrink.add_row(y, 0, 1, rgb))
                    .map_err(decode_error)?;
                shrink.finish()
            }
        }
    }
}

/// What a lossy WebP's chunks say, found by walking them without decoding
/// (the upload's memory estimate needs no more; the VP8 decoder copies the
/// file's partitions as it opens).
pub(crate) struct StreamedWebp<'a> {
    /// The `VP8 ` chunk's payload.
    vp8: &'a [u8],
    /// From the `EXIF` chunk; invalid or missing: as stored.
    pub(crate) orientation: Orientation,
    /// The `ICCP` chunk's payload.
    icc_profile: Option<&'a [u8]>,
}

impl<'a> StreamedWebp<'a> {
    /// The chunks of a WebP [`Source::webp`] streams; `None` for one it
    /// does not (lossless, with alpha, or animated).
    pub(crate) fn find(bytes: &'a [u8]) -> Result<Option<Self>, PipelineError> {
        let (mut vp8, mut orientation, mut icc_profile) = (None, Orientation::NoTransforms, None);
        for chunk in crate::webp::chunks(bytes) {
            let (fourcc, range) = chunk.map_err(decode_error)?;
            let data = bytes.get(range.start + 8..range.end).unwrap_or_default();
            match &fourcc {
                b"VP8 " if vp8.is_none() => vp8 = Some(data),
                b"ALPH" | b"VP8L" | b"ANIM" | b"ANMF" => return Ok(None),
                b"EXIF" => {
                    orientation =
                        Orientation::from_exif_chunk(data).unwrap_or(Orientation::NoTransforms);
                }
                b"ICCP" => icc_profile = Some(data),
                _ => {}
            }
        }
        Ok(vp8.map(|vp8| Self {
            vp8,
            orientation,
            icc_profile,
        }))
    }
}

/// The integer factor that leaves at least `2 × target` pixels of `width`,
/// 1 when `width` is at most `4 × target` (the resize takes it as it is).
pub(crate) fn factor(width: u32, target: u32) -> u32 {
    if width <= target.saturating_mul(4) {
        1
    } else {
        (width / target.saturating_mul(2)).max(1)
    }
}

/// The bins' size for a `width` × `height` image shrunk by `k`.
pub(crate) fn shrunk_size(width: u32, height: u32, k: u32) -> (u32, u32) {
    (width.div_ceil(k), height.div_ceil(k))
}

fn shrink_png(
    mut reader: png::Reader<Cursor<&[u8]>>,
    k: u32,
) -> Result<DynamicImage, PipelineError> {
    let info = reader.info();
    let (width, height, interlaced) = (info.width, info.height, info.interlaced);
    let (color, _) = reader.output_color_type();
    let grey_alpha = color == png::ColorType::GrayscaleAlpha;
    let channels = match color {
        png::ColorType::Grayscale => 1,
        png::ColorType::Rgb => 3,
        // Grey with alpha is worked on as RGBA, as the full decode does.
        _ => 4,
    };
    let mut shrink = Shrink::new(width, height, channels, k, !interlaced);
    let mut passes = Adam7::new(width, height);
    let mut expanded = Vec::new();
    let mut y = 0;
    while let Some(row) = reader.next_interlaced_row().map_err(decode_error)? {
        let data = if grey_alpha {
            expanded.clear();
            expanded.extend(
                row.data()
                    .chunks_exact(2)
                    .flat_map(|p| [p[0], p[0], p[0], p[1]]),
            );
            &expanded[..]
        } else {
            row.data()
        };
        match row.interlace() {
            png::InterlaceInfo::Null(_) => {
                shrink.add_row(y, 0, 1, data);
                y += 1;
            }
            png::InterlaceInfo::Adam7(info) => {
                let (pass, line, place) = passes
                    .next()
                    .ok_or_else(|| decode_error("more Adam7 rows than the image has"))?;
                if *info != png::Adam7Info::new(pass, line, width) {
                    return Err(decode_error("Adam7 rows out of order"));
                }
                shrink.add_row(place.y, place.x, place.step, data);
            }
        }
    }
    shrink.finish()
}

/// Where an Adam7 pass row's samples go.
struct Place {
    y: u32,
    x: u32,
    step: u32,
}

/// The Adam7 rows in the order a PNG stores them: (pass, line, place),
/// skipping empty passes as the `png` crate does.
struct Adam7 {
    width: u32,
    height: u32,
    pass: u8,
    line: u32,
}

/// Per pass: x step, x offset, y step, y offset.
const ADAM7: [(u32, u32, u32, u32); 7] = [
    (8, 0, 8, 0),
    (8, 4, 8, 0),
    (4, 0, 8, 4),
    (4, 2, 4, 0),
    (2, 0, 4, 2),
    (2, 1, 2, 0),
    (1, 0, 2, 1),
];

impl Adam7 {
    fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pass: 1,
            line: 0,
        }
    }
}

impl Iterator for Adam7 {
    type Item = (u8, u32, Place);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (xs, xo, ys, yo) = *ADAM7.get(usize::from(self.pass) - 1)?;
            let samples = self.width.saturating_sub(xo).div_ceil(xs);
            let lines = self.height.saturating_sub(yo).div_ceil(ys);
            if self.line < lines && samples > 0 {
                let line = self.line;
                self.line += 1;
                let place = Place {
                    y: yo + line * ys,
                    x: xo,
                    step: xs,
                };
                return Some((self.pass, line, place));
            }
            self.pass += 1;
            self.line = 0;
        }
    }
}

fn shrink_gif(
    mut decoder: gif::Decoder<Cursor<&[u8]>>,
    k: u32,
) -> Result<DynamicImage, PipelineError> {
    let (width, height) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let frame = decoder
        .current_frame_info()
        .ok_or_else(|| decode_error("the GIF has no frame"))?;
    let (left, top) = (u32::from(frame.left), u32::from(frame.top));
    let (frame_width, frame_height) = (u32::from(frame.width), u32::from(frame.height));
    let interlaced = frame.interlaced;
    let mut shrink = Shrink::new(width, height, 4, k, !interlaced);
    // The part of each frame row on the screen.
    let visible = usize::try_from(width.saturating_sub(left).min(frame_width)).unwrap_or(0) * 4;
    let mut row = vec![0; usize::from(frame.width) * 4];
    let passes: &[(u32, u32)] = if interlaced {
        &[(0, 8), (4, 8), (2, 4), (1, 2)]
    } else {
        &[(0, 1)]
    };
    for &(start, step) in passes {
        for frame_y in (start..frame_height).step_by(step as usize) {
            if !decoder.fill_buffer(&mut row).map_err(decode_error)? {
                return Err(decode_error("the GIF's first frame is cut short"));
            }
            let y = top + frame_y;
            if y < height && visible > 0 {
                shrink.add_row(y, left, 1, &row[..visible]);
            }
        }
    }
    shrink.finish()
}

/// sRGB 8-bit to linear 16-bit, the formula `fast_image_resize`'s sRGB
/// mapper uses.
fn to_linear() -> &'static [u16; 256] {
    static TABLE: OnceLock<[u16; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        std::array::from_fn(|i| {
            let v = i as f32 / 255.0;
            let linear = if v <= 0.040_45 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            };
            (linear * 65535.0).round() as u16
        })
    })
}

/// Sums of source pixels per bin, then the bins' means.
struct Shrink {
    width: u32,
    height: u32,
    k: u32,
    out_width: u32,
    out_height: u32,
    channels: usize,
    /// One band of bins (rows in order) or every bin (interlaced).
    banded: bool,
    /// Per bin and channel: linear colour (times alpha / 256 with alpha),
    /// alpha as is; each colour addend shifted right by `shift` so that no
    /// bin can overflow.
    sums: Sums,
    shift: u32,
    /// The band the sums hold, when banded.
    band: u32,
    /// The bins' means: linear 16-bit colour, alpha scaled to 16 bits,
    /// as `fast_image_resize` takes 16-bit images (native-endian bytes).
    out: Vec<u8>,
}

/// The bins' sums. A sum per shrunk pixel (interlaced rows) of bins up to
/// 4×4 is kept in 16 bits, of colours cut to 12 bits of linear light (still
/// finer than 8-bit sRGB's smallest step, 1/3295): half the memory, which
/// is what lets a 50 MP interlaced RGBA PNG shown upright from its side fit.
enum Sums {
    Wide(Vec<u32>),
    Narrow(Vec<u16>),
}

/// A bin's sum.
trait Sum: Copy {
    fn plus(self, v: u32) -> Self;
    fn value(self) -> u64;
    const ZERO: Self;
}

impl Sum for u32 {
    fn plus(self, v: u32) -> Self {
        self + v
    }
    fn value(self) -> u64 {
        u64::from(self)
    }
    const ZERO: Self = 0;
}

impl Sum for u16 {
    fn plus(self, v: u32) -> Self {
        // `Shrink::new` sizes `shift` so that no bin passes 65535.
        self.wrapping_add(v as u16)
    }
    fn value(self) -> u64 {
        u64::from(self)
    }
    const ZERO: Self = 0;
}

/// The bits `n` values need: ⌈log2 n⌉.
fn bits_for(n: u64) -> u32 {
    u64::BITS - n.saturating_sub(1).leading_zeros()
}

/// Adds a row's pixels (the `i`th at `x0 + i × step`) into one band of bins.
#[expect(clippy::too_many_arguments, reason = "one inner loop, its constants")]
fn add_pixels<T: Sum>(
    bins: &mut [T],
    channels: usize,
    k: u32,
    width: u32,
    shift: u32,
    x0: u32,
    step: u32,
    pixels: &[u8],
) {
    if x0 == 0 && step == 1 {
        // A whole row: bin by bin, no division per pixel.
        let pixels = &pixels[..pixels.len().min(width as usize * channels)];
        match channels {
            1 => add_row_in_bins::<T, 1>(bins, k, shift, pixels),
            3 => add_row_in_bins::<T, 3>(bins, k, shift, pixels),
            _ => add_row_in_bins::<T, 4>(bins, k, shift, pixels),
        }
        return;
    }
    let linear = to_linear();
    for (i, pixel) in pixels.chunks_exact(channels).enumerate() {
        let x = x0 + i as u32 * step;
        if x >= width {
            break;
        }
        let bin = &mut bins[(x / k) as usize * channels..][..channels];
        if channels == 4 {
            let alpha = u32::from(pixel[3]);
            for c in 0..3 {
                bin[c] =
                    bin[c].plus(((u32::from(linear[usize::from(pixel[c])]) * alpha) >> 8) >> shift);
            }
            bin[3] = bin[3].plus(alpha);
        } else {
            for c in 0..channels {
                bin[c] = bin[c].plus(u32::from(linear[usize::from(pixel[c])]) >> shift);
            }
        }
    }
}

/// [`add_pixels`] for a whole row of `C`-channel pixels: each bin's `k`
/// pixels summed, then added to the bin (the same sums: every addend is
/// shifted alike, and the bin's total fits, so the order does not matter).
fn add_row_in_bins<T: Sum, const C: usize>(bins: &mut [T], k: u32, shift: u32, pixels: &[u8]) {
    let linear = to_linear();
    for (bin, block) in bins.chunks_exact_mut(C).zip(pixels.chunks(k as usize * C)) {
        let mut sum = [0_u32; C];
        for pixel in block.chunks_exact(C) {
            if C == 4 {
                let alpha = u32::from(pixel[3]);
                for c in 0..3 {
                    sum[c] += ((u32::from(linear[usize::from(pixel[c])]) * alpha) >> 8) >> shift;
                }
                sum[3] += alpha;
            } else {
                for c in 0..C {
                    sum[c] += u32::from(linear[usize::from(pixel[c])]) >> shift;
                }
            }
        }
        for c in 0..C {
            bin[c] = bin[c].plus(sum[c]);
        }
    }
}

/// Writes one band's means (native-endian 16-bit) and empties its bins.
fn mean_bins<T: Sum>(
    bins: &mut [T],
    out: &mut [u8],
    channels: usize,
    shift: u32,
    bin_height: u64,
    bin_width: impl Fn(usize) -> u64,
) {
    let clamp = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
    let inverse = |count: u64| (1_u64 << 32).div_ceil(count.max(1));
    let full = bin_width(0) * bin_height;
    let full_inverse = inverse(full);
    let mut mean = [0_u16; 4];
    for (bx, (bin, bytes)) in bins
        .chunks_exact_mut(channels)
        .zip(out.chunks_exact_mut(channels * 2))
        .enumerate()
    {
        let count = bin_width(bx) * bin_height;
        if channels == 4 {
            let alpha = bin[3].value();
            for c in 0..3 {
                mean[c] = (bin[c].value() << (8 + shift))
                    .checked_div(alpha)
                    .map_or(0, clamp);
            }
            mean[3] = clamp(alpha * 257 / count);
        } else {
            // A multiplication by 2³²/count rounded up, not a division per
            // value (which was a tenth of a lossy WebP's job): the quotient
            // or one more, a 65535th of a level in linear light.
            let inverse = if count == full {
                full_inverse
            } else {
                inverse(count)
            };
            // In 64 bits (a 128-bit product is a library call in wasm): a
            // bin's sum stays under 2³² for any k up to 256.
            for c in 0..channels {
                let sum = bin[c].value() << shift;
                let quotient = sum
                    .checked_mul(inverse)
                    .map_or_else(|| sum / count, |product| product >> 32);
                mean[c] = clamp(quotient);
            }
        }
        for (c, pair) in bytes.chunks_exact_mut(2).enumerate() {
            pair.copy_from_slice(&mean[c].to_ne_bytes());
        }
        bin.fill(T::ZERO);
    }
}

impl Shrink {
    fn new(width: u32, height: u32, channels: usize, k: u32, in_order: bool) -> Self {
        let k = k.max(1);
        let (out_width, out_height) = shrunk_size(width, height, k);
        let banded = in_order;
        let len = if banded { 1 } else { out_height as usize } * out_width as usize * channels;
        // The fullest bin holds k × min(k, height) pixels of up to 65535.
        let fullest = bits_for(u64::from(k) * u64::from(k.min(height)));
        let (sums, shift) = if !banded && fullest <= 4 {
            (Sums::Narrow(vec![0; len]), fullest.max(4))
        } else {
            (Sums::Wide(vec![0; len]), fullest.saturating_sub(16))
        };
        Self {
            width,
            height,
            k,
            out_width,
            out_height,
            channels,
            banded,
            sums,
            shift,
            band: 0,
            out: vec![0; out_width as usize * out_height as usize * channels * 2],
        }
    }

    /// Adds the pixels of row `y`, the `i`th at `x0 + i × step`; pixels
    /// past the image's width are ignored.
    fn add_row(&mut self, y: u32, x0: u32, step: u32, pixels: &[u8]) {
        if y >= self.height {
            return;
        }
        let band = y / self.k;
        if self.banded && band != self.band {
            self.flush_band();
            self.band = band;
        }
        let row = if self.banded { 0 } else { band as usize };
        let len = self.out_width as usize * self.channels;
        let (channels, k, width, shift) = (self.channels, self.k, self.width, self.shift);
        match &mut self.sums {
            Sums::Wide(sums) => {
                let bins = &mut sums[row * len..][..len];
                add_pixels(bins, channels, k, width, shift, x0, step, pixels);
            }
            Sums::Narrow(sums) => {
                let bins = &mut sums[row * len..][..len];
                add_pixels(bins, channels, k, width, shift, x0, step, pixels);
            }
        }
    }

    /// Turns the sums of row `sums_row` of bins into the means of band
    /// `band`.
    fn mean_band(&mut self, band: u32, sums_row: usize) {
        let (k, width, channels, shift) = (self.k, self.width, self.channels, self.shift);
        let len = self.out_width as usize * channels;
        let bin_height = u64::from(k.min(self.height - band * k));
        let bin_width = |bx: usize| u64::from(k.min(width - bx as u32 * k));
        let out = &mut self.out[band as usize * len * 2..][..len * 2];
        match &mut self.sums {
            Sums::Wide(sums) => {
                let bins = &mut sums[sums_row * len..][..len];
                mean_bins(bins, out, channels, shift, bin_height, bin_width);
            }
            Sums::Narrow(sums) => {
                let bins = &mut sums[sums_row * len..][..len];
                mean_bins(bins, out, channels, shift, bin_height, bin_width);
            }
        }
    }

    fn flush_band(&mut self) {
        if self.band < self.out_height {
            self.mean_band(self.band, 0);
        }
    }

    /// The shrunk image, back in 8-bit sRGB.
    fn finish(mut self) -> Result<DynamicImage, PipelineError> {
        if self.banded {
            self.flush_band();
        } else {
            for band in 0..self.out_height {
                self.mean_band(band, band as usize);
            }
        }
        self.sums = Sums::Wide(Vec::new());
        let (w, h) = (self.out_width, self.out_height);
        let (linear_type, srgb_type) = match self.channels {
            1 => (
                fast_image_resize::PixelType::U16,
                fast_image_resize::PixelType::U8,
            ),
            3 => (
                fast_image_resize::PixelType::U16x3,
                fast_image_resize::PixelType::U8x3,
            ),
            _ => (
                fast_image_resize::PixelType::U16x4,
                fast_image_resize::PixelType::U8x4,
            ),
        };
        let linear = fast_image_resize::images::Image::from_vec_u8(w, h, self.out, linear_type)
            .map_err(|e| PipelineError::Encode(e.to_string()))?;
        let mut srgb = fast_image_resize::images::Image::new(w, h, srgb_type);
        crate::pipeline::srgb_mapper()
            .backward_map(&linear, &mut srgb)
            .map_err(|e| PipelineError::Encode(e.to_string()))?;
        drop(linear);
        crate::pipeline::dynamic_image(w, h, srgb.into_vec(), srgb_type)
            .ok_or_else(|| PipelineError::Encode("the shrunk image has the wrong size".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_png, gradient};
    use image::{RgbImage, RgbaImage};

    /// The same shrink done the plain way: every pixel decoded, each bin's
    /// linear mean.
    fn reference(image: &RgbImage, k: u32) -> RgbImage {
        let (w, h) = shrunk_size(image.width(), image.height(), k);
        let linear = to_linear();
        RgbImage::from_fn(w, h, |bx, by| {
            let mut sum = [0_u64; 3];
            let mut n = 0;
            for y in by * k..((by + 1) * k).min(image.height()) {
                for x in bx * k..((bx + 1) * k).min(image.width()) {
                    let p = image.get_pixel(x, y);
                    for c in 0..3 {
                        sum[c] += u64::from(linear[usize::from(p[c])]);
                    }
                    n += 1;
                }
            }
            image::Rgb(sum.map(|s| {
                let mean = (s / n) as f32 / 65535.0;
                let srgb = if mean <= 0.003_130_8 {
                    mean * 12.92
                } else {
                    1.055 * mean.powf(1.0 / 2.4) - 0.055
                };
                (srgb * 255.0).round() as u8
            }))
        })
    }

    /// The largest difference of one sample between two images.
    fn worst_difference(a: &RgbImage, b: &RgbImage) -> Option<u8> {
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y))
            .max()
    }

    #[test]
    fn a_streamed_png_shrinks_to_the_linear_mean_of_each_bin_interlaced_or_not() {
        // libvips wrote the interlaced file (Adam7); the other is its pixels
        // written plainly. Targets small enough for a shrink of 3.
        let interlaced = include_bytes!("../tests/images/interlaced.png").to_vec();
        let pixels = image::load_from_memory(&interlaced)
            .expect("decodes")
            .to_rgb8();
        let plain = encode_png(&DynamicImage::ImageRgb8(pixels.clone()));
        let target = 50;
        let expected = reference(&pixels, factor(pixels.width(), target));
        assert_eq!(factor(pixels.width(), target), 3);
        for (name, png) in [("plain", plain), ("interlaced", interlaced)] {
            let shrunk = Source::png(&png)
                .and_then(|s| s.shrink(factor(pixels.width(), target)))
                .expect("shrunk")
                .to_rgb8();
            assert_eq!(shrunk.dimensions(), expected.dimensions(), "{name}");
            let worst = worst_difference(&shrunk, &expected);
            assert!(worst <= Some(1), "{name}: off by {worst:?}");
        }
    }

    #[test]
    fn a_lossy_webp_streams_to_the_linear_means_of_the_full_decodes_pixels() {
        let webp = include_bytes!("../tests/images/lossy.webp");
        let pixels = image::load_from_memory(webp).expect("decodes").to_rgb8();
        for k in [1, 3] {
            let expected = reference(&pixels, k);
            let shrunk = Source::webp(webp)
                .expect("opens")
                .expect("a lossy WebP without alpha is streamed")
                .shrink(k)
                .expect("shrunk")
                .to_rgb8();
            assert_eq!(shrunk.dimensions(), expected.dimensions(), "k = {k}");
            let worst = worst_difference(&shrunk, &expected);
            assert!(worst <= Some(1), "k = {k}: off by {worst:?}");
        }
    }

    #[test]
    fn a_webp_with_alpha_or_lossless_is_not_streamed() {
        let alpha = include_bytes!("../tests/images/lossy-alpha.webp");
        assert!(Source::webp(alpha).expect("reads").is_none());
        let lossless =
            crate::testing::encode_with(&gradient(30, 20, false), image::ImageFormat::WebP);
        assert!(Source::webp(&lossless).expect("reads").is_none());
    }

    #[test]
    fn the_factor_leaves_at_least_twice_the_target_and_none_below_four_times() {
        assert_eq!(factor(3200, 800), 1);
        assert_eq!(factor(3201, 800), 2);
        assert_eq!(factor(6000, 800), 3);
        assert_eq!(factor(8660, 800), 5);
        for width in [3201_u32, 4799, 4800, 6000, 8660, 65_535] {
            let out = width.div_ceil(factor(width, 800));
            assert!((1600..3200).contains(&out), "{width} -> {out}");
        }
    }

    #[test]
    fn invisible_pixels_give_no_colour_to_their_bin() {
        // Left half: transparent red; right half: opaque blue; bins of 4
        // straddle nothing, so only a bin's own pixels count.
        let image = DynamicImage::ImageRgba8(RgbaImage::from_fn(1608, 8, |x, _| {
            if x % 4 < 2 {
                image::Rgba([255, 0, 0, 0])
            } else {
                image::Rgba([0, 0, 255, 255])
            }
        }));
        let shrunk = Source::png(&encode_png(&image))
            .and_then(|s| s.shrink(factor(1608, 200)))
            .expect("shrunk")
            .to_rgba8();
        assert_eq!(factor(1608, 200), 4);
        for p in shrunk.pixels() {
            assert_eq!([p[0], p[1], p[2]], [0, 0, 255], "no red bleeds in");
            assert!((127..=128).contains(&p[3]), "half covered: {}", p[3]);
        }
    }

    #[test]
    fn a_gif_frame_smaller_than_its_screen_is_placed_on_transparency() {
        let mut out = Vec::new();
        {
            let mut encoder = gif::Encoder::new(&mut out, 1000, 40, &[]).expect("encoder");
            let mut pixels = vec![0_u8; 500 * 40 * 4];
            for p in pixels.chunks_exact_mut(4) {
                p.copy_from_slice(&[0, 200, 0, 255]);
            }
            let mut frame = gif::Frame::from_rgba_speed(500, 40, &mut pixels, 30);
            frame.left = 500;
            frame.interlaced = true;
            encoder.write_frame(&frame).expect("frame");
        }
        let shrunk = Source::gif(&out)
            .and_then(|s| s.shrink(factor(1000, 100)))
            .expect("shrunk")
            .to_rgba8();
        assert_eq!(shrunk.dimensions(), (200, 8));
        assert_eq!(shrunk.get_pixel(10, 4)[3], 0, "left of the frame: clear");
        assert_eq!(shrunk.get_pixel(150, 4).0, [0, 200, 0, 255], "the frame");
    }
}
