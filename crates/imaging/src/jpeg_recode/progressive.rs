//! Progressive re-coding of a sequential JPEG's coefficients, as `jpegtran
//! -optimize -scans` does with a spectral-selection script: the same DCT
//! coefficients, re-ordered into scans that each carry one band of every
//! block (the DC values first, then the lowest AC frequencies of the
//! luminance, the chrominance, the rest of the luminance). Each scan gets
//! optimal Huffman tables of its own, and runs of blocks with nothing in a
//! band cost one end-of-band-run symbol (T.81 G.1.2.2): on a smooth photo
//! that is where most of the saving comes from (a third of a 24 MP
//! painting's file, measured with `jpegtran` on the bench photos), and why
//! successive approximation (refinement scans, little gain on these photos)
//! is left out.
//!
//! The coefficients are never held whole: the sequential scan is walked
//! twice (once to count every band's symbols, once to write them), one MCU
//! row at a time, and every band is written into a buffer of its own; the
//! memory is the output and one MCU row, as for the sequential re-coder.
//! The counting pass also counts what an optimized sequential file would
//! take, so the second pass is only made when the progressive file is the
//! smaller one.
//!
//! Re-quantizing below quality 90, a 4:4:4 or 4:2:2 file's chroma is also
//! subsampled to 4:2:0 on the way ([`resample`]); such a file is always
//! written progressive.

mod resample;

use resample::Resampler;
pub(super) use resample::resamples;

use super::{
    BitWriter, BlockSink, Blocks, Coefficients, Frame, Input, Rebuild, RecodeError, Requant,
    category, code_ac, codes, optimal_table, push_segment, walk_into,
};

/// Longest end-of-band run a symbol can hold (EOB14 with 14 extra bits).
const MAX_EOBRUN: u32 = 0x7FFF;

/// One output scan: a band of zig-zag positions of some components.
struct Band {
    /// Frame component indices, in frame order.
    components: Vec<usize>,
    start: usize,
    end: usize,
}

/// The scan script for `n` components: the DC of all, then the first
/// component's lowest AC band, every other component whole, the first
/// component's rest (the order of `jpegtran`'s default script).
fn script(n: usize) -> Vec<Band> {
    let mut bands = vec![Band {
        components: (0..n).collect(),
        start: 0,
        end: 0,
    }];
    bands.push(Band {
        components: vec![0],
        start: 1,
        end: 5,
    });
    for ci in (1..n).rev() {
        bands.push(Band {
            components: vec![ci],
            start: 1,
            end: 63,
        });
    }
    bands.push(Band {
        components: vec![0],
        start: 6,
        end: 63,
    });
    bands
}

/// A Huffman table as DHT writes it: code-length counts and values.
type DhtTable = ([u8; 16], Vec<u8>);

/// Codes one band's symbols: counts them, or writes them once tables exist.
struct BandCoder {
    band: Band,
    /// Blocks in a row with nothing in the band, not yet coded.
    eobrun: u32,
    /// DC predictors, per component of the band.
    prediction: [i32; 4],
    /// Symbol counts per table (DC: one per component; AC: one).
    freq: Vec<[u32; 256]>,
    /// Extra bits of the end-of-band-run symbols (every other extra bit is
    /// the same in a sequential file).
    eob_bits: u64,
    /// The tables' codes, once counted.
    codes: Option<Vec<[(u32, u32); 256]>>,
    bits: BitWriter,
}

impl BandCoder {
    fn new(band: Band) -> Self {
        let tables = if band.start == 0 {
            band.components.len()
        } else {
            1
        };
        Self {
            band,
            eobrun: 0,
            prediction: [0; 4],
            freq: vec![[0; 256]; tables],
            eob_bits: 0,
            codes: None,
            bits: BitWriter::new(Vec::new()),
        }
    }

    fn symbol(&mut self, table: usize, symbol: u8, size: u32, extra: u32) {
        match &self.codes {
            None => self.freq[table][usize::from(symbol)] += 1,
            Some(codes) => {
                self.bits
                    .put_symbol(codes[table][usize::from(symbol)], size, extra);
            }
        }
    }

    /// The DC value of a block of the band's `k`th component.
    fn dc(&mut self, k: usize, value: i32) {
        let (size, extra) = category(value - self.prediction[k]);
        self.prediction[k] = value;
        self.symbol(k, size, u32::from(size), extra);
    }

    fn flush_eobrun(&mut self) {
        if self.eobrun == 0 {
            return;
        }
        let n = 31 - self.eobrun.leading_zeros();
        self.eob_bits += u64::from(n);
        self.symbol(0, (n << 4) as u8, n, self.eobrun - (1 << n));
        self.eobrun = 0;
    }

