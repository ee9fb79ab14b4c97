//! Does loop filtering on webp lossy images

#[inline]
fn c(val: i32) -> i32 {
    val.clamp(-128, 127)
}

//unsigned to signed
#[inline]
fn u2s(val: u8) -> i32 {
    i32::from(val) - 128
}

//signed to unsigned
#[inline]
fn s2u(val: i32) -> u8 {
    (c(val) + 128) as u8
}

#[inline]
const fn diff(val1: u8, val2: u8) -> u8 {
    u8::abs_diff(val1, val2)
}

/// Used in both the simple and normal filters described in 15.2 and 15.3
///
/// Adjusts the 2 middle pixels in a vertical loop filter
fn common_adjust_vertical(
    use_outer_taps: bool,
    pixels: &mut [u8],
    point: usize,
    stride: usize,
) -> i32 {
    let p1 = u2s(pixels[point - 2 * stride]);
    let p0 = u2s(pixels[point - stride]);
    let q0 = u2s(pixels[point]);
    let q1 = u2s(pixels[point + stride]);

    //value for the outer 2 pixels
    let outer = if use_outer_taps { c(p1 - q1) } else { 0 };

    let a = c(outer + 3 * (q0 - p0));

    let b = (c(a + 3)) >> 3;

    let a = (c(a + 4)) >> 3;

    pixels[point] = s2u(q0 - a);
    pixels[point - stride] = s2u(p0 + b);

    a
}

/// Used in both the simple and normal filters described in 15.2 and 15.3
///
/// Adjusts the 2 middle pixels in a horizontal loop filter
fn common_adjust_horizontal(use_outer_taps: bool, pixels: &mut [u8]) -> i32 {
    let p1 = u2s(pixels[2]);
    let p0 = u2s(pixels[3]);
    let q0 = u2s(pixels[4]);
    let q1 = u2s(pixels[5]);

    //value for the outer 2 pixels
    let outer = if use_outer_taps { c(p1 - q1) } else { 0 };

    let a = c(outer + 3 * (q0 - p0));

    let b = (c(a + 3)) >> 3;

    let a = (c(a + 4)) >> 3;

    pixels[4] = s2u(q0 - a);
    pixels[3] = s2u(p0 + b);

    a
}

#[inline]
fn simple_threshold_vertical(
    filter_limit: i32,
    pixels: &[u8],
    point: usize,
    stride: usize,
) -> bool {
    i32::from(diff(pixels[point - stride], pixels[point])) * 2
        + i32::from(diff(pixels[point - 2 * stride], pixels[point + stride])) / 2
        <= filter_limit
}

#[inline]
fn simple_threshold_horizontal(filter_limit: i32, pixels: &[u8]) -> bool {
    assert!(pixels.len() >= 6); // one bounds check up front eliminates all subsequent checks in this function
    i32::from(diff(pixels[3], pixels[4])) * 2 + i32::from(diff(pixels[2], pixels[5])) / 2
        <= filter_limit
}

fn should_filter_vertical(
    interior_limit: u8,
    edge_limit: u8,
    pixels: &[u8],
    point: usize,
    stride: usize,
) -> bool {
    simple_threshold_vertical(i32::from(edge_limit), pixels, point, stride)
        // this looks like an erroneous way to compute differences between 8 points, but isn't:
        // there are actually only 6 diff comparisons required as per the spec:
        // https://www.rfc-editor.org/rfc/rfc6386#section-20.6
        && diff(pixels[point - 4 * stride], pixels[point - 3 * stride]) <= interior_limit
        && diff(pixels[point - 3 * stride], pixels[point - 2 * stride]) <= interior_limit
        && diff(pixels[point - 2 * stride], pixels[point - stride]) <= interior_limit
        && diff(pixels[point + 3 * stride], pixels[point + 2 * stride]) <= interior_limit
        && diff(pixels[point + 2 * stride], pixels[point + stride]) <= interior_limit
        && diff(pixels[point + stride], pixels[point]) <= interior_limit
}

