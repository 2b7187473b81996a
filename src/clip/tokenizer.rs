//! CLIP's byte-level BPE tokenizer, reproducing the ids of Hugging Face's `CLIPTokenizerFast`
//! (the `tokenizer.json` of `openai/clip-vit-base-patch32`) exactly, including its quirks.
//!
//! The pipeline mirrors the one in `tokenizer.json`, step by step, because every step can change
//! ids on unusual input:
//!
//! 1. `<|endoftext|>` written literally in the text is an added token with `normalized: false`:
//!    it is cut out of the *raw* text (case-sensitive) and becomes id [`EOT`].
//! 2. Each remaining segment is normalized on its own: NFC, then lowercase *per character*
//!    (`char::to_lowercase`, so a final capital sigma becomes `σ`, never `ς`, unlike
//!    `str::to_lowercase`). HF's NFC uses Unicode 9.0 data, so marks and composites added since
//!    are left as they are (see [`nfc_unicode9`]). The `\s+ -> " "` replacement of
//!    `tokenizer.json` is skipped: the pre-tokenizer below drops exactly the same whitespace.
//! 3. `<|startoftext|>` is an added token with `normalized: true`: it is cut out of the
//!    *normalized* text, so `<|STARTOFTEXT|>` also becomes id [`SOT`].
//! 4. The rest is split with CLIP's regex, keeping only the matches (whitespace disappears).
//!    `<|ENDOFTEXT|>` in any other case is lowercased into a match of that regex's
//!    `<\|endoftext\|>` alternative, which the byte-level step then splits again with GPT-2's
//!    regex into `<|`, `endoftext`, `|>`; that second split is applied to every match, as in HF.
//! 5. Each piece is mapped to bytes and merged with BPE, `</w>` marking its last byte.
//!
//! Whitespace is Unicode `White_Space` (the 25 characters shared by Rust's `regex` and
//! Oniguruma): NBSP, U+3000, U+0085, U+2009 split words; U+200B, U+180E and the C0 separators
//! U+001C..U+001F do not and are encoded as punctuation.
//!
//! Checked against `tokenizers` 0.23.3 (`transformers` 5.24) on every code point alone and in
//! context, on ~200,000 random strings, and on `tests/fixtures/tokenizer/cases.json`.
//!
//! Nothing here touches the filesystem or spawns threads, so the module also builds for
//! `wasm32-unknown-unknown`; callers pass the files' contents.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Read;

use regex::Regex;

/// Id of `<|startoftext|>` in CLIP's vocabulary.
pub const SOT: u32 = 49406;
/// Id of `<|endoftext|>` in CLIP's vocabulary; also CLIP's padding and unknown token.
pub const EOT: u32 = 49407;
/// CLIP's text context: every prompt is padded or truncated to this many ids.
pub const CONTEXT_LENGTH: usize = 77;

/// Text of the start token, as it appears in `vocab.json`.
pub const SOT_TEXT: &str = "<|startoftext|>";
/// Text of the end token, as it appears in `vocab.json`.
pub const EOT_TEXT: &str = "<|endoftext|>";

/// Marks the last symbol of a word in CLIP's vocabulary.
const END_OF_WORD: &str = "</w>";

/// Number of merges OpenAI's `SimpleTokenizer` takes from `bpe_simple_vocab_16e6.txt.gz`
/// (`49152 - 256 - 2`): together with 512 byte tokens and 2 special tokens they make 49,408 ids.
pub const OPENAI_MERGES: usize = 49152 - 256 - 2;

