//! Fuzzes the bundle reader past its checksum: the input is taken as everything after the
//! preamble (header length, header, data), a valid preamble with the right SHA-256 is put in
//! front, and the reader must return Ok or Err — never panic, never allocate absurdly. Every
//! tensor the header lists is then decoded through the same source the model builder uses.
#![no_main]

use deltaenergy::bundle::{Bundle, BundleSource, FORMAT_VERSION, MAGIC};
use deltaenergy::loader::{Init, WeightSource};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

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
        let _ = bundle.tokenizer();
        let _ = bundle.context();
        let _ = bundle.text_features();
        let mut source = BundleSource::new(&bundle);
        for t in bundle.header.tensors.clone() {
            let _ = source.take(&t.name, &t.shape, Init::Zeros);
            let _ = source.take_linear(&t.name, &t.shape);
        }
    }
});
