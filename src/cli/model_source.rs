//! Finding and loading what a command needs: the model (a Hugging Face directory or a bundle
//! file) and its tokenizer.

use std::path::{Path, PathBuf};

use deltaenergy::bundle::convert::{compress_merges, merges_from_tokenizer_json};
use deltaenergy::bundle::{Bundle, Header};
use deltaenergy::clip::loader;
use deltaenergy::clip::precision::Precision;
use deltaenergy::clip::prompt::Prompt;
use deltaenergy::clip::tokenizer::ClipTokenizer;
use deltaenergy::ood::score::ScoreParams;
use deltaenergy::{device, Clip, Error, Result};

use super::ModelArgs;

/// The zero-shot prompt when neither the command line nor a bundle gives one.
const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

/// Decodes and preprocesses image files a batch at a time (so memory stays bounded however many
/// files there are) and hands each batch of `(key, pixels)` to `f`. A file that cannot be read
/// or decoded is reported on stderr and skipped; the count of those is returned.
pub fn for_each_image_batch<K: Copy>(
    files: &[(K, &Path)],
    cfg: &deltaenergy::clip::preprocess::PreprocessConfig,
    batch: usize,
    mut f: impl FnMut(&[(K, Vec<f32>)]) -> Result<()>,
) -> Result<usize> {
    let mut failed = 0;
    for chunk in files.chunks(batch.max(1)) {
        let mut decoded = Vec::with_capacity(chunk.len());
        for &(key, path) in chunk {
            match read_file(path)
                .and_then(|b| Ok(deltaenergy::clip::preprocess::preprocess_bytes(&b, cfg)?))
            {
                Ok(pixels) => decoded.push((key, pixels)),
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    failed += 1;
                }
            }
        }
        if !decoded.is_empty() {
            f(&decoded)?;
        }
    }
    Ok(failed)
}

pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A transformers `config.json` (or any file of its fields): read, checked as UTF-8, parsed.
pub fn read_config(path: &Path) -> Result<deltaenergy::ClipConfig> {
    let text = String::from_utf8(read_file(path)?)
        .map_err(|_| Error::Input(format!("{} is not UTF-8", path.display())))?;
    deltaenergy::ClipConfig::from_json(&text)
}

pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The shared data directory: `$DELTAENERGY_DATA`, else `../shared/data`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("DELTAENERGY_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}

fn tokenizer_from(path: &Path) -> Result<ClipTokenizer> {
    if path.is_dir() && path.join("vocab.json").exists() && path.join("merges.txt").exists() {
        let utf8 = |name: &str| {
            String::from_utf8(read_file(&path.join(name))?)
                .map_err(|_| Error::Input(format!("{name} in {} is not UTF-8", path.display())))
        };
        return Ok(ClipTokenizer::from_vocab_merges(
            &utf8("vocab.json")?,
            &utf8("merges.txt")?,
        )?);
    }
    Ok(ClipTokenizer::from_bpe_gz(&compress_merges(&merges_of(
        path,
    )?)?)?)
}

/// The BPE merges a tokenizer path holds, as `merges.txt` text or OpenAI's gzip: a directory's
/// `merges.txt`, else its `tokenizer.json`; a `tokenizer.json` file; any other file as it is.
pub fn merges_of(path: &Path) -> Result<Vec<u8>> {
    let json = if path.is_dir() {
        if path.join("merges.txt").exists() {
            return read_file(&path.join("merges.txt"));
        }
        path.join("tokenizer.json")
    } else if path.file_name().is_some_and(|n| n == "tokenizer.json") {
        path.to_path_buf()
    } else {
        return read_file(path);
    };
    merges_from_tokenizer_json(&read_file(&json)?)
}

/// Where the tokenizer of a Hugging Face directory comes from: the explicit path, else the
/// directory itself if it carries vocab.json + merges.txt or tokenizer.json, else `$DELTAENERGY_TOKENIZER`, else
/// `$DELTAENERGY_DATA/clip-tokenizer`.
pub fn tokenizer_path(explicit: Option<&Path>, model_dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let mut tried = Vec::new();
    if let Some(dir) = model_dir {
        let hf = dir.join("vocab.json").exists() && dir.join("merges.txt").exists();
        if hf || dir.join("tokenizer.json").exists() {
            return Ok(dir.to_path_buf());
        }
        tried.push(dir.display().to_string());
    }
    if let Some(p) = std::env::var_os("DELTAENERGY_TOKENIZER") {
        return Ok(PathBuf::from(p));
    }
    tried.push("$DELTAENERGY_TOKENIZER (unset)".into());
    let shared = data_dir().join("clip-tokenizer");
    if shared.join("vocab.json").exists() {
        return Ok(shared);
    }
    tried.push(shared.display().to_string());
    Err(Error::Input(format!(
        "no CLIP tokenizer found (pass --tokenizer DIR|FILE.gz); looked in: {}",
        tried.join(", ")
    )))
}

pub fn tokenizer(explicit: Option<&Path>, model_dir: Option<&Path>) -> Result<ClipTokenizer> {
    tokenizer_from(&tokenizer_path(explicit, model_dir)?)
}

/// What a bundle adds to a model: its classes, prompt, precomputed features and settings.
pub struct BundleMeta {
    pub header: Header,
    pub prompt: Prompt,
    pub text_features: Option<Vec<Vec<f32>>>,
    tokenizer: ClipTokenizer,
}

pub struct Loaded {
    pub model: Clip,
    /// Identifies the image tower (see [`Bundle::vision_digest`]): the feature cache's key.
    pub vision_digest: [u8; 32],
    pub bundle: Option<BundleMeta>,
    tokenizer_override: Option<PathBuf>,
    dir: Option<PathBuf>,
}

/// How a path is recorded in a bundle's provenance or a training log: relative to
/// `$DELTAENERGY_DATA` (written so) or to the working directory when it lies under one, so a
/// file built from the same data carries the same text on every machine; absolute otherwise.
pub fn portable_path(path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let under = |base: Option<PathBuf>| {
        let base = std::fs::canonicalize(base?).ok()?;
        abs.strip_prefix(base).ok().map(Path::to_path_buf)
    };
    if let Some(rel) = under(std::env::var_os("DELTAENERGY_DATA").map(PathBuf::from)) {
        return Path::new("$DELTAENERGY_DATA")
            .join(rel)
            .display()
            .to_string();
    }
    match under(std::env::current_dir().ok()) {
        Some(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => abs.display().to_string(),
    }
}

impl Loaded {
    /// The bundle's score settings, else METHOD.md's at the model's own temperature.
    pub fn score_base(&self) -> Result<ScoreParams> {
        match &self.bundle {
            Some(b) => Ok(b.header.score),
            None => Ok(ScoreParams::for_temperature(self.model.own_temperature()?)),
        }
    }

    /// `template` if given, else the bundle's prompt (its learned context or template), else
    /// CLIP's "a photo of a {}.".
    pub fn prompt(&self, template: Option<&str>) -> Prompt {
        match (template, &self.bundle) {
            (Some(t), _) => Prompt::Template(t.to_string()),
            (None, Some(b)) => b.prompt.clone(),
            (None, None) => Prompt::Template(DEFAULT_TEMPLATE.into()),
        }
    }

    /// The bundle's own tokenizer unless `--tokenizer` overrides it; for a directory, the
    /// lookup described in [`tokenizer_path`].
    pub fn tokenizer(&self) -> Result<ClipTokenizer> {
        match (&self.bundle, &self.tokenizer_override) {
            (Some(b), None) => Ok(b.tokenizer.clone()),
            (_, explicit) => tokenizer(explicit.as_deref(), self.dir.as_deref()),
        }
    }
}

/// The image tower's digest, which names its features in the cache: f16 features are not the
/// f32 ones, so they get a name of their own.
fn with_precision(digest: [u8; 32], precision: Precision) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    match precision {
        Precision::F32 => digest,
        other => Sha256::new()
            .chain_update(digest)
            .chain_update(other.to_string())
            .finalize()
            .into(),
    }
}

/// Loads `--model`: a directory is read as the Hugging Face layout, a file as a bundle.
pub fn load(args: &ModelArgs) -> Result<Loaded> {
    if !args.model.exists() {
        return Err(Error::Input(format!(
            "model not found: {} (expected a bundle file or a Hugging Face directory)",
            args.model.display()
        )));
    }
    let device = device::device(args.backend)?;
    if args.model.is_dir() {
        use sha2::{Digest, Sha256};
        let mut hf = loader::open_hf_dir(&args.model)?;
        let model = loader::build_clip(&hf.config, &mut hf.weights, &device)?;
        // The bytes the model was built from name its features in the cache.
        let digest = Sha256::new()
            .chain_update(&hf.config_json)
            .chain_update(hf.weights.digest())
            .finalize();
        return Ok(Loaded {
            model: model.with_precision(args.precision)?,
            vision_digest: with_precision(digest.into(), args.precision),
            bundle: None,
            tokenizer_override: args.tokenizer.clone(),
            dir: Some(args.model.clone()),
        });
    }
    let bytes = read_file(&args.model)?;
    let bundle = Bundle::parse(&bytes)?;
    let model = bundle.model(&device)?.with_precision(args.precision)?;
    let meta = BundleMeta {
        header: bundle.header.clone(),
        prompt: bundle.prompt(),
        text_features: bundle.text_features(),
        tokenizer: bundle.tokenizer()?,
    };
    Ok(Loaded {
        model,
        vision_digest: with_precision(bundle.vision_digest(), args.precision),
        bundle: Some(meta),
        tokenizer_override: args.tokenizer.clone(),
        dir: None,
    })
}
