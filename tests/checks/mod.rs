//! Per-core checks, each a function from one core and its analysis to the
//! mismatches it finds: the trial harness (`tests/cores.rs`) runs each as a
//! named trial per core, and the other suites reuse them.
#![allow(dead_code)]
pub mod classes;
pub mod dump;
pub mod stacks;
