//! `model.safetensors`: an 8-byte little-endian length, a JSON table of contents of that many
//! bytes, then every tensor's bytes, row-major, at the offsets the table gives.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Entry, Place};
use crate::error::{Error, Result};

/// The largest table of contents accepted (real ones are tens of kilobytes).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

#[derive(Deserialize)]
struct RawEntry {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

fn bad(m: impl std::fmt::Display) -> Error {
    Error::Weights(format!("not a safetensors file: {m}"))
}

/// How many bytes from the start of the file hold the table of contents (the 8-byte length
/// and the JSON after it), from the file's first bytes.
pub(super) fn prefix_len(first: &[u8], file_len: u64) -> Result<u64> {
    let Some(n) = first.get(..8) else {
        return Err(bad(format!("{} bytes is too short", first.len())));
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

/// Every tensor of the table of contents in `prefix` (the file's first [`prefix_len`] bytes),
/// checked to lie inside the file with the length its dtype and shape imply.
pub(super) fn entries(prefix: &[u8], file_len: u64) -> Result<HashMap<String, Entry>> {
    let total = prefix_len(prefix, file_len)?;
    let Some(json) = prefix.get(8..total as usize) else {
        return Err(bad("the header is cut short"));
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
        let (Some(start), Some(end)) = (total.checked_add(a), total.checked_add(b)) else {
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
                place: Place::Exact(start..end),
            },
        );
    }
    Ok(entries)
}
