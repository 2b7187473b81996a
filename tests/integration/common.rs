//! Shared helpers for the integration tests: fixture paths, the reference files written by
//! `tools/reference/make_models.py`, tolerances, and the one-body-per-backend macro.
#![allow(dead_code)]

use std::path::PathBuf;

use serde::Deserialize;

/// Embedding tolerances from the issue: after L2 normalisation, cosine ≥ 0.99999 and
/// max abs error ≤ 1e-4 against transformers.
pub const MIN_COSINE: f64 = 0.99999;
pub const MAX_ABS: f64 = 1e-4;

pub const MODELS: [&str; 2] = ["tiny-quickgelu-p8", "tiny-gelu-p16"];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The data set (tests/README.md says what it holds and where it comes from):
/// `$DELTAENERGY_DATA`, else `../shared/data` beside the clone. `None` when it is absent at the
/// default path, so a clone with nothing beside it still runs every test that does not need it;
/// a `$DELTAENERGY_DATA` that is set must exist (CI sets it, so CI never skips).
pub fn data() -> Option<PathBuf> {
    match std::env::var_os("DELTAENERGY_DATA") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                dir.is_dir(),
                "DELTAENERGY_DATA={} is not a directory (see tests/README.md)",
                dir.display()
            );
            Some(dir)
        }
        None => {
            let dir = root().join("../shared/data");
            dir.is_dir().then_some(dir)
        }
    }
}

/// The data set, or a return from the calling test with a line saying why it did not run.
macro_rules! data_or_skip {
    () => {
        match $crate::common::data() {
            Some(dir) => dir,
            None => {
                $crate::common::say_skipped(concat!("the test at ", file!(), ":", line!()));
                return;
            }
        }
    };
}

/// Says on the terminal that a test did not run. Written to stderr directly, because the test
/// harness captures `eprintln!` and shows it only for failures.
pub fn say_skipped(test: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test} needs the data set (../shared/data or $DELTAENERGY_DATA; see tests/README.md)"
    );
}

/// Runs the `deltaenergy` binary with the data set's tokenizer as its default (when there is one).
pub fn run_cli(args: &[&str]) -> std::process::Output {
    run_cli_env(args, &[])
}

/// [`run_cli`] with extra environment variables.
pub fn run_cli_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_deltaenergy"));
    cmd.args(args);
    if let Some(data) = data() {
        cmd.env("DELTAENERGY_TOKENIZER", data.join("clip-tokenizer"));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

pub fn model_dir(name: &str) -> PathBuf {
    root().join("tests/fixtures/models").join(name)
}

#[derive(Deserialize)]
pub struct RefImage {
    pub source: String,
    pub pixel_values: Vec<f32>,
    pub embedding: Vec<f32>,
}

#[derive(Deserialize)]
pub struct RefText {
    pub text: String,
    pub ids: Vec<u32>,
    pub embedding: Vec<f32>,
}

#[derive(Deserialize)]
pub struct Reference {
    pub image_size: usize,
    pub logit_scale: f32,
    pub images: Vec<RefImage>,
    pub texts: Vec<RefText>,
}

pub fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(model_dir(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A feature vector scaled to unit length, in f64.
pub fn normalised(v: &[f32]) -> Vec<f64> {
    let n = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    v.iter().map(|&x| x as f64 / n).collect()
}

/// (cosine, max abs difference after normalisation).
pub fn compare(got: &[f32], want: &[f32]) -> (f64, f64) {
    assert_eq!(got.len(), want.len(), "embedding lengths differ");
    let (a, b) = (normalised(got), normalised(want));
    let cos = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    (cos, max)
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32]) -> (f64, f64) {
    let (cos, max) = compare(got, want);
    assert!(
        cos >= MIN_COSINE && max <= MAX_ABS,
        "{what}: cosine {cos:.8} (need ≥ {MIN_COSINE}), max abs {max:.2e} (need ≤ {MAX_ABS})"
    );
    (cos, max)
}

/// The device for a backend. wgpu must work where tests run (CI installs lavapipe); set
/// DELTAENERGY_SKIP_WGPU=1 to skip the wgpu half explicitly on a machine without Vulkan.
pub fn device(backend: deltaenergy::device::Backend) -> Option<burn::tensor::Device> {
    use deltaenergy::device::Backend;
    if backend == Backend::Wgpu && std::env::var_os("DELTAENERGY_SKIP_WGPU").is_some() {
        eprintln!("skipping wgpu: DELTAENERGY_SKIP_WGPU is set");
        return None;
    }
    Some(deltaenergy::device::device(backend).expect("backend unavailable"))
}

/// One test body, run once per shipped backend (candle's `test_device!` idea).
macro_rules! on_every_backend {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn cpu() {
                if let Some(d) = $crate::common::device(deltaenergy::device::Backend::Cpu) {
                    ($body)(d)
                }
            }
            #[test]
            fn wgpu() {
                if let Some(d) = $crate::common::device(deltaenergy::device::Backend::Wgpu) {
                    ($body)(d)
                }
            }
        }
    };
}

/// The committed demo model (`www/models/cifar-clip.q8.bundle`).
pub fn demo_bundle() -> Vec<u8> {
    std::fs::read(root().join("www/models/cifar-clip.q8.bundle"))
        .expect("the demo model is committed (make demo-model rebuilds it)")
}

/// The real CLIP merges, gzipped as bundles store them, from the committed demo bundle, so that
/// the library's tests need no data set for a tokenizer (tests/tokenizer.rs checks the
/// tokenizer itself against the data set's files and Hugging Face's ids).
pub fn merges_gz() -> Vec<u8> {
    let bytes = demo_bundle();
    let bundle = deltaenergy::bundle::Bundle::parse(&bytes).unwrap();
    bundle.bytes(bundle.header.tokenizer).to_vec()
}

/// CLIP's tokenizer (see [`merges_gz`]).
pub fn clip_tokenizer() -> deltaenergy::clip::tokenizer::ClipTokenizer {
    deltaenergy::clip::tokenizer::ClipTokenizer::from_bpe_gz(&merges_gz()).unwrap()
}
