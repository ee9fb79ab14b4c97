//! Lossless re-coding of a sequential JPEG with optimal Huffman tables, as
//! `jpegtran -copy none -optimize` does: every scan's Huffman symbols and
//! their extra bits are read and written again under tables built from the
//! scan's own symbol counts (ITU T.81 Annex K.2). No coefficient changes,
//! no pixel is decoded, nothing is re-quantized: the image decodes to the
//! same pixels, bit for bit. When the counts say progressive scans would
//! make a smaller file, the same coefficients are written progressive
//! instead (the `progressive` module).
//!
//! Each scan is read twice (once to count, once to write) instead of being
//! held: the memory used is the output alone, whatever the image's size,
//! which keeps 50 MP originals inside a 128 MiB instance.
//!
//! [`requantize`] is the lossy variant: each block's coefficients are
//! rebuilt from the symbols, divided down to coarser quantization steps and
//! coded again, still without a decode to pixels.
//!
//! Written here because no pure-Rust crate does it: the Rust JPEG decoders
//! (`jpeg-decoder`, `zune-jpeg`) and encoders (`jpeg-encoder`) go to and
//! from pixels, and libjpeg's `jpegtran` (through `mozjpeg-sys`) is C whose
//! error handling (`longjmp`) traps a wasm instance on a corrupt file.
//!
//! Progressive, arithmetic-coded, 12-bit, lossless and hierarchical JPEGs
//! are left as they are ([`optimize_huffman`] answers `Ok(None)`), and so
//! is a file whose tables are within 0.25 % of optimal, or that uses none of
//! the standard tables of T.81 K.3 (custom tables were made for the image:
//! next to nothing to gain) unless progressive scans pay; both are known
//! after the counting pass, so such a file costs one read.

/// A scan is re-coded only when the new tables save at least this fraction
/// of the file (1/400 = 0.25 %), which its symbol counts tell before it is
/// written: an already optimized file costs one read, not two.
const MIN_SAVING_DIVISOR: usize = 400;

/// Re-quantizing below this quality subsamples 4:4:4 and 4:2:2 chroma to
/// 4:2:0, where libvips' and libjpeg's re-encodes subsample too.
const RESAMPLE_BELOW_QUALITY: u8 = 90;

/// Progressive scans are tried when the end-of-block codes they would save
/// are worth 1/50 of the file (2 %): counting them costs two more reads of
/// the scan, which a file with few such blocks does not repay (a 20 MP
/// photo gained 1.1 % for 7 times the re-coding time).
const PROGRESSIVE_WORTH_DIVISOR: usize = 50;

/// Why a JPEG cannot be re-coded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the JPEG cannot be re-coded: {0}")]
pub struct RecodeError(&'static str);

fn fail<T>(why: &'static str) -> Result<T, RecodeError> {
    Err(RecodeError(why))
}

/// A component of the frame.
#[derive(Clone, Copy, Debug)]
struct Component {
    id: u8,
    h: u8,
    v: u8,
    /// Its quantization table.
    tq: u8,
}

/// The frame header's facts a scan's layout needs.
#[derive(Clone, Debug, Default)]
struct Frame {
    width: u32,
    height: u32,
    components: Vec<Component>,
}

impl Frame {
    fn max_h(&self) -> u32 {
        self.components
            .iter()
            .map(|c| u32::from(c.h))
            .max()
            .unwrap_or(1)
    }

    fn max_v(&self) -> u32 {
        self.components
            .iter()
            .map(|c| u32::from(c.v))
            .max()
            .unwrap_or(1)
    }
}

/// A Huffman table as DHT carries it, with what decoding needs.
#[derive(Clone)]
struct Table {
    /// Code length → (first code, index of its first value, count).
    lengths: [(u32, usize, usize); 17],
    values: Vec<u8>,
    /// The next 11 bits → (length, value) for codes of up to 11 bits.
    fast: Box<[(u8, u8); 1 << FAST_BITS]>,
    /// Its current code lengths, by symbol (what a symbol costs today).
    length_of: [u8; 256],
    /// How many codes of each length (DHT's counts).
    counts: [u8; 16],
}

/// The code-length counts of the four example tables of ITU T.81 K.3 (DC
/// and AC, luminance and chrominance), which libjpeg and most cameras
/// write unless told to optimize.
const STANDARD_COUNTS: [[u8; 16]; 4] = [
    [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D],
    [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
];

const FAST_BITS: u32 = 11;

impl Table {
    fn new(counts: &[u8; 16], values: &[u8]) -> Result<Self, RecodeError> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total != values.len() || total > 256 {
            return fail("a Huffman table's counts and values disagree");
        }
        let mut lengths = [(0, 0, 0); 17];
        let mut fast = Box::new([(0u8, 0u8); 1 << FAST_BITS]);
        let mut length_of = [0u8; 256];
        let (mut code, mut index) = (0u32, 0usize);
        for len in 1..=16u32 {
            let n = usize::from(counts[len as usize - 1]);
            lengths[len as usize] = (code, index, n);
            for k in 0..n {
                let c = code + k as u32;
                if c >= 1 << len {
                    return fail("a Huffman table has more codes than fit");
                }
                length_of[usize::from(values[index + k])] = len as u8;
                if len <= FAST_BITS {
                    let shift = FAST_BITS - len;
                    for fill in 0..(1u32 << shift) {
                        fast[((c << shift) | fill) as usize] = (len as u8, values[index + k]);
                    }
                }
            }
            code = (code + n as u32) << 1;
            index += n;
        }
        Ok(Self {
            lengths,
            values: values.to_vec(),
            fast,
            length_of,
            counts: *counts,
        })
    }

    #[inline]
    /// The next symbol; the reader must hold 16 bits ([`BitReader::refill`]).
    fn decode(&self, bits: &mut BitReader<'_>) -> Result<u8, RecodeError> {
        let (len, value) = self.fast[bits.peek(FAST_BITS) as usize];
        if len > 0 {
            bits.consume(u32::from(len));
            return Ok(value);
        }
        for len in FAST_BITS + 1..=16 {
            let code = bits.peek(len);
            let (first, index, n) = self.lengths[len as usize];
            if n > 0 && code >= first && code < first + n as u32 {
                bits.consume(len);
                return Ok(self.values[index + (code - first) as usize]);
            }
        }
        fail("a Huffman code that is not in its table")
    }
}

/// Reads entropy-coded bits, removing stuffed zero bytes; stops at a marker.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    count: u32,
    /// A marker was reached: only padding (zeros) is read from here on.
    at_marker: bool,
}

