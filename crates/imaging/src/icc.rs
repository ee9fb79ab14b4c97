//! Colour profiles. A photo from a phone or a camera set to Display P3 or
//! Adobe RGB carries an ICC profile that says what its numbers mean; shown
//! as sRGB, its colours are duller. The pipeline converts the thumbnail and
//! the preview to sRGB (the web's default, so they need no profile and look
//! right even where profiles are ignored) and embeds the original's profile
//! in a re-encoded optimized copy, which keeps the original's pixels.
//!
//! A profile that cannot be read, or that does not describe RGB (a grey or
//! CMYK profile), is ignored, as a broken EXIF block is: the image is then
//! taken as sRGB rather than refused.

use std::sync::Arc;

use moxcms::{
    ColorProfile, DataColorSpace, Layout, ParsingOptions, Transform8BitExecutor, TransformOptions,
};

/// Profile bounds that keep a hostile profile's tables small next to the
/// image (moxcms' defaults allow 10 MB). Real RGB profiles, even those with
/// lookup tables, are far below them; a profile beyond them is ignored.
const PARSING: ParsingOptions = ParsingOptions {
    max_profile_size: 1 << 20,
    max_allowed_clut_size: 1 << 18,
    max_allowed_trc_size: 40_000,
};

/// Pixels converted per call: bounds the scratch buffer.
const CHUNK_PIXELS: usize = 4096;

/// An RGB colour profile, with the bytes it was read from and its
/// transforms to sRGB.
pub(crate) struct RgbProfile {
    bytes: Vec<u8>,
    rgb: Arc<Transform8BitExecutor>,
    rgba: Arc<Transform8BitExecutor>,
    /// Whether the profile is sRGB in effect (most cameras embed one), so
    /// converting would change nothing.
    is_srgb: bool,
}

/// Whether `transform` leaves colours as they are: a lattice of 125 colours
/// across the cube, each channel within 1.
fn maps_to_itself(transform: &Transform8BitExecutor) -> bool {
    const LEVELS: [u8; 5] = [0, 64, 128, 192, 255];
    let probe: Vec<u8> = LEVELS
        .iter()
        .flat_map(|&r| {
            LEVELS
                .iter()
                .flat_map(move |&g| LEVELS.iter().flat_map(move |&b| [r, g, b]))
        })
        .collect();
    let mut mapped = vec![0; probe.len()];
    transform.transform(&probe, &mut mapped).is_ok()
        && probe.iter().zip(&mapped).all(|(a, b)| a.abs_diff(*b) <= 1)
}

impl RgbProfile {
    /// The profile in `bytes`, when it can be read, describes RGB, and
    /// converts to sRGB.
    pub(crate) fn read(bytes: Vec<u8>) -> Option<Self> {
        let profile = ColorProfile::new_from_slice_with_options(&bytes, PARSING).ok()?;
        if profile.color_space != DataColorSpace::Rgb {
            return None;
        }
        let srgb = ColorProfile::new_srgb();
        let to_srgb = |layout| {
            profile
                .create_transform_8bit(layout, &srgb, layout, TransformOptions::default())
                .ok()
        };
        let rgb = to_srgb(Layout::Rgb)?;
        Some(Self {
            is_srgb: maps_to_itself(rgb.as_ref()),
            rgba: to_srgb(Layout::Rgba)?,
            rgb,
            bytes,
        })
    }