    fn end_run(&mut self) {
        self.eobrun += 1;
        if self.eobrun == MAX_EOBRUN {
            self.flush_eobrun();
        }
    }

    /// The positions of the band, as a mask.
    const fn mask(&self) -> u64 {
        (u64::MAX >> (63 - self.band.end)) & (u64::MAX << self.band.start)
    }

    /// A block's coefficients in the band.
    fn ac(&mut self, block: &Coefficients) {
        let band = self.mask();
        if block.nonzero & band == 0 {
            self.end_run();
            return;
        }
        self.flush_eobrun();
        if code_ac(block, self.band.start, band, |rs, size, extra| {
            self.symbol(0, rs, size, extra);
        }) {
            self.end_run();
        }
    }

    /// The band's tables and the bits its data takes under them.
    fn tables(&self) -> (Vec<DhtTable>, u64) {
        let mut bits = self.eob_bits;
        let tables: Vec<_> = self
            .freq
            .iter()
            .map(|freq| {
                let (counts, values) = optimal_table(freq);
                let c = codes(&counts, &values);
                bits += freq
                    .iter()
                    .zip(c.iter())
                    .map(|(&n, &(_, len))| u64::from(n) * u64::from(len))
                    .sum::<u64>();
                (counts, values)
            })
            .collect();
        (tables, bits)
    }
}

/// A component's blocks in the MCU row being gathered.
struct Plane {
    h: usize,
    v: usize,
    /// The component's size in blocks (an MCU row may hold more: padding).
    blocks_wide: usize,
    blocks_high: usize,
    row: Vec<Coefficients>,
}

/// Rebuilds the sequential scan's blocks (re-quantizing them if asked),
/// gathers them an MCU row at a time and hands every band its blocks in
/// the order its scan codes them.
struct Transcoder {
    planes: Vec<Plane>,
    mcus_wide: usize,
    /// Per scan slot: its frame component and new steps.
    slots: Vec<(usize, Option<Requant>)>,
    /// The MCU being gathered, counted from the scan's start.
    mcu: usize,
    bands: Vec<BandCoder>,
}

impl Transcoder {
    fn row_width(&self, ci: usize) -> usize {
        self.mcus_wide * self.planes[ci].h
    }

    /// Codes MCU row `r` into every band.
    fn flush_row(&mut self, r: usize) {
        for b in 0..self.bands.len() {
            let band = &self.bands[b].band;
            if band.start == 0 && band.components.len() > 1 {
                // Interleaved: MCU by MCU, each component's blocks in turn.
                let components = band.components.clone();
                for m in 0..self.mcus_wide {
                    for (k, &ci) in components.iter().enumerate() {
                        let (h, v, width) =
                            (self.planes[ci].h, self.planes[ci].v, self.row_width(ci));
                        for y in 0..v {
                            for x in 0..h {
                                let dc = self.planes[ci].row[y * width + m * h + x].values[0];
                                self.bands[b].dc(k, i32::from(dc));
                            }
                        }
                    }
                }
                continue;
            }
            // One component: its blocks in raster order, padding left out.
            let ci = band.components[0];
            let dc_only = band.start == 0;
            let width = self.row_width(ci);
            let plane = &self.planes[ci];
            for y in 0..plane.v {
                if r * plane.v + y >= plane.blocks_high {
                    break;
                }
                for x in 0..plane.blocks_wide {
                    let block = &plane.row[y * width + x];
                    if dc_only {
                        self.bands[b].dc(0, i32::from(block.values[0]));
                    } else {
                        self.bands[b].ac(block);
                    }
                }
            }
        }
    }
}

impl BlockSink for Transcoder {
    fn block(&mut self, slot: usize, index: usize, blocks: &Blocks) {
        let (ci, steps) = self.slots[slot];
        let block = Coefficients::rebuilt(blocks, steps.as_ref());
        let h = self.planes[ci].h;
        let x = (self.mcu % self.mcus_wide) * h + index % h;
        let width = self.row_width(ci);
        if let Some(cell) = self.planes[ci].row.get_mut((index / h) * width + x) {
            *cell = block;
        }
    }
    fn end_mcu(&mut self, mcu: usize) {
        self.mcu = mcu + 1;
        if self.mcu.is_multiple_of(self.mcus_wide) {
            self.flush_row(self.mcu / self.mcus_wide - 1);
        }
    }
}

/// Whether [`transcode`] can take `input`: one scan holding every
/// component of the frame (a sequential file's usual layout).
pub(super) fn applies(input: &Input<'_>) -> bool {
    let n = input.frame.components.len();
    input.scan.components.len() == n
        && (1..=4).contains(&n)
        && (0..n).all(|ci| input.scan.components.iter().any(|&(c, _, _)| c == ci))
}

