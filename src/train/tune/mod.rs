//! Prompt tuning: CoOp context vectors learned with the EBM objective of
//! `docs/METHOD.md` (λ = 0 is plain CoOp).
//!
//! Both towers are frozen. Image features are computed once by the caller and passed in as unit
//! rows; each step runs the text tower on the prompts `[SOT] ctx <class>. [EOT]` and
//! differentiates the loss with respect to the context only (the model lives on a plain device,
//! the context on its autodiff twin, so the weights are constants of the graph).

use burn::tensor::{Int, Tensor, TensorData};

use crate::clip::embed::normalise_rows;
use crate::clip::model::Clip;
use crate::clip::tokenizer::ClipTokenizer;
use crate::error::{Error, Result};
use crate::rng::Rng;

mod loss;
pub mod plan;

#[cfg(not(target_family = "wasm"))]
pub use loss::ebm_loss;
pub use loss::{feature_mask, loss_tensors, mask_classes, EbmParams, LossParts, MaskRule};

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

/// The initial context `[n_ctx, width]` as a tensor to read back: the token embeddings of
/// `init`, or random N(0, 0.02) values.
pub fn initial_context_tensor(
    model: &Clip,
    tokenizer: &ClipTokenizer,
    o: &TuneOptions,
) -> Result<Tensor<2>> {
    let width = model.text.width();
    let device = model.logit_scale.device();
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
            let ids: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, o.n_ctx]), &device);
            Ok(model.text.embed_tokens(ids).squeeze_dim(0))
        }
        None => {
            let mut rng = Rng::new(o.seed);
            let v: Vec<f32> = (0..o.n_ctx * width).map(|_| rng.normal() * 0.02).collect();
            Ok(Tensor::from_data(
                TensorData::new(v, [o.n_ctx, width]),
                &device,
            ))
        }
    }
}

/// [`initial_context_tensor`] read back at once (native).
#[cfg(not(target_family = "wasm"))]
pub fn initial_context(
    model: &Clip,
    tokenizer: &ClipTokenizer,
    o: &TuneOptions,
) -> Result<Vec<f32>> {
    crate::device::read_f32(initial_context_tensor(model, tokenizer, o)?)
}

/// A step between its forward pass and its backward pass: the autodiff graph waits here while
/// the unit text features are read back.
struct Pending {
    leaf: Tensor<2>,
    text: Tensor<2>,
    batch: Vec<usize>,
}

/// Prompt tuning one step at a time, without reading anything back itself, so the same code
/// runs natively (reads that block) and in the browser (reads that are awaited): each step
/// hands out two tensors to read, the batch's unit text features after the forward pass
/// ([`Tuner::forward`]) and the gradient with the loss after the backward pass
/// ([`Tuner::backward`]), and takes their values back ([`Tuner::update`]). The context
/// follows SGD with momentum and a cosine schedule (CoOp's), over shuffled batches per epoch.
pub struct Tuner {
    classes: Vec<String>,
    features: Vec<Vec<f32>>,
    labels: Vec<usize>,
    o: TuneOptions,
    width: usize,
    ctx: Vec<f32>,
    velocity: Vec<f32>,
    rng: Rng,
    order: Vec<usize>,
    /// Batches done in this epoch, epochs done, steps done.
    batch_at: usize,
    epoch: usize,
    step: usize,
    sum: LossParts,
    pending: Option<Pending>,
}

/// What a finished step reports: its loss, and the epoch's mean loss parts when it ended one.
#[derive(Clone, Copy, Debug)]
pub struct Stepped {
    pub loss: LossParts,
    /// (epoch from 1, mean loss parts over its batches).
    pub epoch: Option<(usize, LossParts)>,
}

