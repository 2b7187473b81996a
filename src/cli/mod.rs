//! Command-line parsing and the subcommands.

mod bench;
mod compare;
mod convert;
mod embed;
mod eval;
mod features;
mod model_source;
mod progress;
mod score;
mod train;
mod tune;

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use deltaenergy::device::Backend;
use deltaenergy::ood::score::ScoreParams;
use deltaenergy::Result;

#[derive(Parser, Debug)]
#[command(name = "deltaenergy", version, about = "ΔEnergy OOD scoring for CLIP")]
struct Cli {
    /// How the CPU quantizes activations for int8 weights (q8/q4 bundles): i16 (W8A16, the f32
    /// product's numbers to about 1e-5), i8 (W8A8: faster on CPUs with AVX-512 VNNI, twice
    /// the rounding error) or u7 (128 levels over each row's range and the block scales on a
    /// grid: faster on CPUs with AVX2). docs/PERFORMANCE.md gives their accuracy.
    #[arg(long, global = true, default_value = "i16")]
    activations: deltaenergy::clip::qmatmul::Activations,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print CLIP token ids (SOT … EOT, truncated to 77) for each text.
    Tokenize {
        #[arg(long)]
        json: bool,
        /// vocab.json + merges.txt directory, or bpe_simple_vocab_16e6.txt.gz.
        #[arg(long)]
        tokenizer: Option<std::path::PathBuf>,
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Print projected, un-normalised CLIP features for images and texts, in argument order.
    Embed(embed::EmbedArgs),
    /// Zero-shot classify images and print ΔEnergy, energy, MCM and MaxLogit.
    Score(score::ScoreArgs),
    /// Time the image and text towers of a CLIP config with random weights.
    Bench(bench::BenchArgs),
    /// Convert a Hugging Face CLIP directory into a single bundle file (f32/f16/q8/q4).
    Convert(convert::ConvertArgs),
    /// Verify a bundle and print its header, sizes, classes and settings.
    Inspect(convert::InspectArgs),
    /// Compare a model with a base model on real images (embedding cosines, labels, ΔEnergy).
    Compare(compare::CompareArgs),
    /// Train a CLIP from scratch on class folders (contrastive, captions from templates).
    Train(train::TrainArgs),
    /// Learn CoOp context vectors with the EBM objective (λ 0 = CoOp) into a new bundle.
    Tune(tune::TuneArgs),
    /// Accuracy (ID, covariate shift) and OOD metrics of all four scores on image folders.
    Eval(eval::EvalArgs),
}

/// Options shared by the commands that run a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A bundle file, or a Hugging Face layout directory (config.json + model.safetensors or
    /// pytorch_model.bin).
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// vocab.json + merges.txt directory, or bpe_simple_vocab_16e6.txt.gz (default: the
    /// bundle's own; for a directory, the directory, then $DELTAENERGY_TOKENIZER, then
    /// $DELTAENERGY_DATA/clip-tokenizer).
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// cpu (flex) or wgpu.
    #[arg(long, default_value = "cpu")]
    pub backend: Backend,
    /// The image tower's float precision: f16 runs on wgpu adapters with shader-f16 (the text
    /// tower and the scores stay f32).
    #[arg(long, default_value = "f32")]
    pub precision: deltaenergy::clip::precision::Precision,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
}

/// Score settings for the commands that score; each defaults to the bundle's, else to
/// METHOD.md's (c 1, crop value 0, MCM τ 1) at the model's own temperature (τ 0.01 for CLIP).
#[derive(clap::Args, Debug, Clone)]
pub struct ScoreSettings {
    /// Temperature on cosine similarities (default: the bundle's, else the model's own,
    /// 1/exp(logit_scale) with the scale capped at 100: 0.01 for CLIP).
    #[arg(long)]
    pub tau: Option<f64>,
    /// How many of the top similarities ΔEnergy crops (default: the bundle's, else 1).
    #[arg(long)]
    pub c: Option<usize>,
    /// The value the cropped similarities are set to (default: the bundle's, else 0).
    #[arg(long, allow_negative_numbers = true)]
    pub crop_value: Option<f64>,
    /// Temperature of MCM's softmax (default: the bundle's, else 1).
    #[arg(long)]
    pub mcm_tau: Option<f64>,
}

impl ScoreSettings {
    /// `base` (the bundle's settings, or the defaults) with the flags given applied, validated.
    pub fn resolve(&self, base: ScoreParams) -> Result<ScoreParams> {
        let params = ScoreParams {
            tau: self.tau.unwrap_or(base.tau),
            c: self.c.unwrap_or(base.c),
            crop_value: self.crop_value.unwrap_or(base.crop_value),
            mcm_tau: self.mcm_tau.unwrap_or(base.mcm_tau),
        };
        params.validate()?;
        Ok(params)
    }
}

pub fn run() -> Result<ExitCode> {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    deltaenergy::clip::qmatmul::set_activations(cli.activations);
    let sub = |name: &str| -> ArgMatches {
        matches
            .subcommand_matches(name)
            .cloned()
            .unwrap_or_default()
    };
    match cli.command {
        Command::Tokenize {
            json,
            tokenizer,
            text,
        } => {
            let tok = model_source::tokenizer(tokenizer.as_deref(), None)?;
            for t in &text {
                let ids = tok.encode(t);
                if json {
                    println!("{}", serde_json::json!({ "text": t, "ids": ids }));
                } else {
                    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
                    println!("{}", ids.join(" "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Embed(args) => embed::run(args, &sub("embed")),
        Command::Score(args) => score::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Inspect(args) => convert::inspect(args),
        Command::Compare(args) => compare::run(args),
        Command::Train(args) => train::run(args),
        Command::Tune(args) => tune::run(args),
        Command::Eval(args) => eval::run(args),
    }
}