/// CLIP's pre-tokenizer regex (the `Split` step of `tokenizer.json`). Only its matches are kept.
const SPLIT_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// GPT-2's byte-level regex without its whitespace alternatives (and without the optional
/// leading space of each alternative): the pieces it is applied to never contain whitespace,
/// so the removed parts can never match, and what remains needs no look-ahead.
const BYTE_LEVEL_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("malformed vocab.json: {0}")]
    MalformedVocab(String),
    #[error("bad merges line {line}: {reason}")]
    BadMerge { line: usize, reason: String },
    #[error("the vocabulary has no special token {0:?}")]
    MissingSpecialToken(&'static str),
    #[error("the BPE file is not valid gzip: {0}")]
    BadGzip(#[source] std::io::Error),
    #[error("the BPE file is not valid UTF-8")]
    NotUtf8,
    #[error("the BPE file has {found} merges, OpenAI's tokenizer needs {expected}")]
    TooFewMerges { expected: usize, found: usize },
}

/// One vocabulary entry as the decoder needs it.
#[derive(Debug, Clone)]
struct DecodedToken {
    bytes: Vec<u8>,
    end_of_word: bool,
    special: bool,
}

/// CLIP's tokenizer. Immutable after construction, hence `Send + Sync` and cheap to share.
#[derive(Clone)]
pub struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    decoder: HashMap<u32, DecodedToken>,
    /// `(left id, right id) -> (rank, merged id)`; the lowest rank merges first.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Id of each byte inside a word and at its end (with `</w>`), resolved once.
    byte_ids: [u32; 256],
    byte_end_ids: [u32; 256],
    sot: u32,
    eot: u32,
    split_re: Regex,
    byte_level_re: Regex,
}

/// Summarised: the derived form would print all 49,408 tokens.
impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.encoder.len())
            .field("merges", &self.merges.len())
            .field("sot", &self.sot)
            .field("eot", &self.eot)
            .finish_non_exhaustive()
    }
}

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes keep their
/// character, the other 68 bytes are moved to U+0100 and up, in byte order.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are characters");
            next += 1;
            c
        };
    }
    table
}

/// The bytes in the order OpenAI lists them in its vocabulary: printable ones first, then the
/// remapped ones (the insertion order of Python's `bytes_to_unicode()` dict).
fn openai_byte_order() -> Vec<u8> {
    let mut order: Vec<u8> = (0..=255u8)
        .filter(|b| matches!(b, 33..=126 | 161..=172 | 174..=255))
        .collect();
    order.extend((0..=255u8).filter(|b| !matches!(b, 33..=126 | 161..=172 | 174..=255)));
    order
}

/// A symbol of a word being merged; a doubly linked list over a `Vec` so a merge is O(1).
#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: usize,
    next: usize,
    alive: bool,
}

const NONE: usize = usize::MAX;

