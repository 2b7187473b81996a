//! Bundles: a bundle converted from a Hugging Face directory predicts like the directory within
//! each precision's tolerance on every backend, carries its classes, prompt and settings, and
//! every kind of damage is a clear error.

use crate::common::{self, *};
use burn::tensor::Device;
use deltaenergy::bundle::convert::{convert, ConvertOptions, Quant};
use deltaenergy::bundle::{
    Bundle, BundleBytes, BundleWriter, Header, Provenance, Section, StoredDtype,
};
use deltaenergy::clip::checkpoint::CheckpointSource;
use deltaenergy::clip::loader::load_hf_dir;
use deltaenergy::clip::prompt::{class_features, Prompt};
use deltaenergy::device::{read_f32, rows};
use deltaenergy::{ClipConfig, Error};
use std::borrow::Cow;
use std::cell::RefCell;

const NAME: &str = "tiny-quickgelu-p8";
const CLASSES: [&str; 5] = ["airplane", "cat", "dog", "frog", "truck"];

fn config(name: &str) -> ClipConfig {
    ClipConfig::from_json(&std::fs::read_to_string(model_dir(name).join("config.json")).unwrap())
        .unwrap()
}

fn make(name: &str, options: &ConvertOptions) -> Vec<u8> {
    let weights = std::fs::read(model_dir(name).join("model.safetensors")).unwrap();
    let mut src = CheckpointSource::new(&weights[..], weights.len() as u64).unwrap();
    convert(
        &config(name),
        &mut src,
        merges_gz(),
        options,
        &deltaenergy::device::cpu(),
    )
    .unwrap()
}

fn options(quant: Quant) -> ConvertOptions {
    ConvertOptions {
        quant,
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        source: "test".into(),
        ..Default::default()
    }
}

/// (min cosine, max abs) of bundle embeddings against the directory's, images then texts.
fn agreement(name: &str, bytes: &[u8], device: &Device) -> (f64, f64) {
    let base = load_hf_dir(&model_dir(name), device).unwrap();
    let bundle = Bundle::parse(bytes).unwrap();
    let model = bundle.model(device).unwrap();
    let r = reference(name);
    let pixels: Vec<Vec<f32>> = r.images.iter().map(|i| i.pixel_values.clone()).collect();
    let ids: Vec<Vec<u32>> = r.texts.iter().map(|t| t.ids.clone()).collect();
    let dim = model.config.projection_dim;
    let pairs = [
        (
            model.embed_pixels(&pixels).unwrap(),
            base.embed_pixels(&pixels).unwrap(),
        ),
        (
            model.encode_token_ids(&ids).unwrap(),
            base.encode_token_ids(&ids).unwrap(),
        ),
    ];
    let (mut min_cos, mut max_abs) = (1.0f64, 0.0f64);
    for (a, b) in pairs {
        for (x, y) in rows(read_f32(a).unwrap(), dim)
            .iter()
            .zip(rows(read_f32(b).unwrap(), dim))
        {
            let (c, m) = compare(x, &y);
            min_cos = min_cos.min(c);
            max_abs = max_abs.max(m);
        }
    }
    (min_cos, max_abs)
}

/// Bundle embeddings against the directory's: f32 reproduces it, and f16 ≥ 0.9999, q8 ≥ 0.999,
/// q4 ≥ 0.99 in cosine (the bounds the full-size model is held to in `make quant-report`).
fn precision_tolerances(device: Device) {
    for name in MODELS {
        for (quant, min_cos) in [
            (Quant::F32, 0.999999),
            (Quant::F16, 0.9999),
            (Quant::Q8, 0.999),
            (Quant::Q4, 0.98),
        ] {
            let bytes = make(name, &options(quant));
            let (cos, max) = agreement(name, &bytes, &device);
            eprintln!(
                "{name} {quant}: {} bytes, min cosine {cos:.6}, max abs {max:.2e}",
                bytes.len()
            );
            assert!(cos >= min_cos, "{name} {quant}: cosine {cos} < {min_cos}");
            if quant == Quant::F32 {
                assert!(
                    max <= 1e-6,
                    "f32 bundle must reproduce the directory: {max}"
                );
            }
        }
    }
}

on_every_backend!(bundle_precisions_within_tolerance, precision_tolerances);

