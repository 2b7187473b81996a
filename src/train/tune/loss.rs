//! The EBM objective of `docs/METHOD.md`: `L = CE(s/τ, y) − λ·mean(ΔE_img)`, with the feature
//! mask of step 2. The mask is a step function of the features, so it is a constant of the graph,
//! made on the host from the unit text features read back: the one read a step needs before its
//! backward pass (asynchronous in the browser, see [`super::Tuner`]).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, TensorData};

use crate::clip::embed::normalise_rows;
use crate::error::{Error, Result};

/// Which image-feature elements the mask zeroes, by `P = f̂ ⊙ ĝ_c`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaskRule {
    /// `P_j > 0`: removes everything that supports class c (the default).
    Positive,
    /// `P_j < 0`: the paper's "masked ZS CLIP(+)" variant.
    Negative,
    /// The largest `ρ·D` elements of P.
    TopFraction(f64),
}

impl std::str::FromStr for MaskRule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "positive" => Ok(Self::Positive),
            "negative" => Ok(Self::Negative),
            other => match other.strip_prefix("top-fraction") {
                Some(rest) => {
                    let rho = rest.trim_start_matches([':', '=']);
                    let rho: f64 = if rho.is_empty() {
                        0.1
                    } else {
                        rho.parse().map_err(|_| {
                            Error::Input(format!("bad fraction in mask rule `{other}`"))
                        })?
                    };
                    if !(rho > 0.0 && rho <= 1.0) {
                        return Err(Error::Input(format!(
                            "mask fraction must be in (0, 1], got {rho}"
                        )));
                    }
                    Ok(Self::TopFraction(rho))
                }
                None => Err(Error::Input(format!(
                    "unknown mask rule `{other}` (positive, negative or top-fraction[:ρ])"
                ))),
            },
        }
    }
}

impl std::fmt::Display for MaskRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Positive => f.write_str("positive"),
            Self::Negative => f.write_str("negative"),
            Self::TopFraction(r) => write!(f, "top-fraction:{r}"),
        }
    }
}

/// The EBM objective's settings.
#[derive(Clone, Copy, Debug)]
pub struct EbmParams {
    /// Temperature of the logits and the energies (0.01 ≙ CLIP's logit scale 100).
    pub tau: f64,
    /// Weight of ΔEnergy in the loss; 0 is CoOp.
    pub lambda: f64,
    pub mask: MaskRule,
    /// Mask by the label (true) or the predicted class (false).
    pub mask_by_label: bool,
}

impl Default for EbmParams {
    fn default() -> Self {
        Self {
            tau: 0.01,
            lambda: 1.0,
            mask: MaskRule::Positive,
            mask_by_label: false,
        }
    }
}

/// The batch loss and its parts, as numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LossParts {
    pub loss: f64,
    pub cross_entropy: f64,
    /// Mean ΔE_img over the batch.
    pub delta_energy: f64,
}

impl LossParts {
    /// From the three values of [`loss_tensors`]' parts.
    pub fn of(values: &[f32]) -> Result<Self> {
        match values {
            [loss, ce, de] => Ok(Self {
                loss: f64::from(*loss),
                cross_entropy: f64::from(*ce),
                delta_energy: f64::from(*de),
            }),
            _ => Err(Error::Input(format!(
                "loss parts: {} values, expected 3",
                values.len()
            ))),
        }
    }
}

/// `log Σ_k exp(x_k)` per row, `[B, K]` → `[B, 1]`, with the (constant) row maximum factored out.
fn row_lse(x: Tensor<2>) -> Tensor<2> {
    let m = x.clone().max_dim(1).detach();
    m.clone() + (x - m).exp().sum_dim(1).log()
}