fn should_filter_horizontal(interior_limit: u8, edge_limit: u8, pixels: &[u8]) -> bool {
    assert!(pixels.len() >= 8); // one bounds check up front eliminates all subsequent checks in this function
    simple_threshold_horizontal(i32::from(edge_limit), pixels)
        // this looks like an erroneous way to compute differences between 8 points, but isn't:
        // there are actually only 6 diff comparisons required as per the spec:
        // https://www.rfc-editor.org/rfc/rfc6386#section-20.6
        && diff(pixels[0], pixels[1]) <= interior_limit
        && diff(pixels[1], pixels[2]) <= interior_limit
        && diff(pixels[2], pixels[3]) <= interior_limit
        && diff(pixels[7], pixels[6]) <= interior_limit
        && diff(pixels[6], pixels[5]) <= interior_limit
        && diff(pixels[5], pixels[4]) <= interior_limit
}

#[inline]
fn high_edge_variance_vertical(threshold: u8, pixels: &[u8], point: usize, stride: usize) -> bool {
    diff(pixels[point - 2 * stride], pixels[point - stride]) > threshold
        || diff(pixels[point + stride], pixels[point]) > threshold
}

#[inline]
fn high_edge_variance_horizontal(threshold: u8, pixels: &[u8]) -> bool {
    diff(pixels[2], pixels[3]) > threshold || diff(pixels[5], pixels[4]) > threshold
}

/// Part of the simple filter described in 15.2 in the specification
///
/// Affects 4 pixels on an edge(2 each side)
pub(crate) fn simple_segment_vertical(
    edge_limit: u8,
    pixels: &mut [u8],
    point: usize,
    stride: usize,
) {
    if simple_threshold_vertical(i32::from(edge_limit), pixels, point, stride) {
        common_adjust_vertical(true, pixels, point, stride);
    }
}

/// Part of the simple filter described in 15.2 in the specification
///
/// Affects 4 pixels on an edge(2 each side)
pub(crate) fn simple_segment_horizontal(edge_limit: u8, pixels: &mut [u8]) {
    if simple_threshold_horizontal(i32::from(edge_limit), pixels) {
        common_adjust_horizontal(true, pixels);
    }
}

/// Part of the normal filter described in 15.3 in the specification
///
/// Filters on the 8 pixels on the edges between subblocks inside a macroblock
pub(crate) fn subblock_filter_vertical(
    hev_threshold: u8,
    interior_limit: u8,
    edge_limit: u8,
    pixels: &mut [u8],
    point: usize,
    stride: usize,
) {
    if should_filter_vertical(interior_limit, edge_limit, pixels, point, stride) {
        let hv = high_edge_variance_vertical(hev_threshold, pixels, point, stride);

        let a = (common_adjust_vertical(hv, pixels, point, stride) + 1) >> 1;

        if !hv {
            pixels[point + stride] = s2u(u2s(pixels[point + stride]) - a);
            pixels[point - 2 * stride] = s2u(u2s(pixels[point - 2 * stride]) + a);
        }
    }
}

/// Part of the normal filter described in 15.3 in the specification
///
/// Filters on the 8 pixels on the edges between subblocks inside a macroblock
pub(crate) fn subblock_filter_horizontal(
    hev_threshold: u8,
    interior_limit: u8,
    edge_limit: u8,
    pixels: &mut [u8],
) {
    if should_filter_horizontal(interior_limit, edge_limit, pixels) {
        let hv = high_edge_variance_horizontal(hev_threshold, pixels);

        let a = (common_adjust_horizontal(hv, pixels) + 1) >> 1;

        if !hv {
            pixels[5] = s2u(u2s(pixels[5]) - a);
            pixels[2] = s2u(u2s(pixels[2]) + a);
        }
    }
}

