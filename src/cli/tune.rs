//! `deltaenergy tune`: CoOp context vectors with the EBM objective, written into a new bundle
//! with ΔEnergy's c and τ chosen and its threshold calibrated on a validation split: held-apart
//! ID images and generated outliers of families held out of training, never an evaluation set.

use std::path::PathBuf;
use std::process::ExitCode;

use deltaenergy::bundle::convert::{now, rebundle, Rebundle};
use deltaenergy::bundle::Bundle;
use deltaenergy::clip::prompt::class_features;
use deltaenergy::clip::prompt::Prompt;
use deltaenergy::ood::metrics::calibrate;
use deltaenergy::ood::score::{cosine_similarities, ScoreKind};
use deltaenergy::ood::select::{select_delta_energy, Selection};
use deltaenergy::rng::Rng;
use deltaenergy::train::dataset::{decode_all, image_features, ClassFolders};
use deltaenergy::train::outliers::{self, Kind};
use deltaenergy::train::tune::{tune, EbmParams, MaskRule, TuneOptions};
use deltaenergy::{device, Error, Result};

use super::features::{decoded_features, CacheArgs};
use super::model_source::{portable_path, read_file, write_file};

#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// The bundle to tune (its weights are copied unchanged into the output).
    #[arg(long)]
    pub model: PathBuf,
    /// Training images in class folders (folder names are the class names).
    #[arg(long)]
    pub train: PathBuf,
    /// Images per class to tune on (the first of each class folder).
    #[arg(long, default_value_t = 16)]
    pub shots: usize,
    /// Images per class, after the shots, to calibrate the OOD threshold on and to report
    /// accuracy before and after on; 0 keeps the bundle's threshold and score settings (made
    /// for its old prompt, so the flags may drift).
    #[arg(long, default_value_t = 100)]
    pub calibration: usize,
    #[arg(long, default_value_t = 4)]
    pub n_ctx: usize,
    /// Words whose token embeddings start the context (one token per vector); "" for random.
    #[arg(long, default_value = "a photo of a")]
    pub init: String,
    /// Weight of ΔEnergy in the loss; 0 is plain CoOp.
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    /// positive, negative or top-fraction[:ρ] (default ρ 0.1).
    #[arg(long, default_value = "positive")]
    pub mask: MaskRule,
    /// Mask by the label rather than the predicted class.
    #[arg(long)]
    pub mask_by_label: bool,
    /// Temperature of the loss (default: the model's own, 1/exp(logit_scale) capped at CLIP's
    /// 100, so 0.01 for CLIP; a model with a smaller scale tunes badly at 0.01).
    #[arg(long)]
    pub tau: Option<f64>,
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// SGD learning rate (momentum 0.9, cosine schedule).
    #[arg(long, default_value_t = 0.002)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Outliers to generate for choosing ΔEnergy's c and τ; 0 keeps the bundle's settings.
    #[arg(long, default_value_t = 1000)]
    pub validation_outliers: usize,
    /// Their families (`train --outlier-kinds`' names). The default two are held out of the
    /// demo model's training: on families a model was trained to reject, the choice is noise.
    #[arg(long, value_delimiter = ',', default_value = "gratings,polygons")]
    pub validation_kinds: Vec<Kind>,
    /// The c values to try, plainest first (a tie, FPR95 within one standard error of the
    /// lowest, keeps the earlier one).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,5")]
    pub select_c: Vec<usize>,
    /// The τ values to try (default: the bundle's τ, then half and twice it).
    #[arg(long, value_delimiter = ',')]
    pub select_tau: Option<Vec<f64>>,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: TuneArgs) -> Result<ExitCode> {
    if args.model.is_dir() {
        return Err(Error::Input(format!(
            "{} is a directory: tune works on a bundle (make one with `deltaenergy convert --hf`)",
            args.model.display()
        )));
    }
    let bytes = read_file(&args.model)?;
    let bundle = Bundle::parse(&bytes)?;
    let device = device::cpu();
    let model = bundle.model(&device)?;
    let tok = bundle.tokenizer()?;
    let vision = bundle.vision_digest();
    let folders = ClassFolders::open(&args.train)?;
    let classes = folders.classes.clone();
    let cache = args.cache.dir();

    let split = |n: usize, skip: usize, label: &str| -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        let files = folders.take_per_class(n, skip);
        let (paths, labels): (Vec<PathBuf>, Vec<usize>) = files.into_iter().unzip();
        let d = decoded_features(
            &model,
            &vision,
            &paths,
            Some(&labels),
            64,
            cache.as_deref(),
            label,
        )?;
        Ok((d.features, d.labels))
    };
    let (shots, shot_labels) = split(args.shots, 0, "shots")?;
    let (calib, calib_labels) = if args.calibration == 0 {
        (Vec::new(), Vec::new())
    } else {
        split(args.calibration, args.shots, "calibration")?
    };
    // The bundle's own prompt on the held-out images, to say what tuning changed.
    let before = if calib.is_empty() {
        None
    } else {
        let text = class_features(&model, &tok, &classes, &bundle.prompt())?;
        Some(deltaenergy::ood::eval::top1(
            &cosine_similarities(&calib, &text),
            &calib_labels,
        )?)
    };

    let tau = match args.tau {
        Some(t) => t,
        None => model.own_temperature()?,
    };
    let opts = TuneOptions {
        n_ctx: args.n_ctx,
        init: (!args.init.trim().is_empty()).then(|| args.init.clone()),
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        seed: args.seed,
        ebm: EbmParams {
            tau,
            lambda: args.lambda,
            mask: args.mask,
            mask_by_label: args.mask_by_label,
        },
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let mut last = Default::default();
    let mut losses = Vec::with_capacity(opts.epochs);
    let context = tune(
        &model,
        &tok,
        &classes,
        &shots,
        &shot_labels,
        &opts,
        &mut |epoch, p| {
            last = *p;
            losses.push(p.loss);
            if epoch == 1 || epoch % 10 == 0 || epoch == opts.epochs {
                eprintln!(
                    "epoch {epoch}/{}: loss {:.4} (CE {:.4}, ΔE {:.4})",
                    opts.epochs, p.loss, p.cross_entropy, p.delta_energy
                );
            }
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();

    // Calibrate with the bundle's own score settings, on images the tuning never saw.
    let prompt = Prompt::Context {
        vectors: context.clone(),
        n_ctx: args.n_ctx,
        suffix: opts.suffix.clone(),
    };
    let text = class_features(&model, &tok, &classes, &prompt)?;
    let sims = cosine_similarities(&calib, &text);
    let base = bundle.header.score;
    let selection = if args.validation_outliers == 0 || calib.is_empty() {
        None
    } else {
        let files: Vec<PathBuf> = folders
            .take_per_class(args.calibration, args.shots)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let outliers = validation_outliers(
            &model,
            &files,
            &args.validation_kinds,
            args.validation_outliers,
            args.seed,
        )?;
        let taus = args
            .select_tau
            .clone()
            .unwrap_or_else(|| vec![base.tau, base.tau / 2.0, base.tau * 2.0]);
        // Fewer classes than a c of the default grid: that c cannot be tried.
        let cs: Vec<usize> = args
            .select_c
            .iter()
            .copied()
            .filter(|&c| args.select_c.len() == 1 || c < classes.len())
            .collect();
        let s = select_delta_energy(
            &sims,
            &cosine_similarities(&outliers, &text),
            &cs,
            &taus,
            &base,
        )?;
        for t in &s.trials {
            eprintln!(
                "validation: c {} τ {:.4}: AUROC {:.3}, FPR95 {:.3}",
                t.c, t.tau, t.auroc, t.fpr95
            );
        }
        eprintln!("chosen: c {}, τ {:.4}", s.chosen.c, s.chosen.tau);
        Some(s)
    };
    let score = selection.as_ref().map_or(base, |s| s.params(&base));
    let note = format!(
        "{} images of {} (per class: positions {}..{}, disjoint from the {} tuning shots){}",
        calib.len(),
        portable_path(&args.train),
        args.shots,
        args.shots + args.calibration,
        args.shots,
        selection.as_ref().map_or(String::new(), |s| format!(
            "; c {} and τ {} chosen on them against {} generated outliers ({})",
            s.chosen.c,
            s.chosen.tau,
            args.validation_outliers,
            outliers::names(&args.validation_kinds)
        ))
    );
    let threshold = if calib.is_empty() {
        bundle.header.threshold.clone()
    } else {
        Some(calibrate(
            &sims,
            &score,
            ScoreKind::DeltaEnergy,
            0.95,
            note,
        )?)
    };
    let after = if calib.is_empty() {
        None
    } else {
        Some(deltaenergy::ood::eval::top1(&sims, &calib_labels)?)
    };
    let shots_acc =
        deltaenergy::ood::eval::top1(&cosine_similarities(&shots, &text), &shot_labels)?;

    // A bundle tuned before gets a new context in place of its old one: the provenance names
    // where the weights came from, and this tuning only.
    let mut tuned_from = bundle.header.provenance.source.clone();
    if let Some(at) = tuned_from.find("; tuned: ") {
        tuned_from.truncate(at);
    }
    if tuned_from.is_empty() {
        tuned_from = portable_path(&args.model);
    }
    let changes = Rebundle {
        classes: classes.clone(),
        context: Some((context, args.n_ctx, opts.suffix.clone())),
        threshold: threshold.clone(),
        score: selection.is_some().then_some(score),
        source: format!(
            "{tuned_from}; tuned: {} shots, n_ctx {}, λ {}, mask {}{}, τ {}, {} epochs, lr {}, seed {}",
            args.shots,
            args.n_ctx,
            args.lambda,
            args.mask,
            if args.mask_by_label { " (label)" } else { "" },
            tau,
            args.epochs,
            args.lr,
            args.seed
        ),
        created: now(),
    };
    let out = rebundle(&bundle, changes, &device)?;
    write_file(&args.out, &out)?;
    println!(
        "{}",
        serde_json::json!({
            "out": args.out.display().to_string(),
            "seconds": seconds,
            "bytes": out.len(),
            "loss": losses,
            "cross_entropy": last.cross_entropy,
            "delta_energy": last.delta_energy,
            "tau": tau,
            "shots_accuracy": shots_acc,
            "before": { "accuracy": before },
            "after": { "accuracy": after },
            "threshold": threshold.as_ref().map(|t| t.value),
            "calibration_images": calib.len(),
            "score": { "c": score.c, "tau": score.tau },
            "selection": selection.as_ref().map(|s: &Selection| &s.trials),
            "validation_kinds": selection.is_some().then(|| outliers::names(&args.validation_kinds)),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// Unit features of `n` outliers of `kinds` generated from the (decoded) calibration images,
/// seeded apart from training's outliers so that none is an image training saw.
fn validation_outliers(
    model: &deltaenergy::Clip,
    files: &[PathBuf],
    kinds: &[Kind],
    n: usize,
    seed: u64,
) -> Result<Vec<Vec<f32>>> {
    if kinds.is_empty() {
        return Err(Error::Input(
            "validation outliers need at least one family to draw from".into(),
        ));
    }
    let cfg = model.preprocess_config();
    let sources: Vec<_> = decode_all(files, &cfg, &|_| {})
        .into_iter()
        .filter_map(|r| r.ok())
        .collect();
    if sources.is_empty() {
        return Err(Error::Input("no calibration image could be read".into()));
    }
    let mut rng = Rng::new(seed ^ 0x7661_6c69_6461_7465); // "validate"
    let images: Vec<_> = (0..n)
        .map(|i| {
            let mut one = Rng::new(rng.next_u64());
            let source = &sources[i % sources.len()];
            outliers::synthesize(kinds, source, cfg.crop_size, &mut one)
        })
        .collect();
    image_features(model, &images, 64, &|_| {})
}
