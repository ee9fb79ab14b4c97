//! Lossless JPEG surgery: removing metadata segments without touching the
//! entropy-coded image, and writing a minimal EXIF block that carries only
//! the orientation. This is how the "optimized" copy of a JPEG is made
//! without a full decode and re-quantization (the costliest step of a job).

/// APPn segments kept: APP0 (JFIF), APP2 (ICC colour profile: needed to show
/// the colours right) and APP14 (Adobe: needed to read CMYK/YCCK correctly).
const KEPT_APP_MARKERS: [u8; 3] = [0xE0, 0xE2, 0xEE];

/// Why a JPEG's segment structure cannot be walked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed JPEG structure: {0}")]
pub struct MalformedJpeg(&'static str);

/// The JPEG without EXIF, XMP, IPTC, comments and other metadata segments;
/// if `orientation` is not 1, a minimal EXIF block holding only that
/// orientation is put back, so viewers still show the image upright.
///
/// # Errors
/// [`MalformedJpeg`] when the markers before the image data do not parse.
pub fn strip_metadata(jpeg: &[u8], orientation: u16) -> Result<Vec<u8>, MalformedJpeg> {
    let Some(rest) = jpeg.strip_prefix(&[0xFF, 0xD8]) else {
        return Err(MalformedJpeg("no start-of-image marker"));
    };
    let mut out = Vec::with_capacity(jpeg.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut inserted_exif = orientation == 1;
    let mut pos = 0;
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while rest.get(pos) == Some(&0xFF) && rest.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (rest.get(pos), rest.get(pos + 1)) else {
            return Err(MalformedJpeg("expected a marker"));
        };
        if matches!(marker, 0xD0..=0xD7 | 0x01) {
            out.extend_from_slice(&[0xFF, marker]);
            pos += 2;
            continue;
        }
        let len_bytes = rest
            .get(pos + 2..pos + 4)
            .ok_or(MalformedJpeg("truncated segment length"))?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        if len < 2 {
            return Err(MalformedJpeg("segment length below 2"));
        }
        let end = pos + 2 + len;
        let segment = rest
            .get(pos..end)
            .ok_or(MalformedJpeg("truncated segment"))?;
        let is_app = (0xE0..=0xEF).contains(&marker);
        let keep = if is_app {
            KEPT_APP_MARKERS.contains(&marker)
        } else {
            marker != 0xFE
        };
        if !inserted_exif && marker != 0xE0 {
            // After JFIF (if any), before everything else, as EXIF expects.
            out.extend_from_slice(&exif_orientation_segment(orientation));
            inserted_exif = true;
        }
        if keep {
            out.extend_from_slice(segment);
        }
        pos = end;
        if marker == 0xDA {
            // Start of scan: the rest is entropy-coded data and later markers.
            out.extend_from_slice(&rest[pos..]);
            return Ok(out);
        }
        if marker == 0xD9 {
            return Err(MalformedJpeg("end of image before any scan"));
        }
    }
}

/// An APP1 segment with an EXIF block holding only the Orientation tag.
pub fn exif_orientation_segment(orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::with_capacity(26);
    tiff.extend_from_slice(b"MM\0\x2A\0\0\0\x08"); // big-endian TIFF, first IFD at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // padding of the 4-byte value field
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut segment = vec![0xFF, 0xE1];
    let len = u16::try_from(2 + 6 + tiff.len()).unwrap_or(u16::MAX);
    segment.extend_from_slice(&len.to_be_bytes());
    segment.extend_from_slice(b"Exif\0\0");
    segment.extend_from_slice(&tiff);
    segment
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_jpeg_with_orientation, encode_with, gradient};

    fn with_metadata() -> Vec<u8> {
        let jpeg = encode_jpeg_with_orientation(&gradient(64, 32, false), 1);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xFE, 0, 13]);
        out.extend_from_slice(b"secret note");
        let xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>GPS</x:xmpmeta>";
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&u16::try_from(xmp.len() + 2).expect("small").to_be_bytes());
        out.extend_from_slice(xmp);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn metadata_is_removed_and_the_image_is_untouched() {
        let original = with_metadata();
        let stripped = strip_metadata(&original, 1).expect("strip");
        assert!(stripped.len() < original.len());
        for needle in [&b"secret note"[..], b"xmpmeta", b"Exif\0\0"] {
            assert!(
                !stripped.windows(needle.len()).any(|w| w == needle),
                "{needle:?} left in"
            );
        }
        let before = image::load_from_memory(&original)
            .expect("original decodes")
            .to_rgb8();
        let after = image::load_from_memory(&stripped)
            .expect("stripped decodes")
            .to_rgb8();
        assert_eq!(before, after, "pixels are identical");
    }

    #[test]
    fn a_non_identity_orientation_is_kept_in_a_minimal_exif_block() {
        let original = encode_jpeg_with_orientation(&gradient(64, 32, false), 6);
        let stripped = strip_metadata(&original, 6).expect("strip");
        let decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&stripped))
            .expect("decoder");
        let mut decoder = decoder;
        use image::ImageDecoder as _;
        assert_eq!(
            decoder.orientation().expect("orientation"),
            image::metadata::Orientation::Rotate90
        );
    }

    #[test]
    fn what_is_not_a_jpeg_is_refused() {
        assert!(strip_metadata(b"\x89PNG....", 1).is_err());
        let png_as_jpeg = [0xFF, 0xD8, 0xFF, 0xE1, 0x00];
        assert!(strip_metadata(&png_as_jpeg, 1).is_err());
        let plain = encode_with(&gradient(8, 8, false), image::ImageFormat::Jpeg);
        assert_eq!(
            strip_metadata(&plain[..5], 1),
            Err(MalformedJpeg("truncated segment length"))
        );
    }
}