impl ClipTokenizer {
    /// From the Hugging Face files `vocab.json` and `merges.txt` (their contents).
    pub fn from_vocab_merges(vocab_json: &str, merges_txt: &str) -> Result<Self, TokenizerError> {
        let value: serde_json::Value = serde_json::from_str(vocab_json)
            .map_err(|e| TokenizerError::MalformedVocab(e.to_string()))?;
        let object = value.as_object().ok_or_else(|| {
            TokenizerError::MalformedVocab("expected a JSON object of token -> id".into())
        })?;
        let mut vocab = HashMap::with_capacity(object.len());
        for (token, id) in object {
            let id = id
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    TokenizerError::MalformedVocab(format!(
                        "id of {token:?} is {id}, not an integer in 0..2^32"
                    ))
                })?;
            vocab.insert(token.clone(), id);
        }

        let mut merges = Vec::new();
        for (index, line) in merges_txt.lines().enumerate() {
            let number = index + 1;
            if (index == 0 && line.starts_with("#version")) || line.is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                    merges.push((number, a.to_owned(), b.to_owned()))
                }
                _ => {
                    return Err(TokenizerError::BadMerge {
                        line: number,
                        reason: format!("expected two tokens separated by one space, got {line:?}"),
                    })
                }
            }
        }
        Self::build(vocab, &merges)
    }

    /// OpenAI's original `bpe_simple_vocab_16e6.txt.gz` (gzip bytes): vocab is built the way
    /// OpenAI CLIP builds it (256 byte chars in bytes_to_unicode order, the same with "</w>",
    /// the first 48894 merges joined, then the two special tokens) so ids equal vocab.json's.
    pub fn from_bpe_gz(gz_bytes: &[u8]) -> Result<Self, TokenizerError> {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz_bytes)
            .read_to_end(&mut raw)
            .map_err(TokenizerError::BadGzip)?;
        let text = String::from_utf8(raw).map_err(|_| TokenizerError::NotUtf8)?;

        // Like OpenAI: drop the header line, keep the next OPENAI_MERGES lines.
        let lines: Vec<&str> = text.split('\n').skip(1).take(OPENAI_MERGES).collect();
        if lines.len() < OPENAI_MERGES {
            return Err(TokenizerError::TooFewMerges {
                expected: OPENAI_MERGES,
                found: lines.len(),
            });
        }
        let mut merges = Vec::with_capacity(OPENAI_MERGES);
        for (index, line) in lines.iter().enumerate() {
            let number = index + 2;
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => merges.push((number, a.to_owned(), b.to_owned())),
                _ => {
                    return Err(TokenizerError::BadMerge {
                        line: number,
                        reason: format!("expected two tokens, got {line:?}"),
                    })
                }
            }
        }

        let byte_chars = bytes_to_unicode();
        let order = openai_byte_order();
        let mut tokens: Vec<String> = order
            .iter()
            .map(|&b| byte_chars[b as usize].to_string())
            .collect();
        tokens.extend(
            order
                .iter()
                .map(|&b| format!("{}{END_OF_WORD}", byte_chars[b as usize])),
        );
        tokens.extend(merges.iter().map(|(_, a, b)| format!("{a}{b}")));
        tokens.push(SOT_TEXT.to_owned());
        tokens.push(EOT_TEXT.to_owned());
        // Python's dict(zip(vocab, range(n))): a repeated token keeps its last id.
        let vocab: HashMap<String, u32> = tokens
            .into_iter()
            .enumerate()
            .map(|(id, t)| (t, id as u32))
            .collect();
        Self::build(vocab, &merges)
    }

    fn build(
        encoder: HashMap<String, u32>,
        merge_lines: &[(usize, String, String)],
    ) -> Result<Self, TokenizerError> {
        let sot = *encoder
            .get(SOT_TEXT)
            .ok_or(TokenizerError::MissingSpecialToken(SOT_TEXT))?;
        let eot = *encoder
            .get(EOT_TEXT)
            .ok_or(TokenizerError::MissingSpecialToken(EOT_TEXT))?;

        let mut merges = HashMap::with_capacity(merge_lines.len());
        for (rank, (line, a, b)) in merge_lines.iter().enumerate() {
            let lookup = |token: &str| {
                encoder
                    .get(token)
                    .copied()
                    .ok_or_else(|| TokenizerError::BadMerge {
                        line: *line,
                        reason: format!("token {token:?} is not in the vocabulary"),
                    })
            };
            let left = lookup(a)?;
            let right = lookup(b)?;
            let merged = lookup(&format!("{a}{b}"))?;
            // Later duplicates win, as in both HF and OpenAI.
            merges.insert((left, right), (rank as u32, merged));
        }

        let byte_chars = bytes_to_unicode();
        let mut byte_decoder = HashMap::with_capacity(256);
        let mut byte_ids = [eot; 256];
        let mut byte_end_ids = [eot; 256];
        for (b, &c) in byte_chars.iter().enumerate() {
            byte_decoder.insert(c, b as u8);
            // A byte missing from the vocabulary becomes the unknown token, as in HF.
            if let Some(&id) = encoder.get(c.to_string().as_str()) {
                byte_ids[b] = id;
            }
            if let Some(&id) = encoder.get(format!("{c}{END_OF_WORD}").as_str()) {
                byte_end_ids[b] = id;
            }
        }

        let decoder = encoder
            .iter()
            .map(|(token, &id)| {
                let special = id == sot || id == eot;
                let (body, end_of_word) = match token.strip_suffix(END_OF_WORD) {
                    Some(body) => (body, true),
                    None => (token.as_str(), false),
                };
                let mut bytes = Vec::with_capacity(body.len());
                for c in body.chars() {
                    match byte_decoder.get(&c) {
                        Some(&b) => bytes.push(b),
                        // Not a byte-level character: keep it as written.
                        None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
                (
                    id,
                    DecodedToken {
                        bytes,
                        end_of_word,
                        special,
                    },
                )
            })
            .collect();

        Ok(Self {
            encoder,
            decoder,
            merges,
            byte_ids,
            byte_end_ids,
            sot,
            eot,
            split_re: Regex::new(SPLIT_PATTERN).expect("constant regex"),
            byte_level_re: Regex::new(BYTE_LEVEL_PATTERN).expect("constant regex"),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// Id of a token as written in `vocab.json` (byte-level characters, `</w>` suffix).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.encoder.get(token).copied()
    }

    /// Id this vocabulary gives `<|startoftext|>` ([`SOT`] for CLIP's).
    pub fn sot_id(&self) -> u32 {
        self.sot
    }

    /// Id this vocabulary gives `<|endoftext|>` ([`EOT`] for CLIP's).
    pub fn eot_id(&self) -> u32 {
        self.eot
    }

    /// BPE ids of the text without SOT/EOT and without truncation
    pub fn encode_tokens(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(text, usize::MAX, &mut out);
        out
    }

    /// SOT + tokens + EOT, truncated to max_len (>= 2) with EOT kept last
    ///
    /// As HF's `truncation=True, max_length=max_len`: the text keeps its first `max_len - 2`
    /// tokens. A `max_len` below 2 is treated as 2.
    pub fn encode_with_max_len(&self, text: &str, max_len: usize) -> Vec<u32> {
        let budget = max_len.max(2) - 2;
        let mut out = Vec::with_capacity(budget.min(CONTEXT_LENGTH) + 2);
        out.push(self.sot);
        self.encode_into(text, budget, &mut out);
        out.push(self.eot);
        out
    }

    /// encode_with_max_len(text, 77)
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_with_max_len(text, CONTEXT_LENGTH)
    }

    /// Byte-level decode: each word-final token is followed by a space, special tokens and
    /// unknown ids are skipped, invalid UTF-8 becomes U+FFFD, and the result is trimmed.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for id in ids {
            if let Some(token) = self.decoder.get(id) {
                if token.special {
                    continue;
                }
                bytes.extend_from_slice(&token.bytes);
                if token.end_of_word {
                    bytes.push(b' ');
                }
            }
        }
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }

    /// Appends at most `limit` ids of `text` to `out` (stopping early once the limit is hit).
    fn encode_into(&self, text: &str, limit: usize, out: &mut Vec<u32>) {
        let start = out.len();
        let full = |out: &Vec<u32>| out.len() - start >= limit;
        for (segment, is_eot) in split_on(text, EOT_TEXT) {
            if full(out) {
                break;
            }
            if is_eot {
                out.push(self.eot);
                continue;
            }
            let normalized = normalize(segment);
            for (piece, is_sot) in split_on(&normalized, SOT_TEXT) {
                if full(out) {
                    break;
                }
                if is_sot {
                    out.push(self.sot);
                    continue;
                }
                'words: for word in self.split_re.find_iter(piece) {
                    for word in self.byte_level_re.find_iter(word.as_str()) {
                        if full(out) {
                            break 'words;
                        }
                        self.bpe(word.as_str().as_bytes(), out);
                    }
                }
            }
        }
        out.truncate(start.saturating_add(limit).min(out.len()));
    }

    /// Merges one word's bytes, lowest merge rank first and leftmost first among equal ranks
    /// (HF's order; the same as OpenAI's for a trained merge list). O(n log n) in the word length.
    fn bpe(&self, word: &[u8], out: &mut Vec<u32>) {
        let n = word.len();
        if n == 0 {
            return;
        }
        let mut symbols: Vec<Symbol> = word
            .iter()
            .enumerate()
            .map(|(i, &b)| Symbol {
                id: if i + 1 == n {
                    self.byte_end_ids[b as usize]
                } else {
                    self.byte_ids[b as usize]
                },
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
                alive: true,
            })
            .collect();
        if n == 1 {
            out.push(symbols[0].id);
            return;
        }
        let mut queue: BinaryHeap<Reverse<(u32, usize)>> = symbols
            .windows(2)
            .enumerate()
            .filter_map(|(i, w)| {
                self.merges
                    .get(&(w[0].id, w[1].id))
                    .map(|&(rank, _)| Reverse((rank, i)))
            })
            .collect();
        while let Some(Reverse((rank, pos))) = queue.pop() {
            let left = symbols[pos];
            if !left.alive || left.next == NONE {
                continue;
            }
            let right_pos = left.next;
            let right = symbols[right_pos];
            // A rank names one pair, so an entry is stale exactly when its pair's rank changed.
            let Some(&(current_rank, merged)) = self.merges.get(&(left.id, right.id)) else {
                continue;
            };
            if current_rank != rank {
                continue;
            }
            symbols[pos].id = merged;
            symbols[pos].next = right.next;
            symbols[right_pos].alive = false;
            if right.next != NONE {
                symbols[right.next].prev = pos;
                if let Some(&(r, _)) = self.merges.get(&(merged, symbols[right.next].id)) {
                    queue.push(Reverse((r, pos)));
                }
            }
            if left.prev != NONE {
                if let Some(&(r, _)) = self.merges.get(&(symbols[left.prev].id, merged)) {
                    queue.push(Reverse((r, left.prev)));
                }
            }
        }
        let mut i = 0;
        while i != NONE {
            out.push(symbols[i].id);
            i = symbols[i].next;
        }
    }
}

