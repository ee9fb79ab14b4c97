//! Chroma subsampling in the DCT domain, for `optimize = lossy`: a 4:4:4 or
//! 4:2:2 JPEG's chroma becomes 4:2:0, as libvips and `cjpeg` do below
//! quality 90, without a decode to pixels. Each output chroma block is the
//! 2x2 (or, from 4:2:2, 1x2) box average of the input blocks it covers,
//! computed on coefficients: for a block in the top or bottom (left or
//! right) half, `T = A·D·Aᵀ` with `A` JPEG's orthonormal 8-point DCT and `D`
//! the averaging of sample pairs into that half, so that the output's
//! coefficients are `Σ T_v · F · T_hᵀ` over the input blocks `F`. A nonzero
//! input coefficient costs 64 multiply-adds; luminance blocks only move to
//! the output's 2x2 MCU layout.
//!
//! At the right and bottom edges a missing neighbour is the block itself
//! (edge replication, as encoders pad). The output is written progressive
//! (a sequential writer for the new layout would be a second coder for the
//! same result).

use super::super::{BlockSink, Blocks, Coefficients, Component, Frame, Requant, ZIGZAG};
use super::Transcoder;

/// Whether `frame`'s chroma can be subsampled here: three components, the
/// chroma ones 1x1 and the luminance 1x1 (4:4:4) or 2x1 (4:2:2).
pub(in crate::jpeg_recode) fn resamples(frame: &Frame) -> bool {
    let [y, cb, cr] = frame.components.as_slice() else {
        return false;
    };
    matches!((y.h, y.v), (1, 1) | (2, 1)) && [cb, cr].iter().all(|c| c.h == 1 && c.v == 1)
}

/// `frame` with 4:2:0 sampling: luminance 2x2, chroma 1x1.
pub(super) fn subsampled(frame: &Frame) -> Frame {
    let mut out = frame.clone();
    for (i, c) in out.components.iter_mut().enumerate() {
        let (h, v) = if i == 0 { (2, 2) } else { (1, 1) };
        *c = Component { h, v, ..*c };
    }
    out
}

