//! `cgocore`: the offline CLI.
use anyhow::{Context, Result};
use cgocore::render::{render_sched, render_with, write_goroutines, GoroutineFilter};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

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
    about = "Explain Go programs stuck in cgo: threads, Ms, locking and goroutines from a core file"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Analyze a core file (kernel core, gcore, or zstd-compressed .zst)
    #[command(
        after_help = concat!("Exit status: 0 complete, 1 error, 2 bad usage, 3 printed but incomplete (see warnings), \
4 the binary does not match the core, 5 not a Go program, 6 a Go release this cgocore does not know.", "\n\n\
Examples:\n  cgocore analyze core.1234 --exe ./server\n  cgocore analyze core.zst --json | jq '.threads[] | select(.kind==\"foreign\")'\n  cgocore analyze core --goroutines locked\n  cgocore analyze core --stacks       # every frame of every thread\n  cgocore analyze core --sched        # schedtrace-style summary\n  cgocore analyze core --dot wait.dot && dot -Tsvg wait.dot > wait.svg")
    )]
    Analyze {
        /// The core file (optionally zstd-compressed)
        core: PathBuf,
        /// The executable that produced the core (default: the path the core names), or the Go library (-buildmode=c-shared) a C or Python program ran
        #[arg(long)]
        exe: Option<PathBuf>,
        /// Root folder under which the core's file paths are looked up (core from another host)
        #[arg(long)]
        sysroot: Option<PathBuf>,
        /// Print JSON (schema: docs/json-schema.md) instead of text
        #[arg(long)]
        json: bool,
        /// Indent the JSON for reading
        #[arg(long, requires = "json")]
        pretty: bool,
        /// Also list goroutines, like Go's own dump
        #[arg(long, value_enum)]
        goroutines: Option<Which>,
        /// Show every frame of every thread (signal handlers included), not the first few
        #[arg(long)]
        stacks: bool,
        /// Print a GODEBUG=schedtrace=1,scheddetail=1-style summary (per P, M and goroutine)
        #[arg(long)]
        sched: bool,
        /// Write the wait-for graph (threads, goroutines, locks) as Graphviz DOT to FILE (- for stdout)
        #[arg(long, value_name = "FILE")]
        dot: Option<PathBuf>,
        /// Extra classification rules (JSON, same shape as the built-in rules.json), tried first
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
    },
    /// Developer tools
    #[command(hide = true)]
    Dev {
        #[command(subcommand)]
        cmd: DevCmd,
    },
}

#[derive(Subcommand)]
enum DevCmd {
    /// Print the runtime struct layout read from BINARY's DWARF, as a layout table
    Layout { binary: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    All,
    Cgo,
    Locked,
}

fn run(cli: Cli) -> Result<u8> {
    match cli.cmd {
        Cmd::Analyze {
            core,
            exe,
            sysroot,
            json,
            pretty,
            goroutines,
            stacks,
            sched,
            dot,
            rules,
        } => {
            let mut aopts = cgocore::AnalyzeOptions::default();
            if let Some(path) = rules {
                aopts.rules = cgocore::Rules::with_user_file(&path)?;
            }
            // Goroutine stacks cost most on big cores: only unwind them when
            // they are printed.
            aopts.goroutine_frames = json || goroutines.is_some();
            let opts = cgocore::OpenOptions { exe, sysroot };
            let process = cgocore::open_core(&core, &opts)?;
            let a = cgocore::analyze_with(process, Some(core.display().to_string()), &aopts)?;
            if let Some(path) = dot {
                let g = cgocore::render::to_dot(&a.report);
                if path.as_os_str() == "-" {
                    print!("{g}");
                    return Ok(0);
                }
                std::fs::write(&path, g)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if json {
                // Streamed: a 100k-goroutine report never sits in memory as
                // text. Compact unless --pretty (jq formats it anyway).
                if pretty {
                    serde_json::to_writer_pretty(&mut out, &a.report)?;
                } else {
                    serde_json::to_writer(&mut out, &a.report)?;
                }
                writeln!(out)?;
            } else {
                let f = match goroutines {
                    None => GoroutineFilter::None,
                    Some(Which::All) => GoroutineFilter::All,
                    Some(Which::Cgo) => GoroutineFilter::Cgo,
                    Some(Which::Locked) => GoroutineFilter::Locked,
                };
                if sched {
                    write!(out, "{}", render_sched(&a.report))?;
                } else {
                    write!(
                        out,
                        "{}",
                        render_with(&a.report, GoroutineFilter::None, stacks)
                    )?;
                    if f != GoroutineFilter::None {
                        writeln!(out)?;
                        write_goroutines(&a.report, f, &mut out)?;
                    }
                }
            }
            out.flush()?;
            Ok(if a.report.incomplete {
                EXIT_INCOMPLETE
            } else {
                0
            })
        }
        Cmd::Dev {
            cmd: DevCmd::Layout { binary },
        } => {
            let bin = cgocore::elf::exe::Binary::open(&binary)?;
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
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cgocore: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}
