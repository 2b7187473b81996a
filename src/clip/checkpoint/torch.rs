//! `pytorch_model.bin`: PyTorch's zip archive (`torch.save` since 1.6). One folder holds
//! `data.pkl` (the state dict, pickled), `data/<key>` (each storage's raw little-endian bytes,
//! stored uncompressed and 64-byte aligned by padding in the local header) and small records
//! (`version`, `byteorder`, …). A tensor is a view of a storage: an offset, a size and strides.

use std::collections::HashMap;

use super::pickle::{self, TensorRef};
use super::zip::{bad, ZipEntry};
use super::{Entry, Place};
use crate::error::Result;

/// Where the state dict and the storages are.
#[derive(Clone, Debug)]
pub(super) struct Archive {
    /// The archive's one folder, with its slash (`archive/`, `pytorch_model/`, …).
    prefix: String,
    pub pickle: ZipEntry,
    entries: HashMap<String, ZipEntry>,
}

/// The layout of a PyTorch archive from its directory: exactly one `data.pkl`, at the top or in
/// one folder (torch 1.6–1.12 named it `archive/`, later ones after the file), little-endian.
pub(super) fn archive(entries: HashMap<String, ZipEntry>) -> Result<Archive> {
    let mut pickles = entries.keys().filter(|n| {
        n.as_str() == "data.pkl" || (n.ends_with("/data.pkl") && n.matches('/').count() == 1)
    });
    let (Some(name), None) = (pickles.next(), pickles.next()) else {
        return Err(bad(
            "a zip file, but not one torch.save wrote (it needs exactly one `<folder>/data.pkl`)",
        ));
    };
    let prefix = name.trim_end_matches("data.pkl").to_string();
    // The record holds "little" or "big" (torch ≥ 1.10; older files are little-endian): its
    // length tells them apart without reading it.
    if entries
        .get(&format!("{prefix}byteorder"))
        .is_some_and(|e| e.size != "little".len() as u64)
    {
        return Err(bad(
            "its tensors are big-endian; save it again on a little-endian machine",
        ));
    }
    if entries[name].size > pickle::MAX_PICKLE {
        return Err(bad(format!("data.pkl has {} bytes", entries[name].size)));
    }
    Ok(Archive {
        pickle: entries[name].clone(),
        prefix,
        entries,
    })
}

/// The element size of a storage's dtype in bytes.
fn element_size(dtype: safetensors::Dtype) -> u64 {
    (dtype.bitsize() / 8) as u64
}

/// Every tensor of the state dict in `pkl`, placed in its storage's entry and checked to lie
/// inside it.
pub(super) fn entries(archive: &Archive, pkl: &[u8]) -> Result<HashMap<String, Entry>> {
    let mut out = HashMap::new();
    for (key, t) in pickle::state_dict(pkl)? {
        let TensorRef {
            storage,
            offset,
            shape,
            stride,
        } = t;
        let name = format!("{}data/{}", archive.prefix, storage.key);
        let Some(zip) = archive.entries.get(&name) else {
            return Err(bad(format!(
                "tensor `{key}`: its storage `{name}` is not in the archive"
            )));
        };
        let size = element_size(storage.dtype);
        if storage.numel.checked_mul(size) != Some(zip.size) {
            return Err(bad(format!(
                "tensor `{key}`: storage `{name}` has {} bytes, but {} {:?} values need {:?}",
                zip.size,
                storage.numel,
                storage.dtype,
                storage.numel.checked_mul(size)
            )));
        }
        // The elements the view reaches: one past its furthest, or none when it is empty.
        let numel = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let furthest = shape.iter().zip(&stride).try_fold(0u64, |acc, (&d, &s)| {
            (d as u64)
                .saturating_sub(1)
                .checked_mul(s as u64)
                .and_then(|x| acc.checked_add(x))
        });
        let span = match (numel, furthest) {
            (Some(0), _) => Some(0),
            (Some(_), Some(f)) => f.checked_add(1),
            _ => None,
        };
        let end = span.and_then(|s| offset.checked_add(s));
        if end.is_none_or(|e| e > storage.numel) {
            return Err(bad(format!(
                "tensor `{key}` ({shape:?} from element {offset}, strides {stride:?}) reaches \
                 past the {} values of its storage",
                storage.numel
            )));
        }
        let span = span.expect("checked above");
        out.insert(
            key,
            Entry {
                dtype: storage.dtype,
                shape,
                place: Place::Stored {
                    zip: zip.clone(),
                    element_size: size,
                    offset,
                    span,
                    stride,
                },
            },
        );
    }
    Ok(out)
}