/// `T` for the first and second half (see the module's doc): output
/// frequency × input frequency.
fn half_transforms() -> [[[f32; 8]; 8]; 2] {
    let a = |u: usize, x: usize| -> f64 {
        let c = if u == 0 {
            std::f64::consts::FRAC_1_SQRT_2
        } else {
            1.0
        };
        c / 2.0 * (((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos()
    };
    std::array::from_fn(|half| {
        std::array::from_fn(|u| {
            std::array::from_fn(|p| {
                // Output sample i (in the half) averages input samples 2j, 2j+1.
                (0..4)
                    .map(|j| {
                        let i = 4 * half + j;
                        0.5 * a(u, i) * (a(p, 2 * j) + a(p, 2 * j + 1))
                    })
                    .sum::<f64>() as f32
            })
        })
    })
}

/// Takes the input's rebuilt blocks, re-quantizes the luminance into the
/// output layout, averages the chroma down, and hands each finished output MCU
/// row to the progressive coder.
pub(super) struct Resampler {
    pub(super) out: Transcoder,
    /// Per scan slot: its frame component and steps.
    slots: Vec<(usize, Option<Requant>)>,
    /// The input's luminance blocks per MCU (1 or 2, side by side).
    luma_wide: usize,
    in_mcus_wide: usize,
    in_mcus_high: usize,
    /// The input MCU being read, counted from the scan's start.
    mcu: usize,
    /// Per chroma component: its output row's coefficients (natural
    /// order, not yet quantized).
    sums: [Vec<[f32; 64]>; 2],
    /// Per chroma component: the steps it is dequantized and quantized with.
    chroma_steps: [Option<Requant>; 2],
    halves: [[[f32; 8]; 8]; 2],
}

impl Resampler {
    /// A resampler of the input `frame` (see [`resamples`]) feeding `out`,
    /// built for [`subsampled`]`(frame)`.
    pub(super) fn new(frame: &Frame, out: Transcoder) -> Self {
        let luma_wide = usize::from(frame.components[0].h);
        let in_mcus_wide = frame.width.div_ceil(8 * u32::from(frame.components[0].h)) as usize;
        let in_mcus_high = frame.height.div_ceil(8) as usize;
        let slots = out.slots.clone();
        let chroma_steps = [1, 2].map(|ci| {
            slots
                .iter()
                .find(|&&(c, _)| c == ci)
                .and_then(|&(_, steps)| steps)
        });
        let row = out.mcus_wide;
        Self {
            slots,
            luma_wide,
            in_mcus_wide,
            in_mcus_high,
            mcu: 0,
            sums: [vec![[0.0; 64]; row], vec![[0.0; 64]; row]],
            chroma_steps,
            halves: half_transforms(),
            out,
        }
    }

    /// Adds the chroma block `block` of component `ci`, at input block
    /// column `m` of input row `row`, into its output block.
    fn add_chroma(&mut self, ci: usize, m: usize, row: usize, block: &Blocks) {
        let k = ci - 1;
        let steps = self.chroma_steps[k];
        let bottom = row % 2;
        // The halves it stands for: both at an edge with no neighbour.
        let vertical: &[usize] = match (bottom, row + 1 == self.in_mcus_high) {
            (0, true) => &[0, 1],
            (0, false) => &[0],
            _ => &[1],
        };
        let (x, horizontal): (usize, &[usize]) = if self.luma_wide == 2 {
            // From 4:2:2: already half as wide.
            (m, &[])
        } else {
            (
                m / 2,
                match (m % 2, m + 1 == self.in_mcus_wide) {
                    (0, true) => &[0, 1],
                    (0, false) => &[0],
                    _ => &[1],
                },
            )
        };
        let Some(sum) = self.sums[k].get_mut(x) else {
            return;
        };
        let mut mask = block.nonzero | 1;
        while mask != 0 {
            let zz = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let old = steps.map_or(1.0, |s| f64::from(s[zz].old));
            let c = (f64::from(block.block[zz]) * old) as f32;
            if c == 0.0 {
                continue;
            }
            let (p, q) = (ZIGZAG[zz] / 8, ZIGZAG[zz] % 8);
            for &tv in vertical {
                let t = &self.halves[tv];
                for v in 0..8 {
                    let a = c * t[v][p];
                    if horizontal.is_empty() {
                        sum[v * 8 + q] += a;
                    }
                    for &th in horizontal {
                        let h = &self.halves[th];
                        for u in 0..8 {
                            sum[v * 8 + u] += a * h[u][q];
                        }
                    }
                }
            }
        }
    }

    /// Quantizes the output row's chroma into the coder's planes and codes
    /// output row `r`.
    fn finish_row(&mut self, r: usize) {
        for k in 0..2 {
            // Reciprocals, so that each coefficient costs a multiplication.
            let inverse: [f32; 64] = std::array::from_fn(|zz| {
                self.chroma_steps[k].map_or(1.0, |s| 1.0 / f32::from(s[zz].new))
            });
            for (x, sum) in self.sums[k].iter_mut().enumerate() {
                let mut block = Coefficients::ZERO;
                for zz in 0..64 {
                    let q = sum[ZIGZAG[zz]] * inverse[zz];
                    let q = (if q < 0.0 { q - 0.5 } else { q + 0.5 }) as i32;
                    let q = if zz == 0 {
                        q.clamp(-1024, 1023)
                    } else {
                        q.clamp(-1023, 1023)
                    };
                    block.values[zz] = q as i16;
                    if zz > 0 && q != 0 {
                        block.nonzero |= 1 << zz;
                    }
                }
                if let Some(cell) = self.out.planes[k + 1].row.get_mut(x) {
                    *cell = block;
                }
                *sum = [0.0; 64];
            }
        }
        self.out.flush_row(r);
    }
}

impl BlockSink for Resampler {
    fn block(&mut self, slot: usize, index: usize, blocks: &Blocks) {
        let (ci, steps) = self.slots[slot];
        let (row, m) = (self.mcu / self.in_mcus_wide, self.mcu % self.in_mcus_wide);
        if ci == 0 {
            let block = Coefficients::rebuilt(blocks, steps.as_ref());
            let width = self.out.row_width(0);
            let at = (row % 2) * width + m * self.luma_wide + index;
            if let Some(cell) = self.out.planes[0].row.get_mut(at) {
                *cell = block;
            }
        } else {
            self.add_chroma(ci, m, row, blocks);
        }
    }
    fn end_mcu(&mut self, mcu: usize) {
        self.mcu = mcu + 1;
        if self.mcu.is_multiple_of(self.in_mcus_wide) {
            let done = self.mcu / self.in_mcus_wide - 1;
            if done % 2 == 1 || done + 1 == self.in_mcus_high {
                self.finish_row(done / 2);
            }
        }
    }
}
