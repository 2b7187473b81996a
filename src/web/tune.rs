//! Prompt tuning in the page: the command line's `tune` (`train::tune`'s [`Tuner`] and
//! [`plan`]) on the visitor's pictures, with every tensor read awaited, progress after each step
//! and a way to stop between steps. The model in use changes only when tuning finished and the
//! caller asked for it.

use wasm_bindgen::prelude::*;

use crate::bundle::convert::{rebundle, Rebundle};
use crate::bundle::{hex, Bundle};
use crate::clip::model::Clip;
use crate::clip::preprocess::{decode_rgb, resize_and_crop, to_tensor_chw};
use crate::clip::prompt::Prompt;
use crate::device::{read_f32_async, rows};
use crate::ood::score::{cosine_similarities, scores, ScoreParams};
use crate::train::outliers::Kind;
use crate::train::tune::plan::{self, Held, Report, Validation};
use crate::train::tune::{initial_context_tensor, EbmParams, MaskRule, TuneOptions, Tuner};
use crate::Error;

use super::classes::{next_task, text_features};
use super::dto::{JsHeld, JsTuneOptions, JsTuneProgress, JsTuneReport};
use super::scorer::{info, JsBytes, Scorer};
use super::{js, now_ms, on_pool, to_js};

/// Pictures through the image tower at a time.
const IMAGE_BATCH: usize = 16;

/// Encoded pictures from JavaScript (`Uint8Array`s).
fn encoded(images: &js_sys::Array) -> Result<Vec<Vec<u8>>, JsValue> {
    images
        .iter()
        .map(|v| {
            v.dyn_into::<js_sys::Uint8Array>()
                .map(|b| b.to_vec())
                .map_err(|_| {
                    js(Error::Input(
                        "tune takes encoded pictures as Uint8Array".into(),
                    ))
                })
        })
        .collect()
}

/// Decoded, resized and cropped pictures, as the command line's `decode_all` makes them; an
/// unreadable one is an error that names it (`name(i)`).
fn decode(
    images: &[Vec<u8>],
    which: impl Iterator<Item = usize>,
    model: &Clip,
    name: impl Fn(usize) -> String,
) -> Result<Vec<image::RgbImage>, Error> {
    let cfg = model.preprocess_config();
    which
        .map(|i| {
            decode_rgb(&images[i])
                .map(|img| resize_and_crop(&img, &cfg))
                .map_err(|e| Error::Input(format!("{} could not be read: {e}", name(i))))
        })
        .collect()
}

/// The options from JavaScript, through JSON: serde-wasm-bindgen reads only the fields it
/// knows, so a misspelt option would pass unnoticed.
fn options_of(options: JsValue) -> Result<JsTuneOptions, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(JsTuneOptions::default());
    }
    serde_wasm_bindgen::from_value::<serde_json::Value>(options)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
        .map_err(|e| js(Error::Input(format!("tune options: {e}"))))
}

/// The class list (`classes`, else the distinct labels in name order, as `tune` takes class
/// folders) and each picture's class index.
fn classes_of(
    labels: &[String],
    classes: Option<&[String]>,
) -> crate::Result<(Vec<String>, Vec<usize>)> {
    if let Some(i) = labels.iter().position(String::is_empty) {
        return Err(Error::Input(format!("picture {} has no class name", i + 1)));
    }
    let classes = match classes {
        Some(list) => crate::clip::embed::clean_classes(list)?,
        None => {
            let mut c = labels.to_vec();
            c.sort();
            c.dedup();
            c
        }
    };
    let index = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            classes.iter().position(|c| c == l).ok_or_else(|| {
                Error::Input(format!(
                    "picture {} is labelled `{l}`, which is not one of the classes",
                    i + 1
                ))
            })
        })
        .collect::<crate::Result<_>>()?;
    Ok((classes, index))
}

/// What chooses c and τ: the options' grid and families, else `tune`'s.
fn validation_of(o: &JsTuneOptions) -> crate::Result<Validation> {
    let d = Validation::default();
    let kinds = match &o.validation_kinds {
        None => d.kinds,
        Some(k) => k
            .iter()
            .map(|s| s.parse::<Kind>().map_err(Error::Input))
            .collect::<crate::Result<_>>()?,
    };
    Ok(Validation {
        outliers: o.validation_outliers,
        kinds,
        cs: o.select_c.clone().unwrap_or(d.cs),
        taus: o.select_tau.clone(),
    })
}

/// Unit image features, `IMAGE_BATCH` pictures at a time.
async fn features(
    model: &Clip,
    images: &[image::RgbImage],
    progress: &mut dyn FnMut(usize, usize) -> Result<(), JsValue>,
) -> Result<Vec<Vec<f32>>, JsValue> {
    let cfg = model.preprocess_config();
    let dim = model.config.projection_dim;
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(IMAGE_BATCH) {
        let pixels: Vec<Vec<f32>> = chunk.iter().map(|i| to_tensor_chw(i, &cfg)).collect();
        for mut row in rows(
            read_f32_async(on_pool(|| model.embed_pixels(&pixels))?).await?,
            dim,
        ) {
            crate::clip::embed::l2_normalise(&mut row);
            out.push(row);
        }
        progress(out.len(), images.len())?;
    }
    Ok(out)
}

