//! `deltaenergy convert` (Hugging Face directory → bundle) and `deltaenergy inspect`.

use std::path::PathBuf;
use std::process::ExitCode;

use deltaenergy::bundle::convert::{compress_merges, convert, ConvertOptions, Quant};
use deltaenergy::bundle::{hex, Bundle, Threshold};
use deltaenergy::clip::embed::parse_classes;
use deltaenergy::clip::loader::{open_hf_dir, Init, RandomSource, WeightSource};
use deltaenergy::ood::score::{temperature, ScoreKind, ScoreParams};
use deltaenergy::{device, Error, Result};

use super::model_source::{self, merges_of, portable_path, read_file, tokenizer_path, write_file};

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// Hugging Face layout directory: config.json and model.safetensors or pytorch_model.bin
    /// (read a tensor at a time), with the tokenizer's files unless --tokenizer says otherwise.
    #[arg(long, required_unless_present = "random", conflicts_with = "random")]
    pub hf: Option<PathBuf>,
    /// Instead of --hf: a config.json whose model gets seeded random weights (for size and
    /// speed measurements and fuzzing seeds).
    #[arg(long)]
    pub random: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Precision of the linear weights: f32, f16, q8 or q4 (block-32 symmetric).
    #[arg(long, default_value = "q8")]
    pub quant: Quant,
    /// Comma-separated class names to ship (their text features are precomputed).
    #[arg(long)]
    pub classes: Option<String>,
    #[arg(long, default_value = "a photo of a {}.")]
    pub template: String,
    /// Learned context vectors: JSON {"vectors": [[...], ...], "suffix": "."}.
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// A directory with vocab.json + merges.txt or tokenizer.json, a tokenizer.json, or
    /// bpe_simple_vocab_16e6.txt.gz (default: as `embed`).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Temperature of the scores (default: the model's own, 1/exp(logit_scale) with the scale
    /// capped at 100: 0.01 for CLIP).
    #[arg(long)]
    pub tau: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub c: usize,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub crop_value: f64,
    #[arg(long, default_value_t = 1.0)]
    pub mcm_tau: f64,
    /// OOD threshold on `--threshold-score` (images scoring below it are flagged OOD).
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// The score the threshold applies to: delta_energy, energy, mcm or max_logit.
    #[arg(long, default_value = "delta_energy")]
    pub threshold_score: ScoreKind,
    /// How the threshold was calibrated (free text, kept in the bundle).
    #[arg(long, default_value = "given on the command line")]
    pub threshold_note: String,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(serde::Deserialize)]
struct ContextFile {
    vectors: Vec<Vec<f32>>,
    #[serde(default = "default_suffix")]
    suffix: String,
}

fn default_suffix() -> String {
    ".".into()
}

fn mb(n: u64) -> String {
    format!("{:.2} MB", n as f64 / 1e6)
}

