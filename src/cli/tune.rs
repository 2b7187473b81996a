//! `deltaenergy tune`: CoOp context vectors with the EBM objective, written into a new bundle
//! with ΔEnergy's c and τ chosen and its threshold calibrated on a validation split: held-apart
//! ID images and generated outliers of families held out of training, never an evaluation set.

use std::path::PathBuf;
use std::process::ExitCode;

use deltaenergy::bundle::convert::{now, rebundle, Rebundle};
use deltaenergy::bundle::Bundle;
use deltaenergy::clip::prompt::{class_features, Prompt};
use deltaenergy::train::dataset::{decode_all, image_features, ClassFolders};
use deltaenergy::train::outliers::{self, Kind};
use deltaenergy::train::tune::plan::{self, Held, Report, Validation};
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
    #[arg(long, default_value_t = plan::SHOTS)]
    pub shots: usize,
    /// Images per class, after the shots, to calibrate the OOD threshold on and to report
    /// accuracy before and after on; 0 keeps the bundle's threshold and score settings (made
    /// for its old prompt, so the flags may drift).
    #[arg(long, default_value_t = plan::CALIBRATION)]
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

    let labels: Vec<usize> = folders.files.iter().map(|(_, l)| *l).collect();
    let split = plan::split(&labels, &classes, args.shots, args.calibration)?;
    let paths = |idx: &[usize]| -> Vec<PathBuf> {
        idx.iter().map(|&i| folders.files[i].0.clone()).collect()
    };
    let features = |idx: &[usize], label: &str| -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        if idx.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let labels: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
        let d = decoded_features(
            &model,
            &vision,
            &paths(idx),
            Some(&labels),
            64,
            cache.as_deref(),
            label,
        )?;
        Ok((d.features, d.labels))
    };
    let (shots, shot_labels) = features(&split.shots, "shots")?;
    let (calib, calib_labels) = features(&split.calibration, "calibration")?;

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
    let mut epochs = Vec::with_capacity(opts.epochs);
    let context = tune(
        &model,
        &tok,
        &classes,
        &shots,
        &shot_labels,
        &opts,
        &mut |epoch, p| {
            epochs.push(*p);
            if epoch == 1 || epoch % 10 == 0 || epoch == opts.epochs {
                eprintln!(
                    "epoch {epoch}/{}: loss {:.4} (CE {:.4}, ΔE {:.4})",
                    opts.epochs, p.loss, p.cross_entropy, p.delta_energy
                );
            }
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();

    let prompt = Prompt::Context {
        vectors: context.clone(),
        n_ctx: args.n_ctx,
        suffix: opts.suffix.clone(),
    };
    let after = class_features(&model, &tok, &classes, &prompt)?;
    let before = class_features(&model, &tok, &classes, &bundle.prompt())?;
    let validation = Validation {
        outliers: args.validation_outliers,
        kinds: args.validation_kinds.clone(),
        cs: args.select_c.clone(),
        taus: args.select_tau.clone(),
    };
    let outliers = if validation.outliers == 0 || calib.is_empty() {
        Vec::new()
    } else {
        let cfg = model.preprocess_config();
        let sources: Vec<_> = decode_all(&paths(&split.calibration), &cfg, &|_| {})
            .into_iter()
            .filter_map(|r| r.ok())
            .collect();
        let images = plan::validation_images(
            &sources,
            &validation.kinds,
            validation.outliers,
            cfg.crop_size,
            args.seed,
        )?;
        image_features(&model, &images, 64, &|_| {})?
    };
    let note = format!(
        "{} images of {} (per class: positions {}..{}, disjoint from the {} tuning shots)",
        calib.len(),
        portable_path(&args.train),
        args.shots,
        args.shots + args.calibration,
        args.shots,
    );
    let held = Held {
        shots: &shots,
        shot_labels: &shot_labels,
        calibration: &calib,
        calibration_labels: &calib_labels,
        outliers: &outliers,
    };
    let a = plan::assess(
        &before,
        &after,
        &held,
        &bundle.header.score,
        bundle.header.threshold.as_ref(),
        &validation,
        &note,
    )?;
    if let Some(s) = &a.selection {
        for t in &s.trials {
            eprintln!(
                "validation: c {} τ {:.4}: AUROC {:.3}, FPR95 {:.3}",
                t.c, t.tau, t.auroc, t.fpr95
            );
        }
        eprintln!("chosen: c {}, τ {:.4}", s.chosen.c, s.chosen.tau);
    }

    let changes = Rebundle {
        classes: classes.clone(),
        context: Some((context, args.n_ctx, opts.suffix.clone())),
        threshold: a.threshold.clone(),
        score: a.selection.is_some().then_some(a.score),
        source: plan::provenance(
            &bundle.header.provenance.source,
            &portable_path(&args.model),
            args.shots,
            &opts,
        ),
        created: now(),
    };
    let out = rebundle(&bundle, changes, &after)?;
    write_file(&args.out, &out)?;
    let report = Report::new(&epochs, &a, tau, calib.len(), seconds, out.len());
    let mut json = serde_json::to_value(&report).map_err(|e| Error::Input(e.to_string()))?;
    json["out"] = args.out.display().to_string().into();
    json["validation_kinds"] = a
        .selection
        .is_some()
        .then(|| outliers::names(&args.validation_kinds))
        .into();
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