impl<'a> BitReader<'a> {
    const fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            acc: 0,
            count: 0,
            at_marker: false,
        }
    }

    /// Makes sure 32 bits are buffered: a code and its extra bits.
    #[inline]
    fn refill(&mut self) {
        if self.count < 32 {
            self.fill();
        }
    }

    fn fill(&mut self) {
        // Fast path: the next bytes hold no 0xFF (no stuffing, no marker).
        let room = (64 - self.count) / 8;
        if let Some(next) = self.data.get(self.pos..self.pos + room as usize)
            && !next.contains(&0xFF)
        {
            for &b in next {
                self.acc |= u64::from(b) << (56 - self.count);
                self.count += 8;
            }
            self.pos += room as usize;
            return;
        }
        while self.count <= 56 {
            let byte = if self.at_marker {
                0
            } else {
                match self.data.get(self.pos) {
                    Some(&0xFF) if self.data.get(self.pos + 1) == Some(&0) => {
                        self.pos += 2;
                        0xFF
                    }
                    Some(&0xFF) | None => {
                        self.at_marker = true;
                        0
                    }
                    Some(&b) => {
                        self.pos += 1;
                        b
                    }
                }
            };
            self.acc |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    #[inline]
    fn peek(&self, n: u32) -> u32 {
        (self.acc >> (64 - n)) as u32
    }

    fn consume(&mut self, n: u32) {
        self.acc <<= n;
        self.count -= n;
    }

    #[inline]
    fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let v = self.peek(n);
        self.consume(n);
        v
    }

    /// Drops the bits left in the current byte and reads a restart marker.
    /// The read-ahead stops at a marker, and the bits before it are less
    /// than a byte of padding, so the marker is where the reader stands
    /// (anything else before it is skipped, as decoders do).
    fn restart(&mut self) -> Result<(), RecodeError> {
        self.acc = 0;
        self.count = 0;
        self.at_marker = false;
        loop {
            match self.data.get(self.pos..self.pos + 2) {
                Some(&[0xFF, m]) if (0xD0..=0xD7).contains(&m) => {
                    self.pos += 2;
                    return Ok(());
                }
                Some(&[0xFF, m]) if m != 0 && m != 0xFF => {
                    return fail("a restart marker is missing");
                }
                Some(_) => self.pos += 1,
                None => return fail("a restart marker is missing"),
            }
        }
    }

    /// Where the reader stands in `data`, once aligned after a marker.
    const fn position(&self) -> usize {
        self.pos
    }
}

/// Writes entropy-coded bits, stuffing a zero after every 0xFF.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    count: u32,
}

impl BitWriter {
    const fn new(out: Vec<u8>) -> Self {
        Self {
            out,
            acc: 0,
            count: 0,
        }
    }

    /// Appends the low `len` bits of `code` (at most 32). Whole 32-bit
    /// words go out at once, byte by byte only when one holds an `0xFF`
    /// (which is followed by a stuffed `0x00`).
    fn put(&mut self, code: u32, len: u32) {
        if len == 0 {
            return;
        }
        // `count` stays below 32 between calls, so `count + len` < 64.
        self.acc = (self.acc << len) | (u64::from(code) & ((1 << len) - 1));
        self.count += len;
        if self.count >= 32 {
            self.count -= 32;
            let word = ((self.acc >> self.count) as u32).to_be_bytes();
            if word.contains(&0xFF) {
                for byte in word {
                    self.out.push(byte);
                    if byte == 0xFF {
                        self.out.push(0);
                    }
                }
            } else {
                self.out.extend_from_slice(&word);
            }
        }
    }

    /// Appends a Huffman `code` of `code_len` bits and its `size` extra
    /// bits in one step (together at most 32 bits).
    #[inline]
    fn put_symbol(&mut self, (code, code_len): (u32, u32), size: u32, extra: u32) {
        let extra = extra & ((1 << size) - 1);
        self.put((code << size) | extra, code_len + size);
    }

    /// Writes out the bits held, the last byte padded with 1-bits.
    fn flush(&mut self) {
        while self.count >= 8 {
            self.count -= 8;
            let byte = (self.acc >> self.count) as u8;
            self.out.push(byte);
            if byte == 0xFF {
                self.out.push(0);
            }
        }
        if self.count > 0 {
            let pad = 8 - self.count;
            let byte = ((self.acc << pad) as u8) | ((1 << pad) - 1);
            self.out.push(byte);
            if byte == 0xFF {
                self.out.push(0);
            }
        }
        self.acc = 0;
        self.count = 0;
    }
}

/// An optimal table for the counts `freq` (ITU T.81 K.2, codes limited to
/// 16 bits, no code of all ones): the DHT counts and values.
fn optimal_table(freq: &[u32; 256]) -> ([u8; 16], Vec<u8>) {
    let mut counts = *freq;
    loop {
        if let Some(table) = optimal_table_within_32(&counts) {
            return table;
        }
        // Codes deeper than 32 bits (very skewed counts): flatten and retry.
        for c in counts.iter_mut().filter(|c| **c > 0) {
            *c = (*c / 2).max(1);
        }
    }
}

