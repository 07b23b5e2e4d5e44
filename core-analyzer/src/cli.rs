//! The `cgocore` command: `analyze` a core or a live process, `snapshot` a
//! live process into a small core. In the library so the Rust binary and
//! the Python package's `cgocore` command run the same code.
use crate as cgocore;
use anyhow::{Context, Result};
use cgocore::output::Target;
use cgocore::render::{render_sched, render_with, write_goroutines, GoroutineFilter};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

/// Exit codes: 0 complete answer, 1 error, 2 usage, 3 answer printed but
/// incomplete; errors a script may act on have their own.
const EXIT_ERROR: u8 = 1;
const EXIT_INCOMPLETE: u8 = 3;
const EXIT_WRONG_BINARY: u8 = 4;
const EXIT_NOT_GO: u8 = 5;
const EXIT_UNSUPPORTED_GO: u8 = 6;

fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<cgocore::Error>() {
        Some(cgocore::Error::WrongBinary { .. }) => EXIT_WRONG_BINARY,
        Some(cgocore::Error::NotGo(_)) => EXIT_NOT_GO,
        Some(cgocore::Error::UnsupportedGoVersion(_)) => EXIT_UNSUPPORTED_GO,
        _ => EXIT_ERROR,
    }
}

#[derive(Parser)]
#[command(
    name = "cgocore",
    version,
    about = "Explain Go programs stuck in cgo: threads, Ms, locking and goroutines from a core file or a live process"
)]
struct Cli {
    /// No progress bars (they show on a terminal for work that takes over half a second)
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Never fetch debug info from debuginfod servers (DEBUGINFOD_URLS), even when one is configured
    #[arg(long, global = true)]
    offline: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Analyze a core file (kernel core, gcore, or zstd-compressed .zst) or a live process (--pid)
    #[command(after_help = concat!(
        "Exit status: 0 complete, 1 error, 2 bad usage, 3 printed but incomplete (see warnings), \
4 the binary does not match the core, 5 not a Go program, 6 a Go release this cgocore does not know.",
        "\n\nRunbooks, one per way a Go service gets stuck in C (requests hang in cgocall, threads pile up, \
LockOSThread surprises, a wedged signal handler, a stuck C library, hanging right now): docs/runbooks/README.md",
        "\n\nExamples:\n  cgocore analyze core.1234 --exe ./server\n  cgocore analyze --pid 4242            # a live process: stopped for milliseconds, then let go\n  cgocore analyze core.zst --json | jq '.threads[] | select(.kind==\"foreign\")'\n  cgocore analyze core --goroutines locked\n  cgocore analyze core --stacks       # every frame of every thread\n  cgocore analyze core --sched        # schedtrace-style summary\n  cgocore analyze core --dot wait.dot && dot -Tsvg wait.dot > wait.svg"
    ))]
    Analyze {
        /// The core file (optionally zstd-compressed)
        #[arg(required_unless_present = "pid", conflicts_with = "pid")]
        core: Option<PathBuf>,
        /// Analyze the live process PID instead: every thread is stopped (ptrace) while its memory is read, then let go
        #[arg(long, value_name = "PID")]
        pid: Option<u32>,
        /// The executable that produced the core (default: the path the core names), or the Go library (-buildmode=c-shared) a C or Python program ran
        #[arg(long, conflicts_with = "pid")]
        exe: Option<PathBuf>,
        /// Root folder under which the target's file paths are looked up (a core from another host; a live process in a container defaults to /proc/PID/root)
        #[arg(long)]
        sysroot: Option<PathBuf>,
        #[command(flatten)]
        live: Live,
        #[command(flatten)]
        out: Output,
    },
    /// Write a small core of a live process: only what an analysis reads (its threads' registers and stacks, the runtime's data, the goroutines' stacks), zstd-compressed when FILE ends in .zst; `cgocore analyze FILE` and gdb open it
    #[command(after_help = concat!(
        "Exit status: 0 written, 1 error, 2 bad usage, 3 written but the analysis was incomplete, \
4 the binary does not match the process, 5 not a Go program, 6 a Go release this cgocore does not know.",
        "\n\nExample:\n  cgocore snapshot --pid 4242 -o stuck.core.zst && cgocore analyze stuck.core.zst"
    ))]
    Snapshot {
        /// The live process
        #[arg(long, value_name = "PID")]
        pid: u32,
        /// Where to write the core (FILE.zst: compressed)
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// Root folder under which the process's file paths are looked up (default: /proc/PID/root for a process in another mount namespace)
        #[arg(long)]
        sysroot: Option<PathBuf>,
        #[command(flatten)]
        live: Live,
    },
    /// Watch a live process: each interval a short stop (milliseconds), then threads and Ms and how fast they climb, when the thread limit is reached at that rate, threads in C by what they wait for, goroutines by state
    #[command(after_help = concat!(
        "Without a terminal (or with --json-lines) one JSON object per sample: time, pid, threads, ms, threads_in_c, \
stopped_ms, groups [{class, function, library, count, delta}], goroutines {state: count}, maxmcount, threads_per_second, limit_in_seconds.",
        "\n\nExample:\n  cgocore top --pid 4242 --interval 2\n  cgocore top --pid 4242 --count 10 --json-lines > trend.jsonl"
    ))]
    Top {
        /// The live process
        #[arg(
            long,
            value_name = "PID",
            required_unless_present = "cores",
            conflicts_with = "cores"
        )]
        pid: Option<u32>,
        /// Instead of a live process: a series of cores or snapshots of one process, read in the order they were written (their files' modification times), each a sample
        #[arg(value_name = "CORE")]
        cores: Vec<PathBuf>,
        /// The executable, for cores that do not name one this host has
        #[arg(long, requires = "cores")]
        exe: Option<PathBuf>,
        /// Seconds between samples
        #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = positive_secs)]
        interval: f64,
        /// Stop after this many samples (default: until interrupted)
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// One sample, then exit
        #[arg(long)]
        once: bool,
        /// One JSON object per sample, also on a terminal
        #[arg(long)]
        json_lines: bool,
        /// Root folder under which the target's file paths are looked up (default for a process in a container: /proc/PID/root)
        #[arg(long)]
        sysroot: Option<PathBuf>,
        #[command(flatten)]
        live: Live,
    },
    /// Print a completion script for SHELL (e.g. `source <(cgocore completions bash)`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `cgocore man > cgocore.1`
    Man,
    /// Print the line that loads the gdb or lldb commands (from the Python package: pip install cgocore)
    DebuggerInit {
        #[arg(value_parser = ["gdb", "lldb"])]
        debugger: String,
        /// Print only the script's path
        #[arg(long)]
        path: bool,
    },
    /// Developer tools
    #[command(hide = true)]
    Dev {
        #[command(subcommand)]
        cmd: DevCmd,
    },
}

