//! What the C unwinder and the per-architecture code share: the registers a
//! step needs, and what a search of the stack found.

/// The registers C unwinding needs; `lr` only on arm64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    pub pc: u64,
    pub sp: u64,
    pub fp: u64,
    pub lr: u64,
}

/// What a search of the stack for a return address found.
pub enum Scan {
    Found(Regs),
    /// The stack's memory ends with no return address: the outermost frame.
    StackTop,
    /// None within the searched window (or not searched: arm64).
    Exhausted,
}