/// Splits `text` around non-overlapping occurrences of `token`, left to right; the flag tells
/// the occurrences from the text between them (empty stretches are left out).
fn split_on<'a>(text: &'a str, token: &'static str) -> impl Iterator<Item = (&'a str, bool)> + 'a {
    let mut rest = text;
    let mut pending_token = false;
    std::iter::from_fn(move || loop {
        if pending_token {
            pending_token = false;
            return Some((token, true));
        }
        if rest.is_empty() {
            return None;
        }
        match rest.find(token) {
            Some(at) => {
                let before = &rest[..at];
                rest = &rest[at + token.len()..];
                pending_token = true;
                if !before.is_empty() {
                    return Some((before, false));
                }
            }
            None => {
                let all = rest;
                rest = "";
                return Some((all, false));
            }
        }
    })
}

/// NFC as Hugging Face computes it, then lowercase character by character (HF's `Lowercase`
/// normalizer; `str::to_lowercase` would turn a final `Σ` into `ς`, HF gives `σ`).
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    if text.is_ascii() {
        out.push_str(text);
        out.make_ascii_lowercase();
        return out;
    }
    for c in nfc_unicode9(text) {
        out.extend(c.to_lowercase());
    }
    out
}

/// NFC with Unicode 9.0's data, which is what `tokenizers` uses (its normalization crate has
/// not been updated since): characters added later have no combining class, decomposition or
/// composition there. Built on `unicode-normalization`'s (newer) per-character data, minus the
/// later characters in [`POST_UNICODE9_MARKS`] and [`POST_UNICODE9_COMPOSITES`].
fn nfc_unicode9(text: &str) -> Vec<char> {
    use unicode_normalization::char::{canonical_combining_class, compose, decompose_canonical};
    let ccc = |c: char| {
        if is_post_unicode9_mark(c) {
            0
        } else {
            canonical_combining_class(c)
        }
    };

    let mut chars: Vec<(char, u8)> = Vec::with_capacity(text.len());
    for c in text.chars() {
        if is_post_unicode9_composite(c) {
            chars.push((c, 0));
        } else {
            decompose_canonical(c, |d| chars.push((d, ccc(d))));
        }
    }
    // Canonical ordering: a stable sort of each run of non-starters by combining class.
    let mut i = 0;
    while i < chars.len() {
        if chars[i].1 == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].1 != 0 {
            i += 1;
        }
        chars[start..i].sort_by_key(|&(_, class)| class);
    }
    // Canonical composition (UAX #15): a character joins the last starter unless a character
    // in between has a class of 0 or one at least its own.
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut starter: Option<usize> = None;
    let mut last_class: Option<u8> = None;
    for (c, class) in chars {
        if let Some(s) = starter {
            let blocked = matches!(last_class, Some(last) if last == 0 || last >= class);
            if !blocked {
                if let Some(joined) = compose(out[s], c).filter(|&j| !is_post_unicode9_composite(j))
                {
                    out[s] = joined;
                    continue;
                }
            }
        }
        if class == 0 {
            starter = Some(out.len());
            last_class = None;
        } else {
            last_class = Some(class);
        }
        out.push(c);
    }
    out
}

