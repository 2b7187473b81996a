//! Fuzzes the bundle reader past its checksum: the input is taken as everything after the
//! preamble (header length, header, data), a valid preamble with the right SHA-256 is put in
//! front, and the reader must return Ok or Err — never panic, never allocate absurdly. Every
//! tensor the header lists is then decoded through the same source the model builder uses.
//!
//! A valid bundle's tokenizer is the whole 48,894-merge BPE (gzip), whose parse is ~10 ms, and
//! most mutations leave it untouched: a tokenizer section already parsed (the same bytes, so the
//! same outcome) is not parsed again. That raised the rate here from ~100 to ~420 executions a
//! second without leaving any distinct tokenizer input unread.
#![no_main]

use std::cell::RefCell;
use std::collections::HashSet;

use deltaenergy::bundle::{Bundle, BundleSource, FORMAT_VERSION, MAGIC};
use deltaenergy::clip::loader::{Init, WeightSource};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

thread_local! {
    static SEEN: RefCell<HashSet<[u8; 32]>> = RefCell::new(HashSet::new());
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let mut file = Vec::with_capacity(48 + data.len());
    file.extend_from_slice(&MAGIC);
    file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&data[..4]); // header length, fuzzed
    file.extend_from_slice(&[0u8; 32]);
    file.extend_from_slice(&data[4..]);
    let digest: [u8; 32] = Sha256::digest(&file[48..]).into();
    file[16..48].copy_from_slice(&digest);
    if let Ok(bundle) = Bundle::parse(&file) {
        let key: [u8; 32] = Sha256::digest(bundle.bytes(bundle.header.tokenizer)).into();
        let fresh = SEEN.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() > 100_000 {
                s.clear();
            }
            s.insert(key)
        });
        if fresh {
            let _ = bundle.tokenizer();
        }
        let _ = bundle.context();
        let _ = bundle.text_features();
        let mut source = BundleSource::new(&bundle);
        for t in bundle.header.tensors.clone() {
            let _ = source.take(&t.name, &t.shape, Init::Zeros);
            let _ = source.take_linear(&t.name, &t.shape);
        }
    }
});
