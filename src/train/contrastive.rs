//! Contrastive training of a CLIP from scratch on a labelled image folder (the demo model).
//!
//! Each image is paired with a caption of its class under a template drawn per image
//! ("a blurry photo of the {}."). Classic CLIP contrasts an image with the other captions of
//! the batch; with ten classes most of those name the image's own class and would be false
//! negatives, so each image is contrasted with the captions of *every* class under its own
//! template instead: a softmax over the classes at the learned temperature. That is CLIP's
//! image→text InfoNCE with the duplicates removed, and exactly the rule zero-shot
//! classification applies at test time. The text→image half contrasts each caption with the
//! images of its group, every image of its class a positive.
//!
//! With `styles`, the template is not drawn at random: the picture is restyled (darkened, greyed,
//! …) and captioned by its style, and contrasted with every (style, class) caption, so that the
//! text tower learns to read the words before the class name ([`crate::train::styles`]).
//!
//! Optionally, synthetic outliers ([`crate::train::outliers`]) join each batch with a uniform target
//! over the classes (outlier exposure). Batches are split over data-parallel replicas, one
//! thread each (see [`Replicas`]).

use burn::module::{Module, ParamGroup, ParamId};
use burn::nn::LayerNorm;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;

use super::augment::{render, Augment, View};
use super::styles::{Style, STYLES};
use crate::clip::config::ClipConfig;
use crate::clip::embed::normalise_rows;
use crate::clip::linear::Linear;
use crate::clip::loader;
use crate::clip::model::Clip;
use crate::clip::preprocess::PreprocessConfig;
use crate::clip::tokenizer::ClipTokenizer;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Caption templates in the style of CLIP's ImageNet prompts.
pub const TEMPLATES: [&str; 12] = [
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a photo of the {}.",
    "a low resolution photo of a {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a cropped photo of the {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a pixelated photo of the {}.",
    "itap of a {}.",
];

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch: usize,
    /// Peak learning rate (AdamW), reached after `warmup` steps, then cosine to zero.
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f32,
    pub seed: u64,
    pub templates: Vec<String>,
    /// Restyle half the pictures and caption each by its style instead of `templates` (see the
    /// module's documentation).
    pub styles: bool,
    /// The views drawn of each training image.
    pub augment: Augment,
    /// Stop early (smoke tests, timing).
    pub max_steps: Option<usize>,
    /// Data-parallel replicas, one thread each (1: one model on burn's own thread pool).
    pub replicas: usize,
    /// Weight of CLIP's text→image loss against the image→text one (0 to 1).
    pub text_to_image: f64,
    /// Synthetic outliers added to each batch (see [`crate::train::outliers`]), trained towards a
    /// uniform softmax over the classes with weight `outlier_weight` (outlier exposure).
    pub outliers: usize,
    pub outlier_weight: f64,
    /// The families the outliers are drawn from (not empty when `outliers` > 0).
    pub outlier_kinds: Vec<crate::train::outliers::Kind>,
    /// Train only as many of `epochs` as fit in this many seconds, counted from the start of
    /// training (see [`fit_epochs`]).
    pub time_limit: Option<f64>,
}

impl TrainOptions {
    /// The caption templates training draws from: the styles' own with `styles`, else
    /// `templates`.
    pub fn caption_templates(&self) -> Vec<String> {
        if self.styles {
            STYLES.iter().map(|s| s.template().to_string()).collect()
        } else {
            self.templates.clone()
        }
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch: 128,
            lr: 2e-3,
            warmup: 200,
            weight_decay: 0.05,
            seed: 0,
            templates: TEMPLATES.iter().map(|t| t.to_string()).collect(),
            styles: false,
            augment: Augment::Shift,
            max_steps: None,
            replicas: 1,
            text_to_image: 0.0,
            outliers: 0,
            outlier_weight: 0.5,
            outlier_kinds: crate::train::outliers::KINDS.to_vec(),
            time_limit: None,
        }
    }
}

/// Labelled images, already at the model's input size.
pub struct TrainData<'a> {
    pub images: &'a [RgbImage],
    pub labels: &'a [usize],
    pub classes: &'a [String],
}

