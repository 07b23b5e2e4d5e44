//! The report: serde types that *are* the `--json` schema (docs/json-schema.md),
//! and the text rendering beside them.
pub mod dot;
pub mod escape;
pub mod frame;
pub mod model;
pub mod pprof;
mod signals;
pub mod text;

pub use model::*;
pub use signals::signal_name;
