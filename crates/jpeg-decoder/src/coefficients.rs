//! Darkroom's change to jpeg-decoder: the coefficient store of progressive
//! JPEGs keeps only what the (possibly scaled) IDCT reads.
//!
//! A progressive JPEG cannot be decoded row by row: every scan refines the
//! whole image, so the decoder holds every DCT coefficient until the last
//! scan (128 bytes per 8x8 block, 100 MB for a 16.8 MP 4:4:4 photograph).
//! When the image is decoded at 1/2, 1/4 or 1/8 scale, the IDCT reads only
//! the top-left 4x4, 2x2 or 1x1 coefficients of each block. The others still
//! have to be parsed, and successive-approximation refinement scans need to
//! know which of them are already non-zero, but their values are never used.
//! So a block keeps its top-left `side x side` values plus one bit per
//! coefficient saying "non-zero": 16 bytes per block at 1/4 scale instead of
//! 128. At full scale nothing changes.

use alloc::vec;
use alloc::vec::Vec;

/// The coefficients of one component of a progressive image.
pub(crate) struct CoefficientPlane {
    /// Coefficients kept per block row and column: the IDCT size (1, 2, 4 or 8).
    side: usize,
    /// `side * side` values per block, row-major, natural (not zigzag) order.
    values: Vec<i16>,
    /// Per block, bit `i` set when natural-order coefficient `i` is non-zero.
    /// Empty at full scale, where `values` holds every coefficient.
    nonzero: Vec<u64>,
}

impl CoefficientPlane {
    /// Storage for `blocks` blocks decoded by an IDCT of `dct_scale` x `dct_scale`.
    pub(crate) fn new(blocks: usize, dct_scale: usize) -> Self {
        let side = dct_scale.clamp(1, 8);
        let nonzero = if side == 8 { Vec::new() } else { vec![0; blocks] };
        Self {
            side,
            values: vec![0; blocks * side * side],
            nonzero,
        }
    }

    /// Block `block` expanded to 64 coefficients in natural order, for a
    /// scan to decode into. The kept values are always there. With
    /// `refining` (a successive-approximation refinement scan, which reads
    /// what earlier scans left), coefficients that are not kept read as 1
    /// when they are non-zero: refinement only asks whether a coefficient
    /// is zero and never makes a non-zero one zero again. Other scans only
    /// write, so those read as 0.
    pub(crate) fn load(&self, block: usize, out: &mut [i16; 64], refining: bool) {
        let side = self.side;
        let kept = &self.values[block * side * side..(block + 1) * side * side];
        if side == 8 {
            out.copy_from_slice(kept);
            return;
        }
        *out = [0; 64];
        if refining {
            let mut others = self.nonzero[block];
            while others != 0 {
                out[others.trailing_zeros() as usize] = 1;
                others &= others - 1;
            }
        }
        for (row, values) in kept.chunks_exact(side).enumerate() {
            out[row * 8..row * 8 + side].copy_from_slice(values);
        }
    }

    /// Stores block `block` after a scan that may have changed the
    /// coefficients in `band` (bit `i` for natural-order coefficient `i`).
    pub(crate) fn store(&mut self, block: usize, coefficients: &[i16; 64], band: u64) {
        let side = self.side;
        let kept = &mut self.values[block * side * side..(block + 1) * side * side];
        if side == 8 {
            kept.copy_from_slice(coefficients);
            return;
        }
        for (row, values) in kept.chunks_exact_mut(side).enumerate() {
            values.copy_from_slice(&coefficients[row * 8..row * 8 + side]);
        }
        let old = self.nonzero[block];
        self.nonzero[block] = (old & !band) | (nonzero_mask(coefficients) & band);
    }

    /// Blocks `first..first + count` as the worker wants them: 64 coefficients
    /// per block, those the IDCT does not read left at zero.
    pub(crate) fn expand(&self, first: usize, count: usize) -> Vec<i16> {
        let side = self.side;
        if side == 8 {
            return self.values[first * 64..(first + count) * 64].to_vec();
        }
        let mut out = vec![0; count * 64];
        let kept = &self.values[first * side * side..(first + count) * side * side];
        for (block, values) in out.chunks_exact_mut(64).zip(kept.chunks_exact(side * side)) {
            for (row, values) in values.chunks_exact(side).enumerate() {
                block[row * 8..row * 8 + side].copy_from_slice(values);
            }
        }
        out
    }
}

