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
//! bytes in memory (no filesystem) and decodes one tensor at a time.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ClipConfig;
use crate::error::{Error, Result};
use crate::score::ScoreParams;

pub const MAGIC: [u8; 8] = *b"\x89DEB\r\n\x1a\n";
pub const FORMAT_VERSION: u32 = 1;
const PREAMBLE: usize = 48;
const ALIGN: usize = 64;
/// A header larger than this is refused before it is read: real ones are tens of kilobytes.
pub const MAX_HEADER_BYTES: usize = 16 << 20;

fn bad(msg: impl Into<String>) -> Error {
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

/// The OOD threshold and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// The score it applies to, e.g. `delta_energy`.
    pub score: String,
    /// Images scoring at or above it are called in-distribution.
    pub value: f64,
    /// The fraction of calibration ID images it keeps (0.95).
    pub tpr: f64,
    /// How it was calibrated, e.g. "cifar10/train held-out, 1000 images".
    pub calibration: String,
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

/// A parsed, verified bundle borrowing the file's bytes.
pub struct Bundle<'a> {
    pub header: Header,
    data: &'a [u8],
    pub sha256: [u8; 32],
    pub file_len: usize,
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> Bundle<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < PREAMBLE {
            return Err(bad(format!(
                "truncated: {} bytes is shorter than the {PREAMBLE}-byte preamble",
                bytes.len()
            )));
        }
        if bytes[..8] != MAGIC {
            return Err(bad("not a deltaenergy bundle (wrong magic bytes)"));
        }
        let version = read_u32(bytes, 8);
        if version == 0 || version > FORMAT_VERSION {
            return Err(bad(format!(
                "bundle format version {version} is not supported by this build (it reads version \
                 {FORMAT_VERSION}); a newer deltaenergy may read it"
            )));
        }
        let header_len = read_u32(bytes, 12) as usize;
        if header_len > MAX_HEADER_BYTES {
            return Err(bad(format!(
                "header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"
            )));
        }
        let data_start = align(PREAMBLE + header_len);
        if data_start > bytes.len() {
            return Err(bad(format!(
                "truncated: the header needs {data_start} bytes, the file has {}",
                bytes.len()
            )));
        }
        let mut stored = [0u8; 32];
        stored.copy_from_slice(&bytes[16..48]);
        let actual: [u8; 32] = Sha256::digest(&bytes[PREAMBLE..]).into();
        if actual != stored {
            return Err(bad(format!(
                "checksum mismatch: the file is damaged or incomplete (SHA-256 {} expected, {} found)",
                hex(&stored),
                hex(&actual)
            )));
        }
        let header: Header = serde_json::from_slice(&bytes[PREAMBLE..PREAMBLE + header_len])
            .map_err(|e| bad(format!("unreadable header: {e}")))?;
        let bundle = Bundle {
            header,
            data: &bytes[data_start..],
            sha256: stored,
            file_len: bytes.len(),
        };
        bundle.validate()?;
        Ok(bundle)
    }

    /// Every range inside the data region and of the length its description implies.
    fn validate(&self) -> Result<()> {
        let h = &self.header;
        h.config.validate()?;
        h.score.validate()?;
        self.check_section("tokenizer", h.tokenizer, None)?;
        for t in &h.tensors {
            let n = t
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
                .ok_or_else(|| {
                    bad(format!(
                        "tensor `{}` has an absurd shape {:?}",
                        t.name, t.shape
                    ))
                })?;
            self.check_section(&t.name, t.data, Some(t.dtype.value_bytes(n)))?;
            if t.dtype.is_quantized() {
                // Blocks must hold whole u32 words of packed values (8 at 4 bits) and fit
                // burn's u8 block size, or the GPU kernels would misread them.
                let (block, scales) = match (t.block, t.scales) {
                    (Some(b), Some(s)) if b > 0 && b % 8 == 0 && b <= 248 => (b as u64, s),
                    _ => {
                        return Err(bad(format!(
                            "quantized tensor `{}` lacks its scales or has an unusable block size {:?} \
                             (a multiple of 8 up to 248)",
                            t.name, t.block
                        )))
                    }
                };
                let cols = quant_cols(&t.shape) as u64;
                if cols == 0 || !cols.is_multiple_of(block) {
                    return Err(bad(format!(
                        "tensor `{}`: last axis {cols} is not a multiple of the block size {block}",
                        t.name
                    )));
                }
                self.check_section(&format!("{} scales", t.name), scales, Some(n / block * 2))?;
            }
        }
        if let Some(c) = &h.context {
            self.check_section(
                "context",
                c.data,
                Some((c.n_ctx as u64) * (c.width as u64) * 4),
            )?;
            if c.width != h.config.text_config.hidden_size {
                return Err(bad(format!(
                    "context vectors are {} wide, the text tower is {}",
                    c.width, h.config.text_config.hidden_size
                )));
            }
        }
        if let Some(f) = &h.text_features {
            self.check_section(
                "text_features",
                f.data,
                Some((f.rows as u64) * (f.dim as u64) * 4),
            )?;
            if f.rows != h.classes.len() || f.dim != h.config.projection_dim {
                return Err(bad(format!(
                    "text features are {}×{}, expected {} classes × {}",
                    f.rows,
                    f.dim,
                    h.classes.len(),
                    h.config.projection_dim
                )));
            }
        }
        Ok(())
    }

    fn check_section(&self, what: &str, s: Section, expected_len: Option<u64>) -> Result<()> {
        let end = s
            .offset
            .checked_add(s.length)
            .filter(|&e| e <= self.data.len() as u64);
        if end.is_none() {
            return Err(bad(format!(
                "{what}: bytes {}..+{} lie outside the {}-byte data region",
                s.offset,
                s.length,
                self.data.len()
            )));
        }
        if let Some(want) = expected_len {
            if s.length != want {
                return Err(bad(format!(
                    "{what}: {} bytes stored, its shape needs {want}",
                    s.length
                )));
            }
        }
        Ok(())
    }

    /// The bytes of a section (validated at parse time).
    pub fn bytes(&self, s: Section) -> &'a [u8] {
        &self.data[s.offset as usize..(s.offset + s.length) as usize]
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.header.tensors.iter().find(|t| t.name == name)
    }

    pub fn tokenizer(&self) -> Result<crate::tokenizer::ClipTokenizer> {
        Ok(crate::tokenizer::ClipTokenizer::from_bpe_gz(
            self.bytes(self.header.tokenizer),
        )?)
    }

    pub fn context(&self) -> Option<Vec<f32>> {
        self.header
            .context
            .as_ref()
            .map(|c| crate::loader::le_f32s(self.bytes(c.data)))
    }

    pub fn text_features(&self) -> Option<Vec<Vec<f32>>> {
        self.header.text_features.as_ref().map(|f| {
            crate::loader::le_f32s(self.bytes(f.data))
                .chunks(f.dim)
                .map(<[f32]>::to_vec)
                .collect()
        })
    }

    /// Bytes per kind of content, for `inspect` and `convert`.
    pub fn section_sizes(&self) -> Vec<(String, u64)> {
        let h = &self.header;
        let mut sizes: Vec<(String, u64)> = Vec::new();
        let mut add = |name: &str, n: u64| match sizes.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v += n,
            None => sizes.push((name.to_string(), n)),
        };
        add("header", (self.file_len - self.data.len()) as u64);
        for t in &h.tensors {
            let group = if t.name.starts_with("vision_model")
                || t.name.starts_with("visual_projection")
            {
                "image tower"
            } else if t.name.contains("token_embedding") {
                "token embedding"
            } else if t.name.starts_with("text_model") || t.name.starts_with("text_projection") {
                "text tower"
            } else {
                "other weights"
            };
            add(
                &format!("{group} ({})", dtype_label(t.dtype)),
                t.data.length,
            );
            if let Some(s) = t.scales {
                add(
                    &format!("{group} ({} scales)", dtype_label(t.dtype)),
                    s.length,
                );
            }
        }
        add("tokenizer", h.tokenizer.length);
        if let Some(c) = &h.context {
            add("context vectors", c.data.length);
        }
        if let Some(f) = &h.text_features {
            add("text features", f.data.length);
        }
        sizes
    }
}

