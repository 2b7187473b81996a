//! `deltaenergy score`: zero-shot labels and the four OOD scores for each image.

use std::path::PathBuf;
use std::process::ExitCode;

use deltaenergy::device::{read_f32, rows};
use deltaenergy::embed::{parse_classes, prompts};
use deltaenergy::preprocess::preprocess_bytes;
use deltaenergy::score::{cosine_similarities, scores, ScoreParams};
use deltaenergy::Result;

use super::{model_source, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated class names.
    #[arg(long)]
    pub classes: String,
    /// Prompt template; `{}` is replaced by the class name.
    #[arg(long, default_value = "a photo of a {}.")]
    pub template: String,
    /// Temperature on cosine similarities.
    #[arg(long, default_value_t = 0.01)]
    pub tau: f64,
    /// How many of the top similarities ΔEnergy crops.
    #[arg(long, default_value_t = 1)]
    pub c: usize,
    /// The value the cropped similarities are set to.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub crop_value: f64,
    /// Temperature of MCM's softmax.
    #[arg(long, default_value_t = 1.0)]
    pub mcm_tau: f64,
    #[arg(long)]
    pub json: bool,
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

pub fn run(args: ScoreArgs) -> Result<ExitCode> {
    let params = ScoreParams {
        tau: args.tau,
        c: args.c,
        crop_value: args.crop_value,
        mcm_tau: args.mcm_tau,
    };
    params.validate()?;
    let classes = parse_classes(&args.classes)?;
    let texts = prompts(&args.template, &classes)?;
    let (model, _device) = model_source::model(&args.model)?;
    let tokenizer = model_source::model_tokenizer(&args.model)?;
    let dim = model.config.projection_dim;
    let text_features = rows(read_f32(model.embed_texts(&tokenizer, &texts)?)?, dim);
    let cfg = model.preprocess_config();

    let mut failed = 0usize;
    let mut pending: Vec<(&PathBuf, Vec<f32>)> = Vec::new();
    for path in &args.images {
        match model_source::read_file(path).and_then(|b| Ok(preprocess_bytes(&b, &cfg)?)) {
            Ok(px) => pending.push((path, px)),
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                failed += 1;
            }
        }
    }
    for chunk in pending.chunks(args.model.batch.max(1)) {
        let pixels: Vec<Vec<f32>> = chunk.iter().map(|(_, p)| p.clone()).collect();
        let feats = rows(read_f32(model.embed_pixels(&pixels)?)?, dim);
        let sims = cosine_similarities(&feats, &text_features);
        for ((path, _), s) in chunk.iter().zip(sims) {
            let r = scores(&s, &params)?;
            let label = &classes[r.label];
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "image": path.display().to_string(),
                        "label": label,
                        "similarities": s,
                        "delta_energy": r.delta_energy,
                        "energy": r.energy,
                        "mcm": r.mcm,
                        "max_logit": r.max_logit,
                    })
                );
            } else {
                println!(
                    "{}  {label}  ΔE={:.4}  energy={:.4}  MCM={:.4}  MaxLogit={:.4}",
                    path.display(),
                    r.delta_energy,
                    r.energy,
                    r.mcm,
                    r.max_logit
                );
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