#[test]
fn quantized_bundles_store_linears_quantized_and_are_smaller() {
    let sizes: Vec<usize> = [Quant::F32, Quant::F16, Quant::Q8, Quant::Q4]
        .iter()
        .map(|&q| make(NAME, &options(q)).len())
        .collect();
    assert!(
        sizes[0] > sizes[1] && sizes[1] > sizes[2] && sizes[2] > sizes[3],
        "{sizes:?}"
    );
    let bytes = make(NAME, &options(Quant::Q4));
    let b = Bundle::parse(&bytes).unwrap();
    let fc1 = b
        .tensor("vision_model.encoder.layers.0.mlp.fc1.weight")
        .unwrap();
    assert_eq!((fc1.dtype, fc1.block), (StoredDtype::Q4, Some(32)));
    // At q4 the patch embedding and the projections stay q8 (see convert::stored_dtype).
    for name in [
        "vision_model.embeddings.patch_embedding.weight",
        "visual_projection.weight",
    ] {
        assert_eq!(b.tensor(name).unwrap().dtype, StoredDtype::Q8, "{name}");
    }
    let tok = b
        .tensor("text_model.embeddings.token_embedding.weight")
        .unwrap();
    assert_eq!(
        tok.dtype,
        StoredDtype::F16,
        "width 8 is not a multiple of the block"
    );
    // Text width 8 is not a multiple of the block: those linears fall back to f16.
    let q = b
        .tensor("text_model.encoder.layers.0.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(q.dtype, StoredDtype::F16);
    let ln = b.tensor("vision_model.pre_layrnorm.weight").unwrap();
    assert_eq!(ln.dtype, StoredDtype::F32);
}

#[test]
fn bundle_carries_classes_settings_and_features() {
    let mut opts = options(Quant::Q8);
    opts.score.tau = 0.05;
    opts.score.c = 2;
    let bytes = make(NAME, &opts);
    let b = Bundle::parse(&bytes).unwrap();
    assert_eq!(b.header.classes, CLASSES);
    assert_eq!((b.header.score.tau, b.header.score.c), (0.05, 2));
    assert_eq!(
        b.header.provenance.converter,
        format!("deltaenergy {}", env!("CARGO_PKG_VERSION"))
    );
    // Precomputed features equal what the bundle's own model computes.
    let device = deltaenergy::device::cpu();
    let model = b.model(&device).unwrap();
    let tok = b.tokenizer().unwrap();
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    let fresh = class_features(&model, &tok, &classes, &b.prompt()).unwrap();
    for (stored, f) in b.text_features().unwrap().iter().zip(&fresh) {
        let (cos, _) = compare(stored, f);
        assert!(cos > 0.9999999, "{cos}");
    }
    // The bundle's tokenizer is the real one.
    let hf = reference(NAME);
    for t in &hf.texts {
        assert_eq!(tok.encode(&t.text), t.ids);
    }
}

/// A learned context equal to the token embeddings of "a photo of a" reproduces the template,
/// on every backend: the page runs learned-context bundles on WebGPU.
fn context_prompt_matches_template_when_context_is_the_template(device: Device) {
    let model = load_hf_dir(&model_dir(NAME), &device).unwrap();
    let tok = deltaenergy::clip::tokenizer::ClipTokenizer::from_bpe_gz(&merges_gz()).unwrap();
    let ids = tok.encode_tokens("a photo of a");
    let table = read_f32(model.text.token_embedding.weight.val()).unwrap();
    let width = model.text.width();
    let vectors: Vec<f32> = ids
        .iter()
        .flat_map(|&i| table[i as usize * width..(i as usize + 1) * width].to_vec())
        .collect();
    let mut opts = options(Quant::F32);
    opts.context = Some((vectors, ids.len(), ".".into()));
    let bytes = make(NAME, &opts);
    let b = Bundle::parse(&bytes).unwrap();
    assert!(matches!(b.prompt(), Prompt::Context { n_ctx: 4, .. }));
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    let features =
        |m: &deltaenergy::Clip, prompt: &Prompt| class_features(m, &tok, &classes, prompt).unwrap();
    let templated = features(&model, &Prompt::Template("a photo of a {}.".into()));
    // The context spliced in on this device, from the bundle's own model.
    let spliced = features(&b.model(&device).unwrap(), &b.prompt());
    let stored = b.text_features().unwrap();
    for ((s, c), t) in stored.iter().zip(&spliced).zip(&templated) {
        for (what, got) in [("stored", s), ("spliced", c)] {
            let (cos, max) = compare(got, t);
            assert!(cos > 0.999999 && max < 1e-5, "{what}: {cos} {max}");
        }
    }
}

on_every_backend!(
    learned_context,
    context_prompt_matches_template_when_context_is_the_template
);

// ---- damage -------------------------------------------------------------------------------

/// The error a damaged bundle gives, the same whether it is read from memory or a range at a
/// time.
fn err(bytes: &[u8]) -> String {
    fn load<'a, B: BundleBytes<'a>>(b: Result<Bundle<'a, B>, Error>) -> String {
        match b {
            Ok(b) => match b.model(&deltaenergy::device::cpu()) {
                Ok(_) => panic!("a damaged bundle loaded"),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        }
    }
    let message = load(Bundle::parse(bytes));
    let ranges = Ranges::new(bytes);
    assert_eq!(load(Bundle::read(&ranges)), message);
    message
}

/// A bundle kept elsewhere, as the page keeps it in a JavaScript buffer: each range asked for
/// is copied out, and logged.
struct Ranges<'f> {
    file: &'f [u8],
    asked: RefCell<Vec<std::ops::Range<usize>>>,
}

impl<'f> Ranges<'f> {
    fn new(file: &'f [u8]) -> Self {
        Self {
            file,
            asked: RefCell::new(Vec::new()),
        }
    }
}

impl BundleBytes<'static> for &Ranges<'_> {
    fn size(&self) -> usize {
        self.file.len()
    }
    fn get(&self, range: std::ops::Range<usize>) -> Cow<'static, [u8]> {
        self.asked.borrow_mut().push(range.clone());
        Cow::Owned(self.file[range].to_vec())
    }
}