/// A coder of `frame`'s layout for `input`'s scan.
fn transcoder(frame: &Frame, input: &Input<'_>, bands: Vec<BandCoder>) -> Transcoder {
    let single = frame.components.len() == 1;
    let (max_h, max_v) = (frame.max_h(), frame.max_v());
    let planes: Vec<Plane> = frame
        .components
        .iter()
        .map(|c| {
            let (h, v) = if single {
                (1, 1)
            } else {
                (usize::from(c.h), usize::from(c.v))
            };
            let w = (frame.width * u32::from(c.h)).div_ceil(max_h);
            let hh = (frame.height * u32::from(c.v)).div_ceil(max_v);
            Plane {
                h,
                v,
                blocks_wide: w.div_ceil(8) as usize,
                blocks_high: hh.div_ceil(8) as usize,
                row: Vec::new(),
            }
        })
        .collect();
    let mcus_wide = if single {
        planes[0].blocks_wide
    } else {
        frame.width.div_ceil(8 * max_h) as usize
    };
    let mut planes = planes;
    for p in &mut planes {
        p.row = vec![Coefficients::ZERO; mcus_wide * p.h * p.v];
    }
    let slots = input
        .scan
        .components
        .iter()
        .map(|&(ci, _, _)| (ci, input.steps[usize::from(frame.components[ci].tq)]))
        .collect::<Vec<_>>();
    Transcoder {
        planes,
        mcus_wide,
        slots,
        mcu: 0,
        bands,
    }
}

/// The scans of a progressive file holding `input`'s coefficients (each
/// with its DHT and SOS), or `None` when an optimized sequential file
/// (whose Huffman codes and table bodies take `sequential_bits`) would be
/// smaller.
///
/// # Errors
/// [`RecodeError`] for damaged entropy-coded data.
pub(super) fn transcode(
    input: &Input<'_>,
    sequential_bits: u64,
) -> Result<Option<Vec<u8>>, RecodeError> {
    let n = input.frame.components.len();
    let resample = input.resample && resamples(input.frame);
    let frame = if resample {
        resample::subsampled(input.frame)
    } else {
        input.frame.clone()
    };
    // Walks the input once into a coder for `frame` (through the
    // resampler when subsampling).
    let walk = |coder: Transcoder| -> Result<Transcoder, RecodeError> {
        if resample {
            let mut resampler = Rebuild::new(Resampler::new(input.frame, coder));
            walk_into(input, &mut resampler)?;
            Ok(resampler.sink.out)
        } else {
            let mut coder = Rebuild::new(coder);
            walk_into(input, &mut coder)?;
            Ok(coder.sink)
        }
    };
    let mut counting = walk(transcoder(
        &frame,
        input,
        script(n).into_iter().map(BandCoder::new).collect(),
    ))?;
    let mut progressive_bits = 0;
    let mut all_tables = Vec::new();
    for band in &mut counting.bands {
        band.flush_eobrun();
        let (tables, bits) = band.tables();
        // Each scan's DHT (its tables, beyond the marker and length) and SOS.
        let headers: usize = tables
            .iter()
            .map(|(_, values)| 17 + values.len())
            .sum::<usize>()
            + 4
            + 8
            + 2 * band.band.components.len();
        progressive_bits += bits + 8 * headers as u64;
        all_tables.push(tables);
    }
    // A subsampled image has no sequential alternative here.
    if !resample && progressive_bits >= sequential_bits {
        return Ok(None);
    }
    let bands = script(n)
        .into_iter()
        .zip(&all_tables)
        .map(|(band, tables)| {
            let mut coder = BandCoder::new(band);
            coder.codes = Some(tables.iter().map(|(c, v)| codes(c, v)).collect());
            coder
        })
        .collect();
    let mut writing = walk(transcoder(&frame, input, bands))?;
    let mut out = Vec::new();
    for (coder, tables) in writing.bands.iter_mut().zip(&all_tables) {
        coder.flush_eobrun();
        coder.bits.flush();
        let dc = coder.band.start == 0;
        let mut dht = Vec::new();
        for (id, (counts, values)) in tables.iter().enumerate() {
            dht.push((u8::from(!dc) << 4) | id as u8);
            dht.extend_from_slice(counts);
            dht.extend_from_slice(values);
        }
        push_segment(&mut out, 0xC4, &dht)?;
        let components = &coder.band.components;
        let mut sos = vec![components.len() as u8];
        for (k, &ci) in components.iter().enumerate() {
            sos.push(input.frame.components[ci].id);
            sos.push(if dc { (k as u8) << 4 } else { 0 });
        }
        sos.extend_from_slice(&[coder.band.start as u8, coder.band.end as u8, 0]);
        push_segment(&mut out, 0xDA, &sos)?;
        out.append(&mut coder.bits.out);
    }
    Ok(Some(out))
}