/// Part of the normal filter described in 15.3 in the specification
///
/// Filters on the 8 pixels on the vertical edges between macroblocks\
/// The point passed in must be the first vertical pixel on the bottom macroblock
pub(crate) fn macroblock_filter_vertical(
    hev_threshold: u8,
    interior_limit: u8,
    edge_limit: u8,
    pixels: &mut [u8],
    point: usize,
    stride: usize,
) {
    if should_filter_vertical(interior_limit, edge_limit, pixels, point, stride) {
        if !high_edge_variance_vertical(hev_threshold, pixels, point, stride) {
            // p0-3 are the pixels on the left macroblock from right to left
            let p2 = u2s(pixels[point - 3 * stride]);
            let p1 = u2s(pixels[point - 2 * stride]);
            let p0 = u2s(pixels[point - stride]);
            // q0-3 are the pixels on the right macroblock from left to right
            let q0 = u2s(pixels[point]);
            let q1 = u2s(pixels[point + stride]);
            let q2 = u2s(pixels[point + 2 * stride]);

            let w = c(c(p1 - q1) + 3 * (q0 - p0));

            let a = c((27 * w + 63) >> 7);

            pixels[point] = s2u(q0 - a);
            pixels[point - stride] = s2u(p0 + a);

            let a = c((18 * w + 63) >> 7);

            pixels[point + stride] = s2u(q1 - a);
            pixels[point - 2 * stride] = s2u(p1 + a);

            let a = c((9 * w + 63) >> 7);

            pixels[point + 2 * stride] = s2u(q2 - a);
            pixels[point - 3 * stride] = s2u(p2 + a);
        } else {
            common_adjust_vertical(true, pixels, point, stride);
        }
    }
}

/// Part of the normal filter described in 15.3 in the specification
///
/// Filters on the 8 pixels on the horizontal edges between macroblocks\
/// The pixels passed in must be a slice containing the 4 pixels on each macroblock
pub(crate) fn macroblock_filter_horizontal(
    hev_threshold: u8,
    interior_limit: u8,
    edge_limit: u8,
    pixels: &mut [u8],
) {
    assert!(pixels.len() >= 8);
    if should_filter_horizontal(interior_limit, edge_limit, pixels) {
        if !high_edge_variance_horizontal(hev_threshold, pixels) {
            // p0-3 are the pixels on the left macroblock from right to left
            let p2 = u2s(pixels[1]);
            let p1 = u2s(pixels[2]);
            let p0 = u2s(pixels[3]);
            // q0-3 are the pixels on the right macroblock from left to right
            let q0 = u2s(pixels[4]);
            let q1 = u2s(pixels[5]);
            let q2 = u2s(pixels[6]);

            let w = c(c(p1 - q1) + 3 * (q0 - p0));

            let a = c((27 * w + 63) >> 7);

            pixels[4] = s2u(q0 - a);
            pixels[3] = s2u(p0 + a);

            let a = c((18 * w + 63) >> 7);

            pixels[5] = s2u(q1 - a);
            pixels[2] = s2u(p1 + a);

            let a = c((9 * w + 63) >> 7);

            pixels[6] = s2u(q2 - a);
            pixels[1] = s2u(p2 + a);
        } else {
            common_adjust_horizontal(true, pixels);
        }
    }
}

/// Darkroom: the normal filter's thresholds for one edge, and which filter
/// (the macroblock edge's, changing three pixels on each side, or the
/// subblock edge's, changing two).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Edge {
    pub(crate) hev_threshold: u8,
    pub(crate) interior_limit: u8,
    pub(crate) edge_limit: u8,
    pub(crate) macroblock: bool,
}

/// Darkroom: `N` lanes of 16-bit values, operated on a whole vector at a
/// time by the helpers below (each one loop over the lanes, which the
/// compiler turns into SIMD: SSE2 natively, simd128 in wasm).
type V<const N: usize> = [i16; N];

#[inline(always)]
fn map1<const N: usize>(a: V<N>, f: impl Fn(i16) -> i16) -> V<N> {
    let mut r = [0; N];
    for i in 0..N {
        r[i] = f(a[i]);
    }
    r
}

#[inline(always)]
fn map2<const N: usize>(a: V<N>, b: V<N>, f: impl Fn(i16, i16) -> i16) -> V<N> {
    let mut r = [0; N];
    for i in 0..N {
        r[i] = f(a[i], b[i]);
    }
    r
}

/// `a` where `mask` is all ones, else `b`.
#[inline(always)]
fn pick<const N: usize>(mask: V<N>, a: V<N>, b: V<N>) -> V<N> {
    let mut r = [0; N];
    for i in 0..N {
        r[i] = (a[i] & mask[i]) | (b[i] & !mask[i]);
    }
    r
}

