//! Image features for `eval` and `tune`, decoded in parallel and cached on disk.
//!
//! The key is the image tower's digest plus every file's path, size and modification time, so
//! a changed model or image set never reads stale features, while the bundles that share an
//! image tower (a base model and its tuned prompts) share the cache.

use std::path::{Path, PathBuf};

use deltaenergy::train::dataset::{decode_all, image_features};
use deltaenergy::{Clip, Error, Result};
use sha2::{Digest, Sha256};

use super::progress::Progress;

const MAGIC: &[u8; 8] = b"DEFEAT01";

/// Where `eval` and `tune` keep image features.
#[derive(clap::Args, Debug)]
pub struct CacheArgs {
    /// Feature cache directory (default: $DELTAENERGY_CACHE, else ~/.cache/deltaenergy).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Compute every feature afresh and store none.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    pub fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache.clone().or_else(default_cache_dir)
        }
    }
}

/// `$DELTAENERGY_CACHE`, else `$XDG_CACHE_HOME/deltaenergy`, else `~/.cache/deltaenergy`.
fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DELTAENERGY_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("deltaenergy"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("deltaenergy"))
}

fn key(vision: &[u8; 32], files: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    h.update(vision);
    for f in files {
        let abs = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
        h.update(abs.to_string_lossy().as_bytes());
        if let Ok(m) = std::fs::metadata(f) {
            h.update(m.len().to_le_bytes());
            if let Ok(t) = m.modified() {
                let ns = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                h.update(ns.to_le_bytes());
            }
        }
        h.update([0]);
    }
    deltaenergy::bundle::hex(&h.finalize())
}

/// Features (unit rows) of `files`; `None` for a file that could not be decoded (reported on
/// stderr once, when the features are computed).
type Rows = Vec<Option<Vec<f32>>>;

fn read_cache(path: &Path, n: usize, dim: usize) -> Option<Rows> {
    let bytes = std::fs::read(path).ok()?;
    let head = MAGIC.len() + 16;
    if bytes.len() < head + n || &bytes[..8] != MAGIC {
        return None;
    }
    let rn = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
    let rd = u64::from_le_bytes(bytes[16..24].try_into().ok()?) as usize;
    if rn != n || rd != dim {
        return None;
    }
    let flags = &bytes[head..head + n];
    let ok = flags.iter().filter(|&&f| f == 1).count();
    let data = &bytes[head + n..];
    if data.len() != ok * dim * 4 {
        return None;
    }
    let mut values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    Some(
        flags
            .iter()
            .map(|&f| (f == 1).then(|| values.by_ref().take(dim).collect()))
            .collect(),
    )
}

fn write_cache(path: &Path, rows: &Rows, dim: usize) {
    let mut out = Vec::with_capacity(24 + rows.len() * (1 + 4 * dim));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
    out.extend_from_slice(&(dim as u64).to_le_bytes());
    out.extend(rows.iter().map(|r| u8::from(r.is_some())));
    for r in rows.iter().flatten() {
        r.iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    }
    // A cache that cannot be written only costs time next run.
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, out).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Unit image features of `files`, from the cache when it has them.
pub fn features(
    model: &Clip,
    vision: &[u8; 32],
    files: &[PathBuf],
    batch: usize,
    cache: Option<&Path>,
    label: &str,
) -> Result<Rows> {
    let dim = model.config.projection_dim;
    let path = cache.map(|d| d.join(format!("{}.features", key(vision, files))));
    if let Some(rows) = path
        .as_deref()
        .and_then(|p| read_cache(p, files.len(), dim))
    {
        eprintln!("{label}: {} images, features from the cache", files.len());
        return Ok(rows);
    }
    let cfg = model.preprocess_config();
    let bar = Progress::new(format!("{label}: decoding"), files.len());
    let decoded = decode_all(files, &cfg, &|n| bar.set(n));
    let mut images = Vec::with_capacity(decoded.len());
    let mut ok = Vec::with_capacity(decoded.len());
    for (r, f) in decoded.into_iter().zip(files) {
        match r {
            Ok(img) => {
                images.push(img);
                ok.push(true);
            }
            Err(e) => {
                eprintln!("error: {}: {e} (skipped)", f.display());
                ok.push(false);
            }
        }
    }
    let bar = Progress::new(format!("{label}: embedding"), images.len());
    let feats = image_features(model, &images, batch, &|n| bar.set(n))?;
    let mut it = feats.into_iter();
    let rows: Rows = ok
        .iter()
        .map(|&k| if k { it.next() } else { None })
        .collect();
    if let Some(p) = &path {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        write_cache(p, &rows, dim);
    }
    Ok(rows)
}

/// Features of the images that decoded, with their labels (`labels[i]` belongs to `files[i]`;
/// none given: all 0). The images that did not decode were reported by [`features`] and are
/// left out; none decoding at all is an error.
pub struct Decoded {
    pub features: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
}

pub fn decoded_features(
    model: &Clip,
    vision: &[u8; 32],
    files: &[PathBuf],
    labels: Option<&[usize]>,
    batch: usize,
    cache: Option<&Path>,
    label: &str,
) -> Result<Decoded> {
    let rows = features(model, vision, files, batch, cache, label)?;
    let mut out = Decoded {
        features: Vec::new(),
        labels: Vec::new(),
    };
    for (i, r) in rows.into_iter().enumerate() {
        if let Some(r) = r {
            out.features.push(r);
            out.labels.push(labels.map_or(0, |l| l[i]));
        }
    }
    if out.features.is_empty() {
        return Err(Error::Input(format!("{label}: no image could be read")));
    }
    Ok(out)
}
