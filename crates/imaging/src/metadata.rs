//! Lossless metadata removal from an original, per container: the image data
//! is copied byte for byte, only metadata blocks (EXIF, XMP, text, comments)
//! are left out. The pipeline uses this for the "optimized" copy whenever it
//! is smaller than a re-encode, so that copy is never larger than the
//! original and never leaks its metadata (camera, GPS position).
//!
//! Colour information is kept (JPEG APP2/APP14, PNG iCCP/gAMA/cHRM, WebP
//! ICCP), as are GIF's looping extension and everything a decoder needs.

use crate::format::ImageFormat;

/// `bytes` without metadata; `None` when the container does not parse (the
/// caller then keeps its re-encode). `orientation` (EXIF 1–8) is only kept
/// by JPEG, as a minimal EXIF block; other formats must be passed 1.
pub fn strip(format: ImageFormat, bytes: &[u8], orientation: u16) -> Option<Vec<u8>> {
    match format {
        ImageFormat::Jpeg => crate::jpeg::strip_metadata(bytes, orientation).ok(),
        ImageFormat::Png | ImageFormat::Webp | ImageFormat::Gif => {
            strip_pieces(format, bytes).map(|pieces| {
                pieces
                    .iter()
                    .flat_map(|p| p.bytes(bytes))
                    .copied()
                    .collect()
            })
        }
    }
}

/// A piece of a copy of a file: a range of the file, or bytes of the
/// copy's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// These bytes of the file.
    Kept(std::ops::Range<usize>),
    /// Bytes that are not the file's.
    Own(Vec<u8>),
}

impl Piece {
    /// The piece's bytes, in a copy of `file`.
    pub fn bytes<'a>(&'a self, file: &'a [u8]) -> &'a [u8] {
        match self {
            Self::Kept(range) => &file[range.clone()],
            Self::Own(bytes) => bytes,
        }
    }
}

/// A PNG, WebP or GIF without metadata, as pieces to write one after the
/// other: ranges of `bytes` (adjacent ones merged) and the few bytes that
/// change (a WebP's RIFF size and `VP8X` flags, a GIF's trailer). A large
/// original is so never copied: a file with nothing to remove is one piece,
/// itself. `None` for a JPEG, or a container that does not parse.
pub fn strip_pieces(format: ImageFormat, bytes: &[u8]) -> Option<Vec<Piece>> {
    match format {
        ImageFormat::Png => strip_png(bytes),
        ImageFormat::Webp => strip_webp(bytes),
        ImageFormat::Gif => strip_gif(bytes),
        ImageFormat::Jpeg => None,
    }
}

/// Whether a PNG or GIF is already what [`strip`] would make of it (always
/// `false` for JPEG; a WebP's RIFF size is always rewritten).
#[cfg(test)]
pub(crate) fn is_clean(format: ImageFormat, bytes: &[u8]) -> bool {
    format != ImageFormat::Webp
        && strip_pieces(format, bytes)
            .is_some_and(|p| matches!(p.as_slice(), [Piece::Kept(r)] if *r == (0..bytes.len())))
}

/// Pieces of a copy of a file: kept ranges, merged while adjacent, and
/// bytes of the copy's own.
#[derive(Default)]
struct Pieces {
    done: Vec<Piece>,
    open: Option<std::ops::Range<usize>>,
}

impl Pieces {
    fn keep(&mut self, range: std::ops::Range<usize>) {
        match &mut self.open {
            Some(open) if open.end == range.start => open.end = range.end,
            _ => {
                self.close();
                self.open = Some(range);
            }
        }
    }

    fn own(&mut self, bytes: Vec<u8>) {
        self.close();
        self.done.push(Piece::Own(bytes));
    }

    fn close(&mut self) {
        if let Some(range) = self.open.take() {
            self.done.push(Piece::Kept(range));
        }
    }

    fn finish(mut self) -> Vec<Piece> {
        self.close();
        self.done
    }
}

/// A block of a file, and whether [`strip`] keeps it.
type Kept = (std::ops::Range<usize>, bool);

