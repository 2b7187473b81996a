//! `deltaenergy train`: a CLIP trained from scratch on class folders, saved in the Hugging Face
//! layout (so `convert --hf` makes its bundle like any checkpoint's).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::module::Module;
use deltaenergy::bundle::export::HfTensors;
use deltaenergy::clip::prompt::class_features;
use deltaenergy::clip::prompt::Prompt;
use deltaenergy::ood::metrics;
use deltaenergy::train::dataset::{decode_all, image_features, predict, ClassFolders};
use deltaenergy::train::{
    replica_split_error, train, train_from, Augment, Event, TrainData, TrainOptions,
};
use deltaenergy::{device, Error, Result};

use super::model_source::{portable_path, read_config, read_file, tokenizer, write_file};
use super::progress::Progress;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Class folders of training images (folder names are the class names).
    #[arg(long)]
    pub data: PathBuf,
    /// config.json of the model to train from scratch (transformers' CLIPConfig fields).
    #[arg(long, required_unless_present = "init", conflicts_with = "init")]
    pub config: Option<PathBuf>,
    /// A trained model (Hugging Face directory, or a bundle, whose quantized weights are
    /// dequantized) to go on training instead, with a fresh optimiser and schedule: a second
    /// stage, such as fine-tuning with `--outliers`.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Class folders to score zero-shot with "a photo of a {}." after every epoch.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Peak AdamW learning rate (linear warm-up, then cosine to zero).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The views drawn of each image: `shift` (4-pixel shifts and flips, the demo model's),
    /// `crop` (random resized crops, flips and colour jitter, for long runs) or `none`.
    #[arg(long, default_value = "shift")]
    pub augment: Augment,
    /// Train only as many of `--epochs` as fit in this many seconds (decoding not counted):
    /// the step time is measured during warm-up and the schedule set then, so the run is the
    /// one `--epochs` with that number would give. For a fixed budget, such as a GPU lent for
    /// minutes.
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Stop after this many steps (timing, smoke tests).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Use at most this many images of each class.
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Leave the first N images of each class (in sorted order) out of training, for `tune`'s
    /// shots and threshold calibration, which take theirs from the start of each class.
    #[arg(long, default_value_t = 0)]
    pub hold_out: usize,
    /// Data-parallel replicas, one thread each (default: one per core on the CPU, one on wgpu;
    /// 1 = one model on all cores). Results are reproducible for a given count.
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Where to train: cpu (flex, data-parallel over the cores) or wgpu (burn's autodiff on the
    /// GPU, one replica).
    #[arg(long, default_value = "cpu")]
    pub backend: device::Backend,
    /// Weight of CLIP's text→image loss (each caption against groups of 32 images, images of its
    /// class all positives); 0 trains image→text only, 0.5 is CLIP's symmetric mean.
    #[arg(long, default_value_t = 0.0)]
    pub text_to_image: f64,
    /// Synthetic outliers per batch (tile-shuffled training images, dead leaves, smooth noise,
    /// IFS fractals), trained towards a uniform softmax over the classes (outlier exposure;
    /// 0: none).
    #[arg(long, default_value_t = 0)]
    pub outliers: usize,
    /// The families of `--outliers`, comma-separated: shuffled, dead-leaves, noise, fractal
    /// (the default four) and strokes (opt-in; see src/train/outliers.rs).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "shuffled,dead-leaves,noise,fractal"
    )]
    pub outlier_kinds: Vec<deltaenergy::train::outliers::Kind>,
    /// Restyle half the pictures (grey, dark, bright, blurry, negative) and caption each by its
    /// style ("a dark photo of a {}."), against every (style, class) caption, instead of twelve
    /// templates drawn at random: the text tower learns to read the words before the class name,
    /// which prompt tuning needs (docs/TUNING.md).
    #[arg(long)]
    pub styles: bool,
    /// Weight of the outlier-exposure loss.
    #[arg(long, default_value_t = 0.5)]
    pub outlier_weight: f64,
    /// vocab.json + merges.txt directory or bpe_simple_vocab_16e6.txt.gz (default: as `embed`).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Output directory: config.json, model.safetensors and train.json (the log).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let init_bundle = match &args.init {
        Some(p) if p.is_file() => Some(read_file(p)?),
        _ => None,
    };
    let init_bundle = init_bundle
        .as_deref()
        .map(deltaenergy::bundle::Bundle::parse)
        .transpose()?;
    let config = match (&args.config, &args.init, &init_bundle) {
        (None, _, Some(b)) => b.header.config.clone(),
        (Some(c), _, _) => read_config(c)?,
        (None, Some(dir), None) => read_config(&dir.join("config.json"))?,
        (None, None, _) => return Err(Error::Input("give --config or --init".into())),
    };
    let tok = tokenizer(args.tokenizer.as_deref(), None)?;
    let cfg = deltaenergy::clip::preprocess::PreprocessConfig::clip(
        config.vision_config.image_size as u32,
    );

    let folders = ClassFolders::open(&args.data)?;
    let files = folders.take_per_class(args.per_class.unwrap_or(usize::MAX), args.hold_out);
    if files.is_empty() {
        return Err(Error::Input(format!(
            "no training images left in {} after holding out {} per class",
            args.data.display(),
            args.hold_out
        )));
    }
    let (images, labels) = decode_labelled(&files, &cfg, "decoding training images")?;
    let eval = match &args.eval {
        Some(dir) => {
            let f = ClassFolders::open(dir)?;
            if f.classes != folders.classes {
                return Err(Error::Input(format!(
                    "{} has classes {:?}, the training data {:?}",
                    dir.display(),
                    f.classes,
                    folders.classes
                )));
            }
            Some(decode_labelled(
                &f.files,
                &cfg,
                "decoding evaluation images",
            )?)
        }
        None => None,
    };
    eprintln!(
        "{} training images of {} classes, decoded in {:.1}s",
        images.len(),
        folders.classes.len(),
        started.elapsed().as_secs_f64()
    );

    let opts = TrainOptions {
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        warmup: args.warmup,
        weight_decay: args.weight_decay,
        seed: args.seed,
        augment: args.augment,
        max_steps: args.max_steps,
        time_limit: args.time_limit,
        text_to_image: args.text_to_image,
        outliers: args.outliers,
        outlier_weight: args.outlier_weight,
        outlier_kinds: args.outlier_kinds.clone(),
        styles: args.styles,
        // One replica per core, or fewer where the step would not split evenly; the GPU runs
        // the whole batch at once.
        replicas: args.replicas.unwrap_or_else(|| {
            if args.backend == device::Backend::Wgpu {
                return 1;
            }
            let batch = args.batch.min(images.len());
            (1..=rayon::current_num_threads())
                .rev()
                .find(|&r| {
                    replica_split_error(batch, args.outliers, args.text_to_image, r).is_none()
                })
                .unwrap_or(1)
        }),
        ..Default::default()
    };
    let data = TrainData {
        images: &images,
        labels: &labels,
        classes: &folders.classes,
    };
    let plain = Prompt::Template("a photo of a {}.".into());
    let mut history = Vec::new();
    let mut fitted = None;
    let train_start = Instant::now();
    let device = device::device(args.backend)?.autodiff();
    // On an autodiff device a bundle's quantized weights load dequantized, as f32 parameters.
    let start = match (&args.init, &init_bundle) {
        (_, Some(b)) => Some(b.model(&device)?),
        (Some(dir), None) => Some(deltaenergy::clip::loader::load_hf_dir(dir, &device)?),
        (None, None) => None,
    };
    let mut report = |event: &Event, model: &deltaenergy::Clip| -> Result<()> {
        match event {
            Event::Step {
                step,
                total,
                epoch,
                loss,
                accuracy,
                lr,
                logit_scale,
            } => eprintln!(
                "step {step}/{total} epoch {} loss {loss:.4} batch-acc {accuracy:.3} lr {lr:.2e} \
                 scale {logit_scale:.1} ({:.0}s)",
                epoch + 1,
                train_start.elapsed().as_secs_f64()
            ),
            Event::EpochEnd { epoch } => {
                let mut entry = serde_json::json!({
                    "epoch": epoch + 1,
                    "seconds": train_start.elapsed().as_secs_f64(),
                });
                if let Some((imgs, truth)) = &eval {
                    let m = model.valid();
                    let feats = image_features(&m, imgs, 256, &|_| {})?;
                    let text = class_features(&m, &tok, &folders.classes, &plain)?;
                    let acc = metrics::accuracy(&predict(&feats, &text), truth)?;
                    eprintln!("epoch {}: zero-shot top-1 {:.4}", epoch + 1, acc);
                    entry["zero_shot_top1"] = acc.into();
                }
                history.push(entry);
            }
            Event::Fitted {
                epochs,
                seconds_per_step,
            } => {
                eprintln!(
                    "time limit: {epochs} of {} epochs fit ({seconds_per_step:.3}s a step)",
                    args.epochs
                );
                fitted = Some(*epochs);
            }
        }
        Ok(())
    };
    let model = match start {
        Some(m) => train_from(m, &data, &tok, &opts, &device, &mut report)?,
        None => train(&config, &data, &tok, &opts, &device, &mut report)?,
    };
    let train_seconds = train_start.elapsed().as_secs_f64();
    HfTensors::from_model(&model)?.save_dir(&model, &args.out)?;
    let log = serde_json::json!({
        "data": portable_path(&args.data),
        "images": images.len(),
        "classes": folders.classes,
        "config": args.config.as_deref().map(portable_path),
        "init": args.init.as_deref().map(portable_path),
        "epochs": fitted.unwrap_or(args.epochs),
        "time_limit": args.time_limit,
        "epochs_asked": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "augment": args.augment.name(),
        "max_steps": args.max_steps,
        "hold_out": args.hold_out,
        "replicas": opts.replicas,
        "backend": args.backend,
        "text_to_image": args.text_to_image,
        "outliers": args.outliers,
        "outlier_weight": args.outlier_weight,
        "outlier_kinds": args.outlier_kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "templates": opts.caption_templates(),
        "styles": args.styles,
        "threads": rayon::current_num_threads(),
        "train_seconds": train_seconds,
        "history": history,
    });
    let log_path = args.out.join("train.json");
    write_file(
        &log_path,
        serde_json::to_string_pretty(&log).unwrap_or_default(),
    )?;
    println!(
        "{}",
        serde_json::json!({
            "out": args.out.display().to_string(),
            "train_seconds": train_seconds,
            "zero_shot_top1": history.last().and_then(|h| h.get("zero_shot_top1")).cloned(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// Decodes labelled files in parallel; a file that fails is an error (training data must be whole).
pub fn decode_labelled(
    files: &[(PathBuf, usize)],
    cfg: &deltaenergy::clip::preprocess::PreprocessConfig,
    label: &str,
) -> Result<(Vec<image::RgbImage>, Vec<usize>)> {
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let bar = Progress::new(label, paths.len());
    let decoded = decode_all(&paths, cfg, &|n| bar.set(n));
    let mut images = Vec::with_capacity(decoded.len());
    for (r, (path, _)) in decoded.into_iter().zip(files) {
        images.push(r.map_err(|e| Error::Input(format!("{}: {e}", path.display())))?);
    }
    Ok((images, files.iter().map(|(_, l)| *l).collect()))
}