fn optimal_table_within_32(freq: &[u32; 256]) -> Option<([u8; 16], Vec<u8>)> {
    let mut f = [0u64; 257];
    for (i, &n) in freq.iter().enumerate() {
        f[i] = u64::from(n);
    }
    // A reserved symbol with the least count keeps any code from being all ones.
    f[256] = 1;
    let mut size = [0usize; 257];
    let mut others = [usize::MAX; 257];
    loop {
        let mut c1 = None;
        for i in 0..257 {
            if f[i] > 0 && c1.is_none_or(|c: usize| f[i] <= f[c]) {
                c1 = Some(i);
            }
        }
        let Some(c1) = c1 else { break };
        let mut c2 = None;
        for i in 0..257 {
            if i != c1 && f[i] > 0 && c2.is_none_or(|c: usize| f[i] <= f[c]) {
                c2 = Some(i);
            }
        }
        let Some(c2) = c2 else { break };
        f[c1] += f[c2];
        f[c2] = 0;
        let mut i = c1;
        loop {
            size[i] += 1;
            if others[i] == usize::MAX {
                break;
            }
            i = others[i];
        }
        others[i] = c2;
        let mut j = c2;
        loop {
            size[j] += 1;
            if others[j] == usize::MAX {
                break;
            }
            j = others[j];
        }
    }
    if size.iter().any(|&s| s > 32) {
        return None;
    }
    let mut bits = [0u32; 33];
    for &s in &size {
        if s > 0 {
            bits[s] += 1;
        }
    }
    for i in (17..=32).rev() {
        while bits[i] > 0 {
            let mut j = i - 2;
            while bits[j] == 0 {
                j -= 1;
            }
            bits[i] -= 2;
            bits[i - 1] += 1;
            bits[j + 1] += 2;
            bits[j] -= 1;
        }
    }
    // Take the reserved symbol's code back.
    let mut i = 16;
    while i > 0 && bits[i] == 0 {
        i -= 1;
    }
    if i > 0 {
        bits[i] -= 1;
    }
    let mut values = Vec::new();
    for len in 1..=32 {
        for (symbol, &s) in size.iter().enumerate().take(256) {
            if s == len {
                values.push(symbol as u8);
            }
        }
    }
    let mut counts = [0u8; 16];
    for len in 1..=16 {
        counts[len - 1] = bits[len] as u8;
    }
    Some((counts, values))
}

/// The codes of a table: symbol → (code, length).
fn codes(counts: &[u8; 16], values: &[u8]) -> [(u32, u32); 256] {
    let mut out = [(0, 0); 256];
    let (mut code, mut k) = (0u32, 0usize);
    for len in 1..=16u32 {
        for _ in 0..counts[len as usize - 1] {
            out[usize::from(values[k])] = (code, len);
            code += 1;
            k += 1;
        }
        code <<= 1;
    }
    out
}

/// One scan: which tables each of its components uses.
struct Scan {
    /// (frame component index, DC table, AC table).
    components: Vec<(usize, usize, usize)>,
}

/// What to do with each Huffman symbol of a scan.
trait Sink {
    /// Block `index` of its MCU, of the scan's component `slot`, starts
    /// (its DC comes next).
    fn begin_block(&mut self, _slot: usize, _index: usize) {}
    fn dc(&mut self, table: usize, symbol: u8, extra: u32);
    fn ac(&mut self, table: usize, symbol: u8, extra: u32);
    /// The block begun last has had all its symbols.
    fn end_block(&mut self) {}
    /// MCU `mcu` (counted from 0 in the scan) has had all its blocks.
    fn end_mcu(&mut self, _mcu: usize) {}
    fn restart(&mut self, n: usize);
}

/// Walks one scan's entropy-coded data (`data` starts right after the SOS
/// header), handing every symbol to `sink`; the length of the data read,
/// restart markers included.
fn walk_scan(
    frame: &Frame,
    scan: &Scan,
    tables: &[[Option<Table>; 4]; 2],
    restart_interval: u32,
    data: &[u8],
    sink: &mut impl Sink,
) -> Result<usize, RecodeError> {
    let blocks_of = |c: &Component| -> (u32, u32) {
        let w = (frame.width * u32::from(c.h)).div_ceil(frame.max_h());
        let h = (frame.height * u32::from(c.v)).div_ceil(frame.max_v());
        (w.div_ceil(8), h.div_ceil(8))
    };
    let interleaved = scan.components.len() > 1;
    let mcus = if interleaved {
        let (mw, mh) = (
            frame.width.div_ceil(8 * frame.max_h()),
            frame.height.div_ceil(8 * frame.max_v()),
        );
        u64::from(mw) * u64::from(mh)
    } else {
        let (bw, bh) = blocks_of(&frame.components[scan.components[0].0]);
        u64::from(bw) * u64::from(bh)
    };
    let table = |class: usize, id: usize| {
        tables[class][id]
            .as_ref()
            .ok_or(RecodeError("a scan uses an undefined Huffman table"))
    };
    let layout: Vec<(usize, &Table, &Table, usize, usize)> = scan
        .components
        .iter()
        .map(|&(ci, dc, ac)| {
            let c = frame.components[ci];
            let n = if interleaved {
                usize::from(c.h) * usize::from(c.v)
            } else {
                1
            };
            Ok((n, table(0, dc)?, table(1, ac)?, dc, ac))
        })
        .collect::<Result<_, RecodeError>>()?;
    let mut bits = BitReader::new(data);
    let mut restarts = 0usize;
    for mcu in 0..mcus {
        if restart_interval > 0 && mcu > 0 && mcu % u64::from(restart_interval) == 0 {
            bits.restart()?;
            sink.restart(restarts);
            restarts += 1;
        }
        for (slot, &(n, dc, ac, dc_id, ac_id)) in layout.iter().enumerate() {
            for index in 0..n {
                sink.begin_block(slot, index);
                bits.refill();
                let s = dc.decode(&mut bits)?;
                if s > 16 {
                    return fail("a DC difference longer than 16 bits");
                }
                let extra = bits.bits(u32::from(s));
                sink.dc(dc_id, s, extra);
                let mut k = 1;
                while k < 64 {
                    bits.refill();
                    let rs = ac.decode(&mut bits)?;
                    let (run, size) = (rs >> 4, rs & 15);
                    let extra = bits.bits(u32::from(size));
                    sink.ac(ac_id, rs, extra);
                    if size == 0 {
                        if run == 15 {
                            k += 16;
                            continue;
                        }
                        break;
                    }
                    k += usize::from(run) + 1;
                }
                if k > 64 {
                    return fail("a block with more than 64 coefficients");
                }
                sink.end_block();
            }
        }
        sink.end_mcu(mcu as usize);
    }
    Ok(bits.position())
}