pub fn run(args: ConvertArgs) -> Result<ExitCode> {
    let (config_path, model_dir) = match (&args.hf, &args.random) {
        (Some(dir), _) => (dir.join("config.json"), Some(dir.as_path())),
        (None, Some(config)) => (config.clone(), None),
        (None, None) => return Err(Error::Input("give --hf DIR or --random CONFIG".into())),
    };
    let mut hf = model_dir.map(open_hf_dir).transpose()?;
    let config = match &hf {
        Some(hf) => hf.config.clone(),
        None => model_source::read_config(&config_path)?,
    };
    let tau = match (args.tau, &mut hf) {
        (Some(t), _) => t,
        (None, Some(hf)) => {
            let init = Init::Const(config.logit_scale_init_value as f32);
            temperature(f64::from(hf.weights.take("logit_scale", &[1], init)?[0]))
        }
        (None, None) => temperature(config.logit_scale_init_value),
    };
    let tok = tokenizer_path(args.tokenizer.as_deref(), model_dir)?;
    let merges_gz = compress_merges(&merges_of(&tok)?)?;
    let context = match &args.context {
        None => None,
        Some(path) => {
            let file: ContextFile = serde_json::from_slice(&read_file(path)?).map_err(|e| {
                Error::Input(format!("{}: not a context file: {e}", path.display()))
            })?;
            let n_ctx = file.vectors.len();
            Some((file.vectors.concat(), n_ctx, file.suffix))
        }
    };
    let options = ConvertOptions {
        quant: args.quant,
        classes: args
            .classes
            .as_deref()
            .map(parse_classes)
            .transpose()?
            .unwrap_or_default(),
        template: args.template.clone(),
        context,
        score: ScoreParams {
            tau,
            c: args.c,
            crop_value: args.crop_value,
            mcm_tau: args.mcm_tau,
        },
        threshold: args.threshold.map(|value| Threshold {
            score: args.threshold_score,
            value,
            tpr: 0.95,
            calibration: args.threshold_note.clone(),
        }),
        source: match &hf {
            Some(hf) => portable_path(&hf.weights_path),
            None => format!(
                "random weights (seed {}) for {}",
                args.seed,
                portable_path(&config_path)
            ),
        },
        text_features: true,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let bytes = match &mut hf {
        Some(hf) => convert(
            &config,
            &mut hf.weights,
            merges_gz,
            &options,
            &device::cpu(),
        )?,
        None => convert(
            &config,
            &mut RandomSource::new(args.seed),
            merges_gz,
            &options,
            &device::cpu(),
        )?,
    };
    write_file(&args.out, &bytes)?;
    let bundle = Bundle::parse(&bytes)?;
    println!(
        "wrote {} ({}, {})",
        args.out.display(),
        args.quant,
        mb(bytes.len() as u64)
    );
    for (name, size) in bundle.section_sizes() {
        println!("  {name:<32} {:>12}", mb(size));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    pub bundle: PathBuf,
    /// Print the whole header as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let bytes = read_file(&args.bundle)?;
    let bundle = Bundle::parse(&bytes)?;
    let h = &bundle.header;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(h).map_err(|e| Error::Input(e.to_string()))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (v, t) = (&h.config.vision_config, &h.config.text_config);
    println!(
        "{}: deltaenergy bundle v{}, {}",
        args.bundle.display(),
        deltaenergy::bundle::FORMAT_VERSION,
        mb(bytes.len() as u64)
    );
    println!("sha256      {} (verified)", hex(&bundle.sha256));
    println!("weights     {} ({} tensors)", h.quant, h.tensors.len());
    println!(
        "model       image {}px/{} width {} depth {} {:?}; text width {} depth {} {:?}; projection {}",
        v.image_size, v.patch_size, v.hidden_size, v.num_hidden_layers, v.hidden_act,
        t.hidden_size, t.num_hidden_layers, t.hidden_act, h.config.projection_dim
    );
    println!(
        "classes     {} {}",
        h.classes.len(),
        if h.classes.is_empty() {
            String::new()
        } else {
            format!("[{}]", h.classes.join(", "))
        }
    );
    match &h.context {
        Some(c) => println!(
            "prompt      learned context, {} vectors × {}, suffix {:?}",
            c.n_ctx, c.width, c.suffix
        ),
        None => println!("prompt      template {:?}", h.template),
    }
    println!(
        "features    {}",
        if h.text_features.is_some() {
            "precomputed"
        } else {
            "computed on load"
        }
    );
    let s = &h.score;
    println!(
        "score       τ={} c={} crop value={} MCM τ={}",
        s.tau, s.c, s.crop_value, s.mcm_tau
    );
    match &h.threshold {
        Some(th) => println!(
            "threshold   {} ≥ {} is in-distribution (keeps {:.0}% of ID; {})",
            th.score,
            th.value,
            th.tpr * 100.0,
            th.calibration
        ),
        None => println!("threshold   none"),
    }
    println!(
        "provenance  {} by {} at {}",
        h.provenance.source, h.provenance.converter, h.provenance.created
    );
    println!("sections");
    for (name, size) in bundle.section_sizes() {
        println!("  {name:<32} {:>12}", mb(size));
    }
    Ok(ExitCode::SUCCESS)
}
