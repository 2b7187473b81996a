//! ΔEnergy and the baseline OOD scores, on cosine similarities (`docs/METHOD.md`).
//!
//! Every score is "higher = more in-distribution". Arithmetic is in f64 with the maximum
//! subtracted inside every log-sum-exp, so τ = 0.01 on cosines never overflows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The four scores, each "higher = more in-distribution". Their names are `delta_energy`,
/// `energy`, `mcm` and `max_logit` on the command line, in bundles and in JSON reports, and
/// [`ScoreKind::camel`] in the browser's API; parsing any other name is an error that lists these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    DeltaEnergy,
    Energy,
    Mcm,
    MaxLogit,
}

impl ScoreKind {
    /// In the order of reports and tables.
    pub const ALL: [ScoreKind; 4] = [
        ScoreKind::DeltaEnergy,
        ScoreKind::Energy,
        ScoreKind::Mcm,
        ScoreKind::MaxLogit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::DeltaEnergy => "delta_energy",
            ScoreKind::Energy => "energy",
            ScoreKind::Mcm => "mcm",
            ScoreKind::MaxLogit => "max_logit",
        }
    }

    /// The name in the browser's API, whose keys are camelCase.
    pub fn camel(self) -> &'static str {
        match self {
            ScoreKind::DeltaEnergy => "deltaEnergy",
            ScoreKind::Energy => "energy",
            ScoreKind::Mcm => "mcm",
            ScoreKind::MaxLogit => "maxLogit",
        }
    }

    /// As people read it in tables.
    pub fn label(self) -> &'static str {
        match self {
            ScoreKind::DeltaEnergy => "ΔEnergy",
            ScoreKind::Energy => "Energy",
            ScoreKind::Mcm => "MCM",
            ScoreKind::MaxLogit => "MaxLogit",
        }
    }

    /// This score of an image.
    pub fn of(self, s: &Scores) -> f64 {
        match self {
            ScoreKind::DeltaEnergy => s.delta_energy,
            ScoreKind::Energy => s.energy,
            ScoreKind::Mcm => s.mcm,
            ScoreKind::MaxLogit => s.max_logit,
        }
    }

    /// "higher = more in-distribution", so an image scoring below the threshold is OOD.
    pub fn is_ood(self, s: &Scores, threshold: f64) -> bool {
        self.of(s) < threshold
    }
}

impl FromStr for ScoreKind {
    type Err = Error;
    /// The snake_case name, or the camelCase one of the browser's API.
    fn from_str(s: &str) -> Result<Self> {
        ScoreKind::ALL
            .into_iter()
            .find(|k| k.name() == s || k.camel() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ScoreKind::ALL.iter().map(|k| k.name()).collect();
                Error::Input(format!("unknown score `{s}` (known: {})", known.join(", ")))
            })
    }
}

impl fmt::Display for ScoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parameters of the scores. `tau` is the temperature on cosines (CLIP's learned logit scale
/// is 100, hence 0.01); `c` the number of top similarities cropped; `crop_value` what they are
/// cropped to; `mcm_tau` the temperature of MCM's softmax (1 in the MCM paper).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreParams {
    pub tau: f64,
    pub c: usize,
    pub crop_value: f64,
    pub mcm_tau: f64,
}

impl Default for ScoreParams {
    fn default() -> Self {
        Self {
            tau: 0.01,
            c: 1,
            crop_value: 0.0,
            mcm_tau: 1.0,
        }
    }
}

/// A CLIP's own softmax temperature: 1 / exp(logit_scale), the scale capped at 100 as CLIP
/// caps it in training. 0.01 for OpenAI's CLIP, METHOD.md's default τ; the commands take it as
/// their default τ for any model, so a model trained at another temperature is scored at its own.
pub fn temperature(logit_scale: f64) -> f64 {
    1.0 / logit_scale.exp().min(100.0)
}