/// Combining marks (non-zero combining class) added after Unicode 9.0, as inclusive ranges;
/// found by probing `tokenizers` 0.23 with every mark `unicode-normalization` knows.
const POST_UNICODE9_MARKS: &[(u32, u32)] = &[
    (0x05C8, 0x05C9),
    (0x07FD, 0x07FD),
    (0x0897, 0x089F),
    (0x08CA, 0x08D3),
    (0x09FE, 0x09FE),
    (0x0C3C, 0x0C3C),
    (0x0D3B, 0x0D3C),
    (0x0EBA, 0x0EBA),
    (0x1715, 0x1715),
    (0x1ABF, 0x1AF0),
    (0x1DF6, 0x1DFA),
    (0xA82C, 0xA82C),
    (0x10D24, 0x10D27),
    (0x10D69, 0x10D6D),
    (0x10EAB, 0x10EAC),
    (0x10ECB, 0x10ECF),
    (0x10EF0, 0x10EFB),
    (0x10EFD, 0x10EFF),
    (0x10F46, 0x10F50),
    (0x10F82, 0x10F85),
    (0x11070, 0x11070),
    (0x1133B, 0x1133B),
    (0x113CE, 0x113D0),
    (0x1145E, 0x1145E),
    (0x11839, 0x1183A),
    (0x1193D, 0x1193E),
    (0x11943, 0x11943),
    (0x119E0, 0x119E0),
    (0x11A34, 0x11A34),
    (0x11A47, 0x11A47),
    (0x11A99, 0x11A99),
    (0x11D42, 0x11D42),
    (0x11D44, 0x11D45),
    (0x11D97, 0x11D97),
    (0x11F41, 0x11F42),
    (0x1612F, 0x1612F),
    (0x16FF0, 0x16FF1),
    (0x1D127, 0x1D128),
    (0x1D250, 0x1D252),
    (0x1D25B, 0x1D25C),
    (0x1D25F, 0x1D25F),
    (0x1D280, 0x1D281),
    (0x1E08F, 0x1E08F),
    (0x1E130, 0x1E136),
    (0x1E2AE, 0x1E2AE),
    (0x1E2EC, 0x1E2EF),
    (0x1E4EC, 0x1E4EF),
    (0x1E5EE, 0x1E5EF),
    (0x1E6E3, 0x1E6E3),
    (0x1E6E6, 0x1E6E6),
    (0x1E6EE, 0x1E6EF),
    (0x1E6F5, 0x1E6F5),
];

