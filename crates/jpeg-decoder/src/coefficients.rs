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

    /// Block `block` expanded to 64 coefficients in natural order. Coefficients
    /// that are not kept read as 1 when they are non-zero, 0 otherwise: enough
    /// for refinement scans, which only ask whether a coefficient is zero and
    /// never make a non-zero one zero again.
    pub(crate) fn load(&self, block: usize, out: &mut [i16; 64]) {
        let side = self.side;
        let kept = &self.values[block * side * side..(block + 1) * side * side];
        if side == 8 {
            out.copy_from_slice(kept);
            return;
        }
        *out = [0; 64];
        let mut others = self.nonzero[block];
        while others != 0 {
            out[others.trailing_zeros() as usize] = 1;
            others &= others - 1;
        }
        for (row, values) in kept.chunks_exact(side).enumerate() {
            out[row * 8..row * 8 + side].copy_from_slice(values);
        }
    }

    /// Stores block `block` from its 64 coefficients in natural order.
    pub(crate) fn store(&mut self, block: usize, coefficients: &[i16; 64]) {
        let side = self.side;
        let kept = &mut self.values[block * side * side..(block + 1) * side * side];
        if side == 8 {
            kept.copy_from_slice(coefficients);
            return;
        }
        for (row, values) in kept.chunks_exact_mut(side).enumerate() {
            values.copy_from_slice(&coefficients[row * 8..row * 8 + side]);
        }
        self.nonzero[block] = coefficients
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != 0)
            .fold(0, |mask, (i, _)| mask | 1 << i);
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
        plane.store(1, &block());
        let mut out = [0; 64];
        plane.load(1, &mut out);
        assert_eq!(out, block());
        assert_eq!(plane.expand(1, 1), block().to_vec());
    }

    #[test]
    fn a_scaled_plane_keeps_top_left_values_and_which_others_are_non_zero() {
        for side in [1, 2, 4] {
            let mut plane = CoefficientPlane::new(3, side);
            plane.store(2, &block());
            let mut out = [0; 64];
            plane.load(2, &mut out);
            let expanded = plane.expand(2, 1);
            for i in 0..64 {
                let top_left = i % 8 < side && i / 8 < side;
                let expected = if top_left {
                    block()[i]
                } else {
                    i16::from(block()[i] != 0)
                };
                assert_eq!(out[i], expected, "side {side}, coefficient {i}");
                let expected = if top_left { block()[i] } else { 0 };
                assert_eq!(expanded[i], expected, "side {side}, coefficient {i}");
            }
        }
    }
}