impl ScoreParams {
    /// METHOD.md's settings at the model's own temperature.
    pub fn for_temperature(tau: f64) -> Self {
        Self {
            tau,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        for (name, t) in [("tau", self.tau), ("mcm_tau", self.mcm_tau)] {
            if !(t.is_finite() && t > 0.0) {
                return Err(Error::Input(format!(
                    "{name} must be a positive number, got {t}"
                )));
            }
        }
        if !self.crop_value.is_finite() {
            return Err(Error::Input(format!(
                "crop value must be finite, got {}",
                self.crop_value
            )));
        }
        Ok(())
    }
}

/// The OOD threshold and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// The score it applies to (a bundle naming an unknown score is refused when read).
    pub score: ScoreKind,
    /// Images scoring at or above it are called in-distribution.
    pub value: f64,
    /// The fraction of calibration ID images it keeps (0.95).
    pub tpr: f64,
    /// How it was calibrated, e.g. "cifar10/train held-out, 1000 images".
    pub calibration: String,
}

impl Threshold {
    /// Whether an image with these scores is flagged out-of-distribution.
    pub fn is_ood(&self, s: &Scores) -> bool {
        self.score.is_ood(s, self.value)
    }
}

/// All four scores for one image, plus what the teaching view shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// ΔE_c = LSE(s/τ) − LSE(s'/τ).
    pub delta_energy: f64,
    /// Negative energy, LSE(s/τ).
    pub energy: f64,
    pub mcm: f64,
    pub max_logit: f64,
    /// Index of the largest similarity (ties: lowest index).
    pub label: usize,
    /// `s'`: the similarities with the top c cropped.
    pub cropped: Vec<f64>,
    /// Negative energy after cropping, LSE(s'/τ).
    pub energy_cropped: f64,
}

/// `log Σ exp(x_k / τ)` with the maximum factored out.
pub fn log_sum_exp(x: &[f64], tau: f64) -> f64 {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = x.iter().map(|&v| ((v - m) / tau).exp()).sum();
    m / tau + sum.ln()
}

/// Indices of the `c` largest entries, ties broken by the lowest index.
pub fn top_indices(s: &[f64], c: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..s.len()).collect();
    // Stable sort on descending value keeps lower indices first among equals.
    idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    idx.truncate(c.min(s.len()));
    idx
}

/// `s` with its `c` largest entries replaced by `value`. `c ≥ K` crops everything.
pub fn crop_top(s: &[f64], c: usize, value: f64) -> Vec<f64> {
    let mut out = s.to_vec();
    for i in top_indices(s, c) {
        out[i] = value;
    }
    out
}

fn check_similarities(s: &[f64]) -> Result<()> {
    if s.is_empty() {
        return Err(Error::Input("no classes: the class list is empty".into()));
    }
    if let Some(v) = s.iter().find(|v| !v.is_finite()) {
        return Err(Error::Input(format!("similarity is not finite: {v}")));
    }
    Ok(())
}

/// ΔE_c. With `c = 0` nothing is cropped and ΔE = 0; with `c ≥ K` every similarity becomes
/// `crop_value`, so ΔE = LSE(s/τ) − (v/τ + ln K). Both are defined, finite and documented
/// rather than errors, because a class list can shrink below `c` while a user edits it.
pub fn delta_energy(s: &[f64], p: &ScoreParams) -> Result<f64> {
    p.validate()?;
    check_similarities(s)?;
    Ok(log_sum_exp(s, p.tau) - log_sum_exp(&crop_top(s, p.c, p.crop_value), p.tau))
}

pub fn scores(s: &[f64], p: &ScoreParams) -> Result<Scores> {
    p.validate()?;
    check_similarities(s)?;
    let energy = log_sum_exp(s, p.tau);
    let cropped = crop_top(s, p.c, p.crop_value);
    let energy_cropped = log_sum_exp(&cropped, p.tau);
    let label = top_indices(s, 1)[0];
    let max = s[label];
    // max softmax = exp(max/τ) / Σ exp(s_k/τ) = 1 / Σ exp((s_k − max)/τ)
    let mcm = 1.0
        / s.iter()
            .map(|&v| ((v - max) / p.mcm_tau).exp())
            .sum::<f64>();
    Ok(Scores {
        delta_energy: energy - energy_cropped,
        energy,
        mcm,
        max_logit: max / p.tau,
        label,
        cropped,
        energy_cropped,
    })
}