/// Primary composites added after Unicode 9.0 (found the same way): never composed, never
/// decomposed.
const POST_UNICODE9_COMPOSITES: &[u32] = &[
    0x105C9, 0x105E4, 0x11383, 0x11385, 0x1138E, 0x11391, 0x113C5, 0x113C7, 0x113C8, 0x11938,
    0x16121, 0x16122, 0x16123, 0x16124, 0x16125, 0x16126, 0x16127, 0x16128, 0x16D68, 0x16D69,
    0x16D6A,
];

fn is_post_unicode9_mark(c: char) -> bool {
    let c = c as u32;
    let i = POST_UNICODE9_MARKS.partition_point(|&(_, end)| end < c);
    POST_UNICODE9_MARKS
        .get(i)
        .is_some_and(|&(start, _)| start <= c)
}

fn is_post_unicode9_composite(c: char) -> bool {
    POST_UNICODE9_COMPOSITES.binary_search(&(c as u32)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary with all 512 byte tokens in OpenAI's order, `extra` tokens, then the two
    /// special tokens, and the merges that build the extras.
    fn tiny(merges: &[(&str, &str)]) -> ClipTokenizer {
        let chars = bytes_to_unicode();
        let order = openai_byte_order();
        let mut tokens: Vec<String> = order
            .iter()
            .map(|&b| chars[b as usize].to_string())
            .collect();
        tokens.extend(order.iter().map(|&b| format!("{}</w>", chars[b as usize])));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push(SOT_TEXT.into());
        tokens.push(EOT_TEXT.into());
        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), (i as u64).into()))
            .collect();
        let merges_txt: String = std::iter::once("#version: 0.2".to_owned())
            .chain(merges.iter().map(|(a, b)| format!("{a} {b}")))
            .collect::<Vec<_>>()
            .join("\n");
        ClipTokenizer::from_vocab_merges(&serde_json::Value::Object(vocab).to_string(), &merges_txt)
            .unwrap()
    }

    fn tokens(tok: &ClipTokenizer, text: &str) -> Vec<String> {
        let by_id: HashMap<u32, &String> = tok.encoder.iter().map(|(t, &i)| (i, t)).collect();
        tok.encode_tokens(text)
            .iter()
            .map(|i| by_id[i].clone())
            .collect()
    }

    #[test]
    fn bytes_to_unicode_is_a_bijection_onto_printable_chars() {
        let table = bytes_to_unicode();
        let distinct: std::collections::HashSet<char> = table.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert!(table.iter().all(|c| !c.is_whitespace() && !c.is_control()));
        assert_eq!(table[b'a' as usize], 'a');
        assert_eq!(table[0], '\u{100}');
        assert_eq!(table[b' ' as usize], '\u{120}');
        assert_eq!(table[255], '\u{ff}');
        assert_eq!(openai_byte_order().len(), 256);
    }

    #[test]
    fn merges_follow_rank_and_mark_word_ends() {
        let tok = tiny(&[("l", "o"), ("lo", "w</w>"), ("e", "r</w>"), ("l", "l")]);
        assert_eq!(tokens(&tok, "low"), ["low</w>"]);
        assert_eq!(tokens(&tok, "lower"), ["lo", "w", "er</w>"]);
        // `l o` outranks `l l`, so "llow" merges on the right.
        assert_eq!(tokens(&tok, "llow"), ["l", "low</w>"]);
        // Equal ranks merge leftmost first without overlapping.
        assert_eq!(tokens(&tok, "lll"), ["ll", "l</w>"]);
        assert_eq!(tokens(&tok, "lllll"), ["ll", "ll", "l</w>"]);
        assert_eq!(tokens(&tok, "LOW lo"), ["low</w>", "l", "o</w>"]);
    }

    #[test]
    fn pre_tokenizer_splits_like_clip() {
        let tok = tiny(&[]);
        assert_eq!(tokens(&tok, "a1b"), ["a</w>", "1</w>", "b</w>"]);
        assert_eq!(tokens(&tok, "it's"), ["i", "t</w>", "'", "s</w>"]);
        assert_eq!(tok.encode_tokens("  \t\n\u{a0}\u{3000}").len(), 0);
        assert_eq!(tok.encode_tokens("a\u{200b}b").len(), 5);
        assert_eq!(tok.encode_tokens("x<|endoftext|>Y<|STARTOFTEXT|>z"), {
            let mut v = tok.encode_tokens("x");
            v.push(tok.eot_id());
            v.extend(tok.encode_tokens("y"));
            v.push(tok.sot_id());
            v.extend(tok.encode_tokens("z"));
            v
        });
        // Any other spelling of the end token is ordinary text, split in three words.
        assert_eq!(tokens(&tok, "<|EndOfText|>")[..2], ["<", "|</w>"]);
        assert_eq!(normalize("ΟΔΟΣ"), "οδοσ");
        assert_eq!(normalize("e\u{301}"), "é");
        assert_eq!(normalize("A\u{323}\u{302}\u{301}"), "\u{1ead}\u{301}");
        // Marks and composites newer than Unicode 9.0 are left alone, as HF does.
        assert_eq!(normalize("a\u{7fd}\u{323}"), "a\u{7fd}\u{323}");
        assert_eq!(normalize("\u{11935}\u{11930}"), "\u{11935}\u{11930}");
        assert_eq!(normalize("\u{1100}\u{1161}\u{11a8}"), "\u{ac01}");
    }

    #[test]
    fn truncation_keeps_eot_last() {
        let tok = tiny(&[]);
        let long = "a ".repeat(200);
        let ids = tok.encode(&long);
        assert_eq!(ids.len(), CONTEXT_LENGTH);
        assert_eq!((ids[0], ids[76]), (tok.sot_id(), tok.eot_id()));
        let (sot, eot) = (tok.sot_id(), tok.eot_id());
        assert_eq!(tok.encode_with_max_len(&long, 2), [sot, eot]);
        assert_eq!(tok.encode_with_max_len(&long, 0), [sot, eot]);
        assert_eq!(tok.encode_with_max_len("a b", 4).len(), 4);
        assert_eq!(tok.encode(""), [sot, eot]);
    }

    #[test]
    fn decode_inverts_encode_up_to_normalization() {
        let tok = tiny(&[("h", "i</w>")]);
        let ids = tok.encode("Hi  there, café! 🐈‍⬛");
        assert_eq!(tok.decode(&ids), "hi there , café ! 🐈‍⬛");
        assert_eq!(tok.decode(&[SOT, 1_000_000, EOT]), "");
    }

    /// The post-Unicode-9.0 lists were made by probing HF with every mark and composite that
    /// this version of `unicode-normalization` knows. A newer Unicode may add marks the lists
    /// lack: re-probe (HF's normalizer on "a" + mark + U+0301 / U+0323 and on each composite's
    /// decomposition), extend the lists, then update this version.
    #[test]
    fn unicode9_lists_match_the_normalization_tables() {
        assert_eq!(unicode_normalization::UNICODE_VERSION, (18, 0, 0));
        assert!(POST_UNICODE9_MARKS.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(POST_UNICODE9_COMPOSITES.windows(2).all(|w| w[0] < w[1]));
        assert!(is_post_unicode9_mark('\u{1ABF}') && !is_post_unicode9_mark('\u{301}'));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(matches!(
            ClipTokenizer::from_vocab_merges("[1, 2]", ""),
            Err(TokenizerError::MalformedVocab(_))
        ));
        assert!(matches!(
            ClipTokenizer::from_vocab_merges(r#"{"a": -1}"#, ""),
            Err(TokenizerError::MalformedVocab(_))
        ));
        assert!(matches!(
            ClipTokenizer::from_vocab_merges(r#"{"a": 0}"#, ""),
            Err(TokenizerError::MissingSpecialToken(_))
        ));
        let vocab = r#"{"a": 0, "b": 1, "<|startoftext|>": 2, "<|endoftext|>": 3}"#;
        let err = ClipTokenizer::from_vocab_merges(vocab, "#version: 0.2\na").unwrap_err();
        assert!(
            matches!(err, TokenizerError::BadMerge { line: 2, .. }),
            "{err}"
        );
        let err = ClipTokenizer::from_vocab_merges(vocab, "a b").unwrap_err();
        assert!(err.to_string().contains("\"ab\""), "{err}");
        assert!(matches!(
            ClipTokenizer::from_bpe_gz(b"not gzip"),
            Err(TokenizerError::BadGzip(_))
        ));
    }
}
