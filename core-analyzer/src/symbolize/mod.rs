//! Names for addresses: Go functions from the pclntab.
pub mod pclntab;