/// The page's way of loading: the bundle read where it is, a section at a time once verified
/// (never the whole file into memory of its own), gives the model that reading it from memory
/// gives.
#[test]
fn a_bundle_read_a_section_at_a_time_is_the_same_model() {
    let bytes = make(NAME, &options(Quant::Q8));
    let whole = Bundle::parse(&bytes).unwrap();
    let source = Ranges::new(&bytes);
    let ranged = Bundle::read(&source).unwrap();
    assert_eq!(ranged.sha256, whole.sha256);
    assert_eq!(
        serde_json::to_string(&ranged.header).unwrap(),
        serde_json::to_string(&whole.header).unwrap()
    );
    // Once verified, every read is one section the header names, a tensor's values or scales,
    // and none is read twice.
    source.asked.borrow_mut().clear();
    let device = deltaenergy::device::cpu();
    let model = ranged.model(&device).unwrap();
    // Sections are placed from the first multiple of 64 after the header (ARCHITECTURE.md).
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let data_start = (48 + header_len).div_ceil(64) * 64;
    let sections: Vec<std::ops::Range<usize>> = whole
        .header
        .tensors
        .iter()
        .flat_map(|t| std::iter::once(t.data).chain(t.scales))
        .map(|s| data_start + s.offset as usize..data_start + (s.offset + s.length) as usize)
        .collect();
    let asked = source.asked.borrow().clone();
    assert!(asked.len() >= whole.header.tensors.len());
    for (i, r) in asked.iter().enumerate() {
        assert!(sections.contains(r), "{r:?} is not one section");
        assert!(!asked[..i].contains(r), "{r:?} is read twice");
    }
    let r = reference(NAME);
    let pixels: Vec<Vec<f32>> = r.images.iter().map(|i| i.pixel_values.clone()).collect();
    let got = read_f32(model.embed_pixels(&pixels).unwrap()).unwrap();
    let want = read_f32(whole.model(&device).unwrap().embed_pixels(&pixels).unwrap()).unwrap();
    assert_eq!(got, want);
}

/// Re-signs a bundle after an edit, so the checks behind the checksum are reached.
fn resign(mut bytes: Vec<u8>) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let digest: [u8; 32] = Sha256::digest(&bytes[48..]).into();
    bytes[16..48].copy_from_slice(&digest);
    bytes
}