fn delta_energies(sims: &[Vec<f64>], p: &ScoreParams) -> Result<Vec<f64>, Error> {
    sims.iter()
        .map(|s| Ok(scores(s, p)?.delta_energy))
        .collect()
}

#[wasm_bindgen]
impl Scorer {
    /// Learns context vectors for the classes named by `labels` (one per picture in `images`,
    /// encoded bytes) as the command line's `tune` does, and resolves to `{report, info,
    /// bundle}`: what tuning changed, the model's info, the tuned bundle's bytes. `bundle` must
    /// be the bytes of the model in use (its weights are copied into the tuned one, a tensor at
    /// a time). The classes
    /// are `options.classes`, else the distinct labels in name order, as `tune` takes them from
    /// class folders; per class, the first
    /// `shots` pictures tune and the next `calibration` judge and calibrate; `ood` (encoded
    /// pictures of no class) are scored before and after, for the page's histogram. `onProgress({stage,
    /// done, total, loss})` follows the work; when it returns `false` tuning stops with an
    /// error. The model in use changes only on success and with `apply` (the default).
    pub fn tune(
        &self,
        bundle: js_sys::Uint8Array,
        images: js_sys::Array,
        labels: Vec<String>,
        ood: js_sys::Array,
        options: JsValue,
        on_progress: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let o = options_of(options)?;
            let images = encoded(&images)?;
            let ood = encoded(&ood)?;
            if images.len() != labels.len() {
                return Err(js(Error::Input(format!(
                    "{} pictures but {} labels",
                    images.len(),
                    labels.len()
                ))));
            }
            let parsed = Bundle::read(JsBytes(bundle))?;
            let (model, tok, sha256) = {
                let s = state.borrow();
                (s.model.clone(), s.tokenizer.clone(), s.sha256.clone())
            };
            if hex(&parsed.sha256) != sha256 {
                return Err(js(Error::Input(
                    "tune: the bundle given is not the model in use".into(),
                )));
            }
            let labels: Vec<String> = labels.iter().map(|l| l.trim().to_string()).collect();
            let (classes, index) = classes_of(&labels, o.classes.as_deref())?;
            let split = plan::split(&index, &classes, o.shots, o.calibration)?;
            let mask: MaskRule = o.mask.parse()?;
            let validation = validation_of(&o)?;

            let progress = |stage: &'static str, done: usize, total: usize, loss: Option<f64>| {
                let Some(f) = &on_progress else {
                    return Ok(());
                };
                let event = to_js(&JsTuneProgress {
                    stage,
                    done,
                    total,
                    loss,
                })?;
                if f.call1(&JsValue::NULL, &event).unwrap_or(JsValue::TRUE) == JsValue::FALSE {
                    return Err(js(Error::Input(
                        "tuning was stopped; the model in use is unchanged".into(),
                    )));
                }
                Ok(())
            };

            // Every picture is read before any work, so a bad one fails at once.
            let picture = |i: usize| format!("picture {} (of `{}`)", i + 1, labels[i]);
            let n_shots = split.shots.len();
            let images = decode(
                &images,
                split.shots.iter().chain(&split.calibration).copied(),
                &model,
                picture,
            )?;
            let ood_images = decode(&ood, 0..ood.len(), &model, |i| {
                format!("out-of-distribution picture {}", i + 1)
            })?;
            let mut all = features(&model, &images, &mut |done, total| {
                progress("features", done, total, None)
            })
            .await?;
            let calib = all.split_off(n_shots);
            let shots = all;
            let calib_images = &images[n_shots..];
            let ood_features = features(&model, &ood_images, &mut |_, _| Ok(())).await?;
            let shot_labels: Vec<usize> = split.shots.iter().map(|&i| index[i]).collect();
            let calib_labels: Vec<usize> = split.calibration.iter().map(|&i| index[i]).collect();

            let tau = match o.tau {
                Some(t) => t,
                None => model.own_temperature_async().await?,
            };
            let opts = TuneOptions {
                n_ctx: o.n_ctx,
                init: (!o.init.trim().is_empty()).then(|| o.init.clone()),
                epochs: o.epochs,
                batch: o.batch,
                lr: o.lr,
                seed: o.seed,
                ebm: EbmParams {
                    tau,
                    lambda: o.lambda,
                    mask,
                    mask_by_label: o.mask_by_label,
                },
                ..Default::default()
            };
            let t0 = now_ms();
            let start = read_f32_async(initial_context_tensor(&model, &tok, &opts)?).await?;
            let mut tuner = Tuner::new(
                &model,
                &classes,
                shots.clone(),
                shot_labels.clone(),
                start,
                &opts,
            )?;
            let mut epochs = Vec::with_capacity(opts.epochs);
            while let Some(text) = on_pool(|| tuner.forward(&model, &tok))? {
                let text = read_f32_async(text).await?;
                let grad = read_f32_async(on_pool(|| tuner.backward(&text))?).await?;
                let stepped = on_pool(|| tuner.update(&grad))?;
                if let Some((_, mean)) = stepped.epoch {
                    epochs.push(mean);
                }
                let (done, total) = tuner.progress();
                progress("train", done, total, Some(stepped.loss.loss))?;
                // A task boundary, so that a request to stop reaches the worker between steps.
                next_task().await;
            }
            let seconds = (now_ms() - t0) / 1000.0;
            let steps = tuner.progress().1;
            let context = tuner.into_context();