impl Tuner {
    /// `features` are unit image rows with their `labels`; `context` the initial context's
    /// values ([`initial_context_tensor`], read back).
    pub fn new(
        model: &Clip,
        classes: &[String],
        features: Vec<Vec<f32>>,
        labels: Vec<usize>,
        context: Vec<f32>,
        o: &TuneOptions,
    ) -> Result<Self> {
        if features.is_empty() || features.len() != labels.len() {
            return Err(Error::Input("tuning needs labelled image features".into()));
        }
        if o.batch == 0 || o.epochs == 0 || !o.ebm.tau.is_finite() || o.ebm.tau <= 0.0 {
            return Err(Error::Input(
                "tuning needs a batch size, epochs and a positive τ".into(),
            ));
        }
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(Error::Input(format!(
                "the learning rate must be positive, got {}",
                o.lr
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l >= classes.len()) {
            return Err(Error::Input(format!(
                "label {bad} outside {} classes",
                classes.len()
            )));
        }
        let width = model.text.width();
        if context.len() != o.n_ctx * width {
            return Err(Error::Input(format!(
                "context has {} values, expected {} × {width}",
                context.len(),
                o.n_ctx
            )));
        }
        let mut t = Self {
            classes: classes.to_vec(),
            velocity: vec![0.0; context.len()],
            ctx: context,
            order: Vec::new(),
            features,
            labels,
            o: o.clone(),
            width,
            rng: Rng::new(o.seed.wrapping_add(1)),
            batch_at: 0,
            epoch: 0,
            step: 0,
            sum: LossParts::default(),
            pending: None,
        };
        t.shuffle();
        Ok(t)
    }

    fn shuffle(&mut self) {
        self.order = (0..self.features.len()).collect();
        for i in (1..self.order.len()).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            self.order.swap(i, j);
        }
    }

    fn batches_per_epoch(&self) -> usize {
        self.features.len().div_ceil(self.o.batch)
    }

    /// (steps done, steps in all).
    pub fn progress(&self) -> (usize, usize) {
        (self.step, self.batches_per_epoch() * self.o.epochs)
    }

    /// The context as it stands, `[n_ctx, width]` row-major.
    pub fn context(&self) -> &[f32] {
        &self.ctx
    }

    pub fn into_context(self) -> Vec<f32> {
        self.ctx
    }

    /// Starts the next step: runs the text tower with the context on the autodiff twin of the
    /// model's device and returns the unit text features `[K, D]` to read back, or None when
    /// every epoch is done.
    pub fn forward(
        &mut self,
        model: &Clip,
        tokenizer: &ClipTokenizer,
    ) -> Result<Option<Tensor<2>>> {
        if self.epoch >= self.o.epochs {
            return Ok(None);
        }
        let at = self.batch_at * self.o.batch;
        let batch = self.order[at..(at + self.o.batch).min(self.order.len())].to_vec();
        let device = model.logit_scale.device().autodiff();
        let leaf = Tensor::<2>::from_data(
            TensorData::new(self.ctx.clone(), [self.o.n_ctx, self.width]),
            &device,
        )
        .require_grad();
        let text =
            model.encode_with_context(tokenizer, &self.classes, leaf.clone(), &self.o.suffix)?;
        let unit = normalise_rows(text.clone()).detach().inner();
        self.pending = Some(Pending { leaf, text, batch });
        Ok(Some(unit))
    }

    /// Given the unit text features [`Tuner::forward`] returned, builds the mask and the loss
    /// and runs the backward pass; returns the context's gradient followed by the loss parts
    /// (`n_ctx × width + 3` values) to read back.
    pub fn backward(&mut self, unit_text: &[f32]) -> Result<Tensor<1>> {
        let Some(p) = self.pending.take() else {
            return Err(Error::Input("tuning: backward before forward".into()));
        };
        let [k, d] = p.text.dims();
        if unit_text.len() != k * d {
            return Err(Error::Input(format!(
                "tuning: {} text feature values, expected {k} × {d}",
                unit_text.len()
            )));
        }
        let g = crate::device::rows(unit_text.to_vec(), d);
        let f: Vec<Vec<f32>> = p.batch.iter().map(|&i| self.features[i].clone()).collect();
        let y: Vec<usize> = p.batch.iter().map(|&i| self.labels[i]).collect();
        let which = mask_classes(&f, &g, &y, &self.o.ebm);
        let mask = feature_mask(&f, &g, &which, self.o.ebm.mask);
        let (loss, parts) = loss_tensors(&f, p.text, &y, mask, &self.o.ebm)?;
        let grads = loss.backward();
        let grad = p
            .leaf
            .grad(&grads)
            .ok_or_else(|| Error::Device("no gradient reached the context".into()))?;
        let n = self.ctx.len();
        Ok(Tensor::cat(vec![grad.reshape([n]), parts.inner()], 0))
    }

    /// Takes the values [`Tuner::backward`] returned and moves the context one SGD step.
    pub fn update(&mut self, values: &[f32]) -> Result<Stepped> {
        let n = self.ctx.len();
        if values.len() != n + 3 {
            return Err(Error::Input(format!(
                "tuning: {} gradient values, expected {}",
                values.len(),
                n + 3
            )));
        }
        let (grad, parts) = values.split_at(n);
        let parts = LossParts::of(parts)?;
        if !parts.loss.is_finite() {
            return Err(Error::Input(format!(
                "tuning diverged at step {} (loss {}): try a smaller learning rate or λ",
                self.step + 1,
                parts.loss
            )));
        }
        let (_, total) = self.progress();
        let lr = self.o.lr
            * 0.5
            * (1.0 + (std::f64::consts::PI * self.step as f64 / total as f64).cos());
        let (momentum, decay) = (self.o.momentum as f32, self.o.weight_decay as f32);
        for ((x, v), g) in self.ctx.iter_mut().zip(self.velocity.iter_mut()).zip(grad) {
            *v = momentum * *v + g + decay * *x;
            *x -= lr as f32 * *v;
        }
        self.step += 1;
        self.batch_at += 1;
        self.sum.loss += parts.loss;
        self.sum.cross_entropy += parts.cross_entropy;
        self.sum.delta_energy += parts.delta_energy;
        let mut epoch = None;
        if self.batch_at == self.batches_per_epoch() {
            let n = self.batch_at as f64;
            let mean = LossParts {
                loss: self.sum.loss / n,
                cross_entropy: self.sum.cross_entropy / n,
                delta_energy: self.sum.delta_energy / n,
            };
            self.epoch += 1;
            self.batch_at = 0;
            self.sum = LossParts::default();
            if self.epoch < self.o.epochs {
                self.shuffle();
            }
            epoch = Some((self.epoch, mean));
        }
        Ok(Stepped { loss: parts, epoch })
    }
}

/// Per-epoch report: epoch number (from 1) and the mean loss parts over its batches.
pub type OnEpoch<'a> = dyn FnMut(usize, &LossParts) + 'a;

/// Learns context vectors on unit image features with labels; returns `[n_ctx, width]`.
/// Native: [`Tuner`] driven with blocking reads.
#[cfg(not(target_family = "wasm"))]
pub fn tune(
    model: &Clip,
    tokenizer: &ClipTokenizer,
    classes: &[String],
    features: &[Vec<f32>],
    labels: &[usize],
    o: &TuneOptions,
    on_epoch: &mut OnEpoch,
) -> Result<Vec<f32>> {
    use crate::device::read_f32;
    let start = initial_context(model, tokenizer, o)?;
    let mut t = Tuner::new(model, classes, features.to_vec(), labels.to_vec(), start, o)?;
    while let Some(text) = t.forward(model, tokenizer)? {
        let grad = t.backward(&read_f32(text)?)?;
        if let Some((epoch, mean)) = t.update(&read_f32(grad)?)?.epoch {
            on_epoch(epoch, &mean);
        }
    }
    Ok(t.into_context())
}
