//! Finding and loading what a command needs: the model and the tokenizer.

use std::path::{Path, PathBuf};

use deltaenergy::tokenizer::ClipTokenizer;
use deltaenergy::{device, loader, Clip, Error, Result};

use super::ModelArgs;

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
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
    if path.is_dir() {
        let vocab = read(&path.join("vocab.json"))?;
        let merges = read(&path.join("merges.txt"))?;
        let utf8 = |b: Vec<u8>, name: &str| {
            String::from_utf8(b)
                .map_err(|_| Error::Input(format!("{name} in {} is not UTF-8", path.display())))
        };
        Ok(ClipTokenizer::from_vocab_merges(
            &utf8(vocab, "vocab.json")?,
            &utf8(merges, "merges.txt")?,
        )?)
    } else {
        Ok(ClipTokenizer::from_bpe_gz(&read(path)?)?)
    }
}

/// Explicit path, else the model directory if it carries vocab.json + merges.txt, else
/// `$DELTAENERGY_TOKENIZER`, else `$DELTAENERGY_DATA/clip-tokenizer`.
pub fn tokenizer(explicit: Option<&Path>, model_dir: Option<&Path>) -> Result<ClipTokenizer> {
    if let Some(p) = explicit {
        return tokenizer_from(p);
    }
    let mut tried = Vec::new();
    if let Some(dir) =
        model_dir.filter(|d| d.join("vocab.json").exists() && d.join("merges.txt").exists())
    {
        return tokenizer_from(dir);
    }
    if let Some(dir) = model_dir {
        tried.push(dir.display().to_string());
    }
    if let Some(p) = std::env::var_os("DELTAENERGY_TOKENIZER") {
        return tokenizer_from(Path::new(&p));
    }
    tried.push("$DELTAENERGY_TOKENIZER (unset)".into());
    let shared = data_dir().join("clip-tokenizer");
    if shared.join("vocab.json").exists() {
        return tokenizer_from(&shared);
    }
    tried.push(shared.display().to_string());
    Err(Error::Input(format!(
        "no CLIP tokenizer found (pass --tokenizer DIR|FILE.gz); looked in: {}",
        tried.join(", ")
    )))
}

pub fn model(args: &ModelArgs) -> Result<(Clip, burn::tensor::Device)> {
    let device = device::device(args.backend)?;
    let model = loader::load_hf_dir(&args.model, &device)?;
    Ok((model, device))
}

pub fn model_tokenizer(args: &ModelArgs) -> Result<ClipTokenizer> {
    tokenizer(args.tokenizer.as_deref(), Some(&args.model))
}

pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    read(path)
}
