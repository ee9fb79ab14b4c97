//! The fork must decode exactly like upstream jpeg-decoder 0.3.2: same
//! pixels at every scale, same outcome on truncated files. The images were
//! made with libvips (libjpeg-turbo) from a photograph in Debian's
//! lomiri-wallpapers package: progressive with successive approximation,
//! 4:4:4, 4:2:0, greyscale, restart intervals, and a baseline control.

use std::path::PathBuf;

const IMAGES: [&str; 5] = [
    "progressive-444.jpg",
    "progressive-420.jpg",
    "progressive-restarts.jpg",
    "progressive-grey.jpg",
    "baseline-420.jpg",
];

fn image(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "images", name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Width and height requested for 1/`denominator` scale of `bytes`.
fn request(bytes: &[u8], denominator: u16) -> (u16, u16) {
    let mut decoder = upstream::Decoder::new(bytes);
    decoder.read_info().expect("the header parses");
    let info = decoder.info().expect("a frame header");
    (
        info.width.div_ceil(denominator),
        info.height.div_ceil(denominator),
    )
}

fn fork(bytes: &[u8], size: (u16, u16)) -> Result<((u16, u16), Vec<u8>), String> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(|e| e.to_string())?;
    let scaled = decoder.scale(size.0, size.1).map_err(|e| e.to_string())?;
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    Ok((scaled, pixels))
}

fn upstream(bytes: &[u8], size: (u16, u16)) -> Result<((u16, u16), Vec<u8>), String> {
    let mut decoder = upstream::Decoder::new(bytes);
    decoder.read_info().map_err(|e| e.to_string())?;
    let scaled = decoder.scale(size.0, size.1).map_err(|e| e.to_string())?;
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    Ok((scaled, pixels))
}

#[test]
fn every_image_decodes_to_the_same_pixels_as_upstream_at_every_scale() {
    for name in IMAGES {
        let bytes = image(name);
        for denominator in [8, 4, 2, 1] {
            let size = request(&bytes, denominator);
            let ours = fork(&bytes, size).unwrap_or_else(|e| panic!("{name} 1/{denominator}: {e}"));
            let theirs = upstream(&bytes, size).expect("upstream decodes it");
            assert_eq!(ours.0, theirs.0, "{name} 1/{denominator}: size");
            assert!(!ours.1.is_empty(), "{name} 1/{denominator}: no pixels");
            assert!(
                ours.1 == theirs.1,
                "{name} at 1/{denominator}: pixels differ from upstream"
            );
        }
    }
}

#[test]
fn truncated_progressive_images_end_the_same_way_as_upstream() {
    for name in ["progressive-444.jpg", "progressive-420.jpg"] {
        let bytes = image(name);
        for percent in [10, 35, 60, 85, 99] {
            let cut = &bytes[..bytes.len() * percent / 100];
            for denominator in [4, 1] {
                let size = request(&bytes, denominator);
                assert_eq!(
                    fork(cut, size),
                    upstream(cut, size),
                    "{name} cut at {percent}%, 1/{denominator}"
                );
            }
        }
    }
}
