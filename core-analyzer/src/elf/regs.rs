//! Per-thread registers, as `NT_PRSTATUS` (or a debugger) gives them.
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    X86_64,
    Aarch64,
}

/// Order of `user_regs_struct` on x86_64 (27 words).
pub const X86_64_NAMES: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

/// A syscall in flight: its number (if known) and its six arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyscallState {
    pub nr: Option<u64>,
    pub args: [u64; 6],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registers {
    pub arch: Arch,
    /// x86_64: `user_regs_struct` order; aarch64: x0..x30, sp, pc, pstate.
    pub words: Vec<u64>,
    /// aarch64 `TPIDR_EL0` from `NT_ARM_TLS`; x86_64 uses `fs_base` in `words`.
    pub tls: Option<u64>,
}

impl Registers {
    fn x86(&self, name: &str) -> Option<u64> {
        let i = X86_64_NAMES.iter().position(|n| *n == name)?;
        self.words.get(i).copied()
    }
    pub fn get(&self, name: &str) -> Option<u64> {
        match self.arch {
            Arch::X86_64 => self.x86(name),
            Arch::Aarch64 => match name {
                "sp" => self.words.get(31).copied(),
                "pc" => self.words.get(32).copied(),
                "pstate" => self.words.get(33).copied(),
                "fp" => self.words.get(29).copied(),
                "lr" => self.words.get(30).copied(),
                _ => name
                    .strip_prefix('x')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&n| n <= 30)
                    .and_then(|n| self.words.get(n).copied()),
            },
        }
    }
    pub fn pc(&self) -> u64 {
        self.get(if self.arch == Arch::X86_64 {
            "rip"
        } else {
            "pc"
        })
        .unwrap_or(0)
    }
    pub fn sp(&self) -> u64 {
        self.get(if self.arch == Arch::X86_64 {
            "rsp"
        } else {
            "sp"
        })
        .unwrap_or(0)
    }
    pub fn fp(&self) -> u64 {
        self.get(if self.arch == Arch::X86_64 {
            "rbp"
        } else {
            "fp"
        })
        .unwrap_or(0)
    }
    /// Thread pointer: `fs_base` on x86_64, `TPIDR_EL0` on aarch64.
    pub fn thread_pointer(&self) -> Option<u64> {
        match self.arch {
            Arch::X86_64 => self.x86("fs_base"),
            Arch::Aarch64 => self.tls,
        }
    }
    /// The syscall number in flight (`orig_rax`; `x8` on arm64), if any.
    pub fn syscall_nr(&self) -> Option<u64> {
        match self.arch {
            Arch::X86_64 => self.x86("orig_rax").filter(|&v| v != u64::MAX),
            Arch::Aarch64 => self.words.get(8).copied(),
        }
    }
    /// The syscall this thread is in, as far as its registers tell: x86_64
    /// `orig_rax` (-1 outside a syscall) with `rdi, rsi, rdx, r10, r8, r9`;
    /// arm64 `x8` with `x0..x5` (the caller checks the `svc` before pc).
    pub fn syscall_state(&self) -> SyscallState {
        match self.arch {
            Arch::X86_64 => SyscallState {
                nr: self.syscall_nr(),
                args: ["rdi", "rsi", "rdx", "r10", "r8", "r9"].map(|r| self.x86(r).unwrap_or(0)),
            },
            Arch::Aarch64 => SyscallState {
                nr: self.syscall_nr(),
                args: [0, 1, 2, 3, 4, 5].map(|i| self.words.get(i).copied().unwrap_or(0)),
            },
        }
    }
    /// Named registers for display and the debugger bridge.
    pub fn named(&self) -> Vec<(String, u64)> {
        match self.arch {
            Arch::X86_64 => X86_64_NAMES
                .iter()
                .zip(&self.words)
                .map(|(n, v)| (n.to_string(), *v))
                .collect(),
            Arch::Aarch64 => self
                .words
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let n = match i {
                        31 => "sp".to_string(),
                        32 => "pc".to_string(),
                        33 => "pstate".to_string(),
                        _ => format!("x{i}"),
                    };
                    (n, *v)
                })
                .collect(),
        }
    }
    /// Build from named registers (the debugger bridge).
    pub fn from_named(arch: Arch, regs: &[(String, u64)], tls: Option<u64>) -> Registers {
        let names: Vec<String> = match arch {
            Arch::X86_64 => X86_64_NAMES.iter().map(|s| s.to_string()).collect(),
            Arch::Aarch64 => (0..31)
                .map(|i| format!("x{i}"))
                .chain(["sp", "pc", "pstate"].map(String::from))
                .collect(),
        };
        let words = names
            .iter()
            .map(|n| {
                let alias = match n.as_str() {
                    "x29" => "fp",
                    "x30" => "lr",
                    _ => "",
                };
                regs.iter()
                    .find(|(k, _)| k == n || (!alias.is_empty() && k == alias))
                    .map(|(_, v)| *v)
                    // A debugger that does not show orig_rax (lldb on cores) must
                    // not make every thread look like it is in syscall 0.
                    .unwrap_or(if n == "orig_rax" { u64::MAX } else { 0 })
            })
            .collect();
        Registers { arch, words, tls }
    }
}
