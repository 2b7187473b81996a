//! Reading a bundle: parse and verify its bytes, then hand tensors to the model builder one at a
//! time.

use std::borrow::Cow;
use std::ops::Range;

use sha2::{Digest, Sha256};

use super::format::*;
use crate::error::{Error, Result};

/// Where a bundle's bytes are. In memory a range is a borrow; the browser's scorer reads the
/// JavaScript buffer it is given a range at a time instead, because wasm memory never shrinks:
/// a copy of the whole file made there to load from would stay as long as the page.
pub trait BundleBytes<'a> {
    /// The file's length in bytes.
    fn size(&self) -> usize;
    /// The bytes in `range`, which lies inside `0..size()`.
    fn get(&self, range: Range<usize>) -> Cow<'a, [u8]>;
}

impl<'a> BundleBytes<'a> for &'a [u8] {
    fn size(&self) -> usize {
        self.len()
    }
    fn get(&self, range: Range<usize>) -> Cow<'a, [u8]> {
        Cow::Borrowed(&self[range])
    }
}

/// How much of the file the checksum reads at a time from a source that copies.
const HASH_CHUNK: usize = 4 << 20;

/// A parsed, verified bundle over its bytes (by default a slice of the file in memory).
pub struct Bundle<'a, B: BundleBytes<'a> = &'a [u8]> {
    pub header: Header,
    bytes: B,
    data_start: usize,
    pub sha256: [u8; 32],
    pub file_len: usize,
    _file: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> Bundle<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        Bundle::read(bytes)
    }
}