    /// The profile as found in the original, to embed in a copy.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Converts 8-bit RGB or RGBA (alpha untouched) `pixels` from this
    /// profile to sRGB, in place.
    pub(crate) fn convert_to_srgb(&self, pixels: &mut [u8], alpha: bool) {
        if self.is_srgb {
            return;
        }
        let (transform, channels) = if alpha {
            (&self.rgba, 4)
        } else {
            (&self.rgb, 3)
        };
        let mut scratch = vec![0; CHUNK_PIXELS * channels];
        for chunk in pixels.chunks_mut(CHUNK_PIXELS * channels) {
            let converted = &mut scratch[..chunk.len()];
            // Fails only on a length that is not a whole number of pixels,
            // which the chunking rules out.
            if transform.transform(chunk, converted).is_ok() {
                chunk.copy_from_slice(converted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(profile: &ColorProfile) -> Vec<u8> {
        profile.encode().expect("moxcms encodes its own profiles")
    }

    #[test]
    fn display_p3_red_is_clipped_to_the_reddest_srgb_red() {
        let p3 =
            RgbProfile::read(encoded(&ColorProfile::new_display_p3())).expect("an RGB profile");
        let mut pixels = vec![255, 0, 0, 128, 128, 128];
        p3.convert_to_srgb(&mut pixels, false);
        // P3's red is more saturated than sRGB's: it clips to full red,
        // and the other channels stay near zero.
        assert!(
            pixels[0] == 255 && pixels[1] < 40 && pixels[2] < 40,
            "{pixels:?}"
        );
        // Mid grey is the same grey in both (same white point and curve).
        assert!(
            pixels[3..].iter().all(|&c| c.abs_diff(128) <= 1),
            "{pixels:?}"
        );
    }

    #[test]
    fn a_p3_orange_is_more_saturated_in_srgb_numbers() {
        let p3 =
            RgbProfile::read(encoded(&ColorProfile::new_display_p3())).expect("an RGB profile");
        let mut pixels = vec![200, 120, 60];
        p3.convert_to_srgb(&mut pixels, false);
        assert!(pixels[0] > 200 && pixels[2] < 60, "{pixels:?}");
    }

    #[test]
    fn an_srgb_profile_is_recognised_and_a_wide_gamut_one_is_not() {
        let read = |p: ColorProfile| RgbProfile::read(encoded(&p)).expect("an RGB profile");
        assert!(read(ColorProfile::new_srgb()).is_srgb);
        assert!(!read(ColorProfile::new_display_p3()).is_srgb);
        assert!(!read(ColorProfile::new_adobe_rgb()).is_srgb);
    }

    #[test]
    fn srgb_pixels_stay_as_they_are_and_alpha_is_untouched() {
        let srgb = RgbProfile::read(encoded(&ColorProfile::new_srgb())).expect("an RGB profile");
        let original: Vec<u8> = (0..=255).flat_map(|v| [v, 255 - v, v / 2, v]).collect();
        let mut pixels = original.clone();
        srgb.convert_to_srgb(&mut pixels, true);
        for (after, before) in pixels.chunks(4).zip(original.chunks(4)) {
            assert_eq!(after[3], before[3], "alpha");
            assert!(
                after.iter().zip(before).all(|(a, b)| a.abs_diff(*b) <= 1),
                "{before:?} -> {after:?}"
            );
        }
    }

    #[test]
    fn more_pixels_than_one_chunk_are_all_converted() {
        let p3 =
            RgbProfile::read(encoded(&ColorProfile::new_display_p3())).expect("an RGB profile");
        let mut pixels = [255, 0, 0].repeat(CHUNK_PIXELS * 2 + 7);
        p3.convert_to_srgb(&mut pixels, false);
        assert!(pixels.chunks(3).all(|p| p == pixels[..3].as_ref()));
        assert!(pixels[1] < 40, "converted: {:?}", &pixels[..3]);
    }

    #[test]
    fn a_profile_over_a_mebibyte_is_ignored() {
        let mut p3 = encoded(&ColorProfile::new_display_p3());
        assert!(RgbProfile::read(p3.clone()).is_some());
        p3.resize(1 << 20, 0);
        assert!(RgbProfile::read(p3).is_none());
    }

    #[test]
    fn a_grey_or_broken_profile_is_ignored() {
        assert!(RgbProfile::read(b"not a profile at all".to_vec()).is_none());
        let mut grey = ColorProfile::new_gray_with_gamma(2.2);
        grey.color_space = DataColorSpace::Gray;
        assert!(RgbProfile::read(encoded(&grey)).is_none());
    }
}
