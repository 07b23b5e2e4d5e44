//! ELF files: core files (notes and segments), executables and libraries, and
//! Go's `.go.buildinfo`.
pub mod buildinfo;
pub mod core;
pub mod exe;
pub mod regs;
