//! What crosses to JavaScript: the shapes of results, model info and settings (camelCase), and
//! the scores the page sends back to be judged.

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::bundle::Provenance;
use crate::clip::precision::Precision;
use crate::device::Adapter;
use crate::ood::classify::Classification;
use crate::ood::score::{Scores, Threshold};
use crate::ood::select::Trial;
use crate::train::tune::plan::{self, ChosenScore, Validation};
use crate::train::tune::TuneOptions;

use super::js;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsThreshold<'a> {
    pub(super) score: &'static str,
    pub(super) value: f64,
    pub(super) tpr: Option<f64>,
    pub(super) calibration: &'a str,
}

impl<'a> JsThreshold<'a> {
    pub(super) fn of(t: &'a Threshold, calibrated: bool) -> Self {
        JsThreshold {
            score: t.score.camel(),
            value: t.value,
            tpr: calibrated.then_some(t.tpr),
            calibration: &t.calibration,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsScoreSettings {
    pub(super) tau: f64,
    pub(super) c: usize,
    pub(super) crop_value: f64,
    pub(super) mcm_tau: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Info<'a> {
    pub(super) classes: &'a [String],
    pub(super) bundle_classes: &'a [String],
    pub(super) template: &'a str,
    /// The templates given with the classes (CLIP's ensemble when several); empty: the
    /// bundle's own prompt.
    pub(super) templates: &'a [String],
    pub(super) has_context: bool,
    pub(super) threshold: Option<JsThreshold<'a>>,
    pub(super) bundle_threshold: Option<JsThreshold<'a>>,
    pub(super) score_settings: JsScoreSettings,
    pub(super) quant: &'a str,
    pub(super) image_size: usize,
    pub(super) provenance: &'a Provenance,
    pub(super) bytes: usize,
    pub(super) sha256: &'a str,
    /// What computes the products, for the device line.
    pub(super) engine: String,
    /// The image tower's float precision: "f16" on GPUs that offer it, else "f32".
    pub(super) precision: Precision,
    /// The WebGPU adapter, or null on the CPU.
    pub(super) adapter: Option<&'a Adapter>,
    /// The version of deltaenergy that loaded it.
    pub(super) version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Timings {
    pub(super) decode_ms: f64,
    pub(super) image_ms: f64,
    pub(super) score_ms: f64,
    pub(super) total_ms: f64,
    /// Images in the image tower's forward pass that scored this one; the times of a batch are
    /// its shares (the batch's time divided by its images).
    pub(super) batch: usize,
}

/// One image of `classifyImages` that could not be scored; the others are scored all the same.
#[derive(Serialize)]
pub(super) struct ItemError {
    pub(super) error: ItemErrorBody,
}

#[derive(Serialize)]
pub(super) struct ItemErrorBody {
    pub(super) name: &'static str,
    pub(super) message: String,
}

#[derive(Serialize)]
pub(super) struct Output<'a> {
    #[serde(flatten)]
    pub(super) result: Classification,
    pub(super) threshold: Option<JsThreshold<'a>>,
    pub(super) timings: Timings,
}

/// Scores as JavaScript holds them (`result.scores`), for `judge`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsScores {
    pub(super) delta_energy: f64,
    pub(super) energy: f64,
    pub(super) mcm: f64,
    pub(super) max_logit: f64,
}

/// `result.scores` objects from JavaScript, as `Scores` (only the four values are read).
pub(super) fn scores_of(value: JsValue) -> Result<Vec<Scores>, JsValue> {
    let scores: Vec<JsScores> = serde_wasm_bindgen::from_value(value)
        .map_err(|e| js(crate::Error::Input(format!("not a list of scores: {e}"))))?;
    Ok(scores
        .into_iter()
        .map(|j| Scores {
            delta_energy: j.delta_energy,
            energy: j.energy,
            mcm: j.mcm,
            max_logit: j.max_logit,
            label: 0,
            cropped: Vec::new(),
            energy_cropped: 0.0,
        })
        .collect())
}

/// `scorer.tune`'s options, named as the command line's flags in camelCase, with its defaults.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub(super) struct JsTuneOptions {
    /// The classes to tune, in order (none: the distinct labels in name order).
    pub(super) classes: Option<Vec<String>>,
    pub(super) shots: usize,
    pub(super) calibration: usize,
    pub(super) epochs: usize,
    pub(super) lambda: f64,
    pub(super) n_ctx: usize,
    pub(super) init: String,
    pub(super) lr: f64,
    pub(super) batch: usize,
    pub(super) seed: u64,
    pub(super) tau: Option<f64>,
    pub(super) mask: String,
    pub(super) mask_by_label: bool,
    pub(super) validation_outliers: usize,
    pub(super) validation_kinds: Option<Vec<String>>,
    pub(super) select_c: Option<Vec<usize>>,
    pub(super) select_tau: Option<Vec<f64>>,
    pub(super) apply: bool,
}

impl Default for JsTuneOptions {
    fn default() -> Self {
        let t = TuneOptions::default();
        let v = Validation::default();
        Self {
            classes: None,
            shots: plan::SHOTS,
            calibration: plan::CALIBRATION,
            epochs: t.epochs,
            lambda: t.ebm.lambda,
            n_ctx: t.n_ctx,
            init: t.init.unwrap_or_default(),
            lr: t.lr,
            batch: t.batch,
            seed: t.seed,
            tau: None,
            mask: t.ebm.mask.to_string(),
            mask_by_label: t.ebm.mask_by_label,
            validation_outliers: v.outliers,
            validation_kinds: None,
            select_c: None,
            select_tau: None,
            apply: true,
        }
    }
}

/// The report of the command line's `tune` (camelCase), and the held-out pictures' ΔEnergy
/// before and after, for the page's histogram.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsTuneReport<'a> {
    pub(super) seconds: f64,
    pub(super) bytes: usize,
    pub(super) loss: &'a [f64],
    pub(super) cross_entropy: f64,
    pub(super) delta_energy: f64,
    pub(super) tau: f64,
    pub(super) shots_accuracy: f64,
    pub(super) before: JsHeld,
    pub(super) after: JsHeld,
    pub(super) threshold: Option<f64>,
    pub(super) calibration_images: usize,
    pub(super) score: &'a ChosenScore,
    pub(super) selection: &'a Option<Vec<Trial>>,
    pub(super) classes: &'a [String],
    pub(super) steps: usize,
    pub(super) provenance: &'a str,
    /// Every setting, defaults filled in (`tau` the one the loss used).
    pub(super) options: &'a JsTuneOptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsHeld {
    pub(super) accuracy: Option<f64>,
    /// ΔEnergy of each calibration picture with the bundle's settings (before) or the tuned
    /// bundle's (after).
    pub(super) delta_energy: Vec<f64>,
    /// The same for the out-of-distribution pictures given (`ood`).
    pub(super) ood_delta_energy: Vec<f64>,
    /// How well ΔEnergy tells the two apart (none without both).
    pub(super) auroc: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsTuneProgress {
    pub(super) stage: &'static str,
    pub(super) done: usize,
    pub(super) total: usize,
    /// The step's loss (stage "train").
    pub(super) loss: Option<f64>,
}