/// Values per row along which blocks run: everything after the first (output) axis.
pub fn quant_cols(shape: &[usize]) -> usize {
    shape.iter().skip(1).product()
}

fn dtype_label(d: StoredDtype) -> &'static str {
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

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Assembles a bundle: sections are appended as they are added, then `finish` writes the
/// preamble, header and checksum.
#[derive(Clone)]
pub struct BundleWriter {
    data: Vec<u8>,
    pub tensors: Vec<TensorEntry>,
}

impl Default for BundleWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BundleWriter {
    pub fn new() -> Self {
        Self {
            data: Vec::new(),
            tensors: Vec::new(),
        }
    }

    pub fn section(&mut self, bytes: &[u8]) -> Section {
        let offset = align(self.data.len());
        self.data.resize(offset, 0);
        self.data.extend_from_slice(bytes);
        Section {
            offset: offset as u64,
            length: bytes.len() as u64,
        }
    }

    pub fn f32_section(&mut self, values: &[f32]) -> Section {
        self.section(&f32_bytes(values))
    }

    /// Stores a tensor given in Hugging Face layout at `dtype`.
    pub fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[f32],
        dtype: StoredDtype,
    ) -> Result<()> {
        let n: usize = shape.iter().product();
        if n != values.len() {
            return Err(bad(format!(
                "tensor `{name}`: {} values for shape {shape:?}",
                values.len()
            )));
        }
        let (data, scales, block) = match dtype {
            StoredDtype::F32 => (self.f32_section(values), None, None),
            StoredDtype::F16 => {
                let b: Vec<u8> = values
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect();
                (self.section(&b), None, None)
            }
            StoredDtype::Q8 | StoredDtype::Q4 => {
                let bits = if dtype == StoredDtype::Q8 { 8 } else { 4 };
                let cols = quant_cols(shape);
                let q = crate::quant::quantize_blocks(values, cols, crate::quant::BLOCK, bits)?;
                let data = self.section(&q.packed);
                let scales = self.section(&crate::quant::scales_to_bytes(&q.scales));
                (data, Some(scales), Some(crate::quant::BLOCK))
            }
        };
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype,
            data,
            scales,
            block,
        });
        Ok(())
    }

    pub fn finish(mut self, mut header: Header) -> Result<Vec<u8>> {
        header.tensors = std::mem::take(&mut self.tensors);
        let json = serde_json::to_vec(&header).map_err(|e| bad(format!("header: {e}")))?;
        if json.len() > MAX_HEADER_BYTES {
            return Err(bad(format!(
                "header of {} bytes exceeds the limit",
                json.len()
            )));
        }
        let data_start = align(PREAMBLE + json.len());
        let mut out = Vec::with_capacity(data_start + self.data.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0u8; 32]);
        out.extend_from_slice(&json);
        out.resize(data_start, 0);
        out.append(&mut self.data);
        let digest: [u8; 32] = Sha256::digest(&out[PREAMBLE..]).into();
        out[16..48].copy_from_slice(&digest);
        Ok(out)
    }
}

