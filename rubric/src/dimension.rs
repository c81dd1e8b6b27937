//! A rubric dimension and its validated id.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::rubric::RubricError;

/// Keys of score-file entries that can never be dimension ids: a dimension called `total` would
/// make a per-dimension score file ambiguous.
pub const RESERVED_KEYS: [&str; 16] = [
    "qid",
    "question",
    "total",
    "max",
    "min",
    "notes",
    "sample",
    "seed",
    "response",
    "response_preview",
    "reason",
    "reasons",
    "scores",
    "auto_zero",
    "truncated",
    "score",
];

/// A dimension id as the suite spells it ("D1", "correctness"). Ids match `[A-Za-z][A-Za-z0-9_]*`
/// and compare case-insensitively, so score files may write "d1" for "D1".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DimensionId(String);

impl DimensionId {
    pub fn new(id: &str) -> Result<DimensionId, RubricError> {
        let mut chars = id.chars();
        let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return Err(RubricError::BadId { id: id.to_owned() });
        }
        if RESERVED_KEYS.iter().any(|k| k.eq_ignore_ascii_case(id)) {
            return Err(RubricError::ReservedId { id: id.to_owned() });
        }
        Ok(DimensionId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Case-insensitive comparison with a key as a file writes it.
    pub fn is(&self, key: &str) -> bool {
        self.0.eq_ignore_ascii_case(key)
    }
}

impl TryFrom<String> for DimensionId {
    type Error = RubricError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        DimensionId::new(&value)
    }
}

impl From<DimensionId> for String {
    fn from(id: DimensionId) -> String {
        id.0
    }
}

impl fmt::Display for DimensionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One dimension of a rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dimension {
    pub id: DimensionId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub min: u32,
    pub max: u32,
    /// Weight of the dimension in the question total (1 unless the suite says otherwise).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

impl Dimension {
    /// A dimension of weight 1.
    pub fn new(id: DimensionId, name: &str, min: u32, max: u32) -> Dimension {
        Dimension { id, name: name.to_owned(), description: String::new(), min, max, weight: 1.0 }
    }

    pub fn contains(&self, score: u64) -> bool {
        (u64::from(self.min)..=u64::from(self.max)).contains(&score)
    }
}
