//! A walk over a WebP's RIFF chunks without decoding them: for checking
//! that no chunk claims more bytes than the file has (a decoder would
//! allocate what it claims), telling lossy from lossless, and removing
//! metadata chunks losslessly. Bounded by the file's length.

use std::ops::Range;

/// The chunks after the 12-byte RIFF header, each as its FourCC and the
/// byte range of the whole chunk (header, data and the pad byte to an even
/// size; a missing final pad byte is tolerated). Yields `Err` with a reason
/// once when a chunk does not fit in the file, then stops.
pub(crate) fn chunks(
    webp: &[u8],
) -> impl Iterator<Item = Result<([u8; 4], Range<usize>), &'static str>> + '_ {
    let mut pos = Some(12);
    std::iter::from_fn(move || {
        let start = pos.filter(|p| *p < webp.len())?;
        let Some(header) = webp.get(start..start + 8) else {
            pos = None;
            return Some(Err("truncated chunk header"));
        };
        let fourcc = [header[0], header[1], header[2], header[3]];
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let Some(end) = start
            .checked_add(8)
            .and_then(|p| p.checked_add(size))
            .filter(|end| *end <= webp.len())
        else {
            pos = None;
            return Some(Err("a chunk is larger than the file"));
        };
        let padded = (end + (size & 1)).min(webp.len());
        pos = Some(padded);
        Some(Ok((fourcc, start..padded)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_with, gradient};

    #[test]
    fn a_lossless_webp_is_one_vp8l_chunk_and_a_cut_one_reports_where_it_breaks() {
        let webp = encode_with(&gradient(30, 20, false), image::ImageFormat::WebP);
        let found: Vec<_> = chunks(&webp).collect();
        assert_eq!(found, [Ok((*b"VP8L", 12..webp.len()))]);
        let cut = &webp[..webp.len() - 3];
        assert_eq!(
            chunks(cut).collect::<Vec<_>>(),
            [Err("a chunk is larger than the file")]
        );
    }
}
