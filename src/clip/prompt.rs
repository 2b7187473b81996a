//! Class prompts: a hand template ("a photo of a {}.") or learned context vectors (CoOp),
//! turned into text features for a class list.

use burn::tensor::{Int, Tensor, TensorData};

use crate::clip::embed::prompts;
use crate::clip::model::Clip;
use crate::clip::tokenizer::ClipTokenizer;
use crate::error::{Error, Result};

/// How class names become prompts.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// `{}` is replaced by the class name.
    Template(String),
    /// `[SOT] ctx_1 … ctx_n <class tokens><suffix> [EOT]`, the context given as `n_ctx` rows of
    /// the text width (row-major).
    Context {
        vectors: Vec<f32>,
        n_ctx: usize,
        suffix: String,
    },
    /// CLIP's prompt ensembling: each class's feature is the mean of its unit features under
    /// every template (OpenAI's 80 for ImageNet).
    Ensemble(Vec<String>),
}

impl Clip {
    /// Text features `[classes, projection_dim]` (un-normalised) of the classes under one
    /// template or learned context. An ensemble goes through [`ClassFeatures`], which runs it
    /// template by template.
    pub(crate) fn encode_prompt(
        &self,
        tokenizer: &ClipTokenizer,
        classes: &[String],
        prompt: &Prompt,
    ) -> Result<Tensor<2>> {
        if classes.is_empty() {
            return Err(Error::Input("the class list is empty".into()));
        }
        match prompt {
            Prompt::Template(t) => self.embed_texts(tokenizer, &prompts(t, classes)?),
            Prompt::Ensemble(_) => Err(Error::Input(
                "an ensemble is encoded a template at a time (ClassFeatures)".into(),
            )),
            Prompt::Context {
                vectors,
                n_ctx,
                suffix,
            } => {
                let width = self.text.width();
                if vectors.len() != n_ctx * width {
                    return Err(Error::Input(format!(
                        "context has {} values, expected {n_ctx} × {width}",
                        vectors.len()
                    )));
                }
                let device = self.logit_scale.device();
                let ctx = Tensor::<2>::from_data(
                    TensorData::new(vectors.clone(), [*n_ctx, width]),
                    &device,
                );
                self.encode_with_context(tokenizer, classes, ctx, suffix)
            }
        }
    }

    /// CoOp prompts with a context tensor `[n_ctx, width]`; differentiable in the context when
    /// it lives on an autodiff device.
    pub fn encode_with_context(
        &self,
        tokenizer: &ClipTokenizer,
        classes: &[String],
        context: Tensor<2>,
        suffix: &str,
    ) -> Result<Tensor<2>> {
        let [n_ctx, width] = context.dims();
        let max = self.text.context_length();
        if n_ctx + 2 > max {
            return Err(Error::Input(format!(
                "{n_ctx} context vectors leave no room in {max} tokens"
            )));
        }
        // Class tokens, truncated so SOT + context + class + EOT fits the context length.
        let room = max - n_ctx - 2;
        let seqs: Vec<Vec<u32>> = classes
            .iter()
            .map(|c| {
                let mut ids = vec![tokenizer.sot_id()];
                ids.extend(
                    tokenizer
                        .encode_tokens(&format!("{c}{suffix}"))
                        .into_iter()
                        .take(room),
                );
                ids.push(tokenizer.eot_id());
                ids
            })
            .collect();
        let k = seqs.len();
        let len = seqs.iter().map(Vec::len).max().unwrap_or(2);
        let flat: Vec<i64> = seqs
            .iter()
            .flat_map(|s| {
                s.iter()
                    .map(|&t| t as i64)
                    .chain(std::iter::repeat_n(0, len - s.len()))
            })
            .collect();
        // The ids live with the model, so a context on the autodiff twin of the model's device
        // (prompt tuning) meets the frozen weights as constants.
        let device = self.logit_scale.device();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [k, len]), &device);
        let tokens = self.text.embed_tokens(ids);
        let tokens = if context.is_autodiff() {
            tokens.autodiff()
        } else {
            tokens
        };
        let sot = tokens.clone().narrow(1, 0, 1);
        let rest = tokens.narrow(1, 1, len - 1);
        let ctx = context.unsqueeze_dim::<3>(0).expand([k, n_ctx, width]);
        let x = Tensor::cat(vec![sot, ctx, rest], 1);
        let eot: Vec<usize> = seqs.iter().map(|s| s.len() - 1 + n_ctx).collect();
        Ok(self.text.forward_embeddings(x, &eot))
    }
}

