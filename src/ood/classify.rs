//! One image's verdict from its cosine similarities: label, top-k probabilities, the four
//! scores, the OOD flag, and what the teaching view draws (similarities before and after the
//! crop, the two energies). Pure arithmetic, shared by the browser and the tests.

use serde::Serialize;

use crate::error::Result;
use crate::ood::score::{scores, ScoreParams, Threshold};

// Serialised for the browser's API, whose keys are camelCase throughout.

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranked {
    pub label: String,
    pub probability: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreSet {
    pub delta_energy: f64,
    pub energy: f64,
    pub mcm: f64,
    pub max_logit: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Classification {
    pub label: String,
    pub label_index: usize,
    pub top: Vec<Ranked>,
    pub scores: ScoreSet,
    /// Whether the threshold in force flags it (None without a threshold).
    pub ood: Option<bool>,
    pub similarities: Vec<f64>,
    pub cropped: Vec<f64>,
    /// LSE(s/τ) and LSE(s′/τ): the negative energies before and after the crop.
    pub energy_before: f64,
    pub energy_after: f64,
    pub tau: f64,
    pub c: usize,
}

pub fn classify(
    similarities: Vec<f64>,
    classes: &[String],
    params: &ScoreParams,
    threshold: Option<&Threshold>,
    top_k: usize,
) -> Result<Classification> {
    let r = scores(&similarities, params)?;
    // softmax(s/τ): the probabilities CLIP's zero-shot head reports.
    let m = similarities
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = similarities
        .iter()
        .map(|s| ((s - m) / params.tau).exp())
        .collect();
    let total: f64 = exps.iter().sum();
    let mut order: Vec<usize> = (0..similarities.len()).collect();
    order.sort_by(|&a, &b| similarities[b].total_cmp(&similarities[a]));
    let top = order
        .iter()
        .take(top_k.max(1))
        .map(|&i| Ranked {
            label: classes[i].clone(),
            probability: exps[i] / total,
        })
        .collect();
    Ok(Classification {
        label: classes[r.label].clone(),
        label_index: r.label,
        top,
        scores: ScoreSet {
            delta_energy: r.delta_energy,
            energy: r.energy,
            mcm: r.mcm,
            max_logit: r.max_logit,
        },
        ood: threshold.map(|t| t.is_ood(&r)),
        similarities,
        cropped: r.cropped,
        energy_before: r.energy,
        energy_after: r.energy_cropped,
        tau: params.tau,
        c: params.c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ood::score::ScoreKind;

    fn on(score: ScoreKind, value: f64) -> Threshold {
        Threshold {
            score,
            value,
            tpr: 0.95,
            calibration: String::new(),
        }
    }

    #[test]
    fn verdict_from_the_worked_example() {
        let classes: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let r = classify(
            vec![0.30, 0.22, 0.20, 0.18],
            &classes,
            &Default::default(),
            Some(&on(ScoreKind::DeltaEnergy, 5.0)),
            3,
        )
        .unwrap();
        assert_eq!(r.label, "a");
        assert_eq!(r.top.len(), 3);
        assert_eq!(r.top[1].label, "b");
        assert!((r.scores.delta_energy - 7.857455).abs() < 5e-6);
        assert!((r.energy_before - r.energy_after - r.scores.delta_energy).abs() < 1e-12);
        assert_eq!(r.ood, Some(false));
        // p_a = 1 / (1 + e^-8 + e^-10 + e^-12)
        let p = 1.0 / (1.0 + (-8f64).exp() + (-10f64).exp() + (-12f64).exp());
        assert!((r.top[0].probability - p).abs() < 1e-12);
        let ood = classify(
            vec![0.23, 0.22, 0.21, 0.20],
            &classes,
            &Default::default(),
            Some(&on(ScoreKind::DeltaEnergy, 5.0)),
            9,
        )
        .unwrap();
        assert_eq!((ood.ood, ood.top.len()), (Some(true), 4));
        // A threshold on another score judges by that score: MCM of the flat case is ~0.26.
        let mcm = |v| {
            classify(
                vec![0.23, 0.22, 0.21, 0.20],
                &classes,
                &Default::default(),
                Some(&on(ScoreKind::Mcm, v)),
                1,
            )
            .unwrap()
            .ood
        };
        assert_eq!((mcm(0.2), mcm(0.3)), (Some(false), Some(true)));
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["scores"]["deltaEnergy"].is_number() && json["energyBefore"].is_number());
        let none = classify(vec![0.1], &classes[..1], &Default::default(), None, 5).unwrap();
        assert_eq!(none.ood, None);
        assert!(classify(vec![], &[], &Default::default(), None, 5).is_err());
    }
}
