//! Unit tests of the lossless Huffman re-coder: the pixels never change,
//! the file shrinks, and what it cannot re-code it leaves alone or refuses.

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use super::*;
use crate::testing::gradient;

/// A noisy gradient (photo-like detail), JPEG-encoded with the standard
/// tables, as cameras and most encoders write them.
fn jpeg(
    width: u16,
    height: u16,
    setup: impl FnOnce(&mut Encoder<&mut Vec<u8>>),
    grey: bool,
) -> Vec<u8> {
    jpeg_at(85, width, height, setup, grey)
}

fn jpeg_at(
    quality: u8,
    width: u16,
    height: u16,
    setup: impl FnOnce(&mut Encoder<&mut Vec<u8>>),
    grey: bool,
) -> Vec<u8> {
    let image = gradient(u32::from(width), u32::from(height), false).to_rgb8();
    let mut seed = 7u32;
    let mut pixels = image.into_raw();
    for p in &mut pixels {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *p = p.saturating_add((seed >> 27) as u8);
    }
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, quality);
    setup(&mut encoder);
    if grey {
        let luma: Vec<u8> = pixels.chunks(3).map(|c| c[0]).collect();
        encoder
            .encode(&luma, width, height, ColorType::Luma)
            .expect("encodes");
    } else {
        encoder
            .encode(&pixels, width, height, ColorType::Rgb)
            .expect("encodes");
    }
    out
}

/// A smooth picture (soft gradients, two flat shapes, faint grain), like
/// a painting or a sky: most of its blocks have nothing past their first
/// few coefficients, which is where progressive scans save.
fn smooth_jpeg(
    width: u16,
    height: u16,
    setup: impl FnOnce(&mut Encoder<&mut Vec<u8>>),
    grey: bool,
) -> Vec<u8> {
    let (w, h) = (u32::from(width), u32::from(height));
    let mut seed = 3u32;
    let image = image::RgbImage::from_fn(w, h, |x, y| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        // Grain on one pixel in 64.
        let grain = u8::from(seed >> 26 == 0);
        let (dx, dy) = (
            i64::from(x) - i64::from(w / 3),
            i64::from(y) - i64::from(h / 2),
        );
        if dx * dx + dy * dy < i64::from(h * h / 9) {
            image::Rgb([200, 60 + grain, 40])
        } else if x > w * 2 / 3 && y < h / 3 {
            image::Rgb([30, 30, 90 + grain])
        } else {
            let g = |v: u32, max: u32, base: u32| (base + v * 40 / max.max(1)) as u8 + grain;
            image::Rgb([g(x, w, 90), g(y, h, 120), g(x + y, w + h, 150)])
        }
    });
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, 90);
    setup(&mut encoder);
    if grey {
        let luma: Vec<u8> = image.pixels().map(|p| p[1]).collect();
        encoder
            .encode(&luma, width, height, ColorType::Luma)
            .expect("encodes");
    } else {
        encoder
            .encode(image.as_raw(), width, height, ColorType::Rgb)
            .expect("encodes");
    }
    out
}

/// The frame header's marker: 0xC0 sequential, 0xC2 progressive.
fn frame_marker(jpeg: &[u8]) -> Option<u8> {
    let mut pos = 2;
    while let (Some(&0xFF), Some(&marker)) = (jpeg.get(pos), jpeg.get(pos + 1)) {
        if matches!(marker, 0xC0..=0xC3) {
            return Some(marker);
        }
        pos += 2 + usize::from(u16::from_be_bytes([
            *jpeg.get(pos + 2)?,
            *jpeg.get(pos + 3)?,
        ]));
    }
    None
}

fn pixels(jpeg: &[u8]) -> Vec<u8> {
    let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(jpeg));
    decoder.decode().expect("decodes")
}

fn assert_lossless_and_smaller(original: &[u8]) -> Vec<u8> {
    let recoded = optimize_huffman(original)
        .expect("re-codes")
        .expect("a sequential JPEG");
    assert_eq!(pixels(&recoded), pixels(original), "the same pixels");
    assert!(
        recoded.len() < original.len(),
        "{} → {} bytes",
        original.len(),
        recoded.len()
    );
    recoded
}

#[test]
fn a_baseline_jpeg_recoded_keeps_every_pixel_and_shrinks() {
    for sampling in [
        SamplingFactor::R_4_4_4,
        SamplingFactor::R_4_2_0,
        SamplingFactor::R_4_2_2,
    ] {
        let original = jpeg(333, 207, |e| e.set_sampling_factor(sampling), false);
        assert_lossless_and_smaller(&original);
    }
}

