//! A Hugging Face checkpoint (`model.safetensors`) read piece by piece: the table of contents
//! from the file's first bytes, then each tensor's bytes on their own. The browser converts a
//! checkpoint this way (from a `File`, or by HTTP Range requests), so it never holds the whole
//! file; everything here is checked before it is trusted, since the file is a stranger's.

use std::collections::HashMap;

use serde::Deserialize;

use crate::clip::specs::TensorSpec;
use crate::error::{Error, Result};
use crate::loader::{check_shape, decode_values};

/// The largest table of contents accepted (real ones are tens of kilobytes).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// A tensor's place in the file, as the table of contents gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: u64,
    pub end: u64,
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// A safetensors file's table of contents.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    entries: HashMap<String, Entry>,
    /// Size of the whole file.
    pub file_len: u64,
}

impl Checkpoint {
    /// How many bytes from the start of the file hold the table of contents (the 8-byte length
    /// and the JSON after it), from the file's first 8 bytes.
    pub fn prefix_len(first8: &[u8], file_len: u64) -> Result<u64> {
        let bad = |m: String| Error::Weights(format!("not a safetensors file: {m}"));
        let Some(n) = first8.get(..8) else {
            return Err(bad(format!("{} bytes is too short", first8.len())));
        };
        let n = u64::from_le_bytes(n.try_into().expect("8 bytes"));
        if n > MAX_HEADER_BYTES {
            return Err(bad(format!("its header claims {n} bytes")));
        }
        let total = 8 + n;
        if total > file_len {
            return Err(bad(format!(
                "its header claims {n} bytes but the file has {file_len}"
            )));
        }
        Ok(total)
    }

    /// Reads the table of contents from the file's first [`Checkpoint::prefix_len`] bytes and
    /// checks that every tensor lies inside the file with the length its dtype and shape imply.
    pub fn parse(prefix: &[u8], file_len: u64) -> Result<Self> {
        let total = Self::prefix_len(prefix, file_len)?;
        let bad = |m: String| Error::Weights(format!("not a safetensors file: {m}"));
        let Some(json) = prefix.get(8..total as usize) else {
            return Err(bad("the header is cut short".into()));
        };
        let raw: HashMap<String, serde_json::Value> =
            serde_json::from_slice(json).map_err(|e| bad(format!("unreadable header: {e}")))?;
        let mut entries = HashMap::new();
        for (key, value) in raw {
            if key == "__metadata__" {
                continue;
            }
            let e: RawEntry =
                serde_json::from_value(value).map_err(|e| bad(format!("tensor `{key}`: {e}")))?;
            let (a, b) = e.data_offsets;
            let (start, end) = (total.checked_add(a), total.checked_add(b));
            let (Some(start), Some(end)) = (start, end) else {
                return Err(bad(format!("tensor `{key}`: offsets overflow")));
            };
            if a > b || end > file_len {
                return Err(bad(format!(
                    "tensor `{key}` lies outside the file (bytes {start}..{end} of {file_len}); \
                     is it complete?"
                )));
            }
            let n = e
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
                .and_then(|n| n.checked_mul(e.dtype.bitsize() as u64 / 8));
            // Sub-byte dtypes cannot be checked this way; they are refused if a spec asks for one.
            if e.dtype.bitsize().is_multiple_of(8) && n != Some(b - a) {
                return Err(bad(format!(
                    "tensor `{key}` has {} bytes, but {:?} {:?} needs {n:?}",
                    b - a,
                    e.dtype,
                    e.shape
                )));
            }
            entries.insert(
                key,
                Entry {
                    dtype: e.dtype,
                    shape: e.shape,
                    start,
                    end,
                },
            );
        }
        Ok(Self { entries, file_len })
    }

    /// Where the tensor a spec asks for lies, after checking it is there with that shape.
    pub fn entry(&self, spec: &TensorSpec) -> Result<&Entry> {
        let e = self
            .entries
            .get(&spec.key)
            .ok_or_else(|| Error::MissingTensor {
                key: spec.key.clone(),
                expected: spec.shape.clone(),
            })?;
        check_shape(&spec.key, &spec.shape, &e.shape)?;
        Ok(e)
    }

    /// The values of a tensor from exactly its bytes, widened to f32 and checked finite.
    pub fn decode(&self, spec: &TensorSpec, bytes: &[u8]) -> Result<Vec<f32>> {
        let e = self.entry(spec)?;
        if bytes.len() as u64 != e.end - e.start {
            return Err(Error::Weights(format!(
                "tensor `{}`: got {} bytes, expected {}",
                spec.key,
                bytes.len(),
                e.end - e.start
            )));
        }
        let values = decode_values(&spec.key, e.dtype, bytes)?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                key: spec.key.clone(),
            });
        }
        Ok(values)
    }
}
