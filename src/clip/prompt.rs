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
    /// Text features `[classes, projection_dim]` (un-normalised) of the classes under `prompt`.
    pub fn encode_classes(
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
            Prompt::Ensemble(templates) => {
                if templates.is_empty() {
                    return Err(Error::Input(
                        "an ensemble needs at least one template".into(),
                    ));
                }
                let mut sum: Option<Tensor<2>> = None;
                for t in templates {
                    let f = crate::clip::embed::normalise_rows(
                        self.embed_texts(tokenizer, &prompts(t, classes)?)?,
                    );
                    sum = Some(match sum {
                        Some(s) => s + f,
                        None => f,
                    });
                }
                Ok(sum.expect("at least one template") / templates.len() as f32)
            }
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

impl crate::bundle::Bundle<'_> {
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
