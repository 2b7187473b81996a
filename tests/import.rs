//! Converting a checkpoint piece by piece, as the browser does: the table of contents from the
//! file's first bytes, then each tensor's byte range on its own (a `File` slice or an HTTP Range
//! request), through the same `Converter` the command line uses. The result must be the very
//! bundle the command line makes from the whole file, and every damaged input a clear error.

mod common;

use common::*;
use deltaenergy::clip::checkpoint::Checkpoint;
use deltaenergy::convert::{convert, ConvertOptions, Converter, Quant};
use deltaenergy::loader::{SafetensorsSource, Weight};
use deltaenergy::ClipConfig;

fn config(name: &str) -> ClipConfig {
    ClipConfig::from_json(&std::fs::read_to_string(model_dir(name).join("config.json")).unwrap())
        .unwrap()
}

fn options(quant: Quant) -> ConvertOptions {
    ConvertOptions {
        quant,
        source: "test".into(),
        text_features: false,
        ..Default::default()
    }
}

/// Converts `file` reading only ranges of it; counts the bytes read.
fn stream(name: &str, file: &[u8], quant: Quant) -> deltaenergy::Result<(Vec<u8>, u64)> {
    let len = file.len() as u64;
    let prefix = Checkpoint::prefix_len(&file[..8.min(file.len())], len)?;
    let ckpt = Checkpoint::parse(&file[..prefix as usize], len)?;
    let mut read = prefix;
    let mut c = Converter::new(&config(name), merges_gz(), options(quant))?;
    while let Some(spec) = c.pending().cloned() {
        let e = ckpt.entry(&spec)?;
        let bytes = &file[e.start as usize..e.end as usize];
        read += bytes.len() as u64;
        c.push(Weight::F32(ckpt.decode(&spec, bytes)?))?;
    }
    Ok((c.finish()?, read))
}

#[test]
fn streaming_gives_the_bundle_the_whole_file_gives() {
    for name in MODELS {
        let file = std::fs::read(model_dir(name).join("model.safetensors")).unwrap();
        for quant in [Quant::F32, Quant::F16, Quant::Q8, Quant::Q4] {
            let (streamed, read) = stream(name, &file, quant).unwrap();
            let whole = convert(
                &config(name),
                &mut SafetensorsSource::new(&file).unwrap(),
                merges_gz(),
                &options(quant),
                &deltaenergy::device::cpu(),
            )
            .unwrap();
            assert!(streamed == whole, "{name} {quant}: the bundles differ");
            // Each byte of the file is read at most once.
            assert!(
                read <= file.len() as u64,
                "{name}: read {read} of {}",
                file.len()
            );
        }
    }
}

fn err(name: &str, file: &[u8]) -> String {
    match stream(name, file, Quant::Q8) {
        Ok(_) => panic!("a damaged checkpoint converted"),
        Err(e) => e.to_string(),
    }
}

/// The bytes of a safetensors file with its header replaced (the data kept).
fn with_header(file: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&file[8..8 + n]).unwrap();
    edit(&mut header);
    let mut json = serde_json::to_vec(&header).unwrap();
    json.resize(n.max(json.len()), b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&file[8 + n..]);
    out
}

#[test]
fn damaged_checkpoints_are_clear_errors() {
    let name = MODELS[0];
    let file = std::fs::read(model_dir(name).join("model.safetensors")).unwrap();
    // Cut short: the tensors at the end lie outside the file.
    let e = err(name, &file[..file.len() - 1000]);
    assert!(
        e.contains("outside the file") && e.contains("complete"),
        "{e}"
    );
    // Not a safetensors file at all.
    let e = err(name, b"{\"architectures\": [\"CLIPModel\"]}");
    assert!(e.contains("not a safetensors file"), "{e}");
    let e = err(name, &[1, 2, 3]);
    assert!(e.contains("too short"), "{e}");
    // A header claiming more than the file holds.
    let mut big = file.clone();
    big[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(err(name, &big).contains("header claims"));
    // A tensor of the wrong shape (the data length changed to match, so only the shape is off).
    let key = "vision_model.post_layernorm.weight";
    let wrong = with_header(&file, |h| {
        let e = &mut h[key];
        let d = e["shape"][0].as_u64().unwrap();
        e["shape"] = serde_json::json!([d / 2, 2]);
    });
    let e = err(name, &wrong);
    assert!(e.contains(key) && e.contains("shape"), "{e}");
    // A tensor whose byte length disagrees with its shape.
    let short = with_header(&file, |h| {
        let (a, b) = (
            h[key]["data_offsets"][0].as_u64().unwrap(),
            h[key]["data_offsets"][1].as_u64().unwrap(),
        );
        h[key]["data_offsets"] = serde_json::json!([a, b - 4]);
    });
    let e = err(name, &short);
    assert!(e.contains(key) && e.contains("bytes"), "{e}");
    // A dtype the model cannot use.
    let ints = with_header(&file, |h| h[key]["dtype"] = "I32".into());
    let e = err(name, &ints);
    assert!(e.contains(key) && e.contains("I32"), "{e}");
    // A missing tensor.
    let missing = with_header(&file, |h| {
        h.as_object_mut().unwrap().remove("logit_scale");
    });
    let e = err(name, &missing);
    assert!(e.contains("logit_scale"), "{e}");
    // Stopping early is refused rather than written as a bundle.
    let mut c = Converter::new(&config(name), merges_gz(), options(Quant::F32)).unwrap();
    c.push(Weight::F32(vec![0.0; 3])).unwrap_err();
    let e = c.finish().unwrap_err().to_string();
    assert!(e.contains("stopped before"), "{e}");
}

/// `tokenizer.json` (the form the Hub serves most) gives the merges `merges.txt` gives.
#[test]
fn tokenizer_json_gives_the_same_merges() {
    let data = data_or_skip!();
    let dir = data.join("clip-tokenizer");
    let from_json = deltaenergy::convert::merges_from_tokenizer_json(
        &std::fs::read(dir.join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    let compress = deltaenergy::convert::compress_merges;
    assert!(
        compress(&from_json).unwrap()
            == compress(&std::fs::read(dir.join("merges.txt")).unwrap()).unwrap()
    );
    for bad in [&b"{}"[..], b"not json", b"{\"model\": {\"merges\": [3]}}"] {
        assert!(deltaenergy::convert::merges_from_tokenizer_json(bad).is_err());
    }
}
