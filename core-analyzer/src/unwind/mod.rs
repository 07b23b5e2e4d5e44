//! Stacks: Go frames from the pclntab, C frames from CFI, signal frames, and
//! the stitching of all three into one stack per thread.
pub mod go;
pub mod native;
pub mod signal;
pub mod thread;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Go,
    C,
}

/// Names are shared (`Arc<str>`): 100k goroutines parked at the same few
/// places repeat the same names millions of times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub pc: u64,
    pub function: Option<Arc<str>>,
    pub file: Option<Arc<str>>,
    pub line: Option<u32>,
    pub module: Option<Arc<str>>,
    pub lang: Lang,
    /// An inlined call: no machine frame of its own.
    pub inlined: bool,
}

/// Why a stack ends where it does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    pub frames: Vec<Frame>,
    /// `null` when the stack ended at its natural top (`goexit`, `mstart`).
    pub truncated: Option<String>,
}