/// A PNG's chunks after the signature, each with whether it is kept: all
/// but the text, time and EXIF chunks.
fn png_chunks(png: &[u8]) -> Option<Vec<Kept>> {
    const DROPPED: [&[u8; 4]; 5] = [b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"];
    png.get(..8)?;
    let mut chunks = Vec::new();
    let mut pos = 8;
    while pos < png.len() {
        let len =
            usize::try_from(u32::from_be_bytes(png.get(pos..pos + 4)?.try_into().ok()?)).ok()?;
        let end = pos.checked_add(12)?.checked_add(len)?;
        let kind = png.get(pos + 4..pos + 8)?;
        png.get(pos..end)?;
        chunks.push((pos..end, !DROPPED.iter().any(|t| kind == &t[..])));
        pos = end;
    }
    Some(chunks)
}

/// Drops the text, time and EXIF chunks.
fn strip_png(png: &[u8]) -> Option<Vec<Piece>> {
    let chunks = png_chunks(png)?;
    let mut out = Pieces::default();
    out.keep(0..8);
    for (range, keep) in chunks {
        if keep {
            out.keep(range);
        }
    }
    Some(out.finish())
}

/// Drops the `EXIF` and `XMP ` chunks and clears their flags in `VP8X`.
fn strip_webp(webp: &[u8]) -> Option<Vec<Piece>> {
    const EXIF_FLAG: u8 = 0x08;
    const XMP_FLAG: u8 = 0x04;
    if webp.get(..4)? != b"RIFF" || webp.get(8..12)? != b"WEBP" {
        return None;
    }
    let mut out = Pieces::default();
    // The RIFF header, its size set once the rest is known.
    out.own(webp[..12].to_vec());
    let mut size = 4_usize;
    for chunk in crate::webp::chunks(webp) {
        let (fourcc, range) = chunk.ok()?;
        match &fourcc {
            b"EXIF" | b"XMP " => continue,
            b"VP8X" => {
                let mut vp8x = webp[range.clone()].to_vec();
                *vp8x.get_mut(8)? &= !(EXIF_FLAG | XMP_FLAG);
                out.own(vp8x);
            }
            _ => out.keep(range.clone()),
        }
        size += range.len();
    }
    let mut pieces = out.finish();
    let riff_size = u32::try_from(size).ok()?;
    if let Some(Piece::Own(header)) = pieces.first_mut() {
        header[4..8].copy_from_slice(&riff_size.to_le_bytes());
    }
    Some(pieces)
}

/// A GIF's blocks after its header, each with whether it is kept (all but
/// comment extensions and application extensions other than the looping
/// ones, `NETSCAPE2.0` and `ANIMEXTS1.0`, e.g. XMP), and where they end.
fn gif_blocks(gif: &[u8]) -> Option<(Vec<Kept>, usize)> {
    use crate::gif::{Block, blocks, header_len};
    let mut end = header_len(gif)?;
    gif.get(..end)?;
    let mut kept = Vec::new();
    for block in blocks(gif) {
        let (block, range) = block.ok()?;
        let keep = match block {
            Block::Image => true,
            Block::Extension { label: 0xFE, .. } => false,
            Block::Extension {
                label: 0xFF,
                application,
            } => application == b"NETSCAPE2.0" || application == b"ANIMEXTS1.0",
            Block::Extension { .. } => true,
        };
        end = range.end;
        kept.push((range, keep));
    }
    Some((kept, end))
}

/// Drops comment extensions and application extensions other than the
/// looping ones, and anything after the trailer.
fn strip_gif(gif: &[u8]) -> Option<Vec<Piece>> {
    let (blocks, end) = gif_blocks(gif)?;
    let mut out = Pieces::default();
    out.keep(0..crate::gif::header_len(gif)?);
    for (range, keep) in blocks {
        if keep {
            out.keep(range);
        }
    }
    // `blocks` ends quietly at the trailer or the end of the file.
    if gif.get(end) == Some(&0x3B) {
        out.keep(end..end + 1);
    } else {
        out.own(vec![0x3B]);
    }
    Some(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_with, gradient, riff, riff_chunk as chunk};

    #[test]
    fn a_webp_loses_its_exif_and_xmp_and_keeps_its_pixels() {
        let simple = encode_with(&gradient(60, 40, false), image::ImageFormat::WebP);
        let image_chunk = simple[12..].to_vec();
        let mut vp8x = vec![0x08 | 0x04, 0, 0, 0];
        vp8x.extend_from_slice(&59_u32.to_le_bytes()[..3]);
        vp8x.extend_from_slice(&39_u32.to_le_bytes()[..3]);
        let with_metadata = riff(&[
            chunk(b"VP8X", &vp8x),
            image_chunk.clone(),
            chunk(b"EXIF", b"Exif\0\0GPS here"),
            chunk(b"XMP ", b"<x:xmpmeta/>"),
        ]);
        let stripped = strip(ImageFormat::Webp, &with_metadata, 1).expect("parses");
        let mut vp8x_clear = vp8x.clone();
        vp8x_clear[0] = 0;
        assert_eq!(stripped, riff(&[chunk(b"VP8X", &vp8x_clear), image_chunk]));
        let before = image::load_from_memory(&with_metadata).expect("decodes");
        let after = image::load_from_memory(&stripped).expect("decodes");
        assert_eq!(before.to_rgba8(), after.to_rgba8());
    }

    #[test]
    fn a_gif_loses_comments_and_xmp_and_keeps_looping_and_frames() {
        let plain = encode_with(&gradient(30, 20, false), image::ImageFormat::Gif);
        let after_header = 13 + 3 * (1 << ((plain[10] & 0x07) + 1)) * usize::from(plain[10] >> 7);
        let comment = b"\x21\xFE\x05hello\x00".to_vec();
        let xmp = b"\x21\xFF\x0BXMP DataXMP\x03abc\x00".to_vec();
        let looping = b"\x21\xFF\x0BNETSCAPE2.0\x03\x01\x00\x00\x00".to_vec();
        let insert = |blocks: &[&[u8]]| {
            let mut gif = plain[..after_header].to_vec();
            for b in blocks {
                gif.extend_from_slice(b);
            }
            gif.extend_from_slice(&plain[after_header..]);
            gif
        };
        let with_metadata = insert(&[&looping, &comment, &xmp]);
        let stripped = strip(ImageFormat::Gif, &with_metadata, 1).expect("parses");
        assert_eq!(stripped, insert(&[&looping]));
        assert_eq!(
            strip(ImageFormat::Gif, &plain, 1).expect("parses"),
            plain,
            "nothing to strip"
        );
    }

    #[test]
    fn a_png_or_gif_with_nothing_to_strip_is_one_piece_itself_and_one_with_metadata_is_pieces_of_it()
     {
        let png = encode_with(&gradient(30, 20, false), image::ImageFormat::Png);
        let gif = encode_with(&gradient(30, 20, false), image::ImageFormat::Gif);
        for (format, plain) in [(ImageFormat::Png, &png), (ImageFormat::Gif, &gif)] {
            let kept = strip_pieces(format, plain).expect("parses");
            assert_eq!(kept, [Piece::Kept(0..plain.len())], "{format:?}");
        }
        // A tEXt chunk after IHDR (8 + 25 bytes): the pieces before and after it.
        let mut text = b"\0\0\0\x05tEXtA\0abc".to_vec();
        text.extend_from_slice(&crc32fast::hash(&text[4..]).to_be_bytes());
        let with_text = [&png[..33], &text, &png[33..]].concat();
        let stripped = strip_pieces(ImageFormat::Png, &with_text).expect("parses");
        assert_eq!(
            stripped,
            [
                Piece::Kept(0..33),
                Piece::Kept(33 + text.len()..with_text.len())
            ]
        );
        assert_eq!(strip(ImageFormat::Png, &with_text, 1).expect("parses"), png);
        // Bytes after a GIF's trailer are not its own: left out.
        let trailing = [gif.as_slice(), b"junk"].concat();
        assert_eq!(strip(ImageFormat::Gif, &trailing, 1).expect("parses"), gif);
        assert!(!is_clean(ImageFormat::Gif, &trailing));
        // A GIF without its trailer gets one.
        let cut = &gif[..gif.len() - 1];
        assert_eq!(strip(ImageFormat::Gif, cut, 1).expect("parses"), gif);
    }

    #[test]
    fn a_truncated_container_is_not_stripped() {
        let gif = encode_with(&gradient(30, 20, false), image::ImageFormat::Gif);
        assert_eq!(strip(ImageFormat::Gif, &gif[..gif.len() - 5], 1), None);
        let webp = encode_with(&gradient(30, 20, false), image::ImageFormat::WebP);
        assert_eq!(strip(ImageFormat::Webp, &webp[..webp.len() - 5], 1), None);
    }
}