/// Passes symbols on to `inner` and counts, per AC table, the blocks with
/// nothing past zig-zag position 5: those a progressive file codes in
/// end-of-band runs instead of one end-of-block code each.
struct Tally<'a, S> {
    inner: &'a mut S,
    k: usize,
    last: usize,
    table: usize,
    short: [u64; 4],
}

impl<'a, S> Tally<'a, S> {
    const fn new(inner: &'a mut S) -> Self {
        Self {
            inner,
            k: 0,
            last: 0,
            table: 0,
            short: [0; 4],
        }
    }
}

impl<S: Sink> Sink for Tally<'_, S> {
    fn begin_block(&mut self, slot: usize, index: usize) {
        self.k = 1;
        self.last = 0;
        self.inner.begin_block(slot, index);
    }
    fn dc(&mut self, table: usize, symbol: u8, extra: u32) {
        self.inner.dc(table, symbol, extra);
    }
    fn ac(&mut self, table: usize, symbol: u8, extra: u32) {
        self.table = table;
        let (run, size) = (usize::from(symbol >> 4), symbol & 15);
        if size != 0 {
            self.k += run;
            self.last = self.k;
            self.k += 1;
        } else if run == 15 {
            self.k += 16;
        }
        self.inner.ac(table, symbol, extra);
    }
    fn end_block(&mut self) {
        if self.last <= 5 {
            self.short[self.table] += 1;
        }
        self.inner.end_block();
    }
    fn end_mcu(&mut self, mcu: usize) {
        self.inner.end_mcu(mcu);
    }
    fn restart(&mut self, n: usize) {
        self.inner.restart(n);
    }
}

struct Counts {
    dc: [[u32; 256]; 4],
    ac: [[u32; 256]; 4],
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            dc: [[0; 256]; 4],
            ac: [[0; 256]; 4],
        }
    }
}

impl Sink for Counts {
    fn dc(&mut self, table: usize, symbol: u8, _: u32) {
        self.dc[table][usize::from(symbol)] += 1;
    }
    fn ac(&mut self, table: usize, symbol: u8, _: u32) {
        self.ac[table][usize::from(symbol)] += 1;
    }
    fn restart(&mut self, _: usize) {}
}

struct Writer {
    bits: BitWriter,
    dc: [Option<[(u32, u32); 256]>; 4],
    ac: [Option<[(u32, u32); 256]>; 4],
}

impl Writer {
    fn symbol(&mut self, code: (u32, u32), size: u32, extra: u32) {
        self.bits.put_symbol(code, size, extra);
    }
}

impl Sink for Writer {
    fn dc(&mut self, table: usize, symbol: u8, extra: u32) {
        let code = self.dc[table]
            .as_ref()
            .map_or((0, 0), |t| t[usize::from(symbol)]);
        self.symbol(code, u32::from(symbol), extra);
    }
    fn ac(&mut self, table: usize, symbol: u8, extra: u32) {
        let code = self.ac[table]
            .as_ref()
            .map_or((0, 0), |t| t[usize::from(symbol)]);
        self.symbol(code, u32::from(symbol & 15), extra);
    }
    fn restart(&mut self, n: usize) {
        self.bits.flush();
        self.bits
            .out
            .extend_from_slice(&[0xFF, 0xD0 + (n % 8) as u8]);
    }
}

