//! Image folders for training, tuning and evaluation: class folders (the folder name is the
//! class name) or a plain folder of images, decoded in parallel to the model's input size.

use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;

use crate::clip::preprocess::{decode_rgb, resize_and_crop, PreprocessConfig};
use crate::error::{Error, Result};

const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "jfif"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if !hidden(&path) {
            entries.push(path);
        }
    }
    entries.sort();
    Ok(entries)
}

/// Every image file under `dir`, recursively, in sorted order.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for path in read_dir_sorted(&d)? {
            if path.is_dir() {
                stack.push(path);
            } else if is_image(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::Input(format!("no images in {}", dir.display())));
    }
    Ok(out)
}

/// At most `limit` items at evenly spaced positions of `v` (all of it without a limit), so a
/// sorted folder of sub-folders is sampled across all of them (`eval --limit`, `compare`).
pub fn spread<T: Clone>(v: &[T], limit: Option<usize>) -> Vec<T> {
    let n = limit.unwrap_or(usize::MAX).min(v.len());
    (0..n).map(|i| v[i * v.len() / n].clone()).collect()
}

/// A labelled image folder: one sub-folder per class.
#[derive(Clone, Debug)]
pub struct ClassFolders {
    pub classes: Vec<String>,
    /// Image paths with the index of their class, class by class, each class sorted.
    pub files: Vec<(PathBuf, usize)>,
}

impl ClassFolders {
    /// Reads `dir/<class>/**/<image>`; folder names become class names with `_` read as a space
    /// (so `dining_table` prompts as "dining table").
    pub fn open(dir: &Path) -> Result<Self> {
        let mut classes = Vec::new();
        let mut files = Vec::new();
        for path in read_dir_sorted(dir)? {
            if !path.is_dir() {
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::Input(format!("{} is not UTF-8", path.display())))?
                .replace('_', " ");
            let label = classes.len();
            let images = image_files(&path)?;
            files.extend(images.into_iter().map(|p| (p, label)));
            classes.push(name);
        }
        if classes.is_empty() {
            return Err(Error::Input(format!(
                "{} has no class folders (expected <dir>/<class name>/<images>)",
                dir.display()
            )));
        }
        Ok(Self { classes, files })
    }

    /// The images of each class from position `skip` to `skip + n` of its sorted list: the
    /// few-shot split (`skip` 0) and a disjoint calibration split after it.
    pub fn take_per_class(&self, n: usize, skip: usize) -> Vec<(PathBuf, usize)> {
        let mut out = Vec::new();
        for k in 0..self.classes.len() {
            let of_class: Vec<_> = self.files.iter().filter(|(_, l)| *l == k).collect();
            out.extend(of_class.into_iter().skip(skip).take(n).cloned());
        }
        out
    }
}

/// Decodes images in parallel, resized and centre-cropped exactly as for inference, as `u8`
/// RGB (a tenth of the memory of normalised floats). A file that cannot be read or decoded
/// gives its error in place; `progress` is called with the number done so far.
pub fn decode_all(
    files: &[PathBuf],
    cfg: &PreprocessConfig,
    progress: &(dyn Fn(usize) + Sync),
) -> Vec<Result<RgbImage>> {
    let done = std::sync::atomic::AtomicUsize::new(0);
    files
        .par_iter()
        .map(|path| {
            let r = std::fs::read(path)
                .map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                })
                .and_then(|bytes| Ok(decode_rgb(&bytes)?))
                .map(|img| resize_and_crop(&img, cfg));
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(n);
            r
        })
        .collect()
}

/// Unit-length image features of decoded images, `batch` at a time.
pub fn image_features(
    model: &crate::Clip,
    images: &[RgbImage],
    batch: usize,
    progress: &dyn Fn(usize),
) -> Result<Vec<Vec<f32>>> {
    let cfg = model.preprocess_config();
    let dim = model.config.projection_dim;
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch.max(1)) {
        let pixels: Vec<Vec<f32>> = chunk
            .iter()
            .map(|img| crate::clip::preprocess::to_tensor_chw(img, &cfg))
            .collect();
        let f = crate::device::read_f32(model.embed_pixels(&pixels)?)?;
        for mut row in crate::device::rows(f, dim) {
            crate::clip::embed::l2_normalise(&mut row);
            out.push(row);
        }
        progress(out.len());
    }
    Ok(out)
}

/// Index of the most similar class for each image (ties: the lowest index).
pub fn predict(images: &[Vec<f32>], classes: &[Vec<f32>]) -> Vec<usize> {
    crate::ood::score::cosine_similarities(images, classes)
        .iter()
        .map(|s| crate::ood::score::top_indices(s, 1)[0])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_samples_evenly() {
        let v: Vec<usize> = (0..10).collect();
        assert_eq!(spread(&v, Some(2)), [0, 5]);
        assert_eq!(spread(&v, Some(4)), [0, 2, 5, 7]);
        assert_eq!(spread(&v, Some(10)), v);
        assert_eq!(spread(&v, Some(50)), v);
        assert_eq!(spread(&v, None), v);
        assert!(spread(&v, Some(0)).is_empty());
        assert!(spread::<usize>(&[], Some(3)).is_empty());
    }
}
