//! From inputs to features: the glue between preprocessing, the tokenizer and the model that the
//! CLI, the evaluation and the browser share.

use burn::tensor::{Tensor, TensorData};

use crate::clip::model::Clip;
use crate::clip::preprocess::PreprocessConfig;
use crate::clip::tokenizer::ClipTokenizer;
use crate::error::{Error, Result};

impl Clip {
    /// The preprocessing this model expects (CLIP's mean/std at the model's image size).
    pub fn preprocess_config(&self) -> PreprocessConfig {
        PreprocessConfig::clip(self.image_size() as u32)
    }

    /// Stacks preprocessed images (`3·S·S` values each, CHW) into `[B, 3, S, S]`.
    pub fn pixels_tensor(&self, images: &[Vec<f32>]) -> Result<Tensor<4>> {
        if images.is_empty() {
            return Err(Error::Input("no images to encode".into()));
        }
        let s = self.image_size();
        let c = self.config.vision_config.num_channels;
        let per = c * s * s;
        let mut flat = Vec::with_capacity(images.len() * per);
        for (i, img) in images.iter().enumerate() {
            if img.len() != per {
                return Err(Error::Input(format!(
                    "image {i} has {} values, the model needs {c}×{s}×{s} = {per}",
                    img.len()
                )));
            }
            flat.extend_from_slice(img);
        }
        let device = self.logit_scale.device();
        Ok(Tensor::from_data(
            TensorData::new(flat, [images.len(), c, s, s]),
            &device,
        ))
    }

    /// Preprocessed images → `[B, projection_dim]` un-normalised image features.
    pub fn embed_pixels(&self, images: &[Vec<f32>]) -> Result<Tensor<2>> {
        Ok(self.encode_images(self.pixels_tensor(images)?))
    }

    /// Texts → `[B, projection_dim]` un-normalised text features.
    pub fn embed_texts(&self, tokenizer: &ClipTokenizer, texts: &[String]) -> Result<Tensor<2>> {
        let ctx = self.text.context_length();
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| tokenizer.encode_with_max_len(t, ctx))
            .collect();
        self.encode_token_ids(&ids)
    }
}

/// Scales each row of `[N, D]` to unit length on the device (a zero row stays zero);
/// differentiable, for training and tuning.
pub fn normalise_rows(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

/// Scales a feature vector to unit length (a zero vector stays zero).
pub fn l2_normalise(row: &mut [f32]) {
    let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    row.iter_mut().for_each(|x| *x /= n);
}

/// Refuses a template without `{}` for the class name.
pub fn check_template(template: &str) -> Result<()> {
    if template.contains("{}") {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "prompt template `{template}` has no `{{}}` for the class name"
        )))
    }
}

/// `template` with `{}` replaced by each class name: the zero-shot prompts.
pub fn prompts(template: &str, classes: &[String]) -> Result<Vec<String>> {
    check_template(template)?;
    if classes.is_empty() {
        return Err(Error::Input("the class list is empty".into()));
    }
    Ok(classes
        .iter()
        .map(|c| template.replacen("{}", c, 1))
        .collect())
}

/// Prompt templates from a file's text: a class preset of the page (a JSON object with
/// `templates`), a JSON list of strings, or plain text with one template per line. Each must
/// hold `{}`; at least one is needed.
pub fn parse_templates(text: &str) -> Result<Vec<String>> {
    let trimmed = text.trim_start();
    let templates: Vec<String> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Input(format!("templates: not valid JSON: {e}")))?;
        let list = if v.is_array() { &v } else { &v["templates"] };
        serde_json::from_value(list.clone()).map_err(|_| {
            Error::Input(
                "templates: expected a list of strings (or an object with `templates`)".into(),
            )
        })?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    if templates.is_empty() {
        return Err(Error::Input("no templates given".into()));
    }
    templates.iter().try_for_each(|t| check_template(t))?;
    Ok(templates)
}

/// A class list typed as one string ("cat, dog" or one name per line): see [`clean_classes`].
pub fn parse_classes(list: &str) -> Result<Vec<String>> {
    clean_classes(&[list])
}

/// Class names as a user gave them, cleaned the one way the page and the command line share:
/// each item is split at commas and new lines, names are trimmed, blanks and repeats dropped
/// (the first of equal names kept, order kept). An empty result is an error.
pub fn clean_classes<S: AsRef<str>>(items: &[S]) -> Result<Vec<String>> {
    let mut classes: Vec<String> = Vec::new();
    for name in items
        .iter()
        .flat_map(|item| item.as_ref().split([',', '\n']))
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        if !classes.iter().any(|c| c == name) {
            classes.push(name.to_string());
        }
    }
    if classes.is_empty() {
        return Err(Error::Input(
            "the class list is empty: give at least one class name (separated by commas or new lines)".into(),
        ));
    }
    Ok(classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_files() {
        let want = ["a {}.", "the {}!"];
        assert_eq!(parse_templates("a {}.\n\n  the {}!\n").unwrap(), want);
        assert_eq!(parse_templates(r#"["a {}.", "the {}!"]"#).unwrap(), want);
        let preset = r#"{"name": "x", "classes": ["cat"], "templates": ["a {}.", "the {}!"]}"#;
        assert_eq!(parse_templates(preset).unwrap(), want);
        assert!(parse_templates("").is_err());
        assert!(parse_templates("no placeholder").is_err());
        assert!(parse_templates(r#"{"classes": ["cat"]}"#).is_err());
        assert!(parse_templates("[1, 2]").is_err());
    }

    #[test]
    fn class_lists_and_templates() {
        assert_eq!(
            parse_classes(" cat, dog ,,bird ").unwrap(),
            ["cat", "dog", "bird"]
        );
        assert!(parse_classes(" , ,").is_err());
        assert_eq!(
            clean_classes(&["cat\n dog,cat", "", "bird, dog", "  big  cat "]).unwrap(),
            ["cat", "dog", "bird", "big  cat"]
        );
        assert!(clean_classes(&["\n ,\r\n"]).is_err()); // Windows line ends trim away
        assert!(clean_classes::<&str>(&[]).is_err());
        assert!(parse_classes("").is_err());
        let p = prompts("a photo of a {}.", &["cat".into(), "big dog".into()]).unwrap();
        assert_eq!(p, ["a photo of a cat.", "a photo of a big dog."]);
        assert!(prompts("no placeholder", &["cat".into()]).is_err());
        assert!(prompts("{}", &[]).is_err());
    }
}
