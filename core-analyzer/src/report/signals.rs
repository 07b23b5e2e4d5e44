//! Signal names as the report prints them.

/// `SIGQUIT` for 3, and so on (Linux numbering, same on both architectures).
pub fn signal_name(signo: i32) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match NAMES.get(signo as usize) {
        Some(n) if signo > 0 => n.to_string(),
        // A C handler installed without SA_SIGINFO gets no siginfo in its frame.
        _ if signo == 0 => "signal (number not saved)".to_string(),
        // Real-time signals, as gdb names them (glibc's SIGRTMIN is 34).
        _ if (32..=64).contains(&signo) => format!("SIG{signo}"),
        _ => format!("signal {signo}"),
    }
}