/// The 0/1 mask `[B, D]` of METHOD.md step 2, from unit image rows and unit class rows.
pub fn feature_mask(f: &[Vec<f32>], g: &[Vec<f32>], classes: &[usize], rule: MaskRule) -> Vec<f32> {
    let mut out = Vec::with_capacity(f.len() * f.first().map_or(0, Vec::len));
    for (fi, &c) in f.iter().zip(classes) {
        let p: Vec<f32> = fi.iter().zip(&g[c]).map(|(a, b)| a * b).collect();
        match rule {
            MaskRule::Positive => out.extend(p.iter().map(|&v| if v > 0.0 { 0.0 } else { 1.0 })),
            MaskRule::Negative => out.extend(p.iter().map(|&v| if v < 0.0 { 0.0 } else { 1.0 })),
            MaskRule::TopFraction(rho) => {
                let n = ((rho * p.len() as f64).ceil() as usize).min(p.len());
                let mut m = vec![1.0; p.len()];
                let mut idx: Vec<usize> = (0..p.len()).collect();
                idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                idx.iter().take(n).for_each(|&j| m[j] = 0.0);
                out.extend(m);
            }
        }
    }
    out
}

/// Which class each image's mask is made for: its label, or the class its unit features `f` are
/// most similar to among the unit text rows `g` (ties: the lowest index).
pub fn mask_classes(f: &[Vec<f32>], g: &[Vec<f32>], labels: &[usize], p: &EbmParams) -> Vec<usize> {
    if p.mask_by_label {
        return labels.to_vec();
    }
    crate::ood::score::cosine_similarities(f, g)
        .iter()
        .map(|s| crate::ood::score::top_indices(s, 1)[0])
        .collect()
}

fn check_batch(f: &[Vec<f32>], labels: &[usize], k: usize, d: usize) -> Result<()> {
    if f.is_empty() || labels.len() != f.len() || f.iter().any(|r| r.len() != d) {
        return Err(Error::Input(format!(
            "a batch needs labelled feature rows of width {d}"
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= k) {
        return Err(Error::Input(format!("label {bad} outside {k} classes")));
    }
    Ok(())
}

/// The loss `[1]` and its parts `[3]` (loss, CE, mean ΔE) as tensors, for unit image rows `f`
/// (constants), text features `g` `[K, D]` (differentiable, not yet normalised) and the mask
/// `[B × D]` of [`feature_mask`] for them.
pub fn loss_tensors(
    f: &[Vec<f32>],
    g: Tensor<2>,
    labels: &[usize],
    mask: Vec<f32>,
    p: &EbmParams,
) -> Result<(Tensor<1>, Tensor<1>)> {
    let b = f.len();
    let [k, d] = g.dims();
    check_batch(f, labels, k, d)?;
    if mask.len() != b * d {
        return Err(Error::Input(format!(
            "a mask of {} values for {b} rows of width {d}",
            mask.len()
        )));
    }
    let device = g.device();
    let g = normalise_rows(g);
    let ft = Tensor::<2>::from_data(TensorData::new(f.concat(), [b, d]), &device);
    let inv_tau = 1.0 / p.tau;
    let logits = ft.clone().matmul(g.clone().transpose()) * inv_tau;
    let mut onehot = vec![0f32; b * k];
    labels
        .iter()
        .enumerate()
        .for_each(|(i, &l)| onehot[i * k + l] = 1.0);
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, k]), &device);
    let ce = (log_softmax(logits.clone(), 1) * onehot).sum().neg() / b as f64;
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, d]), &device);
    let masked = normalise_rows(ft * mask);
    let s_masked = masked.matmul(g.transpose()) * inv_tau;
    let delta = (row_lse(logits) - row_lse(s_masked)).mean();
    let loss = ce.clone() - delta.clone() * p.lambda;
    let parts = Tensor::cat(vec![loss.clone(), ce, delta], 0).detach();
    Ok((loss, parts))
}

/// The loss tensor and its parts, read back at once (natively; the browser goes through
/// [`super::Tuner`], which reads asynchronously).
#[cfg(not(target_family = "wasm"))]
pub fn ebm_loss(
    f: &[Vec<f32>],
    g: Tensor<2>,
    labels: &[usize],
    p: &EbmParams,
) -> Result<(Tensor<1>, LossParts)> {
    use crate::device::{read_f32, rows};
    let [k, d] = g.dims();
    check_batch(f, labels, k, d)?;
    let unit = rows(read_f32(normalise_rows(g.clone()).detach())?, d);
    let mask = feature_mask(f, &unit, &mask_classes(f, &unit, labels, p), p.mask);
    let (loss, parts) = loss_tensors(f, g, labels, mask, p)?;
    Ok((loss, LossParts::of(&read_f32(parts)?)?))
}
