//! The evaluation protocol of METHOD.md on cosine similarities: ID accuracy, accuracy under
//! covariate shift, and for every score and every OOD set AUROC, FPR@95TPR, AUPR-In, AUPR-Out.
//! Also the score histograms of docs/study/, as self-contained SVG.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::ood::metrics::{accuracy, ood_metrics, OodMetrics};
use crate::ood::score::{scores, top_indices, ScoreKind, ScoreParams};

/// Each score of each image: `[score][image]`, scores in [`ScoreKind::ALL`]'s order.
pub fn score_table(similarities: &[Vec<f64>], p: &ScoreParams) -> Result<[Vec<f64>; 4]> {
    let mut out: [Vec<f64>; 4] = Default::default();
    for s in similarities {
        let sc = scores(s, p)?;
        for (col, kind) in out.iter_mut().zip(ScoreKind::ALL) {
            col.push(kind.of(&sc));
        }
    }
    Ok(out)
}

/// Top-1 accuracy of the similarities against labels.
pub fn top1(similarities: &[Vec<f64>], labels: &[usize]) -> Result<f64> {
    let predicted: Vec<usize> = similarities.iter().map(|s| top_indices(s, 1)[0]).collect();
    accuracy(&predicted, labels)
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub id_accuracy: f64,
    pub covariate_accuracy: Option<f64>,
    /// score → OOD set name → metrics.
    pub scores: BTreeMap<ScoreKind, BTreeMap<String, OodMetrics>>,
    /// The score settings these numbers were computed with.
    pub settings: ScoreParams,
}

/// A labelled set of similarities.
pub struct Labelled<'a> {
    pub similarities: &'a [Vec<f64>],
    pub labels: &'a [usize],
}