/// What the training loop reports.
#[derive(Clone, Debug)]
pub enum Event {
    Step {
        step: usize,
        total: usize,
        epoch: usize,
        /// Mean loss and batch accuracy since the previous report.
        loss: f64,
        accuracy: f64,
        lr: f64,
        logit_scale: f64,
    },
    EpochEnd {
        epoch: usize,
    },
    /// The time limit's decision: how many epochs the run trains, from the step time measured
    /// during warm-up.
    Fitted {
        epochs: usize,
        seconds_per_step: f64,
    },
}

/// The steps during warm-up over which a time limit measures the step time: after the first
/// few (kernel compilation, caches) and no later than the end of warm-up, because until then
/// the learning rate does not depend on the total number of steps. Deciding the epochs there
/// makes the run exactly the run with `--epochs` set to the number decided.
fn timing_window(warmup: usize) -> Option<(usize, usize)> {
    let end = warmup.min(40);
    let start = end / 3;
    (end >= 3).then_some((start, end))
}

/// How many of `epochs` fit in `limit` seconds: `elapsed` seconds have gone by at step `at`,
/// and each step takes `per_step`. At least enough epochs to reach step `at`, which has already
/// been trained.
pub fn fit_epochs(
    limit: f64,
    elapsed: f64,
    per_step: f64,
    at: usize,
    steps_per_epoch: usize,
    epochs: usize,
) -> usize {
    let floor = at.div_ceil(steps_per_epoch).max(1);
    let steps = at as f64 + ((limit - elapsed) / per_step.max(1e-9)).max(0.0);
    ((steps / steps_per_epoch as f64).floor() as usize).clamp(floor.min(epochs), epochs)
}