/// How a live process is stopped.
#[derive(Args)]
struct Live {
    /// Seconds the process's threads may take to stop (--pid): a thread still running then (uninterruptible sleep: NFS, FUSE, disk I/O) is named and left out, never holding the others stopped
    #[arg(long, value_name = "SECS", default_value_t = 3.0, value_parser = positive_secs)]
    stop_timeout: f64,
    /// Seconds the whole capture may take before cgocore gives up and lets the process go
    #[arg(long, value_name = "SECS", default_value_t = 120.0, value_parser = positive_secs)]
    capture_timeout: f64,
    /// For tests: hold the process stopped this many milliseconds after reading it
    #[arg(long, hide = true, value_name = "MS")]
    hold_stopped_ms: Option<u64>,
}

fn positive_secs(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!(
            "{v:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

impl Live {
    fn options(&self, sysroot: Option<PathBuf>) -> cgocore::LiveOptions {
        cgocore::LiveOptions {
            sysroot,
            stop_timeout: std::time::Duration::from_secs_f64(self.stop_timeout),
            deadline: std::time::Duration::from_secs_f64(self.capture_timeout),
            hold_stopped: self.hold_stopped_ms.map(std::time::Duration::from_millis),
            ..Default::default()
        }
    }
}

/// How `analyze` prints its report.
#[derive(Args)]
struct Output {
    /// Print JSON (schema: docs/json-schema.md) instead of text
    #[arg(long)]
    json: bool,
    /// Indent the JSON for reading
    #[arg(long, requires = "json")]
    pretty: bool,
    /// Also list the goroutines: alone (or `grouped`), grouped by state, wait and frames with a count, largest first; `all` (or `cgo`, `locked`: those in a cgo call, those locked to their thread) one by one in the shape of Go's own dump
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "grouped")]
    goroutines: Option<Which>,
    /// Show every frame of every thread (signal handlers included), not the first few
    #[arg(long)]
    stacks: bool,
    /// Also print the findings (the evidence under each problem), most severe first
    #[arg(long)]
    findings: bool,
    /// Print a GODEBUG=schedtrace=1,scheddetail=1-style summary (per P, M and goroutine)
    #[arg(long)]
    sched: bool,
    /// Write the wait-for graph (threads, goroutines, locks) as Graphviz DOT to FILE (-: to standard output, in place of the report)
    #[arg(long, value_name = "FILE")]
    dot: Option<PathBuf>,
    /// Write the goroutines as a pprof goroutine profile to FILE (C frames on top of Go frames; read with go tool pprof; -: to standard output, in place of the report)
    #[arg(long, value_name = "FILE")]
    pprof: Option<PathBuf>,
    /// Extra classification rules (JSON, same shape as the built-in rules.json), tried first
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DevCmd {
    /// Print the runtime struct layout read from BINARY's DWARF, as a layout table
    Layout { binary: PathBuf },
    /// Rewrite a qemu-user aarch64 core IN PLACE into the form an arm64 kernel writes (threads in a syscall rewound to the svc): for tests
    Arm64KernelForm {
        core: PathBuf,
        #[arg(long)]
        exe: Option<PathBuf>,
        #[arg(long)]
        sysroot: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Grouped,
    All,
    Cgo,
    Locked,
}

/// `cgocore analyze`: a core, or a live process.
fn analyze(
    core: Option<PathBuf>,
    pid: Option<u32>,
    exe: Option<PathBuf>,
    sysroot: Option<PathBuf>,
    live: &Live,
    out: &Output,
) -> Result<u8> {
    // Outputs are checked before anything is read: a bad one costs nothing,
    // and none may be one of the inputs.
    let inputs: Vec<&std::path::Path> = [core.as_deref(), exe.as_deref(), out.rules.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    out.check_targets(&inputs)?;
    let mut aopts = cgocore::AnalyzeOptions::default();
    if let Some(path) = &out.rules {
        aopts.rules = cgocore::Rules::with_user_file(path)?;
    }
    // Goroutine stacks cost most on big cores: only unwind them when they
    // are printed.
    aopts.goroutine_frames = out.json || out.goroutines.is_some() || out.pprof.is_some();
    let report = match (pid, core) {
        (Some(pid), _) => {
            cgocore::capture_pid(pid, &live.options(sysroot), &aopts)?
                .analysis
                .report
        }
        (None, Some(core)) => {
            let process = cgocore::open_core(&core, &cgocore::OpenOptions { exe, sysroot })?;
            cgocore::analyze_with(process, Some(core.display().to_string()), &aopts)?.report
        }
        (None, None) => unreachable!("clap requires CORE or --pid"),
    };
    print_report(&report, out)
}

/// `cgocore top`: samples until `count` (or q); JSON lines without a
/// terminal, else the view redrawn in place, with keys.
fn top(
    pid: u32,
    interval: f64,
    count: Option<u64>,
    json_lines: bool,
    opts: &cgocore::LiveOptions,
) -> Result<u8> {
    let json = json_lines || !std::io::IsTerminal::is_terminal(&std::io::stdout());
    // Symbols stay loaded between samples; goroutine stacks are not read
    // (what goroutines wait on is, who holds it is not).
    let aopts = cgocore::AnalyzeOptions {
        goroutine_frames: false,
        go_holders: false,
        ..Default::default()
    };
    let keys = (!json).then(Keys::take).flatten();
    let (mut prev, mut n): (Option<cgocore::top::Sample>, u64) = (None, 0);
    let (mut paused, mut by_moved) = (false, false);
    let interval = std::time::Duration::from_secs_f64(interval);
    loop {
        let started = std::time::Instant::now();
        if !paused || prev.is_none() {
            let r = cgocore::capture_pid(pid, opts, &aopts)?.analysis.report;
            let now = cgocore::top::runtime_clock_now();
            let time = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            prev = Some(cgocore::top::Sample::of(&r, time, now, prev.as_ref()));
            n += 1;
        }
        let s = prev.as_ref().expect("a sample");
        let mut w = std::io::stdout().lock();
        if json {
            serde_json::to_writer(&mut w, s)?;
            writeln!(w)?;
        } else {
            // Home, clear, the view (fitted to the terminal: its header must not scroll away).
            write!(
                w,
                "\x1b[H\x1b[2J{}",
                s.render_fit(by_moved, paused, terminal_rows())
            )?;
        }
        w.flush()?;
        drop(w);
        if count.is_some_and(|c| n >= c) {
            return Ok(0);
        }
        let wait = interval.saturating_sub(started.elapsed());
        match keys.as_ref().map_or_else(
            || {
                std::thread::sleep(wait);
                None
            },
            |k| k.next(wait),
        ) {
            Some(b'q') | Some(3) => return Ok(0), // q, Ctrl-C
            Some(b'p') => paused = !paused,
            Some(b's') => by_moved = !by_moved,
            _ => {}
        }
    }
}

/// `cgocore top CORE...`: the same trend from cores or snapshots of one
/// process, oldest first (by their files' modification times).
fn top_of_cores(
    mut cores: Vec<PathBuf>,
    exe: Option<PathBuf>,
    sysroot: Option<PathBuf>,
    json_lines: bool,
) -> Result<u8> {
    let written = |p: &PathBuf| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64())
    };
    cores.sort_by(|a, b| written(a).total_cmp(&written(b)));
    let json = json_lines || !std::io::IsTerminal::is_terminal(&std::io::stdout());
    let aopts = cgocore::AnalyzeOptions {
        goroutine_frames: false,
        go_holders: false,
        ..Default::default()
    };
    let mut prev: Option<cgocore::top::Sample> = None;
    let mut status = 0;
    for core in &cores {
        let opts = cgocore::OpenOptions {
            exe: exe.clone(),
            sysroot: sysroot.clone(),
        };
        let process = cgocore::open_core(core, &opts)?;
        let r = cgocore::analyze_with(process, Some(core.display().to_string()), &aopts)?.report;
        if r.incomplete {
            status = EXIT_INCOMPLETE;
        }
        let s = cgocore::top::Sample::of(&r, written(core), None, prev.as_ref());
        let mut w = std::io::stdout().lock();
        if json {
            serde_json::to_writer(&mut w, &s)?;
            writeln!(w)?;
        } else {
            writeln!(
                w,
                "== {}\n{}",
                cgocore::render::escape_line(&core.display().to_string()),
                s.render()
            )?;
        }
        prev = Some(s);
    }
    Ok(status)
}

/// The terminal's height in rows, when stdout is one.
fn terminal_rows() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills the winsize it is given, nothing else.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0).then_some(ws.ws_row as usize)
}

