//! The structure of an image file that arrives in pieces, walked as it
//! arrives: the upload checks a file while streaming it to storage, and
//! holds none of it but the few bytes a structure's header needs.
//!
//! One walk per container (PNG's and WebP's chunks, GIF's blocks) asks for
//! a header's bytes, then skips what it need not read. It gathers what
//! [`crate::format::inspect`] needs beyond the image header: metadata the
//! optimized copy would strip, complete frames, a WebP's chunks and whether
//! they fit the file, the EXIF orientation. A JPEG needs no walk: its
//! header says all.
//!
//! The pipeline, which has the whole file, keeps the slice walks
//! (`webp::chunks`, `gif::blocks`, `metadata::is_clean`); tests hold this
//! walk to them on whole, cut and damaged files. Written here because the
//! `png` and `gif` crates walk only while decoding the image data (inflate,
//! LZW), which an upload must not pay for, and no crate walks WebP's RIFF
//! container from pieces.

use crate::format::ImageFormat;

/// The largest EXIF payload read for its orientation; a larger one is
/// skipped and the image taken as stored.
const EXIF_LIMIT: u64 = 1 << 20;

/// The bytes kept of a WebP's first chunk: enough for `VP8X`'s canvas, a
/// `VP8 ` frame header, or a `VP8L` header.
const WEBP_FIRST_BYTES: u64 = 10;

/// PNG chunks the metadata strip drops (`metadata::png_chunks`).
const PNG_DROPPED: [&[u8; 4]; 5] = [b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"];

/// What a walk found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Why the walk broke, if it did (WebP: a chunk that does not fit).
    pub broken: Option<&'static str>,
    /// Frames whose data ended (GIF images).
    pub frames: u32,
    /// The file is walked to its end with nothing to strip (PNG, GIF).
    pub clean: bool,
    /// PNG: Adam7 interlaced.
    pub interlaced: bool,
    /// The EXIF payload that decides the orientation: a PNG's `eXIf`
    /// before the image data (what the `png` crate reads), a WebP's last
    /// `EXIF`.
    pub exif: Option<Vec<u8>>,
    /// WebP: the first chunk's fourcc and its first bytes.
    pub webp_first: Option<([u8; 4], Vec<u8>)>,
    /// WebP: a `VP8 ` chunk at the top level.
    pub webp_vp8: bool,
    /// WebP: an `ALPH`, `VP8L`, `ANIM` or `ANMF` chunk (not streamed).
    pub webp_not_streamed: bool,
    /// WebP: whether the first image chunk is `VP8L`.
    pub webp_lossless: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// Nothing to walk (JPEG), or the walk has ended.
    Done,
    PngSignature,
    PngChunk,
    PngHeader {
        rest: u64,
    },
    PngExif,
    GifHeader,
    GifIntroducer,
    GifImage,
    GifLabel,
    GifApplicationLength,
    GifApplication {
        rest: u64,
    },
    GifSubBlock {
        image: bool,
        keep: bool,
    },
    WebpRiff,
    WebpChunk,
    WebpFirst {
        rest: u64,
        pad: u64,
    },
    WebpExif {
        pad: u64,
    },
}

/// What a step wants next: skip this many bytes, then read that many.
struct Next(u64, usize, Walk);

/// A walk over a file fed in pieces.
#[derive(Debug)]
pub(crate) struct Skim {
    walk: Walk,
    skip: u64,
    want: usize,
    buf: Vec<u8>,
    /// Bytes fed so far.
    len: u64,
    /// Where the walk is: the offset of the next byte it reads or skips.
    pos: u64,
    /// Where the chunk being walked ends, padding aside (WebP).
    chunk_end: u64,
    /// PNG: the image data has begun; every chunk so far kept.
    png_idat: bool,
    png_first: bool,
    /// GIF: where the trailer is.
    gif_trailer: Option<u64>,
    /// WebP: an image chunk (`VP8 ` or `VP8L`) has been seen.
    webp_image: bool,
    strippable: bool,
    facts: Facts,
}