pub fn evaluate(
    id: &Labelled,
    covariate: Option<&Labelled>,
    ood: &[(String, &[Vec<f64>])],
    p: &ScoreParams,
) -> Result<Report> {
    let id_scores = score_table(id.similarities, p)?;
    let mut table: BTreeMap<ScoreKind, BTreeMap<String, OodMetrics>> = BTreeMap::new();
    for (name, sims) in ood {
        let ood_scores = score_table(sims, p)?;
        for (i, score) in ScoreKind::ALL.into_iter().enumerate() {
            table
                .entry(score)
                .or_default()
                .insert(name.clone(), ood_metrics(&id_scores[i], &ood_scores[i])?);
        }
    }
    Ok(Report {
        id_accuracy: top1(id.similarities, id.labels)?,
        covariate_accuracy: covariate
            .map(|c| top1(c.similarities, c.labels))
            .transpose()?,
        scores: table,
        settings: *p,
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Overlaid normalised histograms (fraction of each set per bin) of ID and OOD scores.
pub fn histogram_svg(title: &str, id: &[f64], ood: &[(String, Vec<f64>)]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 360.0;
    const BINS: usize = 40;
    let (ml, mr, mt, mb) = (50.0, 20.0, 40.0, 50.0);
    let all = id.iter().chain(ood.iter().flat_map(|(_, v)| v.iter()));
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let hist = |v: &[f64]| -> Vec<f64> {
        let mut h = vec![0.0; BINS];
        for &x in v {
            let b = (((x - lo) / (hi - lo)) * BINS as f64).floor() as usize;
            h[b.min(BINS - 1)] += 1.0;
        }
        let n = v.len().max(1) as f64;
        h.iter().map(|c| c / n).collect()
    };
    let mut sets = vec![("ID".to_string(), hist(id))];
    sets.extend(ood.iter().map(|(n, v)| (n.clone(), hist(v))));
    let top = sets
        .iter()
        .flat_map(|(_, h)| h.iter().copied())
        .fold(0.0, f64::max)
        .max(1e-9);
    let colours = [
        "#2b6cb0", "#c53030", "#dd6b20", "#2f855a", "#6b46c1", "#718096",
    ];
    let pw = W - ml - mr;
    let ph = H - mt - mb;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" \
         height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        W / 2.0,
        escape(title)
    );
    for (i, (name, h)) in sets.iter().enumerate() {
        let c = colours[i % colours.len()];
        let mut d = format!("M{ml:.1},{:.1}", mt + ph);
        for (b, v) in h.iter().enumerate() {
            let x0 = ml + pw * b as f64 / BINS as f64;
            let x1 = ml + pw * (b + 1) as f64 / BINS as f64;
            let y = mt + ph - ph * v / top;
            d.push_str(&format!(" L{x0:.1},{y:.1} L{x1:.1},{y:.1}"));
        }
        d.push_str(&format!(" L{:.1},{:.1} Z", ml + pw, mt + ph));
        svg.push_str(&format!(
            "<path d=\"{d}\" fill=\"{c}\" fill-opacity=\"0.25\" stroke=\"{c}\" stroke-width=\"1.5\"/>\n"
        ));
        let ly = mt + 16.0 * i as f64 + 8.0;
        svg.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\" fill-opacity=\"0.6\"/>\
             <text x=\"{}\" y=\"{}\">{} (n={})</text>\n",
            W - mr - 170.0,
            ly - 10.0,
            W - mr - 152.0,
            ly,
            escape(name),
            if i == 0 { id.len() } else { ood[i - 1].1.len() }
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"{ml}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"black\"/>\n\
         <text x=\"{ml}\" y=\"{ty}\" text-anchor=\"start\">{lo:.3}</text>\
         <text x=\"{x2}\" y=\"{ty}\" text-anchor=\"end\">{hi:.3}</text>\
         <text x=\"{mid}\" y=\"{ty2}\" text-anchor=\"middle\">score (higher = more in-distribution)</text>\n\
         <text x=\"14\" y=\"{ym}\" transform=\"rotate(-90 14 {ym})\" text-anchor=\"middle\">fraction of set</text>\n</svg>\n",
        y = mt + ph,
        x2 = ml + pw,
        ty = mt + ph + 16.0,
        ty2 = mt + ph + 36.0,
        mid = ml + pw / 2.0,
        ym = mt + ph / 2.0,
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_matches_hand_computed_metrics() {
        // Two classes, τ = 1 so the numbers stay readable. ID images are confident and right
        // except the last (wrong label); OOD images are flat.
        let p = ScoreParams {
            tau: 1.0,
            ..Default::default()
        };
        let id = vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![0.7, 0.3]];
        let labels = [0, 1, 1];
        let ood = vec![vec![0.5, 0.5], vec![0.45, 0.55]];
        let r = evaluate(
            &Labelled {
                similarities: &id,
                labels: &labels,
            },
            None,
            &[("flat".into(), &ood)],
            &p,
        )
        .unwrap();
        assert!((r.id_accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.covariate_accuracy, None);
        // MaxLogit (τ 1) = max s: ID 0.9, 0.8, 0.7 all above OOD 0.5, 0.55 → AUROC 1, FPR 0.
        let m = r.scores[&ScoreKind::MaxLogit]["flat"];
        assert_eq!(
            (m.auroc, m.fpr95, m.aupr_in, m.aupr_out),
            (1.0, 0.0, 1.0, 1.0)
        );
        // ΔE (c 1, v 0) = LSE(s) − LSE(s'): for [0.5, 0.5] it is ln(2e^0.5) − ln(1 + e^0.5).
        let de_flat = (2.0f64 * 0.5f64.exp()).ln() - (1.0 + 0.5f64.exp()).ln();
        let t = score_table(&ood, &p).unwrap();
        assert!((t[0][0] - de_flat).abs() < 1e-12);
        assert_eq!(r.scores.len(), 4);
    }

    #[test]
    fn histogram_is_valid_svg_with_every_set() {
        let svg = histogram_svg(
            "ΔE <test>",
            &[1.0, 2.0, 2.5],
            &[("dtd".into(), vec![0.0, 0.5]), ("mnist".into(), vec![])],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("&lt;test&gt;"));
        assert_eq!(svg.matches("<path").count(), 3);
        assert!(svg.contains("dtd (n=2)") && svg.contains("mnist (n=0)"));
    }
}
