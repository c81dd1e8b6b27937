//! phasegate-rubric: the one rubric type every part of phasegate uses, and the instrument that
//! produced a set of scores.
//!
//! A rubric belongs to an eval suite: any number of dimensions, each with an id, a name, a
//! description, an integer range (0–2 unless the suite says otherwise) and a weight. A question's
//! total is the weighted sum of its dimension scores; a phase is shown and thresholded on 0–10.
//! The scorer, the importers, the gate, the report and the store all read the same [`Rubric`], so
//! nothing assumes five dimensions of 0–2.
//!
//! It does no I/O and knows nothing of how scores are produced: `phasegate-score` validates suites
//! and scores answers, `gate-rules` judges phases.

mod dimension;
mod instrument;
mod rubric;

pub use dimension::{Dimension, DimensionId, RESERVED_KEYS};
pub use instrument::{Instrument, InstrumentKind};
pub use rubric::{Rubric, RubricError};