/// Darkroom: the normal filter on `N` lines across one edge at once, each
/// line's eight pixels `p3 p2 p1 p0 | q0 q1 q2 q3` in `px[0..8][line]`.
/// The same arithmetic as [`macroblock_filter_vertical`] and
/// [`subblock_filter_vertical`] (a unit test holds it to them on every
/// threshold), computed for every line and selected by masks instead of
/// branches so that the lines go through in SIMD lanes (upstream filters a
/// pixel at a time: a third of the decode).
#[inline(always)]
fn filter_lanes<const N: usize>(px: &mut [[u8; N]; 8], edge: Edge) {
    let mut wide = [[0i16; N]; 8];
    for (line, bytes) in wide.iter_mut().zip(px.iter()) {
        for i in 0..N {
            line[i] = i16::from(bytes[i]);
        }
    }
    let [p3, p2, p1, p0, q0, q1, q2, q3] = wide;
    let (t, il, el) = (
        i16::from(edge.hev_threshold),
        i16::from(edge.interior_limit),
        i16::from(edge.edge_limit),
    );
    let clamp = |v: V<N>| map1(v, |x| x.max(-128).min(127));
    let diff = |a: V<N>, b: V<N>| map2(a, b, |x, y| (x - y).abs());
    let at_most = |a: V<N>, limit: i16| map1(a, |x| -i16::from(x <= limit));
    let over = |a: V<N>, limit: i16| map1(a, |x| -i16::from(x > limit));
    let and = |a: V<N>, b: V<N>| map2(a, b, |x, y| x & y);
    let or = |a: V<N>, b: V<N>| map2(a, b, |x, y| x | y);
    let add = |a: V<N>, b: V<N>| map2(a, b, |x, y| x + y);
    let sub = |a: V<N>, b: V<N>| map2(a, b, |x, y| x - y);

    let edge_ok = at_most(
        map2(diff(p0, q0), diff(p1, q1), |x, y| x * 2 + (y >> 1)),
        el,
    );
    let interior_ok = [
        diff(p3, p2),
        diff(p2, p1),
        diff(p1, p0),
        diff(q3, q2),
        diff(q2, q1),
        diff(q1, q0),
    ]
    .into_iter()
    .fold(edge_ok, |mask, d| and(mask, at_most(d, il)));
    let filter = interior_ok;
    let hev = or(over(diff(p1, p0), t), over(diff(q1, q0), t));
    let signed = |v: V<N>| map1(v, |x| x - 128);
    let [ps2, ps1, ps0, qs0, qs1, qs2] = [
        signed(p2),
        signed(p1),
        signed(p0),
        signed(q0),
        signed(q1),
        signed(q2),
    ];

    let outer = clamp(sub(ps1, qs1));
    let outer = if edge.macroblock {
        outer
    } else {
        and(outer, hev)
    };
    // The common adjustment: p0 and q0 only.
    let a = clamp(add(outer, map2(qs0, ps0, |q, p| 3 * (q - p))));
    let f1 = map1(clamp(map1(a, |x| x + 4)), |x| x >> 3);
    let f2 = map1(clamp(map1(a, |x| x + 3)), |x| x >> 3);
    let common = [ps2, ps1, add(ps0, f2), sub(qs0, f1), qs1, qs2];
    let out: [V<N>; 6] = if edge.macroblock {
        // No high edge variance: three pixels each side, weighted.
        let tap = |w: i16| clamp(map1(a, |x| (w * x + 63) >> 7));
        let (a27, a18, a9) = (tap(27), tap(18), tap(9));
        let smooth = [
            add(ps2, a9),
            add(ps1, a18),
            add(ps0, a27),
            sub(qs0, a27),
            sub(qs1, a18),
            sub(qs2, a9),
        ];
        std::array::from_fn(|j| pick(hev, common[j], smooth[j]))
    } else {
        let a2 = map1(f1, |x| (x + 1) >> 1);
        let wider = [ps2, add(ps1, a2), common[2], common[3], sub(qs1, a2), qs2];
        std::array::from_fn(|j| pick(hev, common[j], wider[j]))
    };
    let old = [p2, p1, p0, q0, q1, q2];
    for j in 0..6 {
        let new = map1(clamp(out[j]), |x| x + 128);
        let line = pick(filter, new, old[j]);
        for i in 0..N {
            px[j + 1][i] = line[i] as u8;
        }
    }
}

