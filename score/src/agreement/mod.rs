//! Agreement between a scorer and human labels: small, total estimators, one per file. Each takes
//! paired values (scorer, human) and returns `None` where the figure is undefined (no pairs, zero
//! variance), never a made-up number.

mod error;
mod exact;
mod kappa;
mod pearson;
mod spearman;

pub use error::{Error, error};
pub use exact::exact_agreement;
pub use kappa::quadratic_weighted_kappa;
pub use pearson::pearson;
pub use spearman::spearman;
