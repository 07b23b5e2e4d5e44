//! Names for addresses: Go functions from the pclntab, C functions from ELF
//! symbols and DWARF (per module, loaded once).
pub mod demangle;
pub mod modules;
pub mod native;
pub mod pclntab;
pub mod plt;