/// Darkroom: the normal filter across a horizontal edge (the pixels of a
/// line above and below each other) for the `N` columns from `point` (the
/// first pixel below the edge).
pub(crate) fn filter_across_rows<const N: usize>(
    edge: Edge,
    pixels: &mut [u8],
    point: usize,
    stride: usize,
) {
    let mut px = [[0u8; N]; 8];
    let start = point - 4 * stride;
    for (j, line) in px.iter_mut().enumerate() {
        line.copy_from_slice(&pixels[start + j * stride..][..N]);
    }
    filter_lanes(&mut px, edge);
    for (j, line) in px.iter().enumerate().take(7).skip(1) {
        pixels[start + j * stride..][..N].copy_from_slice(line);
    }
}

/// Darkroom: the normal filter across a vertical edge for the `N` rows from
/// `point` (the first pixel right of the edge, on the first row).
pub(crate) fn filter_across_columns<const N: usize>(
    edge: Edge,
    pixels: &mut [u8],
    point: usize,
    stride: usize,
) {
    // Each row's eight pixels as one word: a transpose without a loop
    // over bytes.
    let mut px = [[0u8; N]; 8];
    for i in 0..N {
        let row = &pixels[point + i * stride - 4..][..8];
        let word = u64::from_le_bytes(row.try_into().unwrap());
        for (j, line) in px.iter_mut().enumerate() {
            line[i] = (word >> (8 * j)) as u8;
        }
    }
    filter_lanes(&mut px, edge);
    for i in 0..N {
        let word = (0..8).fold(0u64, |word, j| word | u64::from(px[j][i]) << (8 * j));
        pixels[point + i * stride - 4..][..8].copy_from_slice(&word.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift: the same pixels on every run.
    fn noise(seed: &mut u64) -> u8 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed >> 24) as u8
    }

    #[test]
    fn the_lane_filters_change_every_pixel_as_upstreams_pixel_filters_do() {
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        let stride = 24;
        for round in 0..4000 {
            // Smooth lines with steps, so that every branch is taken.
            let spread = [2, 8, 40, 255][round % 4];
            let mut pixels: Vec<u8> = (0..stride * 24)
                .map(|_| 128_u8.wrapping_add(noise(&mut seed) % spread))
                .collect();
            let edge = Edge {
                hev_threshold: noise(&mut seed) % 4,
                interior_limit: noise(&mut seed) % 64,
                edge_limit: noise(&mut seed) % 140,
                macroblock: round % 2 == 0,
            };
            let filter = |pixels: &mut [u8], point: usize, stride: usize| {
                if edge.macroblock {
                    macroblock_filter_vertical(
                        edge.hev_threshold,
                        edge.interior_limit,
                        edge.edge_limit,
                        pixels,
                        point,
                        stride,
                    );
                } else {
                    subblock_filter_vertical(
                        edge.hev_threshold,
                        edge.interior_limit,
                        edge.edge_limit,
                        pixels,
                        point,
                        stride,
                    );
                }
            };
            let point = 8 * stride + 4;
            // Across rows: 16 columns.
            let mut expected = pixels.clone();
            for x in 0..16 {
                filter(&mut expected, point + x, stride);
            }
            let mut ours = pixels.clone();
            filter_across_rows::<16>(edge, &mut ours, point, stride);
            assert_eq!(ours, expected, "across rows, {edge:?}");
            // Across columns: 8 rows, through the pixel filter with stride 1.
            let mut expected = pixels.clone();
            for y in 0..8 {
                filter(&mut expected, point + y * stride, 1);
            }
            filter_across_columns::<8>(edge, &mut pixels, point, stride);
            assert_eq!(pixels, expected, "across columns, {edge:?}");
        }
    }
}
