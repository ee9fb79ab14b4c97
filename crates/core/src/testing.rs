//! In-memory implementations of the ports, and small generated images, for
//! unit tests here and in the adapter. They are real implementations (with
//! switchable failures), not mocks that script answers.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};

use crate::id::JobId;
use crate::ports::{Clock, KeyValue, PortError, Queue};
use crate::time::Timestamp;

/// A key-value store in a map. `fail_sets_after(n)` makes every `set` after
/// the next `n` fail, as a full or unreachable store would.
#[derive(Default)]
pub struct MemoryKv {
    map: RefCell<BTreeMap<String, Vec<u8>>>,
    sets_left: Cell<Option<usize>>,
}

impl MemoryKv {
    /// Lets `n` more `set`s succeed, then fails the rest.
    pub fn fail_sets_after(&self, n: usize) {
        self.sets_left.set(Some(n));
    }

    /// Makes every operation succeed again.
    pub fn heal(&self) {
        self.sets_left.set(None);
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Every stored key.
    pub fn keys(&self) -> Vec<String> {
        self.map.borrow().keys().cloned().collect()
    }

    /// Every stored value.
    pub fn values(&self) -> impl Iterator<Item = Vec<u8>> {
        self.map
            .borrow()
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
    }
}

impl KeyValue for MemoryKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        Ok(self.map.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), PortError> {
        match self.sets_left.get() {
            Some(0) => return Err(PortError::new("memory store: write refused")),
            Some(n) => self.sets_left.set(Some(n - 1)),
            None => {}
        }
        self.map.borrow_mut().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), PortError> {
        self.map.borrow_mut().remove(key);
        Ok(())
    }
}

/// A queue that records what was enqueued, or refuses when `down`.
#[derive(Default)]
pub struct MemoryQueue {
    /// Ids in the order they were enqueued.
    pub enqueued: RefCell<Vec<JobId>>,
    /// When set, `enqueue` fails as an unreachable Redis would.
    pub down: Cell<bool>,
}

impl Queue for MemoryQueue {
    fn enqueue(&self, id: JobId) -> Result<(), PortError> {
        if self.down.get() {
            return Err(PortError::new("memory queue: down"));
        }
        self.enqueued.borrow_mut().push(id);
        Ok(())
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(Cell<u64>);

impl ManualClock {
    /// A clock showing `millis` after the epoch.
    pub const fn at(millis: u64) -> Self {
        Self(Cell::new(millis))
    }

    /// Moves the clock forward.
    pub fn advance(&self, millis: u64) {
        self.0.set(self.0.get() + millis);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.0.get())
    }
}

/// A smooth colour gradient, optionally with an alpha ramp: photo-like
/// content that codecs treat realistically.
pub fn gradient(width: u32, height: u32, alpha: bool) -> DynamicImage {
    let channel = |v: u32, max: u32| u8::try_from(v * 255 / max.max(1)).unwrap_or(u8::MAX);
    if alpha {
        DynamicImage::ImageRgba8(RgbaImage::from_fn(width, height, |x, y| {
            Rgba([
                channel(x, width),
                channel(y, height),
                128,
                channel(x + y, width + height),
            ])
        }))
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            Rgb([
                channel(x, width),
                channel(y, height),
                channel(x ^ y, width.max(height)),
            ])
        }))
    }
}

/// `image` encoded in `format` with the `image` crate's encoders.
///
/// # Panics
/// If encoding fails, which for these small images is a bug in the test.
pub fn encode_with(image: &DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let image = match format {
        image::ImageFormat::Jpeg | image::ImageFormat::Gif => {
            DynamicImage::ImageRgb8(image.to_rgb8())
        }
        _ => image.clone(),
    };
    #[expect(clippy::unwrap_used, reason = "test helper; see # Panics")]
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// `image` as PNG.
pub fn encode_png(image: &DynamicImage) -> Vec<u8> {
    encode_with(image, image::ImageFormat::Png)
}

/// `image` as JPEG with an EXIF block holding `orientation` (1..=8).
pub fn encode_jpeg_with_orientation(image: &DynamicImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode_with(image, image::ImageFormat::Jpeg);
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2A\0\0\0\x08"); // big-endian TIFF, IFD at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // padding of the 4-byte value field
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let len = u16::try_from(app1.len() + 2).unwrap_or(u16::MAX);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}
