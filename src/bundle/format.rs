//! The bundle's layout: constants, the header's types, and small helpers the reader and the
//! writer share.

use serde::{Deserialize, Serialize};

use crate::clip::config::ClipConfig;
use crate::error::Error;
use crate::ood::score::ScoreParams;
pub use crate::ood::score::Threshold;

pub const MAGIC: [u8; 8] = *b"\x89DEB\r\n\x1a\n";
pub const FORMAT_VERSION: u32 = 1;
pub(super) const PREAMBLE: usize = 48;
pub(super) const ALIGN: usize = 64;
/// A header larger than this is refused before it is read: real ones are tens of kilobytes.
pub const MAX_HEADER_BYTES: usize = 16 << 20;

pub(super) fn bad(msg: impl Into<String>) -> Error {
    Error::Bundle(msg.into())
}

/// A byte range of the data region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub offset: u64,
    pub length: u64,
}

/// How a tensor is stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredDtype {
    F32,
    F16,
    /// Symmetric 8-bit, one scale per block of `block` values along the input axis
    /// (all axes after the first, flattened: `in` of a linear, `C·p·p` of the patch conv).
    Q8,
    /// Symmetric 4-bit (values −7..7, two per byte, low nibble first), f16 block scales.
    Q4,
}

impl StoredDtype {
    /// Bytes of the value section for `n` values.
    pub fn value_bytes(self, n: u64) -> u64 {
        match self {
            StoredDtype::F32 => n * 4,
            StoredDtype::F16 => n * 2,
            StoredDtype::Q8 => n,
            StoredDtype::Q4 => n.div_ceil(2),
        }
    }

    pub fn is_quantized(self) -> bool {
        matches!(self, StoredDtype::Q8 | StoredDtype::Q4)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// Hugging Face name, e.g. `vision_model.encoder.layers.0.mlp.fc1.weight`.
    pub name: String,
    /// Hugging Face shape (linear weights `[out, in]`).
    pub shape: Vec<usize>,
    pub dtype: StoredDtype,
    pub data: Section,
    /// Quantized tensors only: little-endian f16 scales, one per block, row-major over
    /// `[rows, cols/block]` (widened to f32 on load: devices compute with f32 scales).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scales: Option<Section>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<usize>,
}

/// Learned prompt context (CoOp): `n_ctx` vectors of the text width, placed right after SOT
/// and before the class-name tokens: `[SOT] ctx_1 … ctx_n <class tokens> . [EOT]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContextEntry {
    pub n_ctx: usize,
    pub width: usize,
    /// What follows the class name inside the prompt (CoOp uses ".").
    pub suffix: String,
    pub data: Section,
}

/// Normalised text features of the bundle's classes, `[classes, projection_dim]` f32, so the
/// first prediction needs no text tower.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeaturesEntry {
    pub rows: usize,
    pub dim: usize,
    pub data: Section,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Where the weights came from (a path, a hub id, a training recipe).
    pub source: String,
    /// `deltaenergy <version>` of the converter.
    pub converter: String,
    /// Seconds since the Unix epoch at conversion.
    pub created: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub config: ClipConfig,
    /// Precision chosen for the linear weights (what `convert --quant` said).
    pub quant: String,
    pub tensors: Vec<TensorEntry>,
    /// gzip of OpenAI-format BPE merges (`#version` line, then one merge per line); the
    /// vocabulary is derived from them as OpenAI's CLIP derives it.
    pub tokenizer: Section,
    pub classes: Vec<String>,
    /// Hand prompt used for classes when there is no learned context.
    pub template: String,
    pub context: Option<ContextEntry>,
    pub text_features: Option<FeaturesEntry>,
    pub score: ScoreParams,
    pub threshold: Option<Threshold>,
    pub provenance: Provenance,
}

pub(super) fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

pub(super) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Values per row along which blocks run: everything after the first (output) axis.
pub fn quant_cols(shape: &[usize]) -> usize {
    shape.iter().skip(1).product()
}

pub(super) fn dtype_label(d: StoredDtype) -> &'static str {
    match d {
        StoredDtype::F32 => "f32",
        StoredDtype::F16 => "f16",
        StoredDtype::Q8 => "q8",
        StoredDtype::Q4 => "q4",
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