fn lr_at(step: usize, total: usize, o: &TrainOptions) -> f64 {
    if step < o.warmup {
        return o.lr * (step + 1) as f64 / o.warmup as f64;
    }
    let t = (step - o.warmup) as f64 / (total - o.warmup).max(1) as f64;
    o.lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// A seeded Fisher–Yates shuffle of `0..n`.
fn permutation(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Token ids of every (template, class) caption, template-major.
fn captions(
    tokenizer: &ClipTokenizer,
    templates: &[String],
    classes: &[String],
    context: usize,
) -> Result<Vec<Vec<u32>>> {
    let mut out = Vec::with_capacity(templates.len() * classes.len());
    for t in templates {
        for text in crate::clip::embed::prompts(t, classes)? {
            out.push(tokenizer.encode_with_max_len(&text, context));
        }
    }
    Ok(out)
}

/// Every one-dimensional parameter: LayerNorm gains and shifts, biases, the class embedding and
/// the logit scale.
fn vectors(m: &Clip) -> Vec<ParamId> {
    let mut ids = vec![m.logit_scale.id, m.vision.class_embedding.id];
    let ln = |l: &LayerNorm, ids: &mut Vec<ParamId>| {
        ids.push(l.gamma.id);
        ids.extend(l.beta.as_ref().map(|b| b.id));
    };
    let bias = |l: &Linear, ids: &mut Vec<ParamId>| ids.extend(l.bias.as_ref().map(|b| b.id));
    for layers in [&m.vision.layers, &m.text.layers] {
        for l in layers.iter() {
            ln(&l.layer_norm1, &mut ids);
            ln(&l.layer_norm2, &mut ids);
            let a = &l.self_attn;
            for lin in [
                &a.q_proj,
                &a.k_proj,
                &a.v_proj,
                &a.out_proj,
                &l.mlp.fc1,
                &l.mlp.fc2,
            ] {
                bias(lin, &mut ids);
            }
        }
    }
    ln(&m.vision.pre_layernorm, &mut ids);
    ln(&m.vision.post_layernorm, &mut ids);
    ln(&m.text.final_layer_norm, &mut ids);
    for lin in [
        &m.vision.patch_embedding,
        &m.vision.projection,
        &m.text.projection,
    ] {
        bias(lin, &mut ids);
    }
    ids
}

/// One training example as drawn for a step: which image, its augmentation and its template
/// (with styles, the index of its style, which the picture is rendered in).
#[derive(Clone, Copy, Debug)]
struct Sample {
    image: usize,
    view: View,
    template: usize,
}

/// A synthetic outlier as drawn for a step: the training image it may be made of, the seed of
/// its generator and the template of the captions it is contrasted with.
#[derive(Clone, Copy, Debug)]
struct Outlier {
    source: usize,
    seed: u64,
    template: usize,
}

/// What every shard of a step reads.
struct StepContext<'a> {
    data: &'a TrainData<'a>,
    cfg: &'a PreprocessConfig,
    captions: &'a [Vec<u32>],
    /// Each picture contrasted with every caption (styles), not only its template's.
    styled: bool,
    size: usize,
    /// The whole batch, over all shards: each shard's loss is divided by it, so the shards'
    /// gradients add up to the gradient of the batch mean.
    batch: usize,
    /// Weight of the text→image half of the loss (0: image→text only; 0.5: CLIP's mean of both).
    text_to_image: f64,
    /// Synthetic outliers in the whole batch, and the weight of their loss.
    outliers: usize,
    outlier_weight: f64,
    outlier_kinds: &'a [crate::train::outliers::Kind],
    device: &'a Device,
}

/// Images a caption is contrasted with in the text→image half of the loss: consecutive groups
/// of the batch, fixed so that the loss does not depend on how the batch is split over replicas.
pub const CONTRAST_GROUP: usize = 32;

/// CLIP's text→image loss, summed over captions: row `i` of `captions` is the caption of image
/// `i`, softmaxed over the images of its group of `group` consecutive images, with every image of
/// the same key counted as a positive (its class, or its class and style: ten classes put several
/// in a group).
fn text_to_image_loss(
    images: Tensor<2>,
    captions: Tensor<2>,
    keys: &[usize],
    group: usize,
    scale: Tensor<2>,
) -> Tensor<1> {
    let [b, d] = images.dims();
    let groups = b / group;
    let mut positive = vec![0f32; b * group];
    for (gi, ls) in keys.chunks(group).enumerate() {
        for (c, lc) in ls.iter().enumerate() {
            for (j, lj) in ls.iter().enumerate() {
                if lc == lj {
                    positive[(gi * group + c) * group + j] = 1.0;
                }
            }
        }
    }
    let positive = Tensor::<3>::from_data(
        TensorData::new(positive, [groups, group, group]),
        &images.device(),
    );
    let captions = captions.reshape([groups, group, d]);
    let images = images.reshape([groups, group, d]);
    let logits = captions.matmul(images.swap_dims(1, 2)) * scale.unsqueeze_dim::<3>(0);
    // −log of the probability mass on the positives; the clamp only guards an f32 underflow.
    let p = log_softmax(logits, 2).exp();
    (p * positive).sum_dim(2).clamp_min(1e-30).log().sum().neg()
}

/// Outlier exposure, summed over outliers: each row's cross-entropy against the uniform
/// distribution over the classes, `−mean_k log softmax(logits)_k`.
fn outlier_loss(logits: Tensor<2>) -> Tensor<1> {
    let k = logits.dims()[1];
    log_softmax(logits, 1).sum().neg() / k as f64
}

/// Forward and backward of one shard (its images and its outliers): its gradients, its part of
/// the batch's mean loss and how many images it got right.
fn shard_step(
    model: &Clip,
    shard: &[Sample],
    outliers: &[Outlier],
    ctx: &StepContext,
) -> Result<(GradientsParams, f64, usize)> {
    let (b, o, k, s) = (
        shard.len(),
        outliers.len(),
        ctx.data.classes.len(),
        ctx.size,
    );
    let per = 3 * s * s;
    // The captions each picture is contrasted with: its template's k, or all of them.
    let n = if ctx.styled { ctx.captions.len() } else { k };
    let candidates = |template: usize| -> Vec<i64> {
        let first = if ctx.styled { 0 } else { template * k };
        (first..first + n).map(|c| c as i64).collect()
    };
    // Where a picture's own caption is among its candidates; with styles it is (style, class).
    let own = |x: &Sample| {
        let l = ctx.data.labels[x.image];
        if ctx.styled {
            x.template * k + l
        } else {
            l
        }
    };
    let mut pixels = vec![0f32; (b + o) * per];
    let mut index = Vec::with_capacity((b + o) * n);
    let mut target = vec![0f32; b * n];
    for (i, x) in shard.iter().enumerate() {
        let img = &ctx.data.images[x.image];
        let out = &mut pixels[i * per..(i + 1) * per];
        match ctx.styled.then(|| STYLES[x.template]) {
            None | Some(Style::Plain) => render(img, &x.view, ctx.cfg, out),
            Some(style) => render(&style.apply(img), &x.view, ctx.cfg, out),
        }
        index.extend(candidates(x.template));
        target[i * n + own(x)] = 1.0;
    }
    for (i, x) in outliers.iter().enumerate() {
        let img = crate::train::outliers::synthesize(
            ctx.outlier_kinds,
            &ctx.data.images[x.source],
            s as u32,
            &mut Rng::new(x.seed),
        );
        let at = (b + i) * per;
        render(&img, &View::identity(s), ctx.cfg, &mut pixels[at..at + per]);
        index.extend(candidates(x.template));
    }
    let device = ctx.device;
    let pixels = Tensor::<4>::from_data(TensorData::new(pixels, [b + o, 3, s, s]), device);
    let index = Tensor::<2, Int>::from_data(TensorData::new(index, [b + o, n]), device);
    let target = Tensor::<2>::from_data(TensorData::new(target, [b, n]), device);

    let all = normalise_rows(model.encode_images(pixels));
    let txt = normalise_rows(model.encode_token_ids(ctx.captions)?);
    let scale = model
        .logit_scale
        .val()
        .clamp_max(100f32.ln())
        .exp()
        .reshape([1, 1]);
    let all_logits = all.clone().matmul(txt.clone().transpose()).gather(1, index) * scale.clone();
    let img = all.narrow(0, 0, b);
    let logits = all_logits.clone().narrow(0, 0, b);
    let logp = log_softmax(logits.clone(), 1);
    let mut loss = (logp * target).sum().neg() / ctx.batch as f64;
    if ctx.text_to_image > 0.0 {
        // Positives of a caption: the pictures of its class, and with styles of its style too.
        let keys: Vec<usize> = shard.iter().map(own).collect();
        let captions: Vec<i64> = shard
            .iter()
            .map(|x| (x.template * k + ctx.data.labels[x.image]) as i64)
            .collect();
        let captions = Tensor::<1, Int>::from_data(TensorData::new(captions, [b]), device);
        let t2i = text_to_image_loss(img, txt.select(0, captions), &keys, CONTRAST_GROUP, scale);
        loss = loss * (1.0 - ctx.text_to_image) + t2i * (ctx.text_to_image / ctx.batch as f64);
    }
    if o > 0 {
        let oe = outlier_loss(all_logits.narrow(0, b, o)) / ctx.outliers as f64;
        loss = loss + oe * ctx.outlier_weight;
    }
    // Reading back is free on the CPU backend (it is eager) and keeps the report exact.
    let part = f64::from(loss.clone().into_scalar::<f32>());
    let predicted = logits.argmax(1).reshape([b]).into_data();
    let correct = predicted
        .iter::<i64>()
        .zip(shard)
        .filter(|(p, x)| *p as usize % k == ctx.data.labels[x.image])
        .count();
    let grads = GradientsParams::from_grads(loss.backward(), model);
    Ok((grads, part, correct))
}

/// Data parallelism on one CPU: the batch is split into one shard per replica, each replica (a
/// detached copy of the model sharing its parameter ids) runs forward and backward in its own
/// one-thread pool, and the gradients are summed in replica order. burn's CPU backend gains
/// little from a second thread inside one small step (1.12× measured on the demo config); whole
/// shards in parallel keep every core busy. One thread per replica also makes every kernel run
/// single-threaded, so a run is reproducible for a given replica count.
struct Replicas {
    pools: Vec<rayon::ThreadPool>,
}

/// Why `replicas` cannot share a step of `batch` images and `outliers` outliers (with the
/// text→image loss at weight `text_to_image`), or `None` when they can: each replica takes an
/// equal share of both, holding whole text→image groups.
pub fn replica_split_error(
    batch: usize,
    outliers: usize,
    text_to_image: f64,
    replicas: usize,
) -> Option<String> {
    if replicas == 0 || !batch.is_multiple_of(replicas) {
        return Some(format!(
            "the batch ({batch}) must split evenly into the replicas ({replicas})"
        ));
    }
    if !outliers.is_multiple_of(replicas) {
        return Some(format!(
            "the outliers per batch ({outliers}) must split evenly into the replicas ({replicas})"
        ));
    }
    if text_to_image > 0.0 && !(batch / replicas).is_multiple_of(CONTRAST_GROUP) {
        return Some(format!(
            "the text→image loss contrasts groups of {CONTRAST_GROUP} images: each replica's \
             share of the batch must be a multiple of it"
        ));
    }
    None
}

impl Replicas {
    /// `count` 1 runs on the caller's thread with the global pool (burn's own parallelism).
    /// The split is checked by [`replica_split_error`].
    fn new(count: usize) -> Result<Self> {
        let pools = if count == 1 {
            Vec::new()
        } else {
            (0..count)
                .map(|_| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .build()
                        .map_err(|e| Error::Input(format!("cannot start a training thread: {e}")))
                })
                .collect::<Result<_>>()?
        };
        Ok(Self { pools })
    }

    fn step(
        &self,
        model: &Clip,
        samples: &[Sample],
        outliers: &[Outlier],
        ctx: &StepContext,
    ) -> Result<(GradientsParams, f64, usize)> {
        if self.pools.is_empty() {
            return shard_step(model, samples, outliers, ctx);
        }
        let n = self.pools.len();
        let per = samples.len() / n;
        // Outliers split the same way (their count is checked to divide evenly).
        let per_outlier = outliers.len() / n;
        let results: Vec<Result<(GradientsParams, f64, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .pools
                .iter()
                .enumerate()
                .map(|(r, pool)| {
                    let shard = &samples[r * per..(r + 1) * per];
                    let out = &outliers[r * per_outlier..(r + 1) * per_outlier];
                    let replica = model.clone().fork(ctx.device);
                    scope.spawn(move || pool.install(|| shard_step(&replica, shard, out, ctx)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Input("a training replica panicked".into())))
                })
                .collect()
        });
        let mut sum = GradientsAccumulator::<Clip>::new();
        let (mut loss, mut correct) = (0.0, 0);
        for r in results {
            let (g, l, c) = r?;
            sum.accumulate(model, g);
            loss += l;
            correct += c;
        }
        Ok((sum.grads(), loss, correct))
    }
}

