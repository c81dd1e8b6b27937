//! The eval suite format: a strict TOML file holding the persona, the rubric and the questions.

mod convert;
mod model;
mod raw;

pub use model::{
    AnchorKind, AnchorText, AutoZeroScope, Check, CleanlinessRules, DimId, Dimension, DimensionRules, FactsRules,
    IdentityRules, Persona, QualityRules, Question, Rubric, Rules, Suite, TriggerPattern, VoiceRules,
};

use crate::error::SuiteError;
use sha2::{Digest, Sha256};
use std::path::Path;

impl Suite {
    /// Parse and validate a suite. `path` only names the file in errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Suite, SuiteError> {
        let raw: raw::RawSuite = toml::from_str(text)
            .map_err(|e| SuiteError::Parse { path: path.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())));
        convert::suite(raw, digest).map_err(|problem| SuiteError::Invalid { path: path.to_owned(), problem })
    }

    /// Read and parse a suite file.
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| SuiteError::Read { path: path.to_owned(), source })?;
        Self::from_toml_str(&text, path)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) use tests::SQL_SUITE as SQL_SUITE_FOR_TESTS;
