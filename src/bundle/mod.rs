//! The bundle: one versioned file that carries a whole scorer — CLIP config and weights (f32,
//! f16, q8 or q4), the tokenizer, optional learned context vectors, class names, optional
//! precomputed text features, score settings, the calibrated OOD threshold and provenance.
//!
//! Layout (little-endian; documented in ARCHITECTURE.md):
//!
//! ```text
//! 0   magic      8 bytes  89 44 45 42 0D 0A 1A 0A  ("\x89DEB\r\n\x1a\n")
//! 8   version    u32      FORMAT_VERSION
//! 12  header_len u32      length of the JSON header
//! 16  sha256     32 bytes SHA-256 of every byte from offset 48 to the end of the file
//! 48  header     JSON (`Header`), then zero padding to a multiple of 64
//! D   data       the sections the header points to, each 64-byte aligned, offsets relative to D
//! ```
//!
//! Reading checks, in this order and before allocating anything sized by the file: length,
//! magic, version, header length against the file, checksum, header JSON, and that every
//! section lies inside the file with the length its dtype and shape imply. Reading works on
//! bytes in memory or on any `BundleBytes` that copies out a range at a time (the page's
//! JavaScript buffer; no filesystem), and decodes one tensor at a time.

mod format;
mod read;
mod write;

pub mod convert;
#[cfg(not(target_family = "wasm"))]
pub mod export;
pub mod quant;

pub use format::{
    hex, quant_cols, ContextEntry, FeaturesEntry, Header, Provenance, Section, StoredDtype,
    TensorEntry, Threshold, FORMAT_VERSION, MAGIC, MAX_HEADER_BYTES,
};
pub use read::{Bundle, BundleBytes, BundleSource};
pub use write::BundleWriter;