/// The terminal in key-at-a-time mode on the alternate screen while `top`
/// runs, restored on every way out (keys are read, not signals: Ctrl-C is
/// a key here, so the restore always runs).
struct Keys {
    saved: libc::termios,
}

impl Keys {
    fn take() -> Option<Keys> {
        use std::os::unix::io::AsRawFd;
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: tcgetattr/tcsetattr on stdin with a zeroed struct the call
        // fills; the original settings are kept and put back on drop.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
            raw.c_cc[libc::VMIN] = 1;
            raw.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            print!("\x1b[?1049h\x1b[?25l");
            Some(Keys { saved })
        }
    }

    /// The next key within `wait`, if one is pressed.
    fn next(&self, wait: std::time::Duration) -> Option<u8> {
        use std::os::unix::io::AsRawFd;
        let fd = std::io::stdin().as_raw_fd();
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd; read of one byte into a local.
        unsafe {
            if libc::poll(&mut p, 1, wait.as_millis().min(i32::MAX as u128) as i32) <= 0 {
                return None;
            }
            let mut b = 0u8;
            (libc::read(fd, (&mut b as *mut u8).cast(), 1) == 1).then_some(b)
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd;
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        // SAFETY: puts back the settings saved in `take`.
        unsafe { libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &self.saved) };
    }
}

