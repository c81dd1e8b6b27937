//! The rubric: validated dimensions, the weighted question total and a digest.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dimension::{Dimension, DimensionId};

/// A rubric that breaks an invariant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RubricError {
    #[error("dimension id {id:?} is not of the form [A-Za-z][A-Za-z0-9_]*")]
    BadId { id: String },
    #[error("dimension id {id:?} is reserved: score files use it for something else")]
    ReservedId { id: String },
    #[error("the rubric has no dimensions")]
    NoDimensions,
    #[error("dimension {id} appears twice (ids compare case-insensitively)")]
    DuplicateId { id: String },
    #[error("dimension {id} has min {min} not below max {max}")]
    BadRange { id: String, min: u32, max: u32 },
    #[error("dimension {id} has weight {weight}; weights are finite and above 0")]
    BadWeight { id: String, weight: f64 },
}

/// The scoring rubric of a suite. Built through [`Rubric::new`], so its dimensions are non-empty,
/// unique (case-insensitively), with `min < max` and positive finite weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRubric", into = "RawRubric")]
pub struct Rubric {
    version: String,
    dimensions: Vec<Dimension>,
}

#[derive(Serialize, Deserialize)]
struct RawRubric {
    version: String,
    dimensions: Vec<Dimension>,
}

impl TryFrom<RawRubric> for Rubric {
    type Error = RubricError;

    fn try_from(raw: RawRubric) -> Result<Self, Self::Error> {
        Rubric::new(&raw.version, raw.dimensions)
    }
}

impl From<Rubric> for RawRubric {
    fn from(r: Rubric) -> Self {
        RawRubric { version: r.version, dimensions: r.dimensions }
    }
}

impl Rubric {
    pub fn new(version: &str, dimensions: Vec<Dimension>) -> Result<Rubric, RubricError> {
        if dimensions.is_empty() {
            return Err(RubricError::NoDimensions);
        }
        for (i, d) in dimensions.iter().enumerate() {
            if dimensions[..i].iter().any(|e| e.id.is(d.id.as_str())) {
                return Err(RubricError::DuplicateId { id: d.id.to_string() });
            }
            if d.min >= d.max {
                return Err(RubricError::BadRange { id: d.id.to_string(), min: d.min, max: d.max });
            }
            if !(d.weight.is_finite() && d.weight > 0.0) {
                return Err(RubricError::BadWeight { id: d.id.to_string(), weight: d.weight });
            }
        }
        Ok(Rubric { version: version.to_owned(), dimensions })
    }