/// Writes a bundle from `header` and sections made by `fill`, signed correctly.
fn forge(fill: impl FnOnce(&mut BundleWriter, &mut Header)) -> Vec<u8> {
    let good = make(NAME, &options(Quant::Q8));
    let b = Bundle::parse(&good).unwrap();
    let mut writer = BundleWriter::new();
    let mut header = b.header.clone();
    header.tokenizer = writer.section(&b.bytes(b.header.tokenizer));
    header.text_features = None;
    for t in &b.header.tensors {
        let data = writer.section(&b.bytes(t.data));
        let scales = t.scales.map(|s| writer.section(&b.bytes(s)));
        writer.tensors.push(deltaenergy::bundle::TensorEntry {
            data,
            scales,
            ..t.clone()
        });
    }
    fill(&mut writer, &mut header);
    writer.finish(header).unwrap()
}

#[test]
fn damaged_files_are_clear_errors() {
    let good = make(NAME, &options(Quant::Q8));
    assert!(err(&[]).contains("truncated"));
    assert!(err(&good[..30]).contains("truncated"));
    assert!(err(&good[..good.len() / 2]).contains("checksum"));
    let mut magic = good.clone();
    magic[1] = b'X';
    assert!(err(&magic).contains("magic"));
    let mut future = good.clone();
    future[8..12].copy_from_slice(&7u32.to_le_bytes());
    let e = err(&future);
    assert!(e.contains("version 7"), "{e}");
    for at in [60, good.len() / 3, good.len() - 1] {
        let mut flipped = good.clone();
        flipped[at] ^= 0x40;
        assert!(err(&flipped).contains("checksum"), "flip at {at}");
    }
    let mut huge = good.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(err(&huge).contains("limit"));
    let mut long = good.clone();
    long[12..16].copy_from_slice(&(10u32 << 20).to_le_bytes());
    assert!(err(&long).contains("truncated"));
    let json = resign({
        let mut b = good.clone();
        b[48] = b'[';
        b
    });
    assert!(err(&json).contains("header"));
}

/// A threshold naming a score that does not exist (the `delta-energy` typo) is refused on
/// reading, naming the known scores, rather than loaded and silently ignored.
#[test]
fn a_threshold_on_an_unknown_score_is_refused() {
    let bytes = demo_bundle();
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[48..48 + header_len]).unwrap();
    let at = 48
        + header
            .find("\"score\":\"delta_energy\"")
            .expect("the demo bundle's threshold");
    let mut typo = bytes.clone();
    let with_typo = b"\"score\":\"delta-energy\"";
    typo[at..at + with_typo.len()].copy_from_slice(with_typo);
    let e = err(&resign(typo));
    assert!(
        e.contains("delta-energy") && e.contains("delta_energy") && e.contains("max_logit"),
        "{e}"
    );
}

#[test]
fn inconsistent_headers_are_clear_errors() {
    // A section that points past the end of the file (an absurd size), re-signed.
    let e = err(&forge(|_, h| {
        h.tokenizer = Section {
            offset: u64::MAX - 5,
            length: 100,
        }
    }));
    assert!(e.contains("tokenizer") && e.contains("outside"), "{e}");
    let e = err(&forge(|w, _| w.tensors[3].data.length = 1 << 40));
    assert!(e.contains("outside") || e.contains("needs"), "{e}");
    // A shape that disagrees with the config.
    let e = err(&forge(|w, _| {
        let t = w
            .tensors
            .iter_mut()
            .find(|t| t.name == "visual_projection.weight")
            .unwrap();
        t.shape = vec![32, 32];
    }));
    assert!(
        e.contains("visual_projection.weight") && e.contains("[16, 64]"),
        "{e}"
    );
    // A shape whose element count overflows.
    let e = err(&forge(|w, _| w.tensors[0].shape = vec![usize::MAX, 4]));
    assert!(e.contains("absurd"), "{e}");
    // A block size the kernels cannot read.
    let e = err(&forge(|w, _| {
        let t = w
            .tensors
            .iter_mut()
            .find(|t| t.dtype == StoredDtype::Q8)
            .unwrap();
        t.block = Some(3);
    }));
    assert!(e.contains("block size"), "{e}");
    // A missing tensor.
    let e = err(&forge(|w, _| {
        w.tensors.retain(|t| t.name != "text_projection.weight")
    }));
    assert!(e.contains("text_projection.weight"), "{e}");
    // NaN and infinite scales.
    for bad in [f32::NAN, f32::INFINITY] {
        let e = err(&forge(|w, _| {
            let t = w
                .tensors
                .iter()
                .find(|t| t.dtype == StoredDtype::Q8)
                .unwrap()
                .clone();
            let scales: Vec<f32> = vec![bad; (t.scales.unwrap().length / 2) as usize];
            let s = w.section(&deltaenergy::bundle::quant::scales_to_bytes(&scales));
            w.tensors
                .iter_mut()
                .find(|x| x.name == t.name)
                .unwrap()
                .scales = Some(s);
        }));
        assert!(e.contains("scales") && e.contains("non-finite"), "{e}");
    }
    // Text features that do not match the classes.
    let e = err(&forge(|w, h| {
        h.text_features = Some(deltaenergy::bundle::FeaturesEntry {
            rows: 3,
            dim: 16,
            data: w.f32_section(&[0.0; 48]),
        });
    }));
    assert!(e.contains("text features"), "{e}");
    let _ = Provenance {
        source: String::new(),
        converter: String::new(),
        created: 0,
    };
    let _: Option<Error> = None;
}