fn run(cli: Cli) -> Result<u8> {
    match cli.cmd {
        Cmd::Analyze {
            core,
            pid,
            exe,
            sysroot,
            live,
            out,
        } => analyze(core, pid, exe, sysroot, &live, &out),
        Cmd::Snapshot {
            pid,
            output,
            sysroot,
            live,
        } => {
            // Checked before the process is stopped: a bad output costs it nothing.
            cgocore::output::check(&output, &[])?;
            let opts = live.options(sysroot);
            // The goroutines' stacks are part of what an analysis reads.
            let c = cgocore::capture_pid(pid, &opts, &cgocore::AnalyzeOptions::default())?;
            let bytes = c.snapshot.write(&output)?;
            let r = &c.analysis.report;
            println!(
                "wrote {}: {:.1} MB, {} threads, {} goroutines; process {pid} was stopped {:.1} ms",
                output.display(),
                bytes as f64 / 1e6,
                r.counts.threads,
                r.counts.goroutines,
                c.stopped.as_secs_f64() * 1e3
            );
            Ok(if r.incomplete { EXIT_INCOMPLETE } else { 0 })
        }
        Cmd::Top {
            pid: None,
            cores,
            exe,
            sysroot,
            json_lines,
            ..
        } => top_of_cores(cores, exe, sysroot, json_lines),
        Cmd::Top {
            pid: Some(pid),
            interval,
            count,
            once,
            json_lines,
            sysroot,
            live,
            ..
        } => top(
            pid,
            interval,
            if once { Some(1) } else { count },
            json_lines,
            &live.options(sysroot),
        ),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "cgocore",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        // The Python package's `cgocore` answers this itself; this binary
        // does not know where a package is installed.
        Cmd::DebuggerInit { .. } => anyhow::bail!(
            "the debugger commands come with the Python package: pip install cgocore, then run its \
             `cgocore debugger-init gdb|lldb` (or, from a checkout, source gdb-scripts/cgocore.py)"
        ),
        Cmd::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(0)
        }
        Cmd::Dev {
            cmd: DevCmd::Arm64KernelForm { core, exe, sysroot },
        } => {
            let p = cgocore::Process::from_core(&core, &cgocore::OpenOptions { exe, sysroot })?;
            let n = cgocore::kernel_form::rewrite(&core, &*p.mem)?;
            eprintln!("{}: {n} threads rewound to their svc", core.display());
            Ok(0)
        }
        Cmd::Dev {
            cmd: DevCmd::Layout { binary },
        } => dev_layout(&binary),
    }
}