    /// The persona rubric v1.0 of the bundled suite and of files written before rubrics were
    /// stored: D1 identity, D2 facts, D3 voice, D4 behavioural cleanliness, D5 response quality,
    /// each 0–2, so 0–10 per question.
    pub fn persona_v1() -> Rubric {
        let dims = [
            ("D1", "identity"),
            ("D2", "facts"),
            ("D3", "voice"),
            ("D4", "behavioural cleanliness"),
            ("D5", "response quality"),
        ];
        let dimensions = dims
            .iter()
            .map(|(id, name)| Dimension::new(DimensionId::new(id).expect("persona ids are valid"), name, 0, 2))
            .collect();
        Rubric::new("1.0", dimensions).expect("the persona rubric is valid")
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn dimensions(&self) -> &[Dimension] {
        &self.dimensions
    }

    /// Finds a dimension by id, ignoring ASCII case ("d4" finds "D4").
    pub fn dimension(&self, id: &str) -> Option<&Dimension> {
        self.dimensions.iter().find(|d| d.id.is(id))
    }

    /// Highest total one answer can score: the weighted sum of the maxima.
    pub fn question_max(&self) -> f64 {
        self.dimensions.iter().map(|d| d.weight * f64::from(d.max)).sum()
    }

    /// Lowest total one answer can score: the weighted sum of the minima.
    pub fn question_min(&self) -> f64 {
        self.dimensions.iter().map(|d| d.weight * f64::from(d.min)).sum()
    }

    /// A question total on the 0–10 scale: 0 at the rubric's minimum, 10 at its maximum.
    pub fn to_10(&self, total: f64) -> f64 {
        let (min, max) = (self.question_min(), self.question_max());
        (total - min) / (max - min) * 10.0
    }

    /// The weighted sum of `scores` (id, score); ids the rubric lacks count nothing.
    pub fn total<'a>(&self, scores: impl IntoIterator<Item = (&'a str, u32)>) -> f64 {
        scores.into_iter().filter_map(|(id, s)| Some(self.dimension(id)?.weight * f64::from(s))).sum()
    }

    /// Whether every dimension has weight 1 and range 0–2 under the ids D1..D5 (the persona v1
    /// shape older files were written in).
    pub fn is_persona_v1_shape(&self) -> bool {
        self.same_scale(&Rubric::persona_v1())
    }

    /// Whether scores on `other` are on the same scale: the same ids (case-insensitively), in the
    /// same order, with the same ranges and weights. Names, descriptions and the version may
    /// differ (a suite translated into another language keeps its scale).
    pub fn same_scale(&self, other: &Rubric) -> bool {
        self.dimensions.len() == other.dimensions.len()
            && self
                .dimensions
                .iter()
                .zip(&other.dimensions)
                .all(|(a, b)| a.id.is(b.id.as_str()) && a.min == b.min && a.max == b.max && a.weight == b.weight)
    }

    /// `sha256:` of the rubric's canonical JSON: the same dimensions, ranges and weights give the
    /// same digest, so two phases can tell whether they were scored on one rubric.
    pub fn digest(&self) -> String {
        let canonical = serde_json::to_string(&RawRubric::from(self.clone())).expect("a rubric serialises");
        format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dim(id: &str, min: u32, max: u32, weight: f64) -> Dimension {
        Dimension { weight, ..Dimension::new(DimensionId::new(id).unwrap(), id, min, max) }
    }

    #[test]
    fn persona_rubric_has_ten_points_per_question() {
        let r = Rubric::persona_v1();
        assert_eq!((r.question_min(), r.question_max()), (0.0, 10.0));
        assert!(r.is_persona_v1_shape());
    }

    #[test]
    fn total_is_the_weighted_sum_and_ids_match_case_insensitively() {
        let r = Rubric::new("1", vec![dim("correctness", 0, 5, 2.0), dim("style", 0, 5, 1.0)]).unwrap();
        assert_eq!(r.question_max(), 15.0);
        assert_eq!(r.total([("Correctness", 4), ("STYLE", 3)]), 11.0);
        assert!(!r.is_persona_v1_shape());
    }

    #[test]
    fn invalid_rubrics_are_refused_naming_the_dimension() {
        let cases = [
            (vec![], RubricError::NoDimensions),
            (vec![dim("a", 0, 2, 1.0), dim("A", 0, 2, 1.0)], RubricError::DuplicateId { id: "A".into() }),
            (vec![dim("a", 2, 2, 1.0)], RubricError::BadRange { id: "a".into(), min: 2, max: 2 }),
            (vec![dim("a", 0, 2, 0.0)], RubricError::BadWeight { id: "a".into(), weight: 0.0 }),
        ];
        for (dims, expected) in cases {
            assert_eq!(Rubric::new("1", dims).unwrap_err(), expected);
        }
    }

    #[test]
    fn ids_are_well_formed_and_not_reserved() {
        for bad in ["", "1a", "a-b", "ação"] {
            assert_eq!(DimensionId::new(bad).unwrap_err(), RubricError::BadId { id: bad.into() });
        }
        for reserved in ["qid", "Total", "notes"] {
            assert_eq!(DimensionId::new(reserved).unwrap_err(), RubricError::ReservedId { id: reserved.into() });
        }
        assert!(DimensionId::new("executes_ok2").is_ok());
    }

    #[test]
    fn digest_changes_with_ranges_and_weights_and_survives_a_round_trip() {
        let a = Rubric::new("1", vec![dim("x", 0, 5, 1.0)]).unwrap();
        let b = Rubric::new("1", vec![dim("x", 0, 4, 1.0)]).unwrap();
        assert_ne!(a.digest(), b.digest());
        let back: Rubric = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back.digest(), a.digest());
    }

    #[test]
    fn same_scale_ignores_names_but_not_ranges() {
        let a = Rubric::new("1", vec![dim("x", 0, 5, 1.0)]).unwrap();
        let renamed = Rubric::new("2", vec![Dimension { name: "other".into(), ..dim("X", 0, 5, 1.0) }]).unwrap();
        let wider = Rubric::new("1", vec![dim("x", 0, 6, 1.0)]).unwrap();
        assert!(a.same_scale(&renamed));
        assert!(!a.same_scale(&wider));
    }

    #[test]
    fn deserialising_validates() {
        let bad = r#"{"version":"1","dimensions":[{"id":"total","name":"t","min":0,"max":2}]}"#;
        assert!(serde_json::from_str::<Rubric>(bad).unwrap_err().to_string().contains("reserved"));
    }
}
