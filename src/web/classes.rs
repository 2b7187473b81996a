//! Classes in the page: their text features through the crate's one routine, a chunk at a time
//! with progress and a way to stop, and the prompt a template list asks for.

use wasm_bindgen::prelude::*;

use crate::clip::model::Clip;
use crate::clip::prompt::{ClassFeatures, Prompt};
use crate::clip::tokenizer::ClipTokenizer;
use crate::device::read_f32_async;

use super::{js, on_pool};

/// Classes per text-tower batch: small enough for the progress bar to move on 1000 classes,
/// large enough for the matmuls to stay efficient.
pub(super) const TEXT_CHUNK: usize = 128;

/// Unit text features of `classes` under `prompt`, through the crate's one routine
/// (`clip::prompt::ClassFeatures`), a chunk of classes at a time: each chunk is read back
/// asynchronously, then `progress(done, total)` may stop the job between chunks.
pub(super) async fn text_features(
    model: &Clip,
    tok: &ClipTokenizer,
    classes: &[String],
    prompt: &Prompt,
    progress: Option<&js_sys::Function>,
) -> Result<Vec<Vec<f32>>, JsValue> {
    let mut job = ClassFeatures::new(model.config.projection_dim, classes, prompt, TEXT_CHUNK)?;
    while let Some(t) = on_pool(|| job.next(model, tok))? {
        job.push(&read_f32_async(t).await?)?;
        if let Some(f) = progress {
            let (done, total) = job.progress();
            let go_on = f
                .call2(
                    &JsValue::NULL,
                    &(done as f64).into(),
                    &(total as f64).into(),
                )
                .unwrap_or(JsValue::TRUE);
            if go_on == JsValue::FALSE {
                return Err(js(crate::Error::Input(
                    "computing the text features was stopped; the classes in use stay".into(),
                )));
            }
            // A task boundary, so the worker reads a request to stop between chunks.
            next_task().await;
        }
    }
    Ok(job.finish()?)
}

/// Resolves on a later task of the event loop (a zero-delay timer), letting the worker's
/// message handler run; the CPU backend's reads otherwise resolve without ever yielding.
pub(super) async fn next_task() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let set_timeout = js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into())
            .ok()
            .and_then(|f| wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(f).ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&JsValue::NULL, &resolve, &0.into());
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// `{templates}` from JavaScript: none, or a list of templates with `{}`.
pub(super) fn templates_of(value: JsValue) -> Result<Vec<String>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(Vec::new());
    }
    let templates: Vec<String> = serde_wasm_bindgen::from_value(value).map_err(|e| {
        js(crate::Error::Input(format!(
            "templates: not a list of strings: {e}"
        )))
    })?;
    for t in &templates {
        crate::clip::embed::check_template(t)?;
    }
    Ok(templates)
}

/// The prompt for `templates`: the bundle's own when none are given.
pub(super) fn prompt_for(bundle: &Prompt, templates: &[String]) -> Prompt {
    match templates {
        [] => bundle.clone(),
        [one] => Prompt::Template(one.clone()),
        many => Prompt::Ensemble(many.to_vec()),
    }
}

// ------------------------------------------------------------------ what crosses to JavaScript