/// The position in natural (row-major) order of each coefficient in the
/// zig-zag order that DQT segments and scans use (T.81 Figure A.6).
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The example quantization tables of T.81 K.1 in natural order (luminance,
/// chrominance): what libjpeg scales by its quality setting.
const BASE_QUANT: [[u16; 64]; 2] = [
    [
        16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69,
        56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81,
        104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
    ],
    [
        17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99,
        99, 47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
        99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    ],
];

/// libjpeg's table for `quality` (1–100, `jpeg_quality_scaling`, limited
/// to baseline's 255), in zig-zag order.
fn scaled_table(chroma: bool, quality: u8) -> [u16; 64] {
    let q = u32::from(quality.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    let base = &BASE_QUANT[usize::from(chroma)];
    std::array::from_fn(|i| {
        let v = (u32::from(base[ZIGZAG[i]]) * scale + 50) / 100;
        v.clamp(1, 255) as u16
    })
}

/// A quantization table being replaced: per zig-zag position, the step the
/// file used and the (never finer) step it gets.
type Requant = [Step; 64];

/// One position's old and new quantization steps.
#[derive(Clone, Copy, Debug)]
struct Step {
    old: u16,
    new: u16,
    /// `old / new`: a coefficient is multiplied by it (a division by a
    /// varying integer costs several times a multiplication). The quotient
    /// (at most 1023) is exact enough never to cross a half.
    ratio: f64,
}

impl Step {
    /// Step `old` becoming `new`.
    fn new(old: u16, new: u16) -> Self {
        Self {
            old,
            new,
            ratio: f64::from(old) / f64::from(new),
        }
    }
}

/// The size category of a coefficient value and its extra bits (T.81 F.1.2).
fn category(v: i32) -> (u8, u32) {
    let size = 32 - v.unsigned_abs().leading_zeros();
    let extra = if v < 0 { v - 1 } else { v };
    (size as u8, extra as u32 & ((1u32 << size) - 1))
}

/// The value of extra bits `extra` of size category `size`.
fn extend(extra: u32, size: u8) -> i32 {
    if size == 0 {
        return 0;
    }
    let v = extra as i32;
    if v < 1 << (size - 1) {
        v - (1 << size) + 1
    } else {
        v
    }
}

/// Rebuilds each block's coefficients (zig-zag order) from the symbols a
/// walk reads.
struct Blocks {
    k: usize,
    block: [i32; 64],
    /// Bit k set: `block[k]` (k ≥ 1) was given a value.
    nonzero: u64,
    /// DC predictors, per scan slot.
    seen: [i32; 4],
}

impl Blocks {
    const fn new() -> Self {
        Self {
            k: 0,
            block: [0; 64],
            nonzero: 0,
            seen: [0; 4],
        }
    }

    fn begin(&mut self) {
        // Only what the last block set is cleared.
        while self.nonzero != 0 {
            self.block[self.nonzero.trailing_zeros() as usize] = 0;
            self.nonzero &= self.nonzero - 1;
        }
        self.block[0] = 0;
        self.k = 0;
    }

    fn dc(&mut self, slot: usize, symbol: u8, extra: u32) {
        self.seen[slot] += extend(extra, symbol);
        self.block[0] = self.seen[slot];
        self.k = 1;
    }

    fn ac(&mut self, symbol: u8, extra: u32) {
        let (run, size) = (usize::from(symbol >> 4), symbol & 15);
        if size == 0 {
            // ZRL skips 16 zeros; an end of block leaves the rest zero.
            if run == 15 {
                self.k += 16;
            }
            return;
        }
        self.k += run;
        if let Some(c) = self.block.get_mut(self.k) {
            *c = extend(extra, size);
            self.nonzero |= 1 << self.k;
        }
        self.k += 1;
    }

    const fn restart(&mut self) {
        self.seen = [0; 4];
    }
}

/// A block's coefficients in zig-zag order, with a mask of those not zero
/// (bit k for position k ≥ 1): the coders skip zeros by the mask.
#[derive(Clone, Copy)]
struct Coefficients {
    values: [i16; 64],
    nonzero: u64,
}

impl Coefficients {
    const ZERO: Self = Self {
        values: [0; 64],
        nonzero: 0,
    };

    /// The block `blocks` rebuilt last, re-quantized to `steps` if given,
    /// limited to what an 8-bit file holds (a damaged one may not).
    fn rebuilt(blocks: &Blocks, steps: Option<&Requant>) -> Self {
        let source = &blocks.block;
        let step = |k: usize, c: i32| steps.map_or(c, |s| requantized(c, s[k], k == 0));
        let mut block = Self::ZERO;
        block.values[0] = step(0, source[0]).clamp(-1024, 1023) as i16;
        let mut mask = blocks.nonzero;
        while mask != 0 {
            let k = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let c = step(k, source[k]).clamp(-1023, 1023);
            if c != 0 {
                block.values[k] = c as i16;
                block.nonzero |= 1 << k;
            }
        }
        block
    }
}

/// Codes `block`'s AC coefficients at the positions of `band` (a mask
/// starting at `start`) into `symbol(run/size, size, extra)`, ZRLs
/// included; whether a run of zeros ends the band.
#[inline]
fn code_ac(
    block: &Coefficients,
    start: usize,
    band: u64,
    mut symbol: impl FnMut(u8, u32, u32),
) -> bool {
    let mut mask = block.nonzero & band;
    let mut next = start;
    while mask != 0 {
        let k = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let mut run = k - next;
        while run > 15 {
            symbol(0xF0, 0, 0);
            run -= 16;
        }
        let (size, extra) = category(i32::from(block.values[k]));
        symbol(((run as u8) << 4) | size, u32::from(size), extra);
        next = k + 1;
    }
    // The band's last position is its highest bit.
    next <= 63 - band.leading_zeros() as usize
}

/// Codes `block` (block `index` of its MCU) into `sink`'s symbols under
/// `prediction` (the slot's last DC), as a sequential scan does.
fn emit_block(
    sink: &mut impl Sink,
    (slot, index, dc_table, ac_table): (usize, usize, usize, usize),
    block: &Coefficients,
    prediction: &mut i32,
) {
    let dc = i32::from(block.values[0]);
    let (size, extra) = category(dc - *prediction);
    *prediction = dc;
    sink.begin_block(slot, index);
    sink.dc(dc_table, size, extra);
    if code_ac(block, 1, !1, |rs, _, extra| sink.ac(ac_table, rs, extra)) {
        sink.ac(ac_table, 0, 0);
    }
    sink.end_block();
}

/// `c` re-quantized to `step`'s new step, to nearest. A tie (a step
/// exactly twice the old one and an odd `c`: common, as fine tables are
/// often half of the target's) goes towards zero for an AC coefficient and
/// away from it for the DC. Measured on the smooth Painting photo, against
/// its decoded pixels (luminance mean absolute error): AC ties towards zero
/// made the file 2.6 % smaller for the same error (a ±1 at the finer step
/// hardly shows in 8-bit pixels; doubling it does), and DC ties to the
/// even value instead of away from zero made the error 1.7x larger.
fn requantized(c: i32, step: Step, dc: bool) -> i32 {
    let q = f64::from(c.unsigned_abs()) * step.ratio;
    // `f64::round` is a call into libm; truncation is one instruction.
    let up = q + 0.5;
    let mut magnitude = up as i32;
    // A tie: `up` is a whole number (to within the ratio's rounding).
    if !dc && up - f64::from(magnitude) < 1e-9 {
        magnitude -= 1;
    }
    if c < 0 { -magnitude } else { magnitude }
}

/// What is done with each block a walk's symbols rebuild ([`Rebuild`]).
trait BlockSink {
    /// Block `index` of its MCU, of scan slot `slot`, rebuilt in `blocks`.
    fn block(&mut self, slot: usize, index: usize, blocks: &Blocks);
    /// MCU `mcu` has had all its blocks.
    fn end_mcu(&mut self, _mcu: usize) {}
    /// A restart marker (the rebuilt DC values are absolute already).
    fn restart(&mut self, _n: usize) {}
}

/// A [`Sink`] that rebuilds every block's coefficients from the symbols and
/// hands each whole block to `sink`.
struct Rebuild<S> {
    sink: S,
    blocks: Blocks,
    slot: usize,
    index: usize,
}

impl<S> Rebuild<S> {
    const fn new(sink: S) -> Self {
        Self {
            sink,
            blocks: Blocks::new(),
            slot: 0,
            index: 0,
        }
    }
}

impl<S: BlockSink> Sink for Rebuild<S> {
    fn begin_block(&mut self, slot: usize, index: usize) {
        (self.slot, self.index) = (slot, index);
        self.blocks.begin();
    }
    fn dc(&mut self, _: usize, symbol: u8, extra: u32) {
        self.blocks.dc(self.slot, symbol, extra);
    }
    fn ac(&mut self, _: usize, symbol: u8, extra: u32) {
        self.blocks.ac(symbol, extra);
    }
    fn end_block(&mut self) {
        self.sink.block(self.slot, self.index, &self.blocks);
    }
    fn end_mcu(&mut self, mcu: usize) {
        self.sink.end_mcu(mcu);
    }
    fn restart(&mut self, n: usize) {
        self.blocks.restart();
        self.sink.restart(n);
    }
}

/// Re-quantizes a scan's blocks to coarser steps in the DCT domain: each
/// block rebuilt ([`Rebuild`]) is divided down (rounding to nearest) and
/// coded again into `inner`. No inverse DCT, no colour conversion: the only
/// loss is the coarser rounding itself, and memory stays one block.
struct Requantizer<'a, S> {
    inner: &'a mut S,
    /// Per scan slot: its DC and AC table ids and its steps.
    slots: Vec<(usize, usize, Requant)>,
    /// DC predictors of the new values.
    written: [i32; 4],
}

impl<'a, S> Requantizer<'a, S> {
    fn new(inner: &'a mut S, input: &Input<'_>) -> Self {
        let slots = input
            .scan
            .components
            .iter()
            .map(|&(ci, dc, ac)| {
                let tq = usize::from(input.frame.components[ci].tq);
                (dc, ac, input.steps[tq].unwrap_or([Step::new(1, 1); 64]))
            })
            .collect();
        Self {
            inner,
            slots,
            written: [0; 4],
        }
    }
}

impl<S: Sink> BlockSink for Requantizer<'_, S> {
    fn block(&mut self, slot: usize, index: usize, blocks: &Blocks) {
        let (dc_table, ac_table, steps) = self.slots[slot];
        let block = Coefficients::rebuilt(blocks, Some(&steps));
        emit_block(
            self.inner,
            (slot, index, dc_table, ac_table),
            &block,
            &mut self.written[slot],
        );
    }
    fn end_mcu(&mut self, mcu: usize) {
        self.inner.end_mcu(mcu);
    }
    fn restart(&mut self, n: usize) {
        self.written = [0; 4];
        self.inner.restart(n);
    }
}