#[test]
fn grey_jpegs_and_restart_intervals_are_recoded_too() {
    assert_lossless_and_smaller(&jpeg(250, 170, |_| {}, true));
    let with_restarts = jpeg(
        300,
        200,
        |e| {
            e.set_restart_interval(3);
            e.set_sampling_factor(SamplingFactor::R_4_2_0);
        },
        false,
    );
    assert!(
        with_restarts.windows(2).any(|w| w == [0xFF, 0xD0]),
        "the test file has restart markers"
    );
    let recoded = assert_lossless_and_smaller(&with_restarts);
    assert!(
        recoded.windows(2).any(|w| w == [0xFF, 0xD7]),
        "restart markers kept in their cycle"
    );
}

#[test]
fn a_file_whose_tables_are_already_optimal_is_left_as_it_is() {
    let once = assert_lossless_and_smaller(&jpeg(200, 120, |_| {}, false));
    assert_eq!(optimize_huffman(&once), Ok(None), "nothing left to gain");
    let optimized_by_its_encoder = jpeg(200, 120, |e| e.set_optimized_huffman_tables(true), false);
    assert_eq!(optimize_huffman(&optimized_by_its_encoder), Ok(None));
}

#[test]
fn progressive_jpegs_are_left_alone_and_damaged_ones_refused_without_panicking() {
    let progressive = jpeg(120, 80, |e| e.set_progressive(true), false);
    assert_eq!(optimize_huffman(&progressive), Ok(None));
    assert!(optimize_huffman(b"\x89PNG\r\n").is_err());
    let original = jpeg(160, 96, |_| {}, false);
    for cut in [3, 40, original.len() / 2, original.len() - 3] {
        // Truncated anywhere: an error or a copy, never a panic.
        let _outcome = optimize_huffman(&original[..cut]);
    }
    let mut garbled = original;
    let start = garbled.len() / 2;
    for b in &mut garbled[start..start + 64] {
        *b = 0xA5;
    }
    let _outcome = optimize_huffman(&garbled);
}

#[test]
fn optimal_tables_are_prefix_free_within_16_bits_even_for_skewed_counts() {
    let mut freq = [0u32; 256];
    // Fibonacci-like counts would need codes far longer than 16 bits.
    let (mut a, mut b) = (1u32, 1u32);
    for f in freq.iter_mut().take(40) {
        *f = a;
        let next = a.saturating_add(b);
        a = b;
        b = next;
    }
    let (counts, values) = optimal_table(&freq);
    assert_eq!(values.len(), 40, "every used symbol has a code");
    let total: u32 = counts.iter().map(|&c| u32::from(c)).sum();
    assert_eq!(total, 40);
    // Kraft: the codes leave room (the all-ones code is reserved).
    let kraft: f64 = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| f64::from(c) / f64::from(1u32 << (i + 1)))
        .sum();
    assert!(kraft < 1.0, "{kraft}");
    assert!(Table::new(&counts, &values).is_ok());
}

/// 400 copies of `original`, each with 1 to 4 bytes overwritten at random
/// (a fixed `seed`, so every run damages the same bytes).
fn damaged_copies(original: &[u8], mut seed: u32) -> impl Iterator<Item = Vec<u8>> {
    let mut next = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        seed
    };
    let original = original.to_vec();
    (0..400).map(move |_| {
        let mut damaged = original.clone();
        for _ in 0..1 + next() % 4 {
            let at = next() as usize % damaged.len();
            damaged[at] = (next() >> 24) as u8;
        }
        damaged
    })
}

/// Whatever a re-coder accepted is a well-formed JPEG again.
fn assert_well_formed_if_accepted(result: &Result<Option<Vec<u8>>, RecodeError>) {
    if let Ok(Some(recoded)) = result {
        assert!(recoded.starts_with(&[0xFF, 0xD8]) && recoded.ends_with(&[0xFF, 0xD9]));
    }
}

#[test]
fn hundreds_of_damaged_copies_never_panic_and_what_is_recoded_still_decodes() {
    let original = jpeg(
        96,
        64,
        |e| {
            e.set_restart_interval(2);
            e.set_sampling_factor(SamplingFactor::R_4_2_0);
        },
        false,
    );
    for damaged in damaged_copies(&original, 12_345) {
        assert_well_formed_if_accepted(&optimize_huffman(&damaged));
    }
}

/// Peak signal-to-noise ratio of `b` against `a`, in dB.
fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64.powi(2) / mse.max(1e-9)).log10()
}

/// The pixels of `jpeg` encoded again at `quality` (what a lossy
/// re-encode through pixels gives), with optimal tables.
fn reencoded(
    jpeg: &[u8],
    quality: u8,
    (width, height): (u16, u16),
    sampling: SamplingFactor,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, quality);
    encoder.set_optimized_huffman_tables(true);
    encoder.set_sampling_factor(sampling);
    encoder
        .encode(&pixels(jpeg), width, height, ColorType::Rgb)
        .expect("encodes");
    out
}

