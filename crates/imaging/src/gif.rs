//! A walk over a GIF's blocks without decoding any image data, for removing
//! metadata blocks losslessly. Bounded by the file's length; never
//! allocates. The upload counts frames with `skim`'s walk of the same
//! blocks, which tests hold to this one.

use std::ops::Range;

/// One block after the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Block<'a> {
    /// An image (a frame): descriptor, local colour table and data.
    Image,
    /// An extension with its label; `application` is the 11-byte identifier
    /// of an application extension (label `0xFF`).
    Extension {
        /// 0xF9 graphic control, 0xFE comment, 0xFF application, 0x01 text.
        label: u8,
        /// The application identifier, e.g. `NETSCAPE2.0`.
        application: &'a [u8],
    },
}

fn color_table_bytes(packed: u8) -> usize {
    if packed & 0x80 == 0 {
        0
    } else {
        3 << ((packed & 0x07) + 1)
    }
}

/// The end of the data sub-blocks starting at `pos` (after the terminator).
fn sub_blocks_end(gif: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = usize::from(*gif.get(pos)?);
        pos = pos.checked_add(1 + len)?;
        if len == 0 {
            return Some(pos);
        }
    }
}

/// The length of the signature, screen descriptor and global colour table.
pub(crate) fn header_len(gif: &[u8]) -> Option<usize> {
    if !gif.starts_with(b"GIF87a") && !gif.starts_with(b"GIF89a") {
        return None;
    }
    let len = 13 + color_table_bytes(*gif.get(10)?);
    (len <= gif.len()).then_some(len)
}

/// The blocks between the header and the trailer, each with its byte range.
/// Ends at the trailer, or at the end of a file that lacks one; yields `Err`
/// with a reason once when a block is truncated or unknown, then stops.
pub(crate) fn blocks(
    gif: &[u8],
) -> impl Iterator<Item = Result<(Block<'_>, Range<usize>), &'static str>> + '_ {
    let mut pos = header_len(gif);
    std::iter::from_fn(move || {
        let start = pos?;
        let introducer = *gif.get(start)?;
        if introducer == 0x3B {
            return None;
        }
        let block = match introducer {
            0x2C => gif.get(start + 9).and_then(|packed| {
                let data = start + 10 + color_table_bytes(*packed) + 1;
                Some((Block::Image, start..sub_blocks_end(gif, data)?))
            }),
            0x21 => gif.get(start + 1).and_then(|label| {
                let application = gif.get(start + 3..start + 14).unwrap_or_default();
                let block = Block::Extension {
                    label: *label,
                    application,
                };
                Some((block, start..sub_blocks_end(gif, start + 2)?))
            }),
            _ => None,
        };
        pos = block.as_ref().map(|(_, range)| range.end);
        Some(block.ok_or("a block is truncated or of an unknown kind"))
    })
}

/// How many frames the GIF has, counting no further than `stop_after + 1`;
/// a broken structure ends the count where it breaks.
#[cfg(test)]
pub(crate) fn count_frames(gif: &[u8], stop_after: u32) -> u32 {
    let mut frames = 0;
    for block in blocks(gif).map_while(Result::ok) {
        if matches!(block, (Block::Image, _)) {
            frames += 1;
            if frames > stop_after {
                break;
            }
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_with, gradient};

    #[test]
    fn a_still_gif_has_one_frame_and_an_animation_has_each_of_its_frames() {
        let still = encode_with(&gradient(30, 20, false), image::ImageFormat::Gif);
        assert_eq!(count_frames(&still, 100), 1);
        let mut animated = Vec::new();
        {
            let mut encoder = image::codecs::gif::GifEncoder::new(&mut animated);
            for _ in 0..7 {
                let frame = image::Frame::new(gradient(30, 20, true).to_rgba8());
                encoder.encode_frame(frame).expect("frame");
            }
        }
        assert_eq!(count_frames(&animated, 100), 7);
        assert_eq!(
            count_frames(&animated, 3),
            4,
            "counting stops past the limit"
        );
    }

    #[test]
    fn a_truncated_gif_is_walked_up_to_where_it_breaks() {
        let still = encode_with(&gradient(30, 20, false), image::ImageFormat::Gif);
        let cut = &still[..still.len() - 10];
        assert_eq!(count_frames(cut, 100), 0);
        assert!(
            blocks(cut).last().is_some_and(|b| b.is_err()),
            "the walk reports the break"
        );
        assert_eq!(header_len(b"GIF89a"), None);
    }
}
