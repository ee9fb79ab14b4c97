//! The line-by-line decoder against unmodified image-webp 0.2.4 on the
//! same files: every pixel equal, lines given once each and in order, and
//! a cut file an error where upstream's is one (never a panic).

use std::io::Cursor;

/// The payload of the file's `VP8 ` chunk.
fn vp8_chunk(webp: &[u8]) -> &[u8] {
    let mut pos = 12;
    while pos + 8 <= webp.len() {
        let size = u32::from_le_bytes(webp[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if &webp[pos..pos + 4] == b"VP8 " {
            return &webp[pos + 8..(pos + 8 + size).min(webp.len())];
        }
        pos += 8 + size + (size & 1);
    }
    panic!("no VP8 chunk");
}

/// The picture through `vp8_rows`, lines checked to come once each and in
/// order.
fn decoded(vp8: &[u8]) -> Result<(u16, u16, Vec<u8>), vp8_rows::DecodingError> {
    let decoder = vp8_rows::Decoder::new(Cursor::new(vp8))?;
    let (width, height) = decoder.dimensions();
    let mut pixels = Vec::new();
    let mut next = 0;
    decoder.decode_rows(|y, rgb| {
        assert_eq!(y, next, "lines in order");
        assert_eq!(rgb.len(), 3 * usize::from(width));
        pixels.extend_from_slice(rgb);
        next += 1;
    })?;
    assert_eq!(next, u32::from(height), "every line given");
    Ok((width, height, pixels))
}

fn upstream(webp: &[u8]) -> Result<(u32, u32, Vec<u8>), upstream::DecodingError> {
    let mut decoder = upstream::WebPDecoder::new(Cursor::new(webp))?;
    let (width, height) = decoder.dimensions();
    assert!(!decoder.has_alpha(), "the fixtures are opaque");
    let mut pixels = vec![0; decoder.output_buffer_size().unwrap()];
    decoder.read_image(&mut pixels)?;
    Ok((width, height, pixels))
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the fixtures are there");
    files
}

#[test]
fn every_fixture_decodes_line_by_line_to_upstreams_pixels() {
    for (name, webp) in fixtures() {
        let (width, height, pixels) = decoded(vp8_chunk(&webp)).unwrap();
        let (up_width, up_height, up_pixels) = upstream(&webp).unwrap();
        assert_eq!(
            (u32::from(width), u32::from(height)),
            (up_width, up_height),
            "{name}"
        );
        assert!(pixels == up_pixels, "{name}: pixels differ from upstream's");
    }
}

#[test]
fn a_cut_file_fails_where_upstream_fails_and_never_panics() {
    let (_, webp) = fixtures()
        .into_iter()
        .find(|(name, _)| name.ends_with("333x221.webp"))
        .unwrap();
    let vp8 = vp8_chunk(&webp);
    for cut in (0..vp8.len()).step_by(97).chain([vp8.len() - 1]) {
        let ours = decoded(&vp8[..cut]);
        // Upstream reads the same payload from a RIFF whose sizes say `cut`.
        let mut riff = webp[..12].to_vec();
        riff[4..8].copy_from_slice(&(4 + 8 + cut as u32).to_le_bytes());
        riff.extend_from_slice(b"VP8 ");
        riff.extend_from_slice(&(cut as u32).to_le_bytes());
        riff.extend_from_slice(&vp8[..cut]);
        let theirs = upstream(&riff);
        match (ours, theirs) {
            (Ok((_, _, ours)), Ok((_, _, theirs))) => assert!(ours == theirs, "cut at {cut}"),
            (Err(_), Err(_)) => {}
            (ours, theirs) => panic!(
                "cut at {cut}: ours {:?}, upstream {:?}",
                ours.map(|_| ()),
                theirs.map(|_| ())
            ),
        }
    }
}

#[test]
fn a_file_with_bytes_changed_decodes_as_upstream_decodes_it_or_fails_as_it_fails() {
    let (_, webp) = fixtures()
        .into_iter()
        .find(|(name, _)| name.ends_with("333x221.webp"))
        .unwrap();
    let start = webp.len() - vp8_chunk(&webp).len();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let mut damaged = webp.clone();
        // One to four bytes of the VP8 payload, header and partitions alike.
        for _ in 0..=(next() % 4) {
            let at = start + (next() as usize) % (webp.len() - start);
            damaged[at] ^= (next() as u8) | 1;
        }
        let ours = decoded(vp8_chunk(&damaged));
        let theirs = upstream(&damaged);
        match (ours, theirs) {
            (Ok((_, _, ours)), Ok((_, _, theirs))) => {
                assert!(ours == theirs, "round {round}: pixels differ");
            }
            (Err(_), Err(_)) => {}
            (ours, theirs) => panic!(
                "round {round}: ours {:?}, upstream {:?}",
                ours.map(|_| ()),
                theirs.map(|_| ())
            ),
        }
    }
}