#[test]
fn requantizing_a_fine_jpeg_shrinks_it_as_much_as_a_re_encode_and_loses_no_more() {
    for sampling in [SamplingFactor::R_4_4_4, SamplingFactor::R_4_2_0] {
        let original = jpeg_at(97, 320, 240, |e| e.set_sampling_factor(sampling), false);
        let lossy = requantize(&original, 82)
            .expect("re-quantizes")
            .expect("a sequential JPEG");
        // A re-encode through pixels subsamples 4:4:4 to 4:2:0 below
        // quality 90, and so does the re-quantizer.
        let through_pixels = reencoded(&original, 82, (320, 240), SamplingFactor::R_4_2_0);
        let (before, after, again) = (pixels(&original), pixels(&lossy), pixels(&through_pixels));
        let (kept, kept_by_reencode) = (psnr(&before, &after), psnr(&before, &again));
        assert!(
            lossy.len() * 10 < original.len() * 7,
            "{sampling:?}: {} → {} bytes",
            original.len(),
            lossy.len()
        );
        assert!(
            lossy.len() * 100 <= through_pixels.len() * 110,
            "{sampling:?}: {} bytes against {} re-encoded",
            lossy.len(),
            through_pixels.len()
        );
        assert!(
            kept >= kept_by_reencode - 0.5 && kept > 27.0,
            "{sampling:?}: {kept:.1} dB against {kept_by_reencode:.1} dB re-encoded"
        );
    }
}

#[test]
fn requantizing_never_makes_a_step_finer_so_a_coarser_jpeg_keeps_its_pixels() {
    let coarse = jpeg_at(60, 200, 150, |_| {}, false);
    let requantized = requantize(&coarse, 82)
        .expect("re-quantizes")
        .expect("a sequential JPEG");
    assert_eq!(
        pixels(&requantized),
        pixels(&coarse),
        "every coefficient kept"
    );
    assert!(
        requantized.len() < coarse.len(),
        "optimal tables still save"
    );
}

#[test]
fn requantized_grey_jpegs_with_restart_intervals_decode() {
    for (grey, restarts) in [(true, 0), (true, 2), (false, 3)] {
        let original = jpeg_at(
            95,
            250,
            170,
            |e| {
                e.set_restart_interval(restarts);
                e.set_sampling_factor(SamplingFactor::R_4_2_0);
            },
            grey,
        );
        let lossy = requantize(&original, 75)
            .expect("re-quantizes")
            .expect("sequential");
        let (before, after) = (pixels(&original), pixels(&lossy));
        assert!(
            lossy.len() < original.len(),
            "grey={grey} restarts={restarts}"
        );
        assert!(
            psnr(&before, &after) > 30.0,
            "grey={grey} restarts={restarts}"
        );
    }
}

#[test]
fn requantizing_leaves_progressive_files_alone_and_damaged_ones_never_panic() {
    let progressive = jpeg(120, 80, |e| e.set_progressive(true), false);
    assert_eq!(requantize(&progressive, 82), Ok(None));
    let original = jpeg_at(95, 96, 64, |e| e.set_restart_interval(2), false);
    for damaged in damaged_copies(&original, 99) {
        assert_well_formed_if_accepted(&requantize(&damaged, 82));
    }
}

#[test]
fn a_smooth_jpeg_becomes_progressive_keeping_every_pixel_and_beats_optimized_sequential() {
    let cases: [(&str, u16, u16, SamplingFactor, bool, u16); 6] = [
        ("4:4:4", 640, 480, SamplingFactor::R_4_4_4, false, 0),
        (
            "4:2:0, odd size",
            1001,
            667,
            SamplingFactor::R_4_2_0,
            false,
            0,
        ),
        ("4:2:2", 640, 480, SamplingFactor::R_4_2_2, false, 0),
        ("4:4:0", 500, 333, SamplingFactor::R_4_4_0, false, 0),
        ("grey", 601, 401, SamplingFactor::R_4_4_4, true, 0),
        (
            "4:2:0, restarts",
            640,
            480,
            SamplingFactor::R_4_2_0,
            false,
            5,
        ),
    ];
    for (name, width, height, sampling, grey, restarts) in cases {
        let setup = |e: &mut Encoder<&mut Vec<u8>>| {
            e.set_sampling_factor(sampling);
            e.set_restart_interval(restarts);
        };
        let original = smooth_jpeg(width, height, setup, grey);
        let recoded = assert_lossless_and_smaller(&original);
        assert_eq!(frame_marker(&original), Some(0xC0), "{name}");
        assert_eq!(frame_marker(&recoded), Some(0xC2), "{name}: progressive");
        assert!(
            !recoded
                .windows(2)
                .any(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1])),
            "{name}: no restart markers left"
        );
        let sequential = smooth_jpeg(
            width,
            height,
            |e| {
                setup(e);
                e.set_optimized_huffman_tables(true);
            },
            grey,
        );
        assert_eq!(
            pixels(&sequential),
            pixels(&original),
            "{name}: same coefficients"
        );
        assert!(
            recoded.len() < sequential.len(),
            "{name}: {} bytes against {} optimized sequential",
            recoded.len(),
            sequential.len()
        );
    }
}