impl<'a, B: BundleBytes<'a>> Bundle<'a, B> {
    /// Parses and verifies the bundle in `bytes`, reading only its preamble and header into
    /// memory of its own (and the rest a chunk at a time for the checksum).
    pub fn read(bytes: B) -> Result<Self> {
        let len = bytes.size();
        if len < PREAMBLE {
            return Err(bad(format!(
                "truncated: {len} bytes is shorter than the {PREAMBLE}-byte preamble"
            )));
        }
        let preamble = bytes.get(0..PREAMBLE);
        if preamble[..8] != MAGIC {
            return Err(bad("not a deltaenergy bundle (wrong magic bytes)"));
        }
        let version = read_u32(&preamble, 8);
        if version == 0 || version > FORMAT_VERSION {
            return Err(bad(format!(
                "bundle format version {version} is not supported by this build (it reads version \
                 {FORMAT_VERSION}); a newer deltaenergy may read it"
            )));
        }
        let header_len = read_u32(&preamble, 12) as usize;
        if header_len > MAX_HEADER_BYTES {
            return Err(bad(format!(
                "header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"
            )));
        }
        let data_start = align(PREAMBLE + header_len);
        if data_start > len {
            return Err(bad(format!(
                "truncated: the header needs {data_start} bytes, the file has {len}"
            )));
        }
        let mut stored = [0u8; 32];
        stored.copy_from_slice(&preamble[16..48]);
        let mut hasher = Sha256::new();
        for start in (PREAMBLE..len).step_by(HASH_CHUNK) {
            hasher.update(bytes.get(start..len.min(start + HASH_CHUNK)));
        }
        let actual: [u8; 32] = hasher.finalize().into();
        if actual != stored {
            return Err(bad(format!(
                "checksum mismatch: the file is damaged or incomplete (SHA-256 {} expected, {} found)",
                hex(&stored),
                hex(&actual)
            )));
        }
        let header: Header = serde_json::from_slice(&bytes.get(PREAMBLE..PREAMBLE + header_len))
            .map_err(|e| bad(format!("unreadable header: {e}")))?;
        let bundle = Bundle {
            header,
            bytes,
            data_start,
            sha256: stored,
            file_len: len,
            _file: std::marker::PhantomData,
        };
        bundle.validate()?;
        Ok(bundle)
    }

    fn data_len(&self) -> usize {
        self.file_len - self.data_start
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
            .filter(|&e| e <= self.data_len() as u64);
        if end.is_none() {
            return Err(bad(format!(
                "{what}: bytes {}..+{} lie outside the {}-byte data region",
                s.offset,
                s.length,
                self.data_len()
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
    pub fn bytes(&self, s: Section) -> Cow<'a, [u8]> {
        let start = self.data_start + s.offset as usize;
        self.bytes.get(start..start + s.length as usize)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.header.tensors.iter().find(|t| t.name == name)
    }

    pub fn tokenizer(&self) -> Result<crate::clip::tokenizer::ClipTokenizer> {
        Ok(crate::clip::tokenizer::ClipTokenizer::from_bpe_gz(
            &self.bytes(self.header.tokenizer),
        )?)
    }

    pub fn context(&self) -> Option<Vec<f32>> {
        self.header
            .context
            .as_ref()
            .map(|c| crate::clip::loader::le_f32s(&self.bytes(c.data)))
    }

    pub fn text_features(&self) -> Option<Vec<Vec<f32>>> {
        self.header.text_features.as_ref().map(|f| {
            crate::clip::loader::le_f32s(&self.bytes(f.data))
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
        add("header", self.data_start as u64);
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

/// Supplies the bundle's tensors to the model builder, one at a time.
pub struct BundleSource<'b, 'a, B: BundleBytes<'a> = &'a [u8]> {
    bundle: &'b Bundle<'a, B>,
}

impl<'b, 'a, B: BundleBytes<'a>> BundleSource<'b, 'a, B> {
    pub fn new(bundle: &'b Bundle<'a, B>) -> Self {
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
        crate::clip::loader::check_shape(key, shape, &t.shape)?;
        Ok(t)
    }

    fn quantized(&self, t: &TensorEntry) -> Result<(Vec<i8>, Vec<f32>, u32, usize)> {
        let bits = if t.dtype == StoredDtype::Q8 { 8 } else { 4 };
        let n = t.shape.iter().product();
        let values = crate::bundle::quant::unpack(&self.bundle.bytes(t.data), n, bits);
        // validate() guaranteed both are present and sized.
        let scales = crate::clip::loader::le_f16s(&self.bundle.bytes(t.scales.expect("validated")));
        if scales.iter().any(|s| !s.is_finite() || *s < 0.0) {
            return Err(Error::NonFinite {
                key: format!("{} (scales)", t.name),
            });
        }
        Ok((values, scales, bits, t.block.expect("validated")))
    }
}

impl<'a, B: BundleBytes<'a>> crate::clip::loader::WeightSource for BundleSource<'_, 'a, B> {
    fn take(
        &mut self,
        key: &str,
        shape: &[usize],
        _init: crate::clip::loader::Init,
    ) -> Result<Vec<f32>> {
        let t = self.entry(key, shape)?;
        let values = match t.dtype {
            StoredDtype::F32 => crate::clip::loader::le_f32s(&self.bundle.bytes(t.data)),
            StoredDtype::F16 => crate::clip::loader::le_f16s(&self.bundle.bytes(t.data)),
            StoredDtype::Q8 | StoredDtype::Q4 => {
                let (q, s, _, block) = self.quantized(t)?;
                crate::bundle::quant::dequantize(&q, &s, block)
            }
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                key: key.to_string(),
            });
        }
        Ok(values)
    }

    fn take_table(&mut self, key: &str, shape: &[usize]) -> Result<crate::clip::loader::Weight> {
        self.take_linear(key, shape)
    }

    fn take_linear(&mut self, key: &str, shape: &[usize]) -> Result<crate::clip::loader::Weight> {
        let t = self.entry(key, shape)?;
        if t.dtype.is_quantized() {
            let (values, scales, bits, block) = self.quantized(t)?;
            Ok(crate::clip::loader::Weight::Quantized {
                values,
                scales,
                bits,
                block,
            })
        } else {
            Ok(crate::clip::loader::Weight::F32(self.take(
                key,
                shape,
                crate::clip::loader::Init::Zeros,
            )?))
        }
    }
}

impl<'a, B: BundleBytes<'a>> Bundle<'a, B> {
    /// Builds the model the bundle carries.
    pub fn model(&self, device: &burn::tensor::Device) -> Result<crate::clip::model::Clip> {
        crate::clip::loader::build_clip(&self.header.config, &mut BundleSource::new(self), device)
    }
}

impl<'a, B: BundleBytes<'a>> Bundle<'a, B> {
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
