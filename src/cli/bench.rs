//! `deltaenergy bench`: medians of the image and text towers on each backend, with seeded random
//! f32 weights for a config or with a bundle's weights at its precision (`--model`; a q8 bundle
//! runs the int8 kernel on the CPU). Timings include reading the result back, so queued GPU work
//! is counted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use deltaenergy::bundle::Bundle;
use deltaenergy::clip::loader;
use deltaenergy::clip::precision::{self, Precision};
use deltaenergy::device::{self, read_f32, Backend};
use deltaenergy::{Error, Result};

use super::model_source;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A Hugging Face config.json (default: the real ViT-B/32 one in $DELTAENERGY_DATA).
    #[arg(long, conflicts_with = "model")]
    pub config: Option<PathBuf>,
    /// A bundle (its config and weights at the precision it stores) or a Hugging Face
    /// directory (config.json + model.safetensors or pytorch_model.bin, f32).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_delimiter = ',', default_value = "cpu,wgpu")]
    pub backends: Vec<Backend>,
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batches: Vec<usize>,
    /// Image tower precisions to time (f16: wgpu adapters with shader-f16 only, else skipped).
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    pub precisions: Vec<Precision>,
    /// Timed runs per case (after one untimed warm-up run).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Tokens per text (77 is CLIP's full context).
    #[arg(long, default_value_t = 77)]
    pub text_len: usize,
    /// Towers to time: image, text or both.
    #[arg(long, value_delimiter = ',', default_value = "image,text")]
    pub towers: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The first run apart (kernel compilation and allocation happen there: what a user's first
/// image costs), then the median and minimum of `iters` runs after it (steady state).
fn time<F: FnMut() -> Result<()>>(iters: usize, mut f: F) -> Result<(f64, f64, f64)> {
    let t = Instant::now();
    f()?;
    let first = t.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((median(times), min, first))
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if let Some(t) = args.towers.iter().find(|t| *t != "image" && *t != "text") {
        return Err(Error::Input(format!("unknown tower `{t}` (image or text)")));
    }
    let hf_dir = args.model.as_deref().filter(|p| p.is_dir());
    let bundle_bytes = match (&args.model, hf_dir) {
        (Some(path), None) => Some(model_source::read_file(path)?),
        _ => None,
    };
    let bundle = bundle_bytes.as_deref().map(Bundle::parse).transpose()?;
    let (path, config) = match (&bundle, &args.model) {
        (Some(b), Some(path)) => (path.clone(), b.header.config.clone()),
        (None, Some(dir)) => (
            dir.clone(),
            model_source::read_config(&dir.join("config.json"))?,
        ),
        _ => {
            let path = args
                .config
                .clone()
                .unwrap_or_else(|| model_source::data_dir().join("clip-tokenizer/config.json"));
            let config = model_source::read_config(&path)?;
            (path, config)
        }
    };
    let v = &config.vision_config;
    let t = &config.text_config;
    let time_image = args.towers.iter().any(|t| t == "image");
    let time_text = args.towers.iter().any(|t| t == "text");
    if time_text && (args.text_len < 2 || args.text_len > t.max_position_embeddings) {
        return Err(Error::Input(format!(
            "--text-len must be between 2 and {}",
            t.max_position_embeddings
        )));
    }
    if !args.json {
        println!(
            "{} {}: image {}px/{} width {} depth {}, text width {} depth {}; {} timed runs, medians in ms",
            match (&bundle, hf_dir) {
                (Some(b), _) => format!("model ({})", b.header.quant),
                (None, Some(_)) => "Hugging Face model (f32)".into(),
                (None, None) => "config (random f32 weights)".into(),
            },
            path.display(),
            v.image_size,
            v.patch_size,
            v.hidden_size,
            v.num_hidden_layers,
            t.hidden_size,
            t.num_hidden_layers,
            args.iters
        );
        let acts = deltaenergy::clip::qmatmul::activations();
        println!(
            "cpu int8 kernel: {} (activations {acts:?})",
            deltaenergy::clip::qmatmul::Kernel::detect(acts).name()
        );
        println!(
            "{:<10} {:<6} {:>5} {:>12} {:>12} {:>12} {:>12}",
            "backend", "tower", "batch", "median_ms", "min_ms", "ms/item", "first_ms"
        );
    }
    for (backend, precision) in args
        .backends
        .iter()
        .flat_map(|&b| args.precisions.iter().map(move |&p| (b, p)))
    {
        let dev = match device::device(backend) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{backend}: skipped: {e}");
                continue;
            }
        };
        #[cfg(feature = "wgpu")]
        if backend == Backend::Wgpu && precision == args.precisions[0] {
            let a = device::wgpu_adapter()?;
            eprintln!(
                "wgpu adapter: {} ({}; shader-f16 {})",
                a.name,
                if a.software { "software" } else { "hardware" },
                if a.f16 { "yes" } else { "no" }
            );
        }
        if !precision::supports(&dev, precision) {
            eprintln!("{backend} {precision}: skipped: this device cannot run {precision}");
            continue;
        }
        let load = Instant::now();
        let model = match (&bundle, hf_dir) {
            (Some(b), _) => b.model(&dev)?,
            (None, Some(dir)) => loader::load_hf_dir(dir, &dev)?,
            (None, None) => loader::random(&config, 0, &dev)?,
        }
        .with_precision(precision)?;
        let load_ms = load.elapsed().as_secs_f64() * 1e3;
        let s = v.image_size;
        let per = v.num_channels * s * s;
        for &batch in &args.batches {
            let pixels: Vec<Vec<f32>> = (0..batch)
                .map(|b| {
                    (0..per)
                        .map(|i| (((i * 7 + b * 13) % 255) as f32 / 127.5) - 1.0)
                        .collect()
                })
                .collect();
            let ids: Vec<Vec<u32>> = (0..batch)
                .map(|b| {
                    let mut seq = vec![49406u32];
                    seq.extend(
                        (1..args.text_len - 1).map(|i| ((i * 31 + b * 7) % 49000) as u32 + 256),
                    );
                    seq.push(49407);
                    seq
                })
                .collect();
            let mut towers = Vec::new();
            if time_image {
                let image = time(args.iters, || {
                    read_f32(model.embed_pixels(&pixels)?).map(|_| ())
                })?;
                towers.push(("image", image));
            }
            // The text tower is f32 at every precision: timed once.
            if precision == Precision::F32 && time_text {
                let text = time(args.iters, || {
                    read_f32(model.encode_token_ids(&ids)?).map(|_| ())
                })?;
                towers.push(("text", text));
            }
            for (tower, (med, min, first)) in towers {
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"backend": backend, "precision": precision, "tower": tower, "batch": batch,
                            "median_ms": med, "min_ms": min, "first_ms": first, "load_ms": load_ms, "text_len": args.text_len})
                    );
                } else {
                    println!(
                        "{:<10} {:<6} {:>5} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
                        format!("{backend} {precision}"),
                        tower,
                        batch,
                        med,
                        min,
                        med / batch as f64,
                        first
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
