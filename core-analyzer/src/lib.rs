//! cgocore: explain Go programs stuck in cgo, from core files or live debuggers.
//!
//! Data flows up once: bytes (`memory`, `elf`) -> runtime objects (`runtime`,
//! via `layout`) -> `analysis` -> `report`. Faces (CLI, Python) call `analysis`.
pub mod analysis;
pub mod classify;
pub mod elf;
pub mod error;
pub mod input;
pub mod layout;
pub mod memory;
pub mod process;
pub mod report;
pub mod runtime;
pub mod symbolize;
pub mod unwind;
pub mod varint;

pub use analysis::{analyze, analyze_with, Analysis, AnalyzeOptions};
pub use process::{OpenOptions, Process, TargetDesc};