/// Trains a fresh model of `config` (seeded random init) and returns it on `device`'s inner,
/// non-autodiff form. `device` should have autodiff enabled.
pub fn train(
    config: &ClipConfig,
    data: &TrainData,
    tokenizer: &ClipTokenizer,
    opts: &TrainOptions,
    device: &Device,
    on_event: &mut dyn FnMut(&Event, &Clip) -> Result<()>,
) -> Result<Clip> {
    let model = loader::random(config, opts.seed, device)?;
    train_from(model, data, tokenizer, opts, device, on_event)
}

/// Goes on training `model` (on `device`, with autodiff) with a fresh optimiser and schedule:
/// a second stage after [`train`], such as fine-tuning with outliers.
pub fn train_from(
    mut model: Clip,
    data: &TrainData,
    tokenizer: &ClipTokenizer,
    opts: &TrainOptions,
    device: &Device,
    on_event: &mut dyn FnMut(&Event, &Clip) -> Result<()>,
) -> Result<Clip> {
    let config = &model.config.clone();
    let n = data.images.len();
    if n == 0 || data.labels.len() != n {
        return Err(Error::Input("training needs labelled images".into()));
    }
    let templates = opts.caption_templates();
    if templates.is_empty() || opts.batch == 0 || opts.epochs == 0 {
        return Err(Error::Input(
            "training needs templates, a batch size and at least one epoch".into(),
        ));
    }
    let s = config.vision_config.image_size;
    if data
        .images
        .iter()
        .any(|i| i.width() as usize != s || i.height() as usize != s)
    {
        return Err(Error::Input(format!("training images must be {s}×{s}")));
    }
    let t = templates.len();
    if opts.outliers > 0 && opts.outlier_kinds.is_empty() {
        return Err(Error::Input(
            "outliers need at least one family to draw from".into(),
        ));
    }
    if !(0.0..=1.0).contains(&opts.text_to_image) {
        return Err(Error::Input(
            "the text→image weight must be within 0 and 1".into(),
        ));
    }
    let cfg = PreprocessConfig::clip(s as u32);
    let caption_ids = captions(
        tokenizer,
        &templates,
        data.classes,
        config.text_config.max_position_embeddings,
    )?;

    // As in OpenCLIP, weight decay only on matrices: decaying the logit scale would pull the
    // temperature up step by step (measured: the scale fell from 14 to 11 in four epochs), and
    // decaying LayerNorm gains and biases has no regularising purpose.
    let mut optim = AdamWConfig::new()
        .with_weight_decay(opts.weight_decay)
        .init()
        .with_group(
            ParamGroup::from_ids(vectors(&model)),
            AdamWConfig::new().with_weight_decay(0.0).build(),
            None,
        );
    let mut rng = Rng::new(opts.seed.wrapping_add(1));
    // Outliers draw from a stream of their own, so adding them leaves the images, their order,
    // augmentation and templates exactly as without.
    let mut outlier_rng = Rng::new(opts.seed.wrapping_add(2));
    let batch = opts.batch.min(n);
    if let Some(why) = replica_split_error(batch, opts.outliers, opts.text_to_image, opts.replicas)
    {
        return Err(Error::Input(why));
    }
    let replicas = Replicas::new(opts.replicas)?;
    let steps_per_epoch = n / batch;
    let steps_for = |epochs: usize| {
        opts.max_steps
            .unwrap_or(usize::MAX)
            .min(steps_per_epoch * epochs)
    };
    let mut total = steps_for(opts.epochs);
    let window = match opts.time_limit {
        None => None,
        Some(limit) if limit.is_nan() || limit <= 0.0 => {
            return Err(Error::Input(
                "the time limit must be a positive number of seconds".into(),
            ))
        }
        Some(limit) => {
            let (from, to) = timing_window(opts.warmup).ok_or_else(|| {
                Error::Input(
                    "a time limit measures the step time during warm-up: it needs at least 3 \
                     warm-up steps"
                        .into(),
                )
            })?;
            Some((from, to, limit))
        }
    };
    let started = std::time::Instant::now();
    let mut window_start = started;
    let mut step = 0;
    let (mut loss_sum, mut correct, mut seen, mut batches) = (0.0, 0usize, 0usize, 0usize);
    'epochs: for epoch in 0..opts.epochs {
        let order = permutation(n, &mut rng);
        for chunk in order.chunks_exact(batch) {
            if step >= total {
                break 'epochs;
            }
            // The batch is drawn on this thread from the one seeded stream, so the images, their
            // augmentation and their templates do not depend on the number of replicas.
            let mut samples = Vec::with_capacity(batch);
            for &j in chunk {
                let view = View::draw(opts.augment, s, &mut rng);
                let template = if opts.styles {
                    Style::draw(&mut rng) as usize
                } else {
                    (rng.next_u64() % t as u64) as usize
                };
                samples.push(Sample {
                    image: j,
                    view,
                    template,
                });
            }
            let outliers: Vec<Outlier> = (0..opts.outliers)
                .map(|_| Outlier {
                    source: (outlier_rng.next_u64() % n as u64) as usize,
                    seed: outlier_rng.next_u64(),
                    template: (outlier_rng.next_u64() % t as u64) as usize,
                })
                .collect();
            let ctx = StepContext {
                data,
                cfg: &cfg,
                captions: &caption_ids,
                styled: opts.styles,
                size: s,
                batch,
                text_to_image: opts.text_to_image,
                outliers: opts.outliers,
                outlier_weight: opts.outlier_weight,
                outlier_kinds: &opts.outlier_kinds,
                device,
            };
            let (grads, loss, right) = replicas.step(&model, &samples, &outliers, &ctx)?;
            loss_sum += loss;
            correct += right;
            seen += batch;
            batches += 1;
            let lr = lr_at(step, total, opts);
            model = optim.step(lr, model, grads);
            step += 1;
            if let Some((from, to, limit)) = window {
                if step == from {
                    window_start = std::time::Instant::now();
                } else if step == to {
                    // Everything queued must have run for the clock to mean anything on a GPU.
                    let _ = model.logit_scale.val().into_scalar::<f32>();
                    let per_step = window_start.elapsed().as_secs_f64() / (to - from) as f64;
                    let epochs = fit_epochs(
                        limit,
                        started.elapsed().as_secs_f64(),
                        per_step,
                        step,
                        steps_per_epoch,
                        opts.epochs,
                    );
                    total = steps_for(epochs);
                    on_event(
                        &Event::Fitted {
                            epochs,
                            seconds_per_step: per_step,
                        },
                        &model,
                    )?;
                }
            }
            if step % 50 == 0 || step == total {
                let ls = f64::from(model.logit_scale.val().into_scalar::<f32>());
                on_event(
                    &Event::Step {
                        step,
                        total,
                        epoch,
                        loss: loss_sum / batches as f64,
                        accuracy: correct as f64 / seen as f64,
                        lr,
                        logit_scale: ls.exp(),
                    },
                    &model,
                )?;
                (loss_sum, correct, seen, batches) = (0.0, 0, 0, 0);
            }
        }
        on_event(&Event::EpochEnd { epoch }, &model)?;
    }
    Ok(model.valid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_decay_skips_exactly_the_vectors() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/train-tiny.json"
        ))
        .unwrap();
        let config = ClipConfig::from_json(&text).unwrap();
        let model = loader::random(&config, 0, &crate::device::cpu()).unwrap();
        let ids = vectors(&model);
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        // Every tensor of at most one dimension, counted independently by the exporter.
        let exported = crate::bundle::export::HfTensors::from_model(&model).unwrap();
        let one_d = exported
            .tensors
            .values()
            .filter(|(s, _)| s.len() <= 1)
            .count();
        assert_eq!(ids.len(), one_d);
    }

    #[test]
    fn text_to_image_loss_matches_a_hand_computed_case() {
        let device = crate::device::cpu();
        let t = |rows: &[[f32; 2]]| {
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            Tensor::<2>::from_data(TensorData::new(flat, [rows.len(), 2]), &device)
        };
        // Two groups of two. Group 1: labels 0 and 1, captions equal to their images, unit
        // scale: each caption has logits (1, 0) over the images, so −log(e/(e+1)) each.
        // Group 2: both label 2, so both images are positives and the loss is −log 1 = 0.
        let images = t(&[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]);
        let captions = t(&[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.6, 0.8]]);
        let scale = Tensor::<2>::from_data(TensorData::new(vec![1.0f32], [1, 1]), &device);
        let got = text_to_image_loss(images, captions, &[0, 1, 2, 2], 2, scale).into_scalar::<f32>()
            as f64;
        let e = std::f64::consts::E;
        let want = 2.0 * -(e / (e + 1.0)).ln();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn outlier_loss_matches_a_hand_computed_case() {
        let device = crate::device::cpu();
        // Row 1 is uniform already: ln 2. Row 2 has softmax (3/4, 1/4): −(ln ¾ + ln ¼)/2.
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 3f32.ln(), 0.0], [2, 2]),
            &device,
        );
        let got = outlier_loss(logits).into_scalar::<f32>() as f64;
        let want = 2f64.ln() - (0.75f64.ln() + 0.25f64.ln()) / 2.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn epochs_fit_the_time_left() {
        // 100 s allowed, 10 s gone at step 40, 0.5 s a step, 100 steps an epoch: 40 + 180 steps,
        // 2 whole epochs.
        assert_eq!(fit_epochs(100.0, 10.0, 0.5, 40, 100, 30), 2);
        // Never fewer than the epochs already begun, never more than asked.
        assert_eq!(fit_epochs(100.0, 150.0, 0.5, 40, 30, 30), 2);
        assert_eq!(fit_epochs(1e9, 10.0, 0.5, 40, 100, 30), 30);
        assert_eq!(fit_epochs(1e9, 10.0, 0.5, 40, 30, 1), 1);
        assert_eq!(timing_window(200), Some((13, 40)));
        assert_eq!(timing_window(6), Some((2, 6)));
        assert_eq!(timing_window(2), None);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let o = TrainOptions {
            lr: 1.0,
            warmup: 10,
            ..Default::default()
        };
        assert!((lr_at(0, 100, &o) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, &o) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, &o) - 1.0).abs() < 1e-12);
        assert!((lr_at(55, 100, &o) - 0.5).abs() < 1e-12);
        assert!(lr_at(100, 100, &o).abs() < 1e-12);
    }

    #[test]
    fn shuffles_are_seeded_permutations() {
        let a = permutation(100, &mut Rng::new(7));
        let b = permutation(100, &mut Rng::new(7));
        let c = permutation(100, &mut Rng::new(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }
}