/// Cosine similarities between L2-normalised rows: `images [N, D]`, `texts [K, D]` → `[N][K]`.
pub fn cosine_similarities(images: &[Vec<f32>], texts: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let norm = |v: &[f32]| -> Vec<f64> {
        let n = v
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        v.iter().map(|&x| x as f64 / n).collect()
    };
    let texts: Vec<Vec<f64>> = texts.iter().map(|t| norm(t)).collect();
    images
        .iter()
        .map(|img| {
            let f = norm(img);
            texts
                .iter()
                .map(|t| f.iter().zip(t).map(|(a, b)| a * b).sum())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [f64; 4] = [0.30, 0.22, 0.20, 0.18];
    const OOD: [f64; 4] = [0.23, 0.22, 0.21, 0.20];

    fn params(tau: f64, c: usize) -> ScoreParams {
        ScoreParams {
            tau,
            c,
            ..Default::default()
        }
    }

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn temperature_is_the_inverse_logit_scale_capped_like_clip() {
        // OpenAI's CLIP stores ln 100 = 4.6052: τ 0.01, METHOD.md's default.
        close(temperature(100f64.ln()), 0.01, 1e-15);
        close(temperature(2.6592), 1.0 / 2.6592f64.exp(), 1e-15); // CLIP's initial scale, 14.3
        close(temperature(7.0), 0.01, 1e-15); // above 100 the scale is capped
    }

    /// The worked example of METHOD.md, numbers given to 6 decimals there.
    #[test]
    fn worked_example() {
        close(delta_energy(&ID, &params(0.01, 1)).unwrap(), 7.857455, 5e-6);
        close(
            delta_energy(&OOD, &params(0.01, 1)).unwrap(),
            1.032584,
            5e-6,
        );
        close(log_sum_exp(&ID, 0.01), 30.000387, 5e-6);
        close(log_sum_exp(&crop_top(&ID, 1, 0.0), 0.01), 22.142932, 5e-6);
        close(delta_energy(&ID, &params(1.0, 1)).unwrap(), 0.072322, 5e-6);
        close(delta_energy(&OOD, &params(1.0, 1)).unwrap(), 0.053548, 5e-6);
        close(delta_energy(&ID, &params(0.01, 2)).unwrap(), 9.873459, 5e-6);
        close(
            delta_energy(&OOD, &params(0.01, 2)).unwrap(),
            2.126928,
            5e-6,
        );
    }

    /// METHOD.md's closed form for v = 0: ΔE_c = −log(1 − Σ_top p + c·exp(E(s))).
    #[test]
    fn closed_form_oracle() {
        let cases: [&[f64]; 5] = [
            &ID,
            &OOD,
            &[0.5, -0.3, 0.1, 0.1, 0.0, 0.49],
            &[-0.2, -0.1, -0.3],
            &[0.9],
        ];
        for s in cases {
            for tau in [0.01, 0.05, 1.0] {
                for c in 1..=s.len() {
                    let lse = log_sum_exp(s, tau);
                    // 1 − Σ_top p written as Σ_rest p: the same closed form without the
                    // cancellation that makes `1 − Σ_top p` meaningless when the top holds ~all mass.
                    let top = top_indices(s, c);
                    let rest: f64 = (0..s.len())
                        .filter(|i| !top.contains(i))
                        .map(|i| (s[i] / tau - lse).exp())
                        .sum();
                    let oracle = -(rest + c as f64 * (-lse).exp()).ln();
                    let got = delta_energy(s, &params(tau, c)).unwrap();
                    close(got, oracle, 1e-9 * oracle.abs().max(1.0));
                }
            }
        }
    }

    #[test]
    fn id_scores_above_ood_for_every_score() {
        let (a, b) = (
            scores(&ID, &Default::default()).unwrap(),
            scores(&OOD, &Default::default()).unwrap(),
        );
        assert!(a.delta_energy > b.delta_energy);
        assert!(a.energy > b.energy);
        assert!(a.mcm > b.mcm);
        assert!(a.max_logit > b.max_logit);
        close(a.max_logit, 30.0, 1e-9);
        assert_eq!(a.label, 0);
    }

    #[test]
    fn ties_crop_the_lowest_index_and_label_the_first() {
        let s = [0.2, 0.5, 0.5, 0.1];
        assert_eq!(crop_top(&s, 1, 0.0), vec![0.2, 0.0, 0.5, 0.1]);
        assert_eq!(crop_top(&s, 2, -1.0), vec![0.2, -1.0, -1.0, 0.1]);
        assert_eq!(scores(&s, &Default::default()).unwrap().label, 1);
        // With a tie at the top, cropping one of the two leaves the energy nearly unchanged.
        let d = delta_energy(&s, &params(0.01, 1)).unwrap();
        close(d, std::f64::consts::LN_2, 1e-6);
    }

    #[test]
    fn k_equals_one_and_c_at_least_k_are_defined() {
        // K = 1: ΔE = (s − v)/τ.
        close(delta_energy(&[0.3], &params(0.01, 1)).unwrap(), 30.0, 1e-9);
        let s1 = scores(&[0.3], &Default::default()).unwrap();
        close(s1.mcm, 1.0, 1e-12);
        // c ≥ K: everything cropped, ΔE = LSE(s/τ) − (v/τ + ln K).
        for c in [4, 5, 100] {
            let d = delta_energy(&ID, &params(0.01, c)).unwrap();
            close(d, log_sum_exp(&ID, 0.01) - 4f64.ln(), 1e-9);
            assert!(d.is_finite());
        }
        // c = 0 crops nothing.
        assert_eq!(delta_energy(&ID, &params(0.01, 0)).unwrap(), 0.0);
    }

    #[test]
    fn extreme_values_stay_finite() {
        let s = [1.0, -1.0, 0.999999, -0.5];
        for tau in [1e-4, 1e-2, 10.0] {
            let r = scores(&s, &params(tau, 1)).unwrap();
            for v in [
                r.delta_energy,
                r.energy,
                r.mcm,
                r.max_logit,
                r.energy_cropped,
            ] {
                assert!(v.is_finite(), "tau {tau}: {r:?}");
            }
        }
    }

    #[test]
    fn score_names_parse_once_and_refuse_typos() {
        for k in ScoreKind::ALL {
            assert_eq!(k.name().parse::<ScoreKind>().unwrap(), k);
            assert_eq!(k.camel().parse::<ScoreKind>().unwrap(), k);
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.name())
            );
        }
        let e = "delta-energy".parse::<ScoreKind>().unwrap_err().to_string();
        assert!(
            e.contains("delta-energy") && e.contains("delta_energy, energy, mcm, max_logit"),
            "{e}"
        );
        assert!(serde_json::from_str::<ScoreKind>("\"delta-energy\"").is_err());
        let s = scores(&ID, &Default::default()).unwrap();
        assert_eq!(ScoreKind::Mcm.of(&s), s.mcm);
        assert!(ScoreKind::DeltaEnergy.is_ood(&s, s.delta_energy + 1e-9));
        assert!(!ScoreKind::DeltaEnergy.is_ood(&s, s.delta_energy));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(scores(&[], &Default::default()).is_err());
        assert!(scores(&[0.1, f64::NAN], &Default::default()).is_err());
        assert!(scores(&ID, &params(0.0, 1)).is_err());
        assert!(scores(&ID, &params(-1.0, 1)).is_err());
        let p = ScoreParams {
            crop_value: f64::INFINITY,
            ..Default::default()
        };
        assert!(scores(&ID, &p).is_err());
    }

    #[test]
    fn cosine_similarity_normalises_both_sides() {
        let s = cosine_similarities(
            &[vec![3.0, 4.0]],
            &[vec![1.0, 0.0], vec![0.0, 2.0], vec![-6.0, -8.0]],
        );
        close(s[0][0], 0.6, 1e-12);
        close(s[0][1], 0.8, 1e-12);
        close(s[0][2], -1.0, 1e-12);
    }
}