impl Skim {
    /// A walk of a file sniffed as `format`.
    pub(crate) fn new(format: ImageFormat) -> Self {
        let (walk, want) = match format {
            ImageFormat::Jpeg => (Walk::Done, 0),
            ImageFormat::Png => (Walk::PngSignature, 8),
            ImageFormat::Gif => (Walk::GifHeader, 13),
            ImageFormat::Webp => (Walk::WebpRiff, 12),
        };
        Self {
            walk,
            skip: 0,
            want,
            buf: Vec::new(),
            len: 0,
            pos: 0,
            chunk_end: 0,
            png_idat: false,
            png_first: true,
            gif_trailer: None,
            webp_image: false,
            strippable: false,
            facts: Facts::default(),
        }
    }

    /// What has been found so far (final only after [`Self::finish`]).
    pub(crate) const fn facts(&self) -> &Facts {
        &self.facts
    }

    /// Walks the next piece of the file.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() && self.walk != Walk::Done {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).map_or(data.len(), |s| s.min(data.len()));
                self.skip -= n as u64;
                self.pos += n as u64;
                data = &data[n..];
                continue;
            }
            let n = (self.want - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            self.pos += n as u64;
            data = &data[n..];
            if self.buf.len() == self.want {
                let bytes = std::mem::take(&mut self.buf);
                let at = self.pos - bytes.len() as u64;
                let Next(skip, want, walk) = self.step(&bytes, at);
                (self.skip, self.want, self.walk) = (skip, want, walk);
                self.buf = bytes;
                self.buf.clear();
            }
        }
    }

    /// The facts of the whole file, once every piece is fed.
    pub(crate) fn finish(mut self) -> Facts {
        let at_boundary = self.skip == 0 && self.buf.is_empty();
        match self.walk {
            Walk::PngChunk => self.facts.clean = at_boundary && !self.strippable,
            Walk::WebpChunk if !self.buf.is_empty() => {
                self.facts.broken = Some("truncated chunk header");
            }
            Walk::WebpFirst { .. } | Walk::WebpExif { .. } | Walk::WebpChunk
                if self.len < self.chunk_end =>
            {
                self.facts.broken = Some("a chunk is larger than the file");
            }
            // A GIF's walk ends at its trailer, which must be the last byte.
            Walk::Done => {
                self.facts.clean =
                    self.gif_trailer.is_some_and(|at| at + 1 == self.len) && !self.strippable;
            }
            _ => {}
        }
        self.facts
    }

    fn step(&mut self, bytes: &[u8], at: u64) -> Next {
        let read = |want: usize, walk| Next(0, want, walk);
        match self.walk {
            Walk::Done => Next(0, 0, Walk::Done),
            Walk::PngSignature => read(8, Walk::PngChunk),
            Walk::PngChunk => {
                let len = u64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
                let kind = &bytes[4..8];
                self.strippable |= PNG_DROPPED.iter().any(|t| kind == &t[..]);
                let first = std::mem::take(&mut self.png_first);
                match kind {
                    b"IHDR" if first && len >= 13 => read(13, Walk::PngHeader { rest: len - 13 }),
                    b"eXIf" if !self.png_idat && (1..=EXIF_LIMIT).contains(&len) => {
                        read(to_usize(len) + 4, Walk::PngExif)
                    }
                    _ => {
                        self.png_idat |= kind == b"IDAT";
                        Next(len + 4, 8, Walk::PngChunk)
                    }
                }
            }
            Walk::PngHeader { rest } => {
                self.facts.interlaced = bytes[12] == 1;
                Next(rest + 4, 8, Walk::PngChunk)
            }
            Walk::PngExif => {
                // The `png` crate ignores an ancillary chunk whose CRC fails.
                let (data, crc) = bytes.split_at(bytes.len() - 4);
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(b"eXIf");
                hasher.update(data);
                if hasher.finalize().to_be_bytes() == crc {
                    self.facts.exif = Some(data.to_vec());
                }
                read(8, Walk::PngChunk)
            }
            Walk::GifHeader => Next(color_table_bytes(bytes[10]), 1, Walk::GifIntroducer),
            Walk::GifIntroducer => match bytes[0] {
                0x3B => {
                    self.gif_trailer = Some(at);
                    Next(0, 0, Walk::Done)
                }
                0x2C => read(9, Walk::GifImage),
                0x21 => read(1, Walk::GifLabel),
                // An unknown block: the walk stops with no trailer found.
                _ => Next(0, 0, Walk::Done),
            },
            Walk::GifImage => Next(
                color_table_bytes(bytes[8]) + 1,
                1,
                Walk::GifSubBlock {
                    image: true,
                    keep: true,
                },
            ),
            Walk::GifLabel => match bytes[0] {
                0xFF => read(1, Walk::GifApplicationLength),
                label => read(
                    1,
                    Walk::GifSubBlock {
                        image: false,
                        keep: label != 0xFE,
                    },
                ),
            },
            Walk::GifApplicationLength => match u64::from(bytes[0]) {
                0 => {
                    self.strippable = true;
                    read(1, Walk::GifIntroducer)
                }
                n if n >= 11 => read(11, Walk::GifApplication { rest: n - 11 }),
                n => Next(
                    n,
                    1,
                    Walk::GifSubBlock {
                        image: false,
                        keep: false,
                    },
                ),
            },
            Walk::GifApplication { rest } => {
                let keep = bytes == b"NETSCAPE2.0" || bytes == b"ANIMEXTS1.0";
                Next(rest, 1, Walk::GifSubBlock { image: false, keep })
            }
            Walk::GifSubBlock { image, keep } => match bytes[0] {
                0 => {
                    self.facts.frames += u32::from(image);
                    self.strippable |= !keep;
                    read(1, Walk::GifIntroducer)
                }
                n => Next(u64::from(n), 1, Walk::GifSubBlock { image, keep }),
            },
            Walk::WebpRiff => {
                self.chunk_end = at + 12;
                read(8, Walk::WebpChunk)
            }
            Walk::WebpChunk => self.webp_chunk(bytes, at),
            Walk::WebpFirst { rest, pad } => {
                if let Some((_, head)) = &mut self.facts.webp_first {
                    head.extend_from_slice(bytes);
                }
                Next(rest + pad, 8, Walk::WebpChunk)
            }
            Walk::WebpExif { pad } => {
                self.facts.exif = Some(bytes.to_vec());
                Next(pad, 8, Walk::WebpChunk)
            }
        }
    }

    fn webp_chunk(&mut self, bytes: &[u8], at: u64) -> Next {
        let fourcc = [bytes[0], bytes[1], bytes[2], bytes[3]];
        let size = u64::from(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
        let pad = size & 1;
        self.chunk_end = at + 8 + size;
        let facts = &mut self.facts;
        match &fourcc {
            b"VP8 " => facts.webp_vp8 = true,
            b"ALPH" | b"VP8L" | b"ANIM" | b"ANMF" => facts.webp_not_streamed = true,
            _ => {}
        }
        if matches!(&fourcc, b"VP8 " | b"VP8L") && !self.webp_image {
            self.webp_image = true;
            facts.webp_lossless = &fourcc == b"VP8L";
        }
        if facts.webp_first.is_none() {
            facts.webp_first = Some((fourcc, Vec::new()));
            let first = size.min(WEBP_FIRST_BYTES);
            if first > 0 {
                return Next(
                    0,
                    to_usize(first),
                    Walk::WebpFirst {
                        rest: size - first,
                        pad,
                    },
                );
            }
        } else if &fourcc == b"EXIF" {
            if (1..=EXIF_LIMIT).contains(&size) {
                return Next(0, to_usize(size), Walk::WebpExif { pad });
            }
            facts.exif = None;
        }
        Next(size + pad, 8, Walk::WebpChunk)
    }
}