#[test]
fn a_detailed_jpeg_stays_sequential_where_progressive_scans_would_not_pay() {
    let detailed = jpeg(640, 480, |_| {}, false);
    let recoded = assert_lossless_and_smaller(&detailed);
    assert_eq!(frame_marker(&recoded), Some(0xC0));
}

#[test]
fn a_requantized_smooth_jpeg_is_written_progressive_and_decodes_close_to_the_original() {
    let original = smooth_jpeg(
        800,
        600,
        |e| e.set_sampling_factor(SamplingFactor::R_4_2_0),
        false,
    );
    let lossy = requantize(&original, 60)
        .expect("re-quantizes")
        .expect("a sequential JPEG");
    assert_eq!(frame_marker(&lossy), Some(0xC2));
    assert!(lossy.len() < original.len());
    assert!(psnr(&pixels(&original), &pixels(&lossy)) > 30.0);
}

#[test]
fn damaged_smooth_jpegs_never_panic_the_progressive_coder() {
    let original = smooth_jpeg(
        480,
        360,
        |e| {
            e.set_sampling_factor(SamplingFactor::R_4_2_0);
            e.set_restart_interval(4);
        },
        false,
    );
    assert_eq!(
        frame_marker(
            &optimize_huffman(&original)
                .expect("re-codes")
                .expect("smaller")
        ),
        Some(0xC2),
        "the undamaged file takes the progressive path"
    );
    for damaged in damaged_copies(&original, 4_242) {
        assert_well_formed_if_accepted(&optimize_huffman(&damaged));
        assert_well_formed_if_accepted(&requantize(&damaged, 70));
    }
}

/// The sampling factors byte of each component in the frame header.
fn sampling_of(jpeg: &[u8]) -> Vec<u8> {
    let at = jpeg
        .windows(2)
        .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0 | 0xC2))
        .expect("a frame header");
    let n = usize::from(jpeg[at + 9]);
    (0..n).map(|i| jpeg[at + 11 + 3 * i]).collect()
}

#[test]
fn lossy_4_4_4_and_4_2_2_chroma_is_subsampled_to_4_2_0_below_quality_90_even_at_odd_sizes() {
    for (sampling, width, height) in [
        (SamplingFactor::R_4_4_4, 333, 207),
        (SamplingFactor::R_4_4_4, 320, 240),
        (SamplingFactor::R_4_2_2, 341, 199),
    ] {
        let original = jpeg_at(
            95,
            width,
            height,
            |e| e.set_sampling_factor(sampling),
            false,
        );
        let lossy = requantize(&original, 82)
            .expect("re-quantizes")
            .expect("a sequential JPEG");
        assert_eq!(sampling_of(&lossy), [0x22, 0x11, 0x11], "{sampling:?}");
        assert_eq!(frame_marker(&lossy), Some(0xC2));
        let (before, after) = (pixels(&original), pixels(&lossy));
        let through_pixels = reencoded(&original, 82, (width, height), SamplingFactor::R_4_2_0);
        let (kept, kept_by_reencode) = (
            psnr(&before, &after),
            psnr(&before, &pixels(&through_pixels)),
        );
        assert!(
            kept >= kept_by_reencode - 0.5,
            "{sampling:?} {width}x{height}: {kept:.1} dB against {kept_by_reencode:.1} dB re-encoded"
        );
        assert!(
            lossy.len() * 100 <= through_pixels.len() * 110,
            "{sampling:?}: {} bytes against {} re-encoded",
            lossy.len(),
            through_pixels.len()
        );
        // The image crate's decoder agrees on the result.
        let decoded = image::load_from_memory(&lossy).expect("decodes").to_rgb8();
        assert_eq!(decoded.dimensions(), (u32::from(width), u32::from(height)));
    }
    // At quality 90 and above the sampling is kept.
    let original = jpeg_at(
        97,
        200,
        120,
        |e| e.set_sampling_factor(SamplingFactor::R_4_4_4),
        false,
    );
    let fine = requantize(&original, 92)
        .expect("re-quantizes")
        .expect("sequential");
    assert_eq!(sampling_of(&fine), [0x11, 0x11, 0x11]);
}