            progress("assess", 0, 1, None)?;
            let prompt = Prompt::Context {
                vectors: context.clone(),
                n_ctx: o.n_ctx,
                suffix: opts.suffix.clone(),
            };
            let after = text_features(&model, &tok, &classes, &prompt, None).await?;
            let before = text_features(&model, &tok, &classes, &parsed.prompt(), None).await?;
            let outliers = if validation.outliers == 0 || calib.is_empty() {
                Vec::new()
            } else {
                let made = plan::validation_images(
                    calib_images,
                    &validation.kinds,
                    validation.outliers,
                    model.preprocess_config().crop_size,
                    o.seed,
                )?;
                features(&model, &made, &mut |done, total| {
                    progress("outliers", done, total, None)
                })
                .await?
            };
            let note = format!(
                "{} of your pictures in the page (per class: positions {}..{}, disjoint from the {} tuning shots)",
                calib.len(),
                o.shots,
                o.shots + o.calibration,
                o.shots
            );
            let held = Held {
                shots: &shots,
                shot_labels: &shot_labels,
                calibration: &calib,
                calibration_labels: &calib_labels,
                outliers: &outliers,
            };
            let header = &parsed.header;
            let a = plan::assess(
                &before,
                &after,
                &held,
                &header.score,
                header.threshold.as_ref(),
                &validation,
                &note,
            )?;
            let source = plan::provenance(
                &header.provenance.source,
                "a bundle loaded in the page",
                o.shots,
                &opts,
            );
            let changes = Rebundle {
                classes: classes.clone(),
                context: Some((context.clone(), o.n_ctx, opts.suffix.clone())),
                threshold: a.threshold.clone(),
                score: a.selection.is_some().then_some(a.score),
                source: source.clone(),
                created: (js_sys::Date::now() / 1000.0) as u64,
            };
            let tuned = rebundle(&parsed, changes, &after)?;
            let report = Report::new(&epochs, &a, tau, calib.len(), seconds, tuned.len());
            let judged = |text: &[Vec<f32>], p: &crate::ood::score::ScoreParams, accuracy| {
                let id = delta_energies(&cosine_similarities(&calib, text), p)?;
                let ood = delta_energies(&cosine_similarities(&ood_features, text), p)?;
                let auroc = if id.is_empty() || ood.is_empty() {
                    None
                } else {
                    Some(crate::ood::metrics::auroc(&id, &ood)?)
                };
                Ok::<_, Error>(JsHeld {
                    accuracy,
                    delta_energy: id,
                    ood_delta_energy: ood,
                    auroc,
                })
            };
            let before_held = judged(&before, &header.score, report.before.accuracy)?;
            let after_held = judged(&after, &a.score, report.after.accuracy)?;
            let out = js_sys::Object::new();
            let report_js = to_js(&JsTuneReport {
                seconds: report.seconds,
                bytes: report.bytes,
                loss: &report.loss,
                cross_entropy: report.cross_entropy,
                delta_energy: report.delta_energy,
                tau: report.tau,
                shots_accuracy: report.shots_accuracy,
                before: before_held,
                after: after_held,
                threshold: report.threshold,
                calibration_images: report.calibration_images,
                score: &report.score,
                selection: &report.selection,
                classes: &classes,
                steps,
                provenance: &source,
                options: &JsTuneOptions {
                    tau: Some(tau),
                    ..o
                },
            })?;
            if o.apply {
                let fresh = Bundle::parse(&tuned)?;
                let mut s = state.borrow_mut();
                s.classes = classes;
                s.templates = Vec::new();
                s.prompt = fresh.prompt();
                s.text = after;
                s.params = fresh.header.score;
                s.threshold = fresh.header.threshold.clone().map(|t| (t, true));
                s.header = fresh.header.clone();
                s.bytes = tuned.len();
                s.sha256 = hex(&fresh.sha256);
            }
            js_sys::Reflect::set(&out, &"report".into(), &report_js)?;
            js_sys::Reflect::set(&out, &"info".into(), &info(&state.borrow())?)?;
            js_sys::Reflect::set(
                &out,
                &"bundle".into(),
                &js_sys::Uint8Array::from(tuned.as_slice()).into(),
            )?;
            Ok(out.into())
        })
    }
}
