//! `deltaenergy eval`: ID accuracy, covariate-shift accuracy and OOD metrics of every score.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use deltaenergy::clip::prompt::class_features;
use deltaenergy::ood::eval::{evaluate, histogram_svg, score_table, Labelled};
use deltaenergy::ood::score::{cosine_similarities, ScoreKind};
use deltaenergy::train::dataset::{image_files, spread, ClassFolders};
use deltaenergy::{Error, Result};

use super::features::{decoded_features, CacheArgs};
use super::model_source::{load, write_file};
use super::{ModelArgs, ScoreSettings};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// In-distribution test images in class folders (folder names are the class names).
    #[arg(long)]
    pub id: PathBuf,
    /// The same classes under covariate shift, in class folders named like --id's.
    #[arg(long)]
    pub covariate: Option<PathBuf>,
    /// Out-of-distribution images (any layout); repeat for several sets.
    #[arg(long, required = true)]
    pub ood: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Use this hand prompt instead of the bundle's learned context.
    #[arg(long)]
    pub template: Option<String>,
    #[command(flatten)]
    pub settings: ScoreSettings,
    /// At most this many images from each folder (quick runs), spread evenly over its sorted
    /// files, so a folder of sub-folders is sampled across all of them.
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Write ID-vs-OOD histograms of ΔEnergy and energy as SVG into this directory.
    #[arg(long)]
    pub plots: Option<PathBuf>,
}

fn set_name(dir: &Path, taken: &[String]) -> String {
    let base = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("ood")
        .to_string();
    let mut name = base.clone();
    let mut i = 2;
    while taken.contains(&name) {
        name = format!("{base}-{i}");
        i += 1;
    }
    name
}

/// Images of labelled class folders, a limit per class.
fn labelled(
    dir: &Path,
    classes: &[String],
    limit: Option<usize>,
) -> Result<(Vec<PathBuf>, Vec<usize>)> {
    let f = ClassFolders::open(dir)?;
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (k, name) in f.classes.iter().enumerate() {
        let Some(label) = classes.iter().position(|c| c == name) else {
            return Err(Error::Input(format!(
                "{}: class folder `{name}` is not one of the ID classes {classes:?}",
                dir.display()
            )));
        };
        let of: Vec<PathBuf> = f
            .files
            .iter()
            .filter(|(_, l)| *l == k)
            .map(|(p, _)| p.clone())
            .collect();
        for p in spread(&of, limit) {
            files.push(p);
            labels.push(label);
        }
    }
    Ok((files, labels))
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let loaded = load(&args.model)?;
    let model = &loaded.model;
    let tok = loaded.tokenizer()?;
    let classes = ClassFolders::open(&args.id)?.classes;
    let prompt = loaded.prompt(args.template.as_deref());
    let params = args.settings.resolve(loaded.score_base()?)?;
    let text = class_features(model, &tok, &classes, &prompt)?;
    let cache = args.cache.dir();
    let batch = args.model.batch;
    // Similarities and labels of the images that decoded.
    let sims_of = |files: &[PathBuf],
                   labels: Option<&[usize]>,
                   label: &str|
     -> Result<(Vec<Vec<f64>>, Vec<usize>)> {
        let d = decoded_features(
            model,
            &loaded.vision_digest,
            files,
            labels,
            batch,
            cache.as_deref(),
            label,
        )?;
        Ok((cosine_similarities(&d.features, &text), d.labels))
    };

    let (id_files, id_labels) = labelled(&args.id, &classes, args.limit)?;
    let (id_sims, id_labels) = sims_of(&id_files, Some(&id_labels), "id")?;
    let covariate = match &args.covariate {
        Some(dir) => {
            let (files, labels) = labelled(dir, &classes, args.limit)?;
            Some(sims_of(&files, Some(&labels), "covariate")?)
        }
        None => None,
    };
    let mut names: Vec<String> = Vec::new();
    let mut ood = Vec::new();
    for dir in &args.ood {
        let name = set_name(dir, &names);
        let files = spread(&image_files(dir)?, args.limit);
        let (sims, _) = sims_of(&files, None, &name)?;
        names.push(name.clone());
        ood.push((name, sims));
    }
    let ood_refs: Vec<(String, &[Vec<f64>])> =
        ood.iter().map(|(n, s)| (n.clone(), s.as_slice())).collect();
    let report = evaluate(
        &Labelled {
            similarities: &id_sims,
            labels: &id_labels,
        },
        covariate
            .as_ref()
            .map(|(s, l)| Labelled {
                similarities: s,
                labels: l,
            })
            .as_ref(),
        &ood_refs,
        &params,
    )?;

    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let id_scores = score_table(&id_sims, &params)?;
        let ood_scores: Vec<(String, [Vec<f64>; 4])> = ood
            .iter()
            .map(|(n, s)| Ok((n.clone(), score_table(s, &params)?)))
            .collect::<Result<_>>()?;
        for (i, kind) in [ScoreKind::DeltaEnergy, ScoreKind::Energy]
            .into_iter()
            .enumerate()
        {
            let title = match kind {
                ScoreKind::Energy => "energy (negative)",
                _ => kind.label(),
            };
            let sets: Vec<(String, Vec<f64>)> = ood_scores
                .iter()
                .map(|(n, t)| (n.clone(), t[i].clone()))
                .collect();
            let t = format!("{title}, τ = {:.4}, c = {}", params.tau, params.c);
            let path = dir.join(format!("{kind}.svg"));
            write_file(&path, histogram_svg(&t, &id_scores[i], &sets))?;
            eprintln!("wrote {}", path.display());
        }
    }

    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| Error::Input(e.to_string()))?
        );
    } else {
        println!(
            "ID top-1 accuracy: {:.4} ({} images)",
            report.id_accuracy,
            id_sims.len()
        );
        if let (Some(a), Some((s, _))) = (report.covariate_accuracy, &covariate) {
            println!(
                "covariate-shift top-1 accuracy: {a:.4} ({} images)",
                s.len()
            );
        }
        println!(
            "{:<14} {:<18} {:>7} {:>7} {:>8} {:>8}",
            "score", "ood set", "AUROC", "FPR95", "AUPR-In", "AUPR-Out"
        );
        for score in ScoreKind::ALL {
            for (name, m) in &report.scores[&score] {
                println!(
                    "{:<14} {name:<18} {:>7.4} {:>7.4} {:>8.4} {:>8.4}",
                    score.name(),
                    m.auroc,
                    m.fpr95,
                    m.aupr_in,
                    m.aupr_out
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