/// `cgocore dev layout BINARY`: the runtime's struct layout from its DWARF,
/// as a layout table.
fn dev_layout(binary: &std::path::Path) -> Result<u8> {
    let bin = cgocore::elf::exe::Binary::open(binary)?;
    let (_, bi) = bin.section(".go.buildinfo").context("not a Go binary")?;
    let info = cgocore::elf::buildinfo::parse(bi, None).context("bad .go.buildinfo")?;
    let mut l = cgocore::layout::dwarf::layout_from_dwarf(&bin, &info.go_version)?
        .context("binary has no DWARF")?;
    let (maj, min) =
        cgocore::elf::buildinfo::major_minor(&info.go_version).context("bad version")?;
    l.source = format!(
        "generated from the DWARF of a cgo binary built by {}",
        info.go_version
    );
    l.go = format!("go{maj}.{min}");
    println!("{}", serde_json::to_string_pretty(&l)?);
    Ok(0)
}

impl Output {
    fn pprof_target(&self) -> Option<Target> {
        self.pprof.as_deref().map(Target::parse)
    }

    fn dot_target(&self) -> Option<Target> {
        self.dot.as_deref().map(Target::parse)
    }

    /// `--pprof` and `--dot` name files cgocore may write, not the same one,
    /// and at most one of them is standard output (in place of the report).
    fn check_targets(&self, inputs: &[&std::path::Path]) -> Result<()> {
        let targets: Vec<Target> = [self.pprof_target(), self.dot_target()]
            .into_iter()
            .flatten()
            .collect();
        if targets.len() == 2 && targets[0] == targets[1] {
            anyhow::bail!("--pprof and --dot name the same output; give each its own");
        }
        for t in &targets {
            if let Target::File(p) = t {
                cgocore::output::check(p, inputs)?;
            }
        }
        if self.pprof_target() == Some(Target::Stdout)
            && std::io::IsTerminal::is_terminal(&std::io::stdout())
        {
            anyhow::bail!(
                "--pprof - writes a binary profile: redirect standard output, or name a file"
            );
        }
        Ok(())
    }
}