/// Bit `i` set when `coefficients[i]` is non-zero.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn nonzero_mask(coefficients: &[i16; 64]) -> u64 {
    use core::arch::wasm32::{i16x8, i16x8_bitmask, i16x8_ne, i16x8_splat};
    let zero = i16x8_splat(0);
    coefficients
        .chunks_exact(8)
        .enumerate()
        .fold(0, |mask, (i, c)| {
            let lanes = i16x8(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]);
            mask | u64::from(i16x8_bitmask(i16x8_ne(lanes, zero))) << (8 * i)
        })
}

/// Bit `i` set when `coefficients[i]` is non-zero.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn nonzero_mask(coefficients: &[i16; 64]) -> u64 {
    coefficients
        .iter()
        .enumerate()
        .fold(0, |mask, (i, c)| mask | u64::from(*c != 0) << i)
}

/// The natural-order positions of zigzag indices `range` (a scan's
/// spectral selection) as a bit set.
pub(crate) fn band(range: core::ops::Range<u8>, unzigzag: &[u8; 64]) -> u64 {
    range
        .filter(|z| *z < 64)
        .fold(0, |mask, z| mask | 1 << unzigzag[usize::from(z)])
}

#[cfg(test)]
mod tests {
    use super::CoefficientPlane;

    fn block() -> [i16; 64] {
        let mut block = [0; 64];
        for (i, c) in block.iter_mut().enumerate() {
            *c = if i % 3 == 0 { i as i16 - 30 } else { 0 };
        }
        block
    }

    #[test]
    fn a_full_scale_plane_gives_back_every_coefficient() {
        let mut plane = CoefficientPlane::new(2, 8);
        plane.store(1, &block(), !0);
        let mut out = [0; 64];
        plane.load(1, &mut out, true);
        assert_eq!(out, block());
        assert_eq!(plane.expand(1, 1), block().to_vec());
    }

    #[test]
    fn a_scaled_plane_keeps_top_left_values_and_which_others_are_non_zero() {
        for side in [1, 2, 4] {
            let mut plane = CoefficientPlane::new(3, side);
            plane.store(2, &block(), !0);
            let mut refining = [0; 64];
            plane.load(2, &mut refining, true);
            let mut first = [0; 64];
            plane.load(2, &mut first, false);
            let expanded = plane.expand(2, 1);
            for i in 0..64 {
                let top_left = i % 8 < side && i / 8 < side;
                let value = block()[i];
                let flag = i16::from(value != 0);
                let (r, f, e) = if top_left {
                    (value, value, value)
                } else {
                    (flag, 0, 0)
                };
                assert_eq!(refining[i], r, "side {side}, coefficient {i}, refining");
                assert_eq!(first[i], f, "side {side}, coefficient {i}, first scan");
                assert_eq!(expanded[i], e, "side {side}, coefficient {i}, expanded");
            }
        }
    }

    #[test]
    fn a_store_changes_only_the_flags_of_the_scanned_band() {
        let mut plane = CoefficientPlane::new(1, 1);
        let mut first = [0; 64];
        first[10] = 3;
        first[20] = -2;
        plane.store(0, &first, !0);
        // A later scan of coefficients 20..=63 that found 30 non-zero; the
        // block it decoded into had nothing outside that band.
        let mut later = [0; 64];
        later[30] = 1;
        plane.store(0, &later, !0 << 20);
        let mut out = [0; 64];
        plane.load(0, &mut out, true);
        let flagged: Vec<usize> = (0..64).filter(|i| out[*i] != 0).collect();
        assert_eq!(flagged, [10, 30]);
    }

    #[test]
    fn the_non_zero_mask_has_one_bit_per_non_zero_coefficient() {
        let mut c = [0_i16; 64];
        for i in [0, 7, 8, 33, 63] {
            c[i] = if i % 2 == 0 { -1 } else { i16::MAX };
        }
        assert_eq!(
            super::nonzero_mask(&c),
            1 | 1 << 7 | 1 << 8 | 1 << 33 | 1 << 63
        );
    }
}
