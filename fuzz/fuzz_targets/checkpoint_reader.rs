//! Fuzzes what a stranger's checkpoint reaches when the page imports it: `config.json`, the
//! tokenizer files and the safetensors table of contents and tensors. The first byte picks the
//! reader; each must return Ok or Err, never panic or allocate absurdly.
#![no_main]

use deltaenergy::clip::checkpoint::Checkpoint;
use deltaenergy::clip::specs::tensor_specs;
use deltaenergy::convert::{compress_merges, merges_from_tokenizer_json};
use deltaenergy::ClipConfig;
use libfuzzer_sys::fuzz_target;

// The seed config (tiny), so that whole checkpoints for it are a few kilobytes.
const CONFIG: &str = include_str!("../seed-config.json");

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
            let len = rest.len() as u64;
            if Checkpoint::prefix_len(rest, len).is_err() {
                return;
            }
            let Ok(ckpt) = Checkpoint::parse(rest, len) else {
                return;
            };
            let config = ClipConfig::from_json(CONFIG).expect("the seed config");
            for spec in tensor_specs(&config) {
                if let Ok(e) = ckpt.entry(&spec) {
                    let _ = ckpt.decode(&spec, &rest[e.start as usize..e.end as usize]);
                }
            }
        }
    }
});