/// One sequential scan and what re-coding it needs.
struct Input<'a> {
    frame: &'a Frame,
    scan: &'a Scan,
    tables: &'a [[Option<Table>; 4]; 2],
    restart_interval: u32,
    /// The scan's entropy-coded data.
    data: &'a [u8],
    /// Per table id, the new quantization steps when re-quantizing.
    steps: &'a [Option<Requant>; 4],
    /// Subsample the chroma to 4:2:0 (`progressive::resamples` says where).
    resample: bool,
}

/// Walks `input`'s scan into `sink`; the length of the data read.
fn walk_into(input: &Input<'_>, sink: &mut impl Sink) -> Result<usize, RecodeError> {
    walk_scan(
        input.frame,
        input.scan,
        input.tables,
        input.restart_interval,
        input.data,
        sink,
    )
}

/// Walks `input`'s scan into `sink` as a sequential file codes it: the
/// symbols as they are, or, when `requantize`, those of the re-quantized
/// blocks.
fn walk_sequential(
    input: &Input<'_>,
    requantize: bool,
    sink: &mut impl Sink,
) -> Result<usize, RecodeError> {
    if requantize {
        walk_into(input, &mut Rebuild::new(Requantizer::new(sink, input)))
    } else {
        walk_into(input, sink)
    }
}

/// Appends a marker segment: `marker`, its length, `body`.
fn push_segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) -> Result<(), RecodeError> {
    let len = u16::try_from(body.len() + 2).map_err(|_| RecodeError("a segment too long"))?;
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

fn u16_at(data: &[u8], at: usize) -> Result<usize, RecodeError> {
    data.get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or(RecodeError("truncated"))
}

/// `jpeg` re-coded with optimal Huffman tables, or `None` when it is not a
/// sequential Huffman-coded 8-bit JPEG, or would shrink by less than 0.25 %
/// (those are left as they are). The
/// result decodes to exactly the same pixels; it is usually smaller, but
/// the caller keeps whichever is smaller.
///
/// # Errors
/// [`RecodeError`] for a file whose structure or entropy-coded data is damaged.
pub fn optimize_huffman(jpeg: &[u8]) -> Result<Option<Vec<u8>>, RecodeError> {
    recode(jpeg, None)
}

/// `jpeg` re-quantized in the DCT domain to libjpeg's tables for `quality`
/// (1–100) wherever they are coarser than the file's own (a step is never
/// made finer: that would cost bytes and restore nothing), below quality 90
/// with 4:4:4 or 4:2:2 chroma subsampled to 4:2:0, then coded with optimal
/// Huffman tables (progressive where smaller, always when subsampled); `None` when it is not a sequential
/// Huffman-coded 8-bit JPEG of one or three components (those are left to
/// the lossless path). Lossy, like any re-encode at `quality`, but without
/// a decode to pixels: no colour conversion is repeated, and memory stays
/// an MCU row whatever the image's size.
///
/// # Errors
/// [`RecodeError`] for a file whose structure or entropy-coded data is damaged.
pub fn requantize(jpeg: &[u8], quality: u8) -> Result<Option<Vec<u8>>, RecodeError> {
    recode(jpeg, Some(quality))
}

/// The new steps of each table the frame's components use: the luminance
/// table for the first component's, the chrominance one for the others'.
fn requant_steps(
    frame: &Frame,
    quant: &[Option<[u16; 64]>; 4],
    quality: u8,
) -> Result<[Option<Requant>; 4], RecodeError> {
    let mut steps = [None; 4];
    for (i, c) in frame.components.iter().enumerate().rev() {
        let id = usize::from(c.tq);
        let old = quant[id].ok_or(RecodeError(
            "a component uses an undefined quantization table",
        ))?;
        let target = scaled_table(i > 0, quality);
        steps[id] = Some(std::array::from_fn(|k| {
            Step::new(old[k], old[k].max(target[k]))
        }));
    }
    Ok(steps)
}

/// The body of a DQT segment of every table defined: the new steps where
/// there are.
fn dqt_body(quant: &[Option<[u16; 64]>; 4], steps: &[Option<Requant>; 4]) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, table) in quant.iter().enumerate() {
        let Some(old) = table else { continue };
        let values: [u16; 64] = steps[id].map_or(*old, |s| s.map(|step| step.new));
        let wide = values.iter().any(|&v| v > 255);
        body.push((u8::from(wide) << 4) | id as u8);
        for v in values {
            if wide {
                body.extend_from_slice(&v.to_be_bytes());
            } else {
                body.push(v as u8);
            }
        }
    }
    body
}