/// The report as asked: text (with goroutines, stacks or the sched view),
/// JSON, and the wait-for graph. `--dot -` or `--pprof -` put that output on
/// standard output in place of the report (its warnings go to standard
/// error; the exit status is the report's).
fn print_report(r: &cgocore::Report, out: &Output) -> Result<u8> {
    let status = if r.incomplete { EXIT_INCOMPLETE } else { 0 };
    if let Some(t) = out.pprof_target() {
        cgocore::output::write(&t, |w| Ok(cgocore::render::write_pprof(r, w)?))?;
    }
    if let Some(t) = out.dot_target() {
        let g = cgocore::render::to_dot(r);
        cgocore::output::write(&t, |w| Ok(w.write_all(g.as_bytes())?))?;
    }
    if [out.pprof_target(), out.dot_target()].contains(&Some(Target::Stdout)) {
        for warning in &r.warnings {
            eprintln!(
                "cgocore: warning: {}",
                cgocore::render::escape_line(warning)
            );
        }
        return Ok(status);
    }
    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
    if out.json {
        // Streamed: a 100k-goroutine report never sits in memory as text.
        // Compact unless --pretty (jq formats it anyway).
        if out.pretty {
            serde_json::to_writer_pretty(&mut w, r)?;
        } else {
            serde_json::to_writer(&mut w, r)?;
        }
        writeln!(w)?;
    } else if out.sched {
        write!(w, "{}", render_sched(r))?;
    } else {
        write!(w, "{}", render_with(r, GoroutineFilter::None, out.stacks))?;
        if out.findings && !r.findings.is_empty() {
            writeln!(w, "\nFindings (most severe first):")?;
            write!(w, "{}", cgocore::render::findings(r))?;
        }
        let f = match out.goroutines {
            None => GoroutineFilter::None,
            Some(Which::Grouped) => {
                writeln!(w)?;
                cgocore::render::write_goroutine_groups(r, &mut w)?;
                GoroutineFilter::None
            }
            Some(Which::All) => GoroutineFilter::All,
            Some(Which::Cgo) => GoroutineFilter::Cgo,
            Some(Which::Locked) => GoroutineFilter::Locked,
        };
        if f != GoroutineFilter::None {
            writeln!(w)?;
            write_goroutines(r, f, &mut w)?;
        }
    }
    w.flush()?;
    Ok(status)
}

/// Run the command line `args` (the program name first); returns the exit
/// status. Usage errors and `--help` print as clap does.
pub fn main_with<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code().clamp(0, 255) as u8;
        }
    };
    cgocore::debuginfod::set_offline(cli.offline);
    if !cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        cgocore::progress::set(Box::new(Bar::new()));
    }
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): not an error of ours.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            0
        }
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("cgocore: error: {}", cgocore::render::escape_terminal(&msg));
            exit_code(&e)
        }
    }
}

/// Progress on a terminal: a bar (or a spinner when the size is unknown)
/// that appears only once a phase has run for half a second
/// (`CGOCORE_PROGRESS_AFTER_MS`).
struct Bar {
    bar: indicatif::ProgressBar,
    /// Which phase is running: a delayed show applies only to its own.
    phase: std::sync::Arc<std::sync::atomic::AtomicU64>,
    after: std::time::Duration,
}

impl Bar {
    fn new() -> Bar {
        let ms = std::env::var("CGOCORE_PROGRESS_AFTER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        Bar {
            bar: indicatif::ProgressBar::hidden(),
            phase: Default::default(),
            after: std::time::Duration::from_millis(ms),
        }
    }
}

impl cgocore::progress::Sink for Bar {
    fn begin(&self, what: &str, total: Option<u64>) {
        use std::sync::atomic::Ordering;
        let style = match total {
            Some(_) => {
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {percent}% {elapsed}")
            }
            None => indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}"),
        };
        if let Ok(style) = style {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar
            .set_draw_target(indicatif::ProgressDrawTarget::hidden());
        self.bar.reset();
        self.bar.set_length(total.unwrap_or(0));
        self.bar
            .set_message(cgocore::render::escape_line(what).into_owned());
        let me = self.phase.fetch_add(1, Ordering::SeqCst) + 1;
        let (bar, phase, after) = (self.bar.clone(), self.phase.clone(), self.after);
        // No thread to be had: no bar, the work goes on.
        let _ = std::thread::Builder::new().spawn(move || {
            std::thread::sleep(after);
            if phase.load(Ordering::SeqCst) == me {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
            }
        });
    }

    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }

    fn end(&self) {
        // A later phase (or none) is running now: no delayed show for this one.
        self.phase.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.bar.disable_steady_tick();
        self.bar.finish_and_clear();
    }
}