/// Supplies the bundle's tensors to the model builder, one at a time.
pub struct BundleSource<'b, 'a> {
    bundle: &'b Bundle<'a>,
}

impl<'b, 'a> BundleSource<'b, 'a> {
    pub fn new(bundle: &'b Bundle<'a>) -> Self {
        Self { bundle }
    }

    fn entry(&self, key: &str, shape: &[usize]) -> Result<&'b TensorEntry> {
        let t = self
            .bundle
            .tensor(key)
            .ok_or_else(|| Error::MissingTensor {
                key: key.to_string(),
                expected: shape.to_vec(),
            })?;
        crate::loader::check_shape(key, shape, &t.shape)?;
        Ok(t)
    }

    fn quantized(&self, t: &TensorEntry) -> Result<(Vec<i8>, Vec<f32>, u32, usize)> {
        let bits = if t.dtype == StoredDtype::Q8 { 8 } else { 4 };
        let n = t.shape.iter().product();
        let values = crate::quant::unpack(self.bundle.bytes(t.data), n, bits);
        // validate() guaranteed both are present and sized.
        let scales = crate::loader::le_f16s(self.bundle.bytes(t.scales.expect("validated")));
        if scales.iter().any(|s| !s.is_finite() || *s < 0.0) {
            return Err(Error::NonFinite {
                key: format!("{} (scales)", t.name),
            });
        }
        Ok((values, scales, bits, t.block.expect("validated")))
    }
}

impl crate::loader::WeightSource for BundleSource<'_, '_> {
    fn take(&mut self, key: &str, shape: &[usize], _init: crate::loader::Init) -> Result<Vec<f32>> {
        let t = self.entry(key, shape)?;
        let raw = self.bundle.bytes(t.data);
        let values = match t.dtype {
            StoredDtype::F32 => crate::loader::le_f32s(raw),
            StoredDtype::F16 => crate::loader::le_f16s(raw),
            StoredDtype::Q8 | StoredDtype::Q4 => {
                let (q, s, _, block) = self.quantized(t)?;
                crate::quant::dequantize(&q, &s, block)
            }
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                key: key.to_string(),
            });
        }
        Ok(values)
    }

    fn take_linear(&mut self, key: &str, shape: &[usize]) -> Result<crate::loader::Weight> {
        let t = self.entry(key, shape)?;
        if t.dtype.is_quantized() {
            let (values, scales, bits, block) = self.quantized(t)?;
            Ok(crate::loader::Weight::Quantized {
                values,
                scales,
                bits,
                block,
            })
        } else {
            Ok(crate::loader::Weight::F32(self.take(
                key,
                shape,
                crate::loader::Init::Zeros,
            )?))
        }
    }
}

impl Bundle<'_> {
    /// Builds the model the bundle carries.
    pub fn model(&self, device: &burn::tensor::Device) -> Result<crate::model::Clip> {
        crate::loader::build_clip(&self.header.config, &mut BundleSource::new(self), device)
    }
}

impl Bundle<'_> {
    /// SHA-256 of everything the image tower is made of (its config and stored tensors): equal
    /// for bundles that differ only in text side, prompt or settings, so image features cached
    /// for one serve the others.
    pub fn vision_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&self.header.config.vision_config).unwrap_or_default());
        h.update(self.header.config.projection_dim.to_le_bytes());
        for t in &self.header.tensors {
            if t.name.starts_with("vision_model.") || t.name.starts_with("visual_projection.") {
                h.update(t.name.as_bytes());
                h.update(format!("{:?}{:?}", t.dtype, t.shape).as_bytes());
                h.update(self.bytes(t.data));
                if let Some(s) = t.scales {
                    h.update(self.bytes(s));
                }
            }
        }
        h.finalize().into()
    }
}
