//! `deltaenergy compare`: how far a model (typically a quantized bundle) is from a base model on
//! real images — embedding cosines, label agreement and ΔEnergy differences.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use deltaenergy::clip::embed::parse_classes;
use deltaenergy::clip::prompt::class_features;
use deltaenergy::clip::prompt::Prompt;
use deltaenergy::device::{read_f32, rows};
use deltaenergy::ood::score::{cosine_similarities, scores, ScoreParams};
use deltaenergy::train::dataset::{image_files, spread};
use deltaenergy::{Error, Result};

use super::{model_source, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The reference model (bundle or Hugging Face directory).
    #[arg(long)]
    pub base: PathBuf,
    /// The model under test; its --backend/--tokenizer apply to both.
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub classes: String,
    #[arg(long, default_value = "a photo of a {}.")]
    pub template: String,
    /// At most this many images from each directory given (sorted, recursive).
    #[arg(long, default_value_t = 100)]
    pub per_dir: usize,
    #[arg(long)]
    pub json: bool,
    /// Image files or directories.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: CompareArgs) -> Result<ExitCode> {
    let mut paths = Vec::new();
    for input in &args.inputs {
        if input.is_dir() {
            paths.extend(spread(&image_files(input)?, Some(args.per_dir)));
        } else {
            paths.push(input.clone());
        }
    }
    let classes = parse_classes(&args.classes)?;
    let base_args = ModelArgs {
        model: args.base.clone(),
        ..args.model.clone()
    };
    let base = model_source::load(&base_args)?;
    let test = model_source::load(&args.model)?;
    let prompt = Prompt::Template(args.template.clone());
    let dim = base.model.config.projection_dim;
    let text = |m: &model_source::Loaded| -> Result<Vec<Vec<f32>>> {
        class_features(&m.model, &m.tokenizer()?, &classes, &prompt)
    };
    let (text_base, text_test) = (text(&base)?, text(&test)?);
    let cos = |a: &[f32], b: &[f32]| cosine_similarities(&[a.to_vec()], &[b.to_vec()])[0][0];
    let text_cos: Vec<f64> = text_base
        .iter()
        .zip(&text_test)
        .map(|(a, b)| cos(a, b))
        .collect();

    let cfg = base.model.preprocess_config();
    let params = ScoreParams::default();
    let (mut image_cos, mut de_diff, mut agree, mut n) = (Vec::new(), Vec::new(), 0usize, 0usize);
    let files: Vec<((), &Path)> = paths.iter().map(|p| ((), p.as_path())).collect();
    let skipped = model_source::for_each_image_batch(&files, &cfg, args.model.batch, |batch| {
        let pixels: Vec<Vec<f32>> = batch.iter().map(|(_, p)| p.clone()).collect();
        let fb = rows(read_f32(base.model.embed_pixels(&pixels)?)?, dim);
        let ft = rows(read_f32(test.model.embed_pixels(&pixels)?)?, dim);
        let (sb, st) = (
            cosine_similarities(&fb, &text_base),
            cosine_similarities(&ft, &text_test),
        );
        for i in 0..fb.len() {
            image_cos.push(cos(&fb[i], &ft[i]));
            let (rb, rt) = (scores(&sb[i], &params)?, scores(&st[i], &params)?);
            agree += usize::from(rb.label == rt.label);
            de_diff.push((rb.delta_energy - rt.delta_energy).abs());
            n += 1;
        }
        Ok(())
    })?;
    if n == 0 {
        return Err(Error::Input("no readable images".into()));
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let report = serde_json::json!({
        "images": n,
        "skipped": skipped,
        "image_cosine_min": min(&image_cos),
        "image_cosine_median": median(image_cos.clone()),
        "text_cosine_min": min(&text_cos),
        "label_agreement": agree as f64 / n as f64,
        "delta_energy_abs_diff_median": median(de_diff.clone()),
        "delta_energy_abs_diff_max": max(&de_diff),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} images ({} skipped), {} classes",
            n,
            skipped,
            classes.len()
        );
        println!(
            "image embedding cosine   min {:.6}  median {:.6}",
            min(&image_cos),
            median(image_cos.clone())
        );
        println!("text embedding cosine    min {:.6}", min(&text_cos));
        println!(
            "label agreement          {:.2}%",
            100.0 * agree as f64 / n as f64
        );
        println!(
            "|ΔE difference| (τ=0.01) median {:.4}  max {:.4}",
            median(de_diff.clone()),
            max(&de_diff)
        );
    }
    Ok(ExitCode::SUCCESS)
}
