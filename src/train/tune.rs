//! Prompt tuning: CoOp context vectors learned with the EBM objective of
//! `docs/METHOD.md` (λ = 0 is plain CoOp).
//!
//! Both towers are frozen. Image features are computed once by the caller and passed in as unit
//! rows; each step runs the text tower on the prompts `[SOT] ctx <class>. [EOT]` and
//! differentiates the loss with respect to the context only (the model lives on a plain device,
//! the context on its autodiff twin, so the weights are constants of the graph).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::clip::embed::normalise_rows;
use crate::clip::model::Clip;
use crate::clip::tokenizer::ClipTokenizer;
use crate::device::read_f32;
use crate::error::{Error, Result};
use crate::rng::Rng;

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
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossParts {
    pub loss: f64,
    pub cross_entropy: f64,
    /// Mean ΔE_img over the batch.
    pub delta_energy: f64,
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

/// `L = CE(s/τ, y) − λ·mean(ΔE_img)` for unit image rows `f` (constants) and text features `g`
/// `[K, D]` (differentiable, not yet normalised). Returns the loss tensor and its parts.
pub fn ebm_loss(
    f: &[Vec<f32>],
    g: Tensor<2>,
    labels: &[usize],
    p: &EbmParams,
) -> Result<(Tensor<1>, LossParts)> {
    let b = f.len();
    let [k, d] = g.dims();
    if b == 0 || labels.len() != b || f.iter().any(|r| r.len() != d) {
        return Err(Error::Input(format!(
            "a batch needs labelled feature rows of width {d}"
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= k) {
        return Err(Error::Input(format!("label {bad} outside {k} classes")));
    }
    let device = g.device();
    let g = normalise_rows(g);
    let fv: Vec<f32> = f.concat();
    let ft = Tensor::<2>::from_data(TensorData::new(fv, [b, d]), &device);
    let inv_tau = 1.0 / p.tau;
    let s = ft.clone().matmul(g.clone().transpose());
    let logits = s.clone() * inv_tau;
    let mut onehot = vec![0f32; b * k];
    labels
        .iter()
        .enumerate()
        .for_each(|(i, &l)| onehot[i * k + l] = 1.0);
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, k]), &device);
    let ce = (log_softmax(logits.clone(), 1) * onehot).sum().neg() / b as f64;

    // The mask is a step function of the features: a constant of the graph.
    let g_host = crate::device::rows(read_f32(g.clone().detach())?, d);
    let which: Vec<usize> = if p.mask_by_label {
        labels.to_vec()
    } else {
        let s_host = crate::device::rows(read_f32(s.detach())?, k);
        s_host
            .iter()
            .map(|r| {
                let r: Vec<f64> = r.iter().map(|&v| v as f64).collect();
                crate::ood::score::top_indices(&r, 1)[0]
            })
            .collect()
    };
    let mask = feature_mask(f, &g_host, &which, p.mask);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, d]), &device);
    let masked = normalise_rows(ft * mask);
    let s_masked = masked.matmul(g.transpose()) * inv_tau;
    let delta = (row_lse(logits) - row_lse(s_masked)).mean();
    let loss = ce.clone() - delta.clone() * p.lambda;
    let parts = LossParts {
        loss: f64::from(read_f32(loss.clone().detach())?[0]),
        cross_entropy: f64::from(read_f32(ce.detach())?[0]),
        delta_energy: f64::from(read_f32(delta.detach())?[0]),
    };
    Ok((loss, parts))
}

#[derive(Clone, Debug)]
pub struct TuneOptions {
    pub n_ctx: usize,
    /// Initial words for the context (one token per context vector), else random N(0, 0.02).
    pub init: Option<String>,
    pub suffix: String,
    pub epochs: usize,
    pub batch: usize,
    /// SGD with momentum and a cosine schedule, CoOp's defaults.
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub ebm: EbmParams,
}