fn color_table_bytes(packed: u8) -> u64 {
    if packed & 0x80 == 0 {
        0
    } else {
        3 << ((packed & 0x07) + 1)
    }
}

/// A length bounded by [`EXIF_LIMIT`] or [`WEBP_FIRST_BYTES`].
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use image::metadata::Orientation;

    use super::*;
    use crate::testing::{encode_png, encode_with, gradient, riff, riff_chunk};

    fn skimmed(bytes: &[u8], piece: usize) -> Facts {
        let format = ImageFormat::sniff(bytes).expect("sniffed");
        let mut skim = Skim::new(format);
        bytes.chunks(piece).for_each(|p| skim.feed(p));
        skim.finish()
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut chunk = u32::try_from(data.len())
            .expect("small")
            .to_be_bytes()
            .to_vec();
        chunk.extend_from_slice(kind);
        chunk.extend_from_slice(data);
        chunk.extend_from_slice(&crc32fast::hash(&chunk[4..]).to_be_bytes());
        chunk
    }

    /// A TIFF structure saying `orientation` (what `eXIf` and `EXIF` hold).
    fn exif(orientation: u16) -> Vec<u8> {
        crate::jpeg::exif_orientation_segment(orientation)[10..].to_vec()
    }

    /// Files of every walked kind, with metadata before and after the
    /// image data, orientations, frames, alpha.
    fn corpus() -> Vec<Vec<u8>> {
        let png = encode_png(&gradient(40, 30, false));
        let (head, tail) = png.split_at(33);
        let (body, iend) = tail.split_at(tail.len() - 12);
        let text = png_chunk(b"tEXt", b"A\0abc");
        let turned = png_chunk(b"eXIf", &exif(6));
        let gif = encode_with(&gradient(30, 20, false), image::ImageFormat::Gif);
        let mut animated = Vec::new();
        {
            let mut encoder = image::codecs::gif::GifEncoder::new(&mut animated);
            encoder
                .set_repeat(image::codecs::gif::Repeat::Infinite)
                .expect("loops");
            for _ in 0..3 {
                let frame = image::Frame::new(gradient(30, 20, true).to_rgba8());
                encoder.encode_frame(frame).expect("frame");
            }
        }
        let gif_head = crate::gif::header_len(&gif).expect("a header");
        let comment = [&[0x21, 0xFE, 3][..], b"abc", &[0]].concat();
        let xmp = [&[0x21, 0xFF, 11][..], b"XMP DataXMP", &[2, b'h', b'i', 0]].concat();
        let lossy = include_bytes!("../tests/images/lossy.webp").to_vec();
        let mut vp8x = vec![0x08, 0, 0, 0];
        let (w, h) = image::load_from_memory(&lossy)
            .map(|i| (i.width() - 1, i.height() - 1))
            .expect("decodes");
        vp8x.extend_from_slice(&w.to_le_bytes()[..3]);
        vp8x.extend_from_slice(&h.to_le_bytes()[..3]);
        let extended = riff(&[
            riff_chunk(b"VP8X", &vp8x),
            lossy[12..].to_vec(),
            riff_chunk(b"EXIF", &exif(8)),
            riff_chunk(b"XMP ", b"<x/>"),
        ]);
        vec![
            png.clone(),
            [head, &turned, &text, body, &text, iend].concat(),
            [head, body, &turned, iend].concat(),
            include_bytes!("../tests/images/interlaced.png").to_vec(),
            include_bytes!("../tests/images/palette-alpha.png").to_vec(),
            gif.clone(),
            animated,
            [&gif[..gif_head], &comment, &gif[gif_head..]].concat(),
            [&gif[..gif_head], &xmp, &gif[gif_head..]].concat(),
            [gif.as_slice(), b"junk"].concat(),
            lossy,
            include_bytes!("../tests/images/lossy-alpha.webp").to_vec(),
            encode_with(&gradient(30, 20, true), image::ImageFormat::WebP),
            extended,
        ]
    }

    /// The file, cut at many lengths, and with bytes changed (seeded).
    fn variants(file: &[u8]) -> Vec<Vec<u8>> {
        let mut out = vec![file.to_vec()];
        let step = (file.len() / 120).max(1);
        out.extend((12..file.len()).step_by(step).map(|n| file[..n].to_vec()));
        let mut seed = 0x9E37_79B9_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize
        };
        for _ in 0..150 {
            let mut changed = file.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = 12 + next() % (file.len() - 12);
                changed[at] = next() as u8;
            }
            out.push(changed);
        }
        out
    }

    fn png_info(png: &[u8]) -> Option<(bool, Orientation)> {
        let reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .ok()?;
        let info = reader.info();
        let orientation = info
            .exif_metadata
            .as_deref()
            .and_then(Orientation::from_exif_chunk)
            .unwrap_or(Orientation::NoTransforms);
        Some((info.interlaced, orientation))
    }

    fn orientation(facts: &Facts) -> Orientation {
        facts
            .exif
            .as_deref()
            .and_then(Orientation::from_exif_chunk)
            .unwrap_or(Orientation::NoTransforms)
    }

    #[test]
    fn the_walk_in_pieces_finds_what_the_whole_file_walks_find_in_whole_cut_and_damaged_files() {
        let mut checked = [0_usize; 4];
        for file in corpus() {
            for v in variants(&file) {
                let format = ImageFormat::sniff(&v).expect("sniffed");
                let facts = skimmed(&v, v.len());
                assert_eq!(skimmed(&v, 1), facts, "{format}, {} bytes", v.len());
                assert_eq!(skimmed(&v, 7), facts, "{format}, {} bytes", v.len());
                let what = format!("{format} of {} bytes: {facts:?}", v.len());
                let clean = crate::metadata::is_clean(format, &v);
                match format {
                    ImageFormat::Png => {
                        assert_eq!(facts.clean, clean, "{what}");
                        if let Some((interlaced, turned)) = png_info(&v) {
                            assert_eq!(facts.interlaced, interlaced, "{what}");
                            assert_eq!(orientation(&facts), turned, "{what}");
                        }
                        checked[0] += 1;
                    }
                    ImageFormat::Gif => {
                        assert_eq!(facts.clean, clean, "{what}");
                        let frames = crate::gif::count_frames(&v, u32::MAX - 1);
                        assert_eq!(facts.frames, frames, "{what}");
                        checked[1] += 1;
                    }
                    ImageFormat::Webp => {
                        let broken = crate::webp::chunks(&v).any(|c| c.is_err());
                        assert_eq!(facts.broken.is_some(), broken, "{what}");
                        if !broken {
                            let found = crate::rows::StreamedWebp::find(&v).expect("walks");
                            let streamed = facts.webp_vp8 && !facts.webp_not_streamed;
                            assert_eq!(streamed, found.is_some(), "{what}");
                            if let Some(found) = found {
                                assert_eq!(orientation(&facts), found.orientation, "{what}");
                            }
                        }
                        checked[2] += 1;
                    }
                    ImageFormat::Jpeg => checked[3] += 1,
                }
            }
        }
        assert!(checked[..3].iter().all(|n| *n > 500), "{checked:?}");
    }

    #[test]
    fn the_walk_reads_a_webps_orientation_its_first_chunk_and_its_kind() {
        let files = corpus();
        let extended = skimmed(&files[13], 5);
        assert_eq!(orientation(&extended), Orientation::Rotate270);
        assert_eq!(extended.webp_first.as_ref().map(|f| f.0), Some(*b"VP8X"));
        assert!(extended.webp_vp8 && !extended.webp_not_streamed);
        let lossless = skimmed(&files[12], 5);
        assert!(lossless.webp_lossless && lossless.webp_not_streamed);
        let turned_png = skimmed(&files[1], 3);
        assert_eq!(orientation(&turned_png), Orientation::Rotate90);
        assert!(!turned_png.clean, "tEXt and eXIf are stripped");
        assert!(skimmed(&files[0], 3).clean);
        assert_eq!(skimmed(&files[6], 3).frames, 3);
    }
}
