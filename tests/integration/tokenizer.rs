//! The tokenizer against Hugging Face's `CLIPTokenizerFast` on the real CLIP files: every case in
//! `tests/fixtures/tokenizer/cases.json` (written by `tools/reference/make_tokens.py`) must give
//! exactly the same ids, whether the vocabulary comes from `vocab.json` + `merges.txt` or from
//! OpenAI's `bpe_simple_vocab_16e6.txt.gz`.

use crate::common;
use std::path::{Path, PathBuf};

use deltaenergy::clip::tokenizer::{ClipTokenizer, TokenizerError, CONTEXT_LENGTH, EOT, SOT};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn read_text(path: PathBuf) -> String {
    String::from_utf8(read(path)).expect("UTF-8")
}

fn hf_files(data: &Path) -> (String, String) {
    let dir = data.join("clip-tokenizer");
    (
        read_text(dir.join("vocab.json")),
        read_text(dir.join("merges.txt")),
    )
}

fn from_hf_files(data: &Path) -> ClipTokenizer {
    let (vocab, merges) = hf_files(data);
    ClipTokenizer::from_vocab_merges(&vocab, &merges).expect("the HF files load")
}

fn openai_gz(data: &Path) -> Vec<u8> {
    read(data.join("clip-bpe/bpe_simple_vocab_16e6.txt.gz"))
}

fn cases() -> Vec<Case> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/cases.json");
    serde_json::from_slice(&read(path)).expect("cases.json parses")
}

/// Checks every case; reports the first mismatches in full rather than stopping at one.
fn check_all(tok: &ClipTokenizer, source: &str) {
    let cases = cases();
    assert!(cases.len() > 1000, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let got = tok.encode(&case.text);
        if got != case.ids {
            failures.push(format!(
                "text {:?}\n  expected {:?}\n  got      {:?}",
                case.text, case.ids, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{source}: {} of {} cases differ from CLIPTokenizerFast; first ones:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn matches_hf_on_every_case() {
    let data = data_or_skip!();
    check_all(&from_hf_files(&data), "vocab.json + merges.txt");
}

#[test]
fn openai_gz_matches_hf_on_every_case() {
    let data = data_or_skip!();
    check_all(
        &ClipTokenizer::from_bpe_gz(&openai_gz(&data)).expect("the gz loads"),
        "bpe_simple_vocab_16e6.txt.gz",
    );
}

/// The tokenizer a bundle carries (the merges only; the vocabulary is derived from them), here
/// the committed demo bundle's: the one check of token ids that needs no data set.
#[test]
fn a_bundles_tokenizer_matches_hf_on_every_case() {
    check_all(&common::clip_tokenizer(), "the demo bundle's merges");
}

#[test]
fn openai_gz_builds_the_same_vocabulary() {
    let data = data_or_skip!();
    let hf = from_hf_files(&data);
    let openai = ClipTokenizer::from_bpe_gz(&openai_gz(&data)).unwrap();
    assert_eq!(hf.vocab_size(), 49408);
    assert_eq!(openai.vocab_size(), hf.vocab_size());
    let vocab: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&hf_files(&data).0).unwrap();
    for (token, id) in &vocab {
        let id = id.as_u64().unwrap() as u32;
        assert_eq!(openai.token_id(token), Some(id), "token {token:?}");
        assert_eq!(hf.token_id(token), Some(id), "token {token:?}");
    }
    assert_eq!(hf.token_id("<|startoftext|>"), Some(SOT));
    assert_eq!(hf.token_id("<|endoftext|>"), Some(EOT));
}

#[test]
fn truncation_and_decoding() {
    let tok = common::clip_tokenizer();
    let long = "a photo of a cat. ".repeat(30);
    let ids = tok.encode(&long);
    assert_eq!(ids.len(), CONTEXT_LENGTH);
    assert_eq!((ids[0], ids[CONTEXT_LENGTH - 1]), (SOT, EOT));
    assert_eq!(
        &ids[1..CONTEXT_LENGTH - 1],
        &tok.encode_tokens(&long)[..CONTEXT_LENGTH - 2]
    );
    assert_eq!(tok.encode_with_max_len(&long, 10).len(), 10);
    assert_eq!(
        tok.decode(&tok.encode("A photo of a CAT, café! 🐈")),
        "a photo of a cat , café ! 🐈"
    );
}

#[test]
fn malformed_inputs_are_errors_not_panics() {
    let data = data_or_skip!();
    let gz = openai_gz(&data);
    for cut in [0, 10, gz.len() / 2, gz.len() - 1] {
        match ClipTokenizer::from_bpe_gz(&gz[..cut]) {
            Err(TokenizerError::BadGzip(_)) => {}
            other => panic!("gz cut at {cut}: {:?}", other.map(|_| "loaded")),
        }
    }
    let (vocab, merges) = hf_files(&data);
    for bad in [
        "[\"a\", \"b\"]",
        "\"vocab\"",
        "{\"a\": \"zero\"}",
        &vocab[..vocab.len() / 2],
    ] {
        let err = ClipTokenizer::from_vocab_merges(bad, &merges).unwrap_err();
        assert!(matches!(err, TokenizerError::MalformedVocab(_)), "{err}");
    }
    let mut lines: Vec<&str> = merges.lines().collect();
    assert_eq!(lines[2], "t h");
    lines[2] = "th";
    let one_token = lines.join("\n");
    let err = ClipTokenizer::from_vocab_merges(&vocab, &one_token).unwrap_err();
    assert!(
        matches!(err, TokenizerError::BadMerge { line: 3, .. }),
        "{err}"
    );
    let unknown = format!("{merges}\nzzqq\u{1F408} x\n");
    let err = ClipTokenizer::from_vocab_merges(&vocab, &unknown).unwrap_err();
    assert!(matches!(err, TokenizerError::BadMerge { .. }), "{err}");
    let no_eot = vocab.replace("\"<|endoftext|>\"", "\"<|end|>\"");
    let err = ClipTokenizer::from_vocab_merges(&no_eot, &merges).unwrap_err();
    assert!(
        matches!(err, TokenizerError::MissingSpecialToken("<|endoftext|>")),
        "{err}"
    );
}