impl Default for TuneOptions {
    fn default() -> Self {
        Self {
            n_ctx: 4,
            init: Some("a photo of a".into()),
            suffix: ".".into(),
            epochs: 50,
            batch: 32,
            lr: 0.002,
            momentum: 0.9,
            weight_decay: 5e-4,
            seed: 0,
            ebm: EbmParams::default(),
        }
    }
}

/// The initial context `[n_ctx, width]`, row-major.
pub fn initial_context(
    model: &Clip,
    tokenizer: &ClipTokenizer,
    o: &TuneOptions,
) -> Result<Vec<f32>> {
    let width = model.text.width();
    match &o.init {
        Some(words) => {
            let ids = tokenizer.encode_tokens(words);
            if ids.len() != o.n_ctx {
                return Err(Error::Input(format!(
                    "--init \"{words}\" is {} tokens but --n-ctx is {} (they must match, or \
                     give no --init for a random start)",
                    ids.len(),
                    o.n_ctx
                )));
            }
            let device = model.logit_scale.device();
            let ids: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, o.n_ctx]), &device);
            read_f32(model.text.embed_tokens(ids))
        }
        None => {
            let mut rng = Rng::new(o.seed);
            Ok((0..o.n_ctx * width).map(|_| rng.normal() * 0.02).collect())
        }
    }
}

/// Per-epoch report: epoch number (from 1) and the mean loss parts over its batches.
pub type OnEpoch<'a> = dyn FnMut(usize, &LossParts) + 'a;

/// Learns context vectors on unit image features with labels; returns `[n_ctx, width]`.
pub fn tune(
    model: &Clip,
    tokenizer: &ClipTokenizer,
    classes: &[String],
    features: &[Vec<f32>],
    labels: &[usize],
    o: &TuneOptions,
    on_epoch: &mut OnEpoch,
) -> Result<Vec<f32>> {
    if features.is_empty() || features.len() != labels.len() {
        return Err(Error::Input("tuning needs labelled image features".into()));
    }
    if o.batch == 0 || o.epochs == 0 || !o.ebm.tau.is_finite() || o.ebm.tau <= 0.0 {
        return Err(Error::Input(
            "tuning needs a batch size, epochs and a positive τ".into(),
        ));
    }
    let width = model.text.width();
    let mut ctx = initial_context(model, tokenizer, o)?;
    let mut velocity = vec![0f32; ctx.len()];
    let device: Device = model.logit_scale.device().autodiff();
    let mut rng = Rng::new(o.seed.wrapping_add(1));
    let batches_per_epoch = features.len().div_ceil(o.batch);
    let total = batches_per_epoch * o.epochs;
    let mut step = 0;
    for epoch in 0..o.epochs {
        let mut order: Vec<usize> = (0..features.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let mut sum = LossParts::default();
        for chunk in order.chunks(o.batch) {
            let f: Vec<Vec<f32>> = chunk.iter().map(|&i| features[i].clone()).collect();
            let y: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
            let c = Tensor::<2>::from_data(TensorData::new(ctx.clone(), [o.n_ctx, width]), &device)
                .require_grad();
            let g = model.encode_with_context(tokenizer, classes, c.clone(), &o.suffix)?;
            let (loss, parts) = ebm_loss(&f, g, &y, &o.ebm)?;
            let grads = loss.backward();
            let grad = c
                .grad(&grads)
                .ok_or_else(|| Error::Device("no gradient reached the context".into()))?;
            let grad = read_f32(grad)?;
            let lr = o.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            for ((x, v), g) in ctx.iter_mut().zip(velocity.iter_mut()).zip(grad) {
                *v = (o.momentum as f32) * *v + g + (o.weight_decay as f32) * *x;
                *x -= lr as f32 * *v;
            }
            step += 1;
            sum.loss += parts.loss;
            sum.cross_entropy += parts.cross_entropy;
            sum.delta_energy += parts.delta_energy;
        }
        let n = batches_per_epoch as f64;
        on_epoch(
            epoch + 1,
            &LossParts {
                loss: sum.loss / n,
                cross_entropy: sum.cross_entropy / n,
                delta_energy: sum.delta_energy / n,
            },
        );
    }
    Ok(ctx)
}
