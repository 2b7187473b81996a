//! `deltaenergy score`: zero-shot labels and the four OOD scores for each image.

use std::path::PathBuf;
use std::process::ExitCode;

use deltaenergy::clip::embed::parse_classes;
use deltaenergy::clip::prompt::class_features;
use deltaenergy::device::{read_f32, rows};
use deltaenergy::ood::score::{cosine_similarities, scores};
use deltaenergy::{Error, Result};

use super::{model_source, ModelArgs, ScoreSettings};

#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated class names (default: the bundle's classes).
    #[arg(long)]
    pub classes: Option<String>,
    /// Prompt template; `{}` is replaced by the class name (default: the bundle's learned
    /// context or template, else "a photo of a {}.").
    #[arg(long)]
    pub template: Option<String>,
    /// Several templates, averaged as CLIP's prompt ensemble: a preset of the page
    /// (www/presets/*.json, its `templates`), a JSON list, or a text file with one per line.
    #[arg(long, conflicts_with = "template")]
    pub templates: Option<PathBuf>,
    #[command(flatten)]
    pub settings: ScoreSettings,
    #[arg(long)]
    pub json: bool,
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

pub fn run(args: ScoreArgs) -> Result<ExitCode> {
    // Bad settings and class lists fail before the model is loaded.
    if let Some(list) = &args.classes {
        parse_classes(list)?;
    }
    if let Some(t) = &args.template {
        deltaenergy::clip::embed::check_template(t)?;
    }
    let ensemble = match &args.templates {
        Some(path) => Some(deltaenergy::clip::embed::parse_templates(
            &std::fs::read_to_string(path)
                .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?,
        )?),
        None => None,
    };
    let loaded = model_source::load(&args.model)?;
    let meta = loaded.bundle.as_ref();
    let params = args.settings.resolve(loaded.score_base()?)?;
    let classes = match (&args.classes, meta) {
        (Some(list), _) => parse_classes(list)?,
        (None, Some(b)) if !b.header.classes.is_empty() => b.header.classes.clone(),
        _ => {
            return Err(Error::Input(
                "no classes: pass --classes \"cat,dog,...\"".into(),
            ))
        }
    };
    let prompt = match ensemble {
        Some(templates) => deltaenergy::clip::prompt::Prompt::Ensemble(templates),
        None => loaded.prompt(args.template.as_deref()),
    };
    let model = &loaded.model;
    let dim = model.config.projection_dim;
    // The bundle's precomputed features hold exactly when its own classes and prompt are used.
    let precomputed = meta
        .filter(|b| {
            b.header.classes == classes && args.template.is_none() && args.templates.is_none()
        })
        .and_then(|b| b.text_features.clone());
    let text_features = match precomputed {
        Some(f) => f,
        None => class_features(model, &loaded.tokenizer()?, &classes, &prompt)?,
    };
    let threshold = meta.and_then(|b| b.header.threshold.clone());
    let cfg = model.preprocess_config();

    let files: Vec<(&PathBuf, &std::path::Path)> =
        args.images.iter().map(|p| (p, p.as_path())).collect();
    let failed = model_source::for_each_image_batch(&files, &cfg, args.model.batch, |batch| {
        let pixels: Vec<Vec<f32>> = batch.iter().map(|(_, p)| p.clone()).collect();
        let feats = rows(read_f32(model.embed_pixels(&pixels)?)?, dim);
        let sims = cosine_similarities(&feats, &text_features);
        for ((path, _), s) in batch.iter().zip(sims) {
            let r = scores(&s, &params)?;
            let label = &classes[r.label];
            let ood = threshold.as_ref().map(|t| t.is_ood(&r));
            if args.json {
                let mut line = serde_json::json!({
                    "image": path.display().to_string(),
                    "label": label,
                    "similarities": s,
                    "delta_energy": r.delta_energy,
                    "energy": r.energy,
                    "mcm": r.mcm,
                    "max_logit": r.max_logit,
                });
                if let Some(ood) = ood {
                    line["ood"] = ood.into();
                }
                println!("{line}");
            } else {
                let flag = match ood {
                    Some(true) => "  OOD",
                    Some(false) => "  in-distribution",
                    None => "",
                };
                println!(
                    "{}  {label}  ΔE={:.4}  energy={:.4}  MCM={:.4}  MaxLogit={:.4}{flag}",
                    path.display(),
                    r.delta_energy,
                    r.energy,
                    r.mcm,
                    r.max_logit
                );
            }
        }
        Ok(())
    })?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
