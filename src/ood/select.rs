//! Choosing ΔEnergy's c and τ without the evaluation sets: on a validation split of held-out
//! in-distribution images and generated outliers (`tune` makes both), the pair that flags the
//! most outliers while keeping 95% of the in-distribution images, as the shipped threshold does.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ood::metrics::{auroc, fpr_at_tpr};
use crate::ood::score::{ScoreKind, ScoreParams};

/// One setting tried, and how it separated the validation split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trial {
    pub c: usize,
    pub tau: f64,
    pub auroc: f64,
    /// Fraction of validation outliers kept as in-distribution at 95% TPR.
    pub fpr95: f64,
}

/// The chosen setting and every trial, in the order tried.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Selection {
    pub chosen: Trial,
    pub trials: Vec<Trial>,
}

impl Selection {
    /// `base` with the chosen c and τ (the crop value and MCM's τ unchanged).
    pub fn params(&self, base: &ScoreParams) -> ScoreParams {
        ScoreParams {
            c: self.chosen.c,
            tau: self.chosen.tau,
            ..*base
        }
    }
}

/// Scores every (c, τ) of the grid on the validation similarities and picks by FPR at 95% TPR
/// ([`choose`]), listing the grid's plainest settings first. FPR95 decides because the bundle
/// ships a 95%-TPR threshold: it is the share of outliers the page would call in-distribution.
pub fn select_delta_energy(
    id: &[Vec<f64>],
    ood: &[Vec<f64>],
    cs: &[usize],
    taus: &[f64],
    base: &ScoreParams,
) -> Result<Selection> {
    if cs.is_empty() || taus.is_empty() {
        return Err(Error::Input("the grid of c and τ is empty".into()));
    }
    let classes = id.first().map_or(0, Vec::len);
    let mut trials = Vec::with_capacity(cs.len() * taus.len());
    for &c in cs {
        if c == 0 || c >= classes {
            return Err(Error::Input(format!(
                "c must be between 1 and the number of classes less one ({}), got {c}",
                classes.saturating_sub(1)
            )));
        }
        for &tau in taus {
            let p = ScoreParams { c, tau, ..*base };
            p.validate()?;
            let score = |rows: &[Vec<f64>]| -> Result<Vec<f64>> {
                rows.iter()
                    .map(|s| Ok(ScoreKind::DeltaEnergy.of(&crate::ood::score::scores(s, &p)?)))
                    .collect()
            };
            let (i, o) = (score(id)?, score(ood)?);
            trials.push(Trial {
                c,
                tau,
                auroc: auroc(&i, &o)?,
                fpr95: fpr_at_tpr(&i, &o, 0.95)?,
            });
        }
    }
    let chosen = choose(&trials, ood.len());
    Ok(Selection { chosen, trials })
}

/// The earliest trial whose FPR95 is within one standard error of the lowest, the error being
/// the binomial one of that lowest rate over `outliers` outliers. Settings a validation split
/// cannot tell apart are a tie, and a tie goes to the plainer setting: picking the lowest rate
/// outright fits the split's noise (with 1,000 outliers, rates of 0.225 and 0.238 are 1 SE
/// apart).
pub fn choose(trials: &[Trial], outliers: usize) -> Trial {
    let best = trials.iter().map(|t| t.fpr95).fold(f64::INFINITY, f64::min);
    let se = (best * (1.0 - best) / outliers.max(1) as f64).sqrt();
    trials
        .iter()
        .find(|t| t.fpr95 <= best + se)
        .expect("the best trial is within its own error")
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-made similarities over four classes where one crop (c = 1) cannot tell the sets
    /// apart and two crops can: ID images match two classes equally well, the outliers one
    /// class and nothing else. Cropping one peak leaves an ID image its second one (a small
    /// energy change) and takes an outlier's only one (a large change), so with c = 1 the
    /// outliers look more in-distribution than the ID images; c = 2 takes both ID peaks.
    #[test]
    fn picks_the_crop_that_separates_the_split() {
        let id: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![0.9, 0.9 - 0.001 * i as f64, 0.0, 0.0])
            .collect();
        let ood: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![0.9 - 0.001 * i as f64, 0.0, 0.0, 0.0])
            .collect();
        let base = ScoreParams::default();
        let s = select_delta_energy(&id, &ood, &[1, 2], &[0.1], &base).unwrap();
        assert_eq!(s.trials.len(), 2);
        let (one, two) = (&s.trials[0], &s.trials[1]);
        // c = 1 at τ 0.1: ID ΔE = LSE(s/τ) − LSE(s'/τ) = ln(2e⁹ + 2) − ln(e⁹ + 3) ≈ ln 2 = 0.693
        // (at i = 0), outlier ΔE = ln(e⁹ + 3) − ln 4 ≈ 9 − 1.386 = 7.614: every outlier above
        // every ID image.
        assert_eq!(one.fpr95, 1.0);
        assert_eq!(one.auroc, 0.0);
        // c = 2: ID ΔE = ln(2e⁹ + 2) − ln 4 ≈ 9 + 0.693 − 1.386 = 8.307, outlier ΔE stays
        // ≈ 7.614 (its second crop removes a 0): every ID image above every outlier.
        assert_eq!(two.fpr95, 0.0);
        assert_eq!(two.auroc, 1.0);
        assert_eq!((s.chosen.c, s.chosen.tau), (2, 0.1));
        let p = s.params(&base);
        assert_eq!((p.c, p.tau, p.crop_value, p.mcm_tau), (2, 0.1, 0.0, 1.0));
    }

    #[test]
    fn ties_keep_the_first_setting() {
        // Perfectly separated at every τ: the first τ listed wins.
        let id = vec![vec![0.9, 0.0, 0.0]; 10];
        let ood = vec![vec![0.1, 0.1, 0.1]; 10];
        let s = select_delta_energy(&id, &ood, &[1], &[0.05, 0.1, 0.2], &ScoreParams::default())
            .unwrap();
        assert!(s.trials.iter().all(|t| t.fpr95 == 0.0 && t.auroc == 1.0));
        assert_eq!(s.chosen.tau, 0.05);
    }

    #[test]
    fn a_tie_within_one_standard_error_goes_to_the_plainer_setting() {
        let trial = |c, fpr95| Trial {
            c,
            tau: 0.1,
            auroc: 0.9,
            fpr95,
        };
        let trials = [trial(1, 0.30), trial(2, 0.24), trial(3, 0.23)];
        // SE = √(0.23 · 0.77 / 1000) = 0.01331: 0.24 is within 0.2433, 0.30 is not.
        assert_eq!(choose(&trials, 1000).c, 2);
        // With 100,000 outliers the SE is 0.00133: only 0.23 is within 0.2313.
        assert_eq!(choose(&trials, 100_000).c, 3);
        // A perfect best (SE 0) admits only perfect trials, the first of them.
        let perfect = [trial(1, 0.01), trial(2, 0.0), trial(3, 0.0)];
        assert_eq!(choose(&perfect, 1000).c, 2);
    }

    #[test]
    fn refuses_bad_grids() {
        let id = vec![vec![0.9, 0.0, 0.0]; 4];
        let ood = vec![vec![0.1, 0.1, 0.1]; 4];
        let base = ScoreParams::default();
        for (cs, taus) in [
            (&[][..], &[0.1][..]),
            (&[1][..], &[][..]),
            (&[3][..], &[0.1][..]),
        ] {
            assert!(select_delta_energy(&id, &ood, cs, taus, &base).is_err());
        }
        assert!(select_delta_energy(&id, &ood, &[1], &[-1.0], &base).is_err());
    }
}
