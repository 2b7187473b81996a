//! Fuzzes what a stranger's checkpoint reaches when the page imports it: `config.json`, the
//! tokenizer files, and the weights file (safetensors or PyTorch's zip archive and its pickle)
//! read range by range as the browser reads it. The first byte picks the reader; each must
//! return Ok or Err, never panic or allocate absurdly.
#![no_main]

use deltaenergy::clip::checkpoint::Opener;
use deltaenergy::clip::specs::tensor_specs;
use deltaenergy::bundle::convert::{compress_merges, merges_from_tokenizer_json};
use deltaenergy::ClipConfig;
use libfuzzer_sys::fuzz_target;

// The seed config (tiny), so that whole checkpoints for it are a few kilobytes.
const CONFIG: &str = include_str!("../seed-config.json");

/// The reader promises to ask only for bytes inside the file.
fn bytes(file: &[u8], range: std::ops::Range<u64>) -> &[u8] {
    &file[range.start as usize..range.end as usize]
}

/// Opens the checkpoint and reads every tensor the seed config asks for, as `web::Import` does.
fn weights(file: &[u8]) -> Option<()> {
    let mut opener = Opener::new(file.len() as u64);
    while let Some(range) = opener.need().ok()? {
        opener.push(bytes(file, range)).ok()?;
    }
    let ckpt = opener.finish().ok()?;
    let config = ClipConfig::from_json(CONFIG).expect("the seed config");
    for spec in tensor_specs(&config) {
        let Ok(mut tensor) = ckpt.read(&spec.key, &spec.shape) else {
            continue;
        };
        while let Some(range) = tensor.need().ok()? {
            tensor.push(bytes(file, range)).ok()?;
        }
        let _ = tensor.finish();
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = ClipConfig::from_json(text);
            }
        }
        1 => {
            if let Ok(merges) = merges_from_tokenizer_json(rest) {
                let _ = compress_merges(&merges);
            }
            let _ = compress_merges(rest);
        }
        _ => {
            let _ = weights(rest);
        }
    }
});
