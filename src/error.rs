//! One error type for the library, so the CLI and the wasm surface can report any failure as text.

use crate::clip::{preprocess::PreprocessError, tokenizer::TokenizerError};

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

impl Error {
    /// A stable name for the kind of failure, for callers that branch on it (the browser API
    /// sets it as the JavaScript error's `name`): `InputError` (an image, a class list, a
    /// setting: fix the input and retry), `ModelError` (the model file or config is unusable),
    /// `DeviceError` (the GPU or backend failed: another backend may work), `IoError`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Input(_) | Error::Tokenizer(_) | Error::Preprocess(_) => "InputError",
            Error::Config(_)
            | Error::Weights(_)
            | Error::MissingTensor { .. }
            | Error::ShapeMismatch { .. }
            | Error::UnsupportedDtype { .. }
            | Error::NonFinite { .. }
            | Error::Bundle(_) => "ModelError",
            Error::Device(_) => "DeviceError",
            Error::Io { .. } => "IoError",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_group_errors_by_what_the_caller_can_do() {
        assert_eq!(Error::Input("x".into()).kind(), "InputError");
        assert_eq!(Error::Bundle("x".into()).kind(), "ModelError");
        assert_eq!(Error::NonFinite { key: "k".into() }.kind(), "ModelError");
        assert_eq!(Error::Device("lost".into()).kind(), "DeviceError");
    }
}
