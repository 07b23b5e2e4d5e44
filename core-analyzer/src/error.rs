//! Library errors. A fault names the address, so a report can say exactly which
//! pointer led outside the core.
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Fault {
    #[error("address {addr:#x} ({len} bytes) is not in the core or any mapped file")]
    Unmapped { addr: u64, len: usize },
    #[error("address {addr:#x} ({len} bytes) was not saved in the core (the kernel or gcore left it out)")]
    NotSaved { addr: u64, len: usize },
    #[error("read of {len} bytes at {addr:#x} refused: larger than the {limit}-byte limit")]
    TooLarge { addr: u64, len: usize, limit: usize },
    #[error("debugger read at {addr:#x} ({len} bytes) failed: {msg}")]
    Target { addr: u64, len: usize, msg: String },
}

impl Fault {
    pub fn addr(&self) -> u64 {
        match self {
            Fault::Unmapped { addr, .. }
            | Fault::NotSaved { addr, .. }
            | Fault::TooLarge { addr, .. }
            | Fault::Target { addr, .. } => *addr,
        }
    }
}
