//! Stacks: Go frames from the pclntab, C frames from CFI, signal frames, and
//! the stitching of all three into one stack per thread.
pub mod aarch64;
pub mod cfi;
pub mod go;
pub mod goroutines;
pub mod native;
pub mod prologue;
pub mod regs;
pub mod signal;
pub mod stackmap;
pub mod thread;
pub mod x86_64;
use serde::{Deserialize, Serialize};

// Frames are the report's vocabulary; the unwinder makes them.
pub use crate::report::frame::{Frame, Lang};

/// Why a stack ends where it does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    pub frames: Vec<Frame>,
    /// `null` when the stack ended at its natural top (`goexit`, `mstart`).
    pub truncated: Option<String>,
}

/// `C.name` for the innermost `_Cfunc_name` frame: the C function called,
/// even when the compiler's tail call left no C frame of that name.
pub fn cgo_call(frames: &[Frame]) -> Option<String> {
    // Only goroutines inside a cgo call have a _Cfunc_ frame below cgocall.
    if !frames
        .iter()
        .any(|f| f.function.as_deref() == Some("runtime.cgocall"))
    {
        return None;
    }
    frames.iter().find_map(|f| {
        let name = f.function.as_deref()?;
        let (_, c) = name.split_once("._Cfunc_")?;
        (f.lang == Lang::Go).then(|| format!("C.{c}"))
    })
}
