//! One error type for the library, so the CLI and the wasm surface can report any failure as text.

use crate::{preprocess::PreprocessError, tokenizer::TokenizerError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("invalid weights file: {0}")]
    Weights(String),
    #[error("missing tensor `{key}` (expected shape {expected:?})")]
    MissingTensor { key: String, expected: Vec<usize> },
    #[error("tensor `{key}` has shape {found:?} but the config needs {expected:?}")]
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{key}` has dtype {dtype}, expected F32, F16 or BF16")]
    UnsupportedDtype { key: String, dtype: String },
    #[error("tensor `{key}` contains non-finite values (NaN or inf)")]
    NonFinite { key: String },
    #[error("invalid bundle: {0}")]
    Bundle(String),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error("{0}")]
    Input(String),
    #[error("device: {0}")]
    Device(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
