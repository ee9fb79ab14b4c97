//! The decoder's errors: the variants of image-webp's `DecodingError` that
//! the VP8 code returns, under the same names so that the forked code is
//! unchanged.

/// Why a VP8 bitstream could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodingError {
    /// The data ended early.
    #[error("IO error: {0}")]
    IoError(#[from] std::io::Error),
    /// The bitstream was somehow corrupt.
    #[error("corrupt bitstream")]
    BitStreamError,
    /// VP8's `[0x9D, 0x01, 0x2A]` magic not found.
    #[error("invalid VP8 magic: {0:x?}")]
    Vp8MagicInvalid([u8; 3]),
    /// The first partition is too short.
    #[error("not enough VP8 init data")]
    NotEnoughInitData,
    /// Only colour space 0 is specified.
    #[error("invalid VP8 color space: {0}")]
    ColorSpaceInvalid(u8),
    /// Unknown luma prediction mode.
    #[error("invalid VP8 luma prediction mode: {0}")]
    LumaPredictionModeInvalid(i8),
    /// Unknown intra prediction mode.
    #[error("invalid VP8 intra prediction mode: {0}")]
    IntraPredictionModeInvalid(i8),
    /// Unknown chroma prediction mode.
    #[error("invalid VP8 chroma prediction mode: {0}")]
    ChromaPredictionModeInvalid(i8),
    /// Valid, perhaps, but not supported (an inter frame).
    #[error("unsupported feature: {0}")]
    UnsupportedFeature(String),
}
