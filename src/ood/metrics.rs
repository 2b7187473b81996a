//! OOD detection metrics with in-distribution as the positive class and scores where higher
//! means more in-distribution (the MCM / energy-paper convention; see PEERS.md §2).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodMetrics {
    pub auroc: f64,
    /// Fraction of OOD accepted at the threshold that keeps 95% of ID.
    pub fpr95: f64,
    pub aupr_in: f64,
    pub aupr_out: f64,
}

fn check(name: &str, scores: &[f64]) -> Result<()> {
    if scores.is_empty() {
        return Err(Error::Input(format!("no {name} scores")));
    }
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(Error::Input(format!("{name} scores contain NaN or inf")));
    }
    Ok(())
}

/// P(score_ID > score_OOD) + ½ P(tie), via average ranks (Mann–Whitney U).
pub fn auroc(id: &[f64], ood: &[f64]) -> Result<f64> {
    check("ID", id)?;
    check("OOD", ood)?;
    let mut all: Vec<(f64, bool)> = id
        .iter()
        .map(|&s| (s, true))
        .chain(ood.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_id = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0; // ranks i+1..=j
        rank_sum_id += avg_rank * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (n, m) = (id.len() as f64, ood.len() as f64);
    Ok((rank_sum_id - n * (n + 1.0) / 2.0) / (n * m))
}

/// The largest threshold `t` such that at least `tpr` of the ID scores are `≥ t`: the
/// `⌈tpr·n⌉`-th largest ID score. Scores `≥ t` are called in-distribution.
pub fn threshold_at_tpr(id: &[f64], tpr: f64) -> Result<f64> {
    check("ID", id)?;
    if !(tpr > 0.0 && tpr <= 1.0) {
        return Err(Error::Input(format!("TPR must be in (0, 1], got {tpr}")));
    }
    let mut sorted = id.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    // The small epsilon keeps 0.95 × 20 = 19 from becoming 20 through rounding.
    let k = ((tpr * sorted.len() as f64) - 1e-9).ceil().max(1.0) as usize;
    Ok(sorted[k - 1])
}

/// Fraction of OOD scores at or above the threshold that keeps `tpr` of ID.
/// A threshold on one score, calibrated to keep `tpr` of in-distribution images: the
/// similarities of held-apart ID images, scored with `params`. `tune` ships its result in the
/// bundle; the page can calibrate on images a user marks as in-distribution the same way.
pub fn calibrate(
    id_similarities: &[Vec<f64>],
    params: &crate::ood::score::ScoreParams,
    score: crate::ood::score::ScoreKind,
    tpr: f64,
    note: String,
) -> Result<crate::ood::score::Threshold> {
    let values: Vec<f64> = id_similarities
        .iter()
        .map(|s| Ok(score.of(&crate::ood::score::scores(s, params)?)))
        .collect::<Result<_>>()?;
    Ok(crate::ood::score::Threshold {
        score,
        value: threshold_at_tpr(&values, tpr)?,
        tpr,
        calibration: note,
    })
}

pub fn fpr_at_tpr(id: &[f64], ood: &[f64], tpr: f64) -> Result<f64> {
    check("OOD", ood)?;
    let t = threshold_at_tpr(id, tpr)?;
    Ok(ood.iter().filter(|&&s| s >= t).count() as f64 / ood.len() as f64)
}

/// Average precision (scikit-learn's definition: Σ (R_k − R_{k−1}) P_k over distinct
/// thresholds, ties taken together) of `positives` against `negatives`, higher = positive.
pub fn average_precision(positives: &[f64], negatives: &[f64]) -> Result<f64> {
    check("positive", positives)?;
    check("negative", negatives)?;
    let mut all: Vec<(f64, bool)> = positives
        .iter()
        .map(|&s| (s, true))
        .chain(negatives.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total = positives.len() as f64;
    let (mut tp, mut fp, mut ap, mut prev_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            if all[j].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            j += 1;
        }
        let recall = tp / total;
        ap += (recall - prev_recall) * tp / (tp + fp);
        prev_recall = recall;
        i = j;
    }
    Ok(ap)
}

pub fn ood_metrics(id: &[f64], ood: &[f64]) -> Result<OodMetrics> {
    let neg = |v: &[f64]| v.iter().map(|s| -s).collect::<Vec<_>>();
    Ok(OodMetrics {
        auroc: auroc(id, ood)?,
        fpr95: fpr_at_tpr(id, ood, 0.95)?,
        aupr_in: average_precision(id, ood)?,
        aupr_out: average_precision(&neg(ood), &neg(id))?,
    })
}

/// Top-1 accuracy of predicted against true labels.
pub fn accuracy(predicted: &[usize], truth: &[usize]) -> Result<f64> {
    if predicted.len() != truth.len() || truth.is_empty() {
        return Err(Error::Input(
            "accuracy needs equally many, and some, predictions and labels".into(),
        ));
    }
    Ok(predicted.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / truth.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn calibration_keeps_the_asked_share_on_the_asked_score() {
        use crate::ood::score::{ScoreKind, ScoreParams};
        // τ 1, c 1, crop 0: ΔE of [s, 0] is ln(e^s + 1) − ln 2 and MaxLogit is s.
        let p = ScoreParams {
            tau: 1.0,
            ..Default::default()
        };
        let sims: Vec<Vec<f64>> = (1..=20).map(|i| vec![i as f64 / 20.0, 0.0]).collect();
        let t = calibrate(&sims, &p, ScoreKind::MaxLogit, 0.95, "twenty".into()).unwrap();
        // The 19th largest of 0.05..1.00 is 0.10; 19 of 20 are at or above it.
        close(t.value, 0.10);
        assert_eq!(
            (t.score, t.tpr, t.calibration.as_str()),
            (ScoreKind::MaxLogit, 0.95, "twenty")
        );
        let d = calibrate(&sims, &p, ScoreKind::DeltaEnergy, 0.95, String::new()).unwrap();
        close(d.value, (0.1f64.exp() + 1.0).ln() - 2f64.ln());
        assert!(calibrate(&[], &p, ScoreKind::Energy, 0.95, String::new()).is_err());
    }

    #[test]
    fn hand_worked_example() {
        // ID 0.9 0.8 0.4; OOD 0.7 0.4 0.1. Pairs ID>OOD: 0.9 beats 3, 0.8 beats 3,
        // 0.4 beats 0.1 and ties 0.4 → (3 + 3 + 1.5) / 9.
        let id = [0.9, 0.8, 0.4];
        let ood = [0.7, 0.4, 0.1];
        close(auroc(&id, &ood).unwrap(), 7.5 / 9.0);
        // 95% of 3 ID → keep all 3 → t = 0.4; OOD ≥ 0.4: 0.7 and 0.4 → 2/3.
        close(threshold_at_tpr(&id, 0.95).unwrap(), 0.4);
        close(fpr_at_tpr(&id, &ood, 0.95).unwrap(), 2.0 / 3.0);
        // Descending: 0.9(ID) P=1 R=1/3; 0.8(ID) P=1 R=2/3; 0.7(OOD); {0.4 ID, 0.4 OOD} tp=3 fp=2
        // R=1 P=3/5; 0.1. AP = 1/3 + 1/3 + 1/3·3/5 = 0.8666…
        close(
            average_precision(&id, &ood).unwrap(),
            1.0 / 3.0 + 1.0 / 3.0 + 0.2,
        );
        // OOD positive on negated scores: -0.1(O) P=1 R=1/3; {-0.4 I, -0.4 O} tp=2 fp=1 R=2/3
        // P=2/3; -0.7(O) tp=3 fp=1 R=1 P=3/4. AP = 1/3 + 1/3·2/3 + 1/3·3/4.
        let m = ood_metrics(&id, &ood).unwrap();
        close(m.aupr_out, 1.0 / 3.0 + 2.0 / 9.0 + 0.25);
    }

    #[test]
    fn perfect_random_and_inverted_separation() {
        let id: Vec<f64> = (0..100).map(|i| 100.0 + i as f64).collect();
        let ood: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let m = ood_metrics(&id, &ood).unwrap();
        assert_eq!(
            (m.auroc, m.fpr95, m.aupr_in, m.aupr_out),
            (1.0, 0.0, 1.0, 1.0)
        );
        let inv = ood_metrics(&ood, &id).unwrap();
        assert_eq!((inv.auroc, inv.fpr95), (0.0, 1.0));
        // Identical distributions: AUROC exactly ½.
        let same = [1.0, 2.0, 3.0, 4.0];
        close(auroc(&same, &same).unwrap(), 0.5);
    }

    #[test]
    fn threshold_keeps_95_percent_of_id() {
        let id: Vec<f64> = (1..=20).map(f64::from).collect();
        // 95% of 20 = 19 kept: the 19th largest is 2.
        close(threshold_at_tpr(&id, 0.95).unwrap(), 2.0);
        let kept = id.iter().filter(|&&s| s >= 2.0).count();
        assert_eq!(kept, 19);
        close(threshold_at_tpr(&id, 1.0).unwrap(), 1.0);
        let ood = [0.0, 1.5, 2.0, 30.0];
        close(fpr_at_tpr(&id, &ood, 0.95).unwrap(), 0.5);
    }

    #[test]
    fn errors_not_panics() {
        assert!(auroc(&[], &[1.0]).is_err());
        assert!(auroc(&[1.0], &[]).is_err());
        assert!(auroc(&[f64::NAN], &[1.0]).is_err());
        assert!(threshold_at_tpr(&[1.0], 0.0).is_err());
        assert!(threshold_at_tpr(&[1.0], 1.5).is_err());
        assert!(accuracy(&[1], &[]).is_err());
        close(accuracy(&[1, 2, 3, 4], &[1, 2, 0, 4]).unwrap(), 0.75);
    }
}
