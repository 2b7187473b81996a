//! `deltaenergy embed`: projected, un-normalised features, one line per input, in argument order.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ArgMatches;
use deltaenergy::device::{read_f32, rows};
use deltaenergy::{Error, Result};

use super::{model_source, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// An image file (JPEG, PNG, WebP, GIF, BMP); repeatable.
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// A text; repeatable.
    #[arg(long = "text")]
    pub texts: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

enum Input {
    Image(PathBuf),
    Text(String),
}

pub fn run(args: EmbedArgs, matches: &ArgMatches) -> Result<ExitCode> {
    if args.images.is_empty() && args.texts.is_empty() {
        return Err(Error::Input(
            "nothing to embed: give --image PATH and/or --text STR".into(),
        ));
    }
    // Interleave by position on the command line so output order is argument order.
    let positions = |id: &str| {
        matches
            .indices_of(id)
            .map(|i| i.collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let mut inputs: Vec<(usize, Input)> = positions("images")
        .into_iter()
        .zip(args.images.iter().cloned().map(Input::Image))
        .chain(
            positions("texts")
                .into_iter()
                .zip(args.texts.iter().cloned().map(Input::Text)),
        )
        .collect();
    inputs.sort_by_key(|(i, _)| *i);

    let loaded = model_source::load(&args.model)?;
    let model = &loaded.model;
    let tokenizer = if args.texts.is_empty() {
        None
    } else {
        Some(loaded.tokenizer()?)
    };
    let cfg = model.preprocess_config();
    let dim = model.config.projection_dim;

    let mut outputs: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
    let images: Vec<(usize, &std::path::Path)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(k, (_, input))| match input {
            Input::Image(path) => Some((k, path.as_path())),
            Input::Text(_) => None,
        })
        .collect();
    let failed = model_source::for_each_image_batch(&images, &cfg, args.model.batch, |batch| {
        let pixels: Vec<Vec<f32>> = batch.iter().map(|(_, p)| p.clone()).collect();
        let feats = rows(read_f32(model.embed_pixels(&pixels)?)?, dim);
        for ((k, _), f) in batch.iter().zip(feats) {
            outputs[*k] = Some(f);
        }
        Ok(())
    })?;
    if let Some(tok) = &tokenizer {
        let (slots, texts): (Vec<usize>, Vec<String>) = inputs
            .iter()
            .enumerate()
            .filter_map(|(k, (_, i))| match i {
                Input::Text(t) => Some((k, t.clone())),
                Input::Image(_) => None,
            })
            .unzip();
        let feats = rows(read_f32(model.embed_texts(tok, &texts)?)?, dim);
        for (k, f) in slots.into_iter().zip(feats) {
            outputs[k] = Some(f);
        }
    }

    for ((_, input), out) in inputs.iter().zip(outputs) {
        let Some(embedding) = out else { continue };
        let (kind, name) = match input {
            Input::Image(p) => ("image", p.display().to_string()),
            Input::Text(t) => ("text", t.clone()),
        };
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "input": name, "kind": kind, "embedding": embedding })
            );
        } else {
            let norm = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
            let head: Vec<String> = embedding
                .iter()
                .take(4)
                .map(|v| format!("{v:+.4}"))
                .collect();
            println!(
                "{kind:5}  {name}  dim={}  norm={norm:.4}  [{}, …]",
                embedding.len(),
                head.join(", ")
            );
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
