//! Writing a bundle: sections appended as they come, then the preamble, header and checksum.

use sha2::{Digest, Sha256};

use super::format::*;
use crate::error::Result;

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
        Self::with_capacity(0)
    }

    /// A writer whose data will take about `bytes`: reserving it at once spares the doubling
    /// reallocations (and, in wasm, whose linear memory never shrinks, the memory they leave).
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
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
                let q = crate::bundle::quant::quantize_blocks(
                    values,
                    cols,
                    crate::bundle::quant::BLOCK,
                    bits,
                )?;
                let data = self.section(&q.packed);
                let scales = self.section(&crate::bundle::quant::scales_to_bytes(&q.scales));
                (data, Some(scales), Some(crate::bundle::quant::BLOCK))
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

    pub fn finish(self, header: Header) -> Result<Vec<u8>> {
        let (mut out, mut data) = self.finish_split(header)?;
        out.append(&mut data);
        Ok(out)
    }

    /// The finished file in two parts, everything before the data (preamble, header, padding)
    /// and the data, so a caller short of memory (the browser) can place them side by side
    /// without a second copy of the data.
    pub fn finish_split(mut self, mut header: Header) -> Result<(Vec<u8>, Vec<u8>)> {
        header.tensors = std::mem::take(&mut self.tensors);
        let json = serde_json::to_vec(&header).map_err(|e| bad(format!("header: {e}")))?;
        if json.len() > MAX_HEADER_BYTES {
            return Err(bad(format!(
                "header of {} bytes exceeds the limit",
                json.len()
            )));
        }
        let data_start = align(PREAMBLE + json.len());
        let mut out = Vec::with_capacity(data_start);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0u8; 32]);
        out.extend_from_slice(&json);
        out.resize(data_start, 0);
        let mut hash = Sha256::new();
        hash.update(&out[PREAMBLE..]);
        hash.update(&self.data);
        let digest: [u8; 32] = hash.finalize().into();
        out[16..48].copy_from_slice(&digest);
        Ok((out, self.data))
    }
}