fn recode(jpeg: &[u8], quality: Option<u8>) -> Result<Option<Vec<u8>>, RecodeError> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return fail("no start-of-image marker");
    }
    let mut out = Vec::with_capacity(jpeg.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut frame: Option<Frame> = None;
    let mut tables: [[Option<Table>; 4]; 2] = Default::default();
    let mut restart_interval = 0u32;
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let mut steps: [Option<Requant>; 4] = [None; 4];
    let mut scanned = false;
    // Where the frame header and the restart interval were copied to.
    let (mut sof_at, mut dri_at) = (None, None);
    let mut pos = 2;
    loop {
        while jpeg.get(pos) == Some(&0xFF) && jpeg.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (jpeg.get(pos), jpeg.get(pos + 1)) else {
            return fail("expected a marker");
        };
        if marker == 0xD9 {
            out.extend_from_slice(&[0xFF, 0xD9]);
            return Ok(frame.map(|_| out));
        }
        let len = u16_at(jpeg, pos + 2)?;
        if len < 2 {
            return fail("a segment length below 2");
        }
        let body = jpeg
            .get(pos + 4..pos + 2 + len)
            .ok_or(RecodeError("truncated segment"))?;
        let segment = &jpeg[pos..pos + 2 + len];
        pos += 2 + len;
        match marker {
            0xC0 | 0xC1 => {
                if body.first() != Some(&8) {
                    return Ok(None);
                }
                let height = u32::try_from(u16_at(body, 1)?).unwrap_or(0);
                let width = u32::try_from(u16_at(body, 3)?).unwrap_or(0);
                let n = usize::from(*body.get(5).ok_or(RecodeError("truncated frame"))?);
                if height == 0 || width == 0 || n == 0 || n > 4 {
                    return Ok(None);
                }
                let mut components = Vec::with_capacity(n);
                for i in 0..n {
                    let c = body
                        .get(6 + 3 * i..9 + 3 * i)
                        .ok_or(RecodeError("truncated frame"))?;
                    let (h, v) = (c[1] >> 4, c[1] & 15);
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
                        return fail("a sampling factor out of range");
                    }
                    if c[2] > 3 {
                        return fail("a quantization table id out of range");
                    }
                    components.push(Component {
                        id: c[0],
                        h,
                        v,
                        tq: c[2],
                    });
                }
                let new = Frame {
                    width,
                    height,
                    components,
                };
                if quality.is_some() && n != 1 && n != 3 {
                    return Ok(None);
                }
                frame = Some(new);
                sof_at = Some(out.len());
                out.extend_from_slice(segment);
            }
            // Progressive, lossless, hierarchical, arithmetic: left alone.
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
            0xC4 => {
                let mut rest = body;
                while !rest.is_empty() {
                    let tc = usize::from(rest[0] >> 4);
                    let th = usize::from(rest[0] & 15);
                    if tc > 1 || th > 3 {
                        return fail("a Huffman table id out of range");
                    }
                    let counts: [u8; 16] = rest
                        .get(1..17)
                        .and_then(|c| c.try_into().ok())
                        .ok_or(RecodeError("truncated Huffman table"))?;
                    let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
                    let values = rest
                        .get(17..17 + n)
                        .ok_or(RecodeError("truncated Huffman table"))?;
                    tables[tc][th] = Some(Table::new(&counts, values)?);
                    rest = &rest[17 + n..];
                }
                // Replaced by each scan's own optimal tables.
            }
            // Re-quantizing: the tables are written before the first scan.
            0xDB if quality.is_some() => {
                if scanned {
                    // Redefined between scans: too rare to be worth it.
                    return Ok(None);
                }
                let mut rest = body;
                while let Some(&spec) = rest.first() {
                    let (wide, id) = (spec >> 4, usize::from(spec & 15));
                    let n = if wide == 1 { 128 } else { 64 };
                    if wide > 1 || id > 3 {
                        return fail("a quantization table id out of range");
                    }
                    let values = rest
                        .get(1..1 + n)
                        .ok_or(RecodeError("truncated quantization table"))?;
                    quant[id] = Some(std::array::from_fn(|k| {
                        if wide == 1 {
                            u16::from_be_bytes([values[2 * k], values[2 * k + 1]])
                        } else {
                            u16::from(values[k])
                        }
                        .max(1)
                    }));
                    rest = &rest[1 + n..];
                }
            }
            0xDD => {
                restart_interval = u32::try_from(u16_at(body, 0)?).unwrap_or(0);
                dri_at = Some(out.len());
                out.extend_from_slice(segment);
            }
            0xDC => return Ok(None),
            0xDA => {
                let Some(frame) = frame.as_ref() else {
                    return fail("a scan before the frame header");
                };
                let n = usize::from(*body.first().ok_or(RecodeError("truncated scan"))?);
                if n == 0 || n > 4 || body.len() < 1 + 2 * n + 3 {
                    return fail("a malformed scan header");
                }
                let mut scan = Scan {
                    components: Vec::with_capacity(n),
                };
                for i in 0..n {
                    let (id, t) = (body[1 + 2 * i], body[2 + 2 * i]);
                    let ci = frame
                        .components
                        .iter()
                        .position(|c| c.id == id)
                        .ok_or(RecodeError("a scan names an unknown component"))?;
                    let (dc, ac) = (usize::from(t >> 4), usize::from(t & 15));
                    if dc > 3 || ac > 3 {
                        return fail("a Huffman table id out of range");
                    }
                    scan.components.push((ci, dc, ac));
                }
                let tail = &body[1 + 2 * n..];
                if tail != [0, 63, 0] {
                    return fail("a sequential scan with a spectral selection");
                }
                if let Some(quality) = quality
                    && !scanned
                {
                    steps = requant_steps(frame, &quant, quality)?;
                    push_segment(&mut out, 0xDB, &dqt_body(&quant, &steps))?;
                }
                let data = &jpeg[pos..];
                let first = !scanned;
                scanned = true;
                // Below quality 90 a 4:4:4 or 4:2:2 file's chroma is
                // subsampled to 4:2:0, as a re-encode through pixels does.
                let resample = quality.is_some_and(|q| q < RESAMPLE_BELOW_QUALITY)
                    && progressive::resamples(frame);
                let input = Input {
                    frame,
                    scan: &scan,
                    tables: &tables,
                    restart_interval,
                    data,
                    steps: &steps,
                    resample,
                };
                let requantize = quality.is_some();
                let mut counts = Counts::default();
                let mut tally = Tally::new(&mut counts);
                let used = walk_sequential(&input, requantize, &mut tally)?;
                let short = tally.short;
                let (mut saved_bits, mut new_bits, mut eob_bits) = (0i64, 0u64, 0u64);
                // New tables, in one DHT before the scan.
                let mut dht = Vec::new();
                let mut writer_dc = [None; 4];
                let mut writer_ac = [None; 4];
                let mut seen = [[false; 4]; 2];
                for &(_, dc, ac) in &scan.components {
                    for (class, id, freq) in [(0, dc, &counts.dc[dc]), (1, ac, &counts.ac[ac])] {
                        if seen[class][id] {
                            continue;
                        }
                        seen[class][id] = true;
                        let (table_counts, values) = optimal_table(freq);
                        dht.push(((class as u8) << 4) | id as u8);
                        dht.extend_from_slice(&table_counts);
                        dht.extend_from_slice(&values);
                        let c = codes(&table_counts, &values);
                        let old = tables[class][id]
                            .as_ref()
                            .ok_or(RecodeError("a scan uses an undefined Huffman table"))?;
                        saved_bits += freq
                            .iter()
                            .enumerate()
                            .map(|(symbol, &n)| {
                                i64::from(n)
                                    * (i64::from(old.length_of[symbol]) - i64::from(c[symbol].1))
                            })
                            .sum::<i64>();
                        new_bits += freq
                            .iter()
                            .zip(c.iter())
                            .map(|(&n, &(_, len))| u64::from(n) * u64::from(len))
                            .sum::<u64>();
                        if class == 0 {
                            writer_dc[id] = Some(c);
                        } else {
                            writer_ac[id] = Some(c);
                            eob_bits += short[id] * u64::from(c[0].1);
                        }
                    }
                }
                // Progressive scans save most of the end-of-block codes of
                // blocks with nothing past the fifth coefficient; when those
                // are worth 2 % of the file, the progressive file is counted
                // (and written if it is the smaller). A subsampled file is
                // always written progressive.
                if first
                    && (resample || eob_bits / 8 > (jpeg.len() / PROGRESSIVE_WORTH_DIVISOR) as u64)
                    && progressive::applies(&input)
                    && let Some(scans) =
                        progressive::transcode(&input, new_bits + 8 * dht.len() as u64)?
                {
                    if let Some(at) = sof_at {
                        out[at + 1] = 0xC2;
                        if resample {
                            // Sampling factors: luminance 2x2, chroma 1x1.
                            for i in 0..3 {
                                out[at + 11 + 3 * i] = if i == 0 { 0x22 } else { 0x11 };
                            }
                        }
                    }
                    if let Some(at) = dri_at {
                        // No restart markers in the progressive scans.
                        out[at + 4..at + 6].fill(0);
                    }
                    out.extend_from_slice(&scans);
                    out.extend_from_slice(&[0xFF, 0xD9]);
                    return Ok(Some(out));
                }
                // Tables other than the standard ones were most likely made
                // for this image already: re-coding them gains next to
                // nothing (a fraction of a percent on the photos measured),
                // so such a file is left as it is.
                let standard = scan.components.iter().any(|&(_, dc, ac)| {
                    [(0, dc), (1, ac)].iter().any(|&(class, id)| {
                        tables[class][id]
                            .as_ref()
                            .is_some_and(|t| STANDARD_COUNTS.contains(&t.counts))
                    })
                });
                if !standard && quality.is_none() {
                    return Ok(None);
                }
                // The counts tell the new size exactly: when the tables are
                // already (nearly) optimal, the second pass is not worth its
                // time, and the file is left as it is.
                if quality.is_none()
                    && saved_bits / 8
                        < i64::try_from(jpeg.len() / MIN_SAVING_DIVISOR).unwrap_or(i64::MAX)
                {
                    return Ok(None);
                }
                push_segment(&mut out, 0xC4, &dht)?;
                out.extend_from_slice(segment);
                let mut writer = Writer {
                    bits: BitWriter::new(std::mem::take(&mut out)),
                    dc: writer_dc,
                    ac: writer_ac,
                };
                walk_sequential(&input, requantize, &mut writer)?;
                writer.bits.flush();
                out = writer.bits.out;
                pos += used;
                // Skip to the next marker (padding, or a truncated tail).
                while pos < jpeg.len()
                    && !(jpeg[pos] == 0xFF
                        && jpeg
                            .get(pos + 1)
                            .is_some_and(|&m| m != 0 && !(0xD0..=0xD7).contains(&m)))
                {
                    pos += 1;
                }
                if pos >= jpeg.len() {
                    // No EOI: end the copy properly.
                    out.extend_from_slice(&[0xFF, 0xD9]);
                    return Ok(Some(out));
                }
            }
            _ => out.extend_from_slice(segment),
        }
    }
}

mod progressive;

#[cfg(test)]
mod tests;