impl<'a, B: crate::bundle::BundleBytes<'a>> crate::bundle::Bundle<'a, B> {
    /// The prompt the bundle's classes are encoded with: its learned context if it has one.
    pub fn prompt(&self) -> Prompt {
        match (&self.header.context, self.context()) {
            (Some(c), Some(vectors)) => Prompt::Context {
                vectors,
                n_ctx: c.n_ctx,
                suffix: c.suffix.clone(),
            },
            _ => Prompt::Template(self.header.template.clone()),
        }
    }
}

/// The one way class text features are made, everywhere (the command line, tuning, evaluation,
/// conversion, the page): unit rows `[classes][projection_dim]` of the classes under a prompt,
/// computed a chunk of classes at a time. An ensemble is the normalised mean of each
/// template's unit features (CLIP's prompt ensembling). The caller reads each chunk's tensor
/// back (at once natively, asynchronously in the browser) and hands the values over, so it can
/// report progress and stop between chunks; [`class_features`] does all of it in one call.
pub struct ClassFeatures {
    classes: Vec<String>,
    passes: Vec<Prompt>,
    chunk: usize,
    dim: usize,
    /// Which pass and which first class of it come next.
    pass: usize,
    at: usize,
    sum: Vec<Vec<f32>>,
}

impl ClassFeatures {
    /// `chunk` classes go through the text tower at a time (0: all at once).
    pub fn new(dim: usize, classes: &[String], prompt: &Prompt, chunk: usize) -> Result<Self> {
        if classes.is_empty() {
            return Err(Error::Input("the class list is empty".into()));
        }
        let passes = match prompt {
            Prompt::Ensemble(ts) if ts.is_empty() => {
                return Err(Error::Input(
                    "an ensemble needs at least one template".into(),
                ))
            }
            Prompt::Ensemble(ts) => ts.iter().cloned().map(Prompt::Template).collect(),
            other => vec![other.clone()],
        };
        Ok(Self {
            classes: classes.to_vec(),
            passes,
            chunk: if chunk == 0 { classes.len() } else { chunk },
            dim,
            pass: 0,
            at: 0,
            sum: vec![vec![0.0; dim]; classes.len()],
        })
    }

    /// The next chunk's features (un-normalised) to read back, or None once all are in.
    pub fn next(&self, model: &Clip, tokenizer: &ClipTokenizer) -> Result<Option<Tensor<2>>> {
        let Some(pass) = self.passes.get(self.pass) else {
            return Ok(None);
        };
        let end = (self.at + self.chunk).min(self.classes.len());
        model
            .encode_prompt(tokenizer, &self.classes[self.at..end], pass)
            .map(Some)
    }

    /// The values of the tensor [`ClassFeatures::next`] gave, read back.
    pub fn push(&mut self, values: &[f32]) -> Result<()> {
        let end = (self.at + self.chunk).min(self.classes.len());
        if self.pass >= self.passes.len() || values.len() != (end - self.at) * self.dim {
            return Err(Error::Input(format!(
                "class features: got {} values, expected {}",
                values.len(),
                (end - self.at) * self.dim
            )));
        }
        for (acc, row) in self.sum[self.at..end]
            .iter_mut()
            .zip(values.chunks(self.dim))
        {
            let mut row = row.to_vec();
            crate::clip::embed::l2_normalise(&mut row);
            acc.iter_mut().zip(&row).for_each(|(a, r)| *a += r);
        }
        self.at = end;
        if self.at == self.classes.len() {
            self.at = 0;
            self.pass += 1;
        }
        Ok(())
    }

    /// (prompts encoded, prompts in all).
    pub fn progress(&self) -> (usize, usize) {
        let n = self.classes.len();
        (self.pass * n + self.at, self.passes.len() * n)
    }

    /// The unit features, once every chunk is in.
    pub fn finish(mut self) -> Result<Vec<Vec<f32>>> {
        if self.pass < self.passes.len() {
            return Err(Error::Input("class features: not every chunk is in".into()));
        }
        self.sum
            .iter_mut()
            .for_each(|r| crate::clip::embed::l2_normalise(r));
        Ok(self.sum)
    }
}

/// Unit text features of `classes` under `prompt`, read back at once (natively: in the browser
/// reads must be asynchronous, and `web` drives [`ClassFeatures`] chunk by chunk).
#[cfg(not(target_family = "wasm"))]
pub fn class_features(
    model: &Clip,
    tokenizer: &ClipTokenizer,
    classes: &[String],
    prompt: &Prompt,
) -> Result<Vec<Vec<f32>>> {
    let mut job = ClassFeatures::new(model.config.projection_dim, classes, prompt, 0)?;
    while let Some(t) = job.next(model, tokenizer)? {
        job.push(&crate::device::read_f32(t)?)?;
    }
    job.finish()
}
