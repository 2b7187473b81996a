//! What `tune` does around the [`super::Tuner`], shared by the command line and the page so that
//! both split, judge and calibrate the same way: which pictures tune and which calibrate, the
//! validation outliers, accuracy before and after, ΔEnergy's c and τ chosen on held-out pictures,
//! the threshold recalibrated on them, the provenance, and the report.

use image::RgbImage;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ood::eval::top1;
use crate::ood::metrics::calibrate;
use crate::ood::score::{cosine_similarities, ScoreKind, ScoreParams, Threshold};
use crate::ood::select::{select_delta_energy, Selection, Trial};
use crate::rng::Rng;
use crate::train::outliers::{self, Kind};

use super::{LossParts, TuneOptions};

/// Pictures per class to tune on, and after them to calibrate on: `tune`'s defaults.
pub const SHOTS: usize = 16;
pub const CALIBRATION: usize = 100;

/// Positions, in the order the pictures were given, of those that tune and those that calibrate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub shots: Vec<usize>,
    pub calibration: Vec<usize>,
}

/// Per class, the first `shots` of its pictures (in the order given: a class folder's name
/// order on the command line, the array's order in the page) tune, and the next `calibration`
/// calibrate. Every class needs at least one picture to tune on.
pub fn split(
    labels: &[usize],
    classes: &[String],
    shots: usize,
    calibration: usize,
) -> Result<Split> {
    if classes.len() < 2 {
        return Err(Error::Input(format!(
            "tuning needs pictures of at least two classes, got {}",
            classes.len()
        )));
    }
    if shots == 0 {
        return Err(Error::Input(
            "tuning needs at least one shot per class".into(),
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= classes.len()) {
        return Err(Error::Input(format!(
            "label {bad} outside {} classes",
            classes.len()
        )));
    }
    let mut seen = vec![0usize; classes.len()];
    let mut out = Split::default();
    for (i, &l) in labels.iter().enumerate() {
        let n = seen[l];
        seen[l] += 1;
        if n < shots {
            out.shots.push(i);
        } else if n < shots + calibration {
            out.calibration.push(i);
        }
    }
    let empty: Vec<&str> = classes
        .iter()
        .zip(&seen)
        .filter(|(_, &n)| n == 0)
        .map(|(c, _)| c.as_str())
        .collect();
    if !empty.is_empty() {
        return Err(Error::Input(format!(
            "no pictures of {}: every class needs at least one to tune on",
            empty
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(out)
}

/// How ΔEnergy's c and τ are chosen after tuning: `outliers` generated pictures of `kinds`
/// against the calibration pictures, over the grid `cs` × `taus` (none: the bundle's τ, half and
/// twice it). `outliers` 0 keeps the bundle's settings.
#[derive(Clone, Debug)]
pub struct Validation {
    pub outliers: usize,
    pub kinds: Vec<Kind>,
    pub cs: Vec<usize>,
    pub taus: Option<Vec<f64>>,
}

impl Default for Validation {
    fn default() -> Self {
        Self {
            outliers: 1000,
            kinds: outliers::HELD_OUT.to_vec(),
            cs: vec![1, 2, 3, 5],
            taus: None,
        }
    }
}

/// `n` outliers of `kinds`, each made from one of the (decoded, cropped) calibration pictures,
/// seeded apart from training's outliers so that none is a picture training saw.
pub fn validation_images(
    sources: &[RgbImage],
    kinds: &[Kind],
    n: usize,
    size: u32,
    seed: u64,
) -> Result<Vec<RgbImage>> {
    if kinds.is_empty() {
        return Err(Error::Input(
            "validation outliers need at least one family to draw from".into(),
        ));
    }
    if sources.is_empty() {
        return Err(Error::Input("no calibration picture could be read".into()));
    }
    let mut rng = Rng::new(seed ^ 0x7661_6c69_6461_7465); // "validate"
    Ok((0..n)
        .map(|i| {
            let mut one = Rng::new(rng.next_u64());
            outliers::synthesize(kinds, &sources[i % sources.len()], size, &mut one)
        })
        .collect())
}

/// The unit image features an assessment needs, with labels where they have them.
pub struct Held<'a> {
    pub shots: &'a [Vec<f32>],
    pub shot_labels: &'a [usize],
    pub calibration: &'a [Vec<f32>],
    pub calibration_labels: &'a [usize],
    /// Generated outliers (empty: keep the bundle's c and τ).
    pub outliers: &'a [Vec<f32>],
}

/// What tuning changed, on pictures it did not see, and the score settings and threshold the
/// tuned bundle ships.
#[derive(Clone, Debug)]
pub struct Assessment {
    pub shots_accuracy: f64,
    /// Top-1 on the calibration pictures with the bundle's prompt and with the tuned context
    /// (none without calibration pictures).
    pub before: Option<f64>,
    pub after: Option<f64>,
    pub selection: Option<Selection>,
    pub score: ScoreParams,
    /// Recalibrated to keep 95% of the calibration pictures; without them, the bundle's.
    pub threshold: Option<Threshold>,
}

/// Judges the tuned text features `after` against the bundle's own `before` on `held`, chooses c
/// and τ when there are outliers (`v.cs` and `v.taus`), and calibrates the ΔEnergy threshold.
/// `note` says where the calibration pictures came from.
pub fn assess(
    before: &[Vec<f32>],
    after: &[Vec<f32>],
    held: &Held,
    base_score: &ScoreParams,
    base_threshold: Option<&Threshold>,
    v: &Validation,
    note: &str,
) -> Result<Assessment> {
    let shots_accuracy = top1(&cosine_similarities(held.shots, after), held.shot_labels)?;
    if held.calibration.is_empty() {
        return Ok(Assessment {
            shots_accuracy,
            before: None,
            after: None,
            selection: None,
            score: *base_score,
            threshold: base_threshold.cloned(),
        });
    }
    let sims = cosine_similarities(held.calibration, after);
    let before = top1(
        &cosine_similarities(held.calibration, before),
        held.calibration_labels,
    )?;
    let selection = if held.outliers.is_empty() {
        None
    } else {
        let taus = v
            .taus
            .clone()
            .unwrap_or_else(|| vec![base_score.tau, base_score.tau / 2.0, base_score.tau * 2.0]);
        // Fewer classes than a c of the default grid: that c cannot be tried.
        let classes = after.len();
        let cs: Vec<usize> =
            v.cs.iter()
                .copied()
                .filter(|&c| v.cs.len() == 1 || c < classes)
                .collect();
        Some(select_delta_energy(
            &sims,
            &cosine_similarities(held.outliers, after),
            &cs,
            &taus,
            base_score,
        )?)
    };
    let score = selection
        .as_ref()
        .map_or(*base_score, |s| s.params(base_score));
    let note = match &selection {
        None => note.to_string(),
        Some(s) => format!(
            "{note}; c {} and τ {} chosen on them against {} generated outliers ({})",
            s.chosen.c,
            s.chosen.tau,
            held.outliers.len(),
            outliers::names(&v.kinds)
        ),
    };
    let threshold = calibrate(&sims, &score, ScoreKind::DeltaEnergy, 0.95, note)?;
    Ok(Assessment {
        shots_accuracy,
        before: Some(before),
        after: Some(top1(&sims, held.calibration_labels)?),
        selection,
        score,
        threshold: Some(threshold),
    })
}

/// The tuned bundle's provenance: where the weights came from (a bundle tuned before names its
/// source, not its old tuning; `fallback` when it names none) and this tuning's settings.
pub fn provenance(base: &str, fallback: &str, shots: usize, o: &TuneOptions) -> String {
    let mut from = base.to_string();
    if let Some(at) = from.find("; tuned: ") {
        from.truncate(at);
    }
    if from.is_empty() {
        from = fallback.to_string();
    }
    format!(
        "{from}; tuned: {shots} shots, n_ctx {}, λ {}, mask {}{}, τ {}, {} epochs, lr {}, seed {}",
        o.n_ctx,
        o.ebm.lambda,
        o.ebm.mask,
        if o.ebm.mask_by_label { " (label)" } else { "" },
        o.ebm.tau,
        o.epochs,
        o.lr,
        o.seed
    )
}

/// Accuracy on the calibration pictures.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Accuracy {
    pub accuracy: Option<f64>,
}

/// The c and τ the tuned bundle ships.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ChosenScore {
    pub c: usize,
    pub tau: f64,
}

/// What a tuning run reports, the same on the command line (as JSON) and in the page.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub seconds: f64,
    /// The tuned bundle's size.
    pub bytes: usize,
    /// Mean loss of each epoch.
    pub loss: Vec<f64>,
    /// The last epoch's mean parts.
    pub cross_entropy: f64,
    pub delta_energy: f64,
    pub tau: f64,
    pub shots_accuracy: f64,
    pub before: Accuracy,
    pub after: Accuracy,
    /// The ΔEnergy threshold the tuned bundle ships (none: it has none).
    pub threshold: Option<f64>,
    pub calibration_images: usize,
    pub score: ChosenScore,
    pub selection: Option<Vec<Trial>>,
}

impl Report {
    pub fn new(
        epochs: &[LossParts],
        a: &Assessment,
        tau: f64,
        calibration_images: usize,
        seconds: f64,
        bytes: usize,
    ) -> Self {
        let last = epochs.last().copied().unwrap_or_default();
        Self {
            seconds,
            bytes,
            loss: epochs.iter().map(|p| p.loss).collect(),
            cross_entropy: last.cross_entropy,
            delta_energy: last.delta_energy,
            tau,
            shots_accuracy: a.shots_accuracy,
            before: Accuracy { accuracy: a.before },
            after: Accuracy { accuracy: a.after },
            threshold: a.threshold.as_ref().map(|t| t.value),
            calibration_images,
            score: ChosenScore {
                c: a.score.c,
                tau: a.score.tau,
            },
            selection: a.selection.as_ref().map(|s| s.trials.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn split_takes_shots_then_calibration_per_class_in_order() {
        let labels = [0, 1, 0, 0, 1, 0, 1, 1, 0];
        let s = split(&labels, &names(2), 2, 1).unwrap();
        assert_eq!(s.shots, [0, 1, 2, 4]);
        assert_eq!(s.calibration, [3, 6]);
        let s = split(&labels, &names(2), 1, 0).unwrap();
        assert_eq!(s.shots, [0, 1]);
        assert!(s.calibration.is_empty());
    }

    #[test]
    fn split_refuses_what_cannot_tune() {
        let e = split(&[0, 0, 2], &names(3), 4, 0).unwrap_err().to_string();
        assert!(e.contains("`c1`"), "{e}");
        assert!(split(&[0], &names(1), 4, 0).is_err());
        assert!(split(&[0, 1], &names(2), 0, 4).is_err());
        assert!(split(&[0, 5], &names(2), 1, 0).is_err());
    }

    #[test]
    fn provenance_names_the_source_once() {
        let o = TuneOptions::default();
        let p = provenance("hf:openai/clip; tuned: 4 shots", "x.bundle", 16, &o);
        assert!(
            p.starts_with("hf:openai/clip; tuned: 16 shots, n_ctx 4, λ 1,"),
            "{p}"
        );
        assert!(provenance("", "x.bundle", 1, &o).starts_with("x.bundle; tuned: 1 shots"));
    }
}
