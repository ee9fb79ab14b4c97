//! Every kind of input the pipeline promises to take, as real encoders
//! write them (made with libvips from a photograph in Debian's
//! lomiri-wallpapers package): progressive JPEG, 16-bit PNG with and without
//! alpha, interlaced (Adam7) PNG, palette PNG with transparency, lossy WebP
//! with and without alpha. Each must come out at the right size, in the
//! right format, with the colours of the original. A photograph that libvips
//! (lcms2) converted to Display P3 must come out with its sRGB colours.

use darkroom_imaging::format::{ImageFormat, Limits};
use darkroom_imaging::pipeline::{Variant, render};

const INPUTS: [(&str, bool); 7] = [
    ("progressive.jpg", false),
    ("rgb16.png", false),
    ("rgba16.png", true),
    ("interlaced.png", false),
    ("palette-alpha.png", true),
    ("lossy.webp", false),
    ("lossy-alpha.webp", true),
];

fn mean_rgb(image: &image::DynamicImage) -> [f64; 3] {
    let rgb = image.to_rgb8();
    let n = f64::from(rgb.width() * rgb.height());
    let mut sum = [0.0; 3];
    for p in rgb.pixels() {
        for (s, c) in sum.iter_mut().zip(p.0) {
            *s += f64::from(c);
        }
    }
    sum.map(|s| s / n)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/images")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The mean difference between two images of one size, per channel value.
fn mean_difference(a: &image::DynamicImage, b: &image::DynamicImage) -> f64 {
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    let total: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum();
    total / a.as_raw().len() as f64
}

#[test]
fn a_display_p3_photograph_comes_out_with_the_colours_of_its_srgb_original() {
    let decode = |bytes: &[u8]| image::load_from_memory(bytes).expect("decodes");
    let srgb_bytes = fixture("srgb.jpg");
    let srgb = render(&srgb_bytes, Limits::default()).expect("render");
    for name in ["display-p3.jpg", "display-p3.png"] {
        let bytes = fixture(name);
        // The P3 numbers taken for sRGB: what a pipeline ignoring the
        // profile would show.
        let naive = mean_difference(&decode(&bytes), &decode(&srgb_bytes));
        let out = render(&bytes, Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        for variant in [Variant::Thumbnail, Variant::Preview] {
            let made = |out: &[darkroom_imaging::pipeline::Rendition<'_>]| {
                decode(
                    &out.iter()
                        .find(|r| r.variant == variant)
                        .expect("every variant")
                        .bytes
                        .to_vec(),
                )
            };
            let off = mean_difference(&made(&out), &made(&srgb));
            assert!(
                off < 2.5 && naive > 2.0 * off,
                "{name} {variant:?}: {off:.2} from the sRGB photograph's; the profile ignored: {naive:.2}"
            );
        }
    }
}

#[test]
fn every_supported_input_kind_comes_out_at_size_in_the_right_format_and_colours() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images");
    for (name, has_alpha) in INPUTS {
        let bytes = std::fs::read(dir.join(name)).expect("fixture");
        let original = image::load_from_memory(&bytes).expect("the fixture decodes");
        let out = render(&bytes, Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        for variant in Variant::ALL {
            let r = out
                .iter()
                .find(|r| r.variant == variant)
                .expect("every variant");
            let expected_width = variant.target_width().map_or(300, |w| w.min(300));
            assert_eq!(r.width, expected_width, "{name} {variant:?} width");
            let decoded = image::load_from_memory(&r.bytes.to_vec()).expect("the output decodes");
            assert_eq!(decoded.width(), r.width, "{name} {variant:?} as decoded");
            if variant != Variant::Optimized {
                let wanted = if has_alpha {
                    ImageFormat::Png
                } else {
                    ImageFormat::Jpeg
                };
                assert_eq!(r.format, wanted, "{name} {variant:?} format");
                assert_eq!(
                    decoded.color().has_alpha(),
                    has_alpha,
                    "{name} {variant:?} alpha"
                );
            }
            let (a, b) = (mean_rgb(&original), mean_rgb(&decoded));
            for (channel, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() < 6.0,
                    "{name} {variant:?}: channel {channel} mean {y:.1}, original {x:.1}"
                );
            }
        }
    }
}
