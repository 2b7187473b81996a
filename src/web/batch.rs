//! Classifying preprocessed images `batch` at a time through the image tower, with each
//! image's scores, verdict and timings (an unreadable image fails only its own entry).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::device::{read_f32_async, rows};
use crate::ood::classify::classify;
use crate::ood::score::cosine_similarities;

use super::dto::{JsThreshold, Output, Timings};
use super::scorer::State;
use super::{js, now_ms, on_pool, to_js};

pub(super) async fn run(
    state: Rc<RefCell<State>>,
    pixels: Vec<f32>,
    top_k: usize,
    t0: f64,
) -> Result<JsValue, JsValue> {
    let mut scored = score_batch(&state, vec![Ok(pixels)], top_k, 1, t0).await?;
    scored.remove(0).map_err(js)
}

/// Scores preprocessed images (an error in place of one that could not be read), `batch` at a
/// time through the image tower. An error of the model itself fails the whole call; an
/// unreadable image fails only its own entry.
pub(super) async fn score_batch(
    state: &Rc<RefCell<State>>,
    images: Vec<crate::Result<Vec<f32>>>,
    top_k: usize,
    batch: usize,
    t0: f64,
) -> Result<Vec<crate::Result<JsValue>>, JsValue> {
    let t1 = now_ms();
    let model = state.borrow().model.clone();
    if state.borrow().classes.is_empty() {
        return Err(js(crate::Error::Input(
            "no classes: set a class list first".into(),
        )));
    }
    let n = images.len();
    let mut slots = Vec::with_capacity(n);
    let mut pixels = Vec::new();
    for r in images {
        slots.push(match r {
            Ok(p) => {
                pixels.push(p);
                Ok(())
            }
            Err(e) => Err(e),
        });
    }
    let dim = model.config.projection_dim;
    // Each image's features, with the size of the pass that computed them and its share of
    // that pass's time.
    let mut features = Vec::with_capacity(pixels.len());
    for chunk in pixels.chunks(batch.max(1)) {
        let t = now_ms();
        let f = read_f32_async(on_pool(|| model.embed_pixels(chunk))?).await?;
        let share = (now_ms() - t) / chunk.len() as f64;
        features.extend(rows(f, dim).into_iter().map(|r| (r, chunk.len(), share)));
    }
    let s = state.borrow();
    let threshold = s.threshold.as_ref();
    let mut features = features.into_iter();
    let mut out = Vec::with_capacity(n);
    let decode_ms = (t1 - t0) / n.max(1) as f64;
    for slot in slots {
        let verdict = slot.and_then(|()| {
            let t = now_ms();
            let (f, batch, image_ms) = features.next().expect("one feature row per decoded image");
            let sims = cosine_similarities(&[f], &s.text).remove(0);
            let result = classify(
                sims,
                &s.classes,
                &s.params,
                threshold.map(|(t, _)| t),
                top_k,
            )?;
            Ok((result, now_ms() - t, batch, image_ms))
        });
        out.push(match verdict {
            Ok((result, score_ms, batch, image_ms)) => Ok(to_js(&Output {
                result,
                threshold: threshold.map(|(t, c)| JsThreshold::of(t, *c)),
                timings: Timings {
                    decode_ms,
                    image_ms,
                    score_ms,
                    total_ms: decode_ms + image_ms + score_ms,
                    batch,
                },
            })?),
            Err(e) => Err(e),
        });
    }
    Ok(out)
}