/// Quantized weights stay quantized where a kernel multiplies them: the CPU's int8 kernel reads
/// the bundle's `[out, in]`, wgpu's quantized matmul a transposed view; autodiff gets f32.
#[test]
fn quantized_weights_stay_quantized() {
    let bytes = make(NAME, &options(Quant::Q4));
    let bundle = Bundle::parse(&bytes).unwrap();
    let fc1 = |d: &Device| {
        let w = bundle.model(d).unwrap().vision.layers[0]
            .mlp
            .fc1
            .weight
            .val();
        (w.dtype(), w.dims())
    };
    let cpu = deltaenergy::device::cpu();
    assert!(deltaenergy::device::runs_quantized_matmul(&cpu));
    let (dtype, dims) = fc1(&cpu);
    assert!(matches!(dtype, burn::tensor::DType::QFloat(_)), "{dtype:?}");
    assert_eq!(dims, [128, 64]);
    assert!(!deltaenergy::device::runs_quantized_matmul(
        &cpu.clone().autodiff()
    ));
    assert_eq!(fc1(&cpu.autodiff()), (burn::tensor::DType::F32, [64, 128]));
    if let Some(d) = common::device(deltaenergy::device::Backend::Wgpu) {
        assert!(deltaenergy::device::runs_quantized_matmul(&d), "{d:?}");
        let (dtype, dims) = fc1(&d);
        assert!(matches!(dtype, burn::tensor::DType::QFloat(_)), "{dtype:?}");
        assert_eq!(dims, [64, 128]);
    }
}

/// The CPU's int8 kernel against the same quantized weights multiplied in f32 (the autodiff
/// device dequantizes them at load): only the activations' i16 rounding separates the two, so
/// features agree far inside the q8/q4 tolerances above.
#[test]
fn cpu_int8_kernel_equals_the_dequantized_weights() {
    let cpu = deltaenergy::device::cpu();
    let f32_cpu = cpu.clone().autodiff();
    for name in MODELS {
        let r = reference(name);
        let pixels: Vec<Vec<f32>> = r.images.iter().map(|i| i.pixel_values.clone()).collect();
        let ids: Vec<Vec<u32>> = r.texts.iter().map(|t| t.ids.clone()).collect();
        for quant in [Quant::Q8, Quant::Q4] {
            let bytes = make(name, &options(quant));
            let bundle = Bundle::parse(&bytes).unwrap();
            let (int8, f32) = (bundle.model(&cpu).unwrap(), bundle.model(&f32_cpu).unwrap());
            let dim = int8.config.projection_dim;
            let pairs = [
                (int8.embed_pixels(&pixels), f32.embed_pixels(&pixels)),
                (int8.encode_token_ids(&ids), f32.encode_token_ids(&ids)),
            ];
            for (a, b) in pairs {
                let (a, b) = (read_f32(a.unwrap()).unwrap(), read_f32(b.unwrap()).unwrap());
                for (x, y) in rows(a, dim).iter().zip(rows(b, dim)) {
                    let (cos, max) = compare(x, &y);
                    assert!(
                        cos >= 0.999999 && max <= 5e-5,
                        "{name} {quant}: cosine {cos}, max abs {max:.2e}"
                    );
                }
            }
        }
    }
}
