//! `cgocore._cgocore`: the Rust core for Python, gdb and lldb. Reports cross as
//! JSON text (the `cgocore analyze --json` schema); the `cgocore` package turns
//! them into Python objects. Errors and panics become `cgocore.CgocoreError`:
//! nothing here may take a debugger down.
use cgocore::render::{self as text, GoroutineFilter};
use cgocore::{AnalyzeOptions, Arch, OpenOptions, PagedMemory, Report, Rules, TargetDesc};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

pyo3::create_exception!(_cgocore, CgocoreError, PyException);
// One subclass per kind of cgocore::Error: callers catch what they act on.
pyo3::create_exception!(_cgocore, NotACoreError, CgocoreError);
pyo3::create_exception!(_cgocore, NotGoError, CgocoreError);
pyo3::create_exception!(_cgocore, WrongBinaryError, CgocoreError);
pyo3::create_exception!(_cgocore, UnsupportedGoVersionError, CgocoreError);
pyo3::create_exception!(_cgocore, CorruptRuntimeError, CgocoreError);
pyo3::create_exception!(_cgocore, TargetMemoryError, CgocoreError);

/// The Python exception for an error.
fn py_err(e: anyhow::Error) -> PyErr {
    let msg = format!("{e:#}");
    match e.downcast_ref::<cgocore::Error>() {
        Some(cgocore::Error::NotACore(_)) => NotACoreError::new_err(msg),
        Some(cgocore::Error::NotGo(_)) => NotGoError::new_err(msg),
        Some(cgocore::Error::WrongBinary { .. }) => WrongBinaryError::new_err(msg),
        Some(cgocore::Error::UnsupportedGoVersion(_)) => UnsupportedGoVersionError::new_err(msg),
        Some(cgocore::Error::CorruptRuntime(_)) => CorruptRuntimeError::new_err(msg),
        Some(cgocore::Error::TargetMemory(_)) => TargetMemoryError::new_err(msg),
        _ => CgocoreError::new_err(msg),
    }
}

/// Run `f`, turning errors and panics into `CgocoreError`s with one clear line.
fn guard<T>(f: impl FnOnce() -> anyhow::Result<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(py_err(e)),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(CgocoreError::new_err(format!(
                "internal error in cgocore (please report it): {msg}"
            )))
        }
    }
}

fn options(goroutine_frames: bool, rules: Option<PathBuf>) -> anyhow::Result<AnalyzeOptions> {
    let mut o = AnalyzeOptions {
        goroutine_frames,
        ..Default::default()
    };
    if let Some(p) = rules {
        o.rules = Rules::with_user_file(&p)?;
    }
    Ok(o)
}

/// Analyze a core file; returns the report as JSON text.
#[pyfunction]
#[pyo3(signature = (core, exe=None, sysroot=None, goroutine_frames=true, rules=None))]
fn analyze_core_json(
    py: Python<'_>,
    core: PathBuf,
    exe: Option<PathBuf>,
    sysroot: Option<PathBuf>,
    goroutine_frames: bool,
    rules: Option<PathBuf>,
) -> PyResult<String> {
    // Without the GIL: the analysis runs on several threads.
    py.detach(|| {
        guard(|| {
            let p = cgocore::open_core(&core, &OpenOptions { exe, sysroot })?;
            let a = cgocore::analyze_with(
                p,
                Some(core.display().to_string()),
                &options(goroutine_frames, rules)?,
            )?;
            Ok(serde_json::to_string(&a.report)?)
        })
    })
}

/// Analyze a target a debugger describes. `read(addr, size)` returns bytes or
/// None; `threads` is `[(tid, {register: value})]`; `modules` is
/// `[(path, address of its ELF header)]`; `read_pages`: pages per bridged read.
/// Returns `(report JSON, bridged reads)`.
#[pyfunction]
#[pyo3(signature = (read, threads, modules, exe, arch="x86_64", pid=None, sysroot=None, goroutine_frames=false, rules=None, read_pages=16))]
#[allow(clippy::too_many_arguments)]
fn analyze_target_json(
    py: Python<'_>,
    read: Py<PyAny>,
    threads: Vec<(u32, HashMap<String, u64>)>,
    modules: Vec<(String, u64)>,
    exe: PathBuf,
    arch: &str,
    pid: Option<u32>,
    sysroot: Option<PathBuf>,
    goroutine_frames: bool,
    rules: Option<PathBuf>,
    read_pages: u64,
) -> PyResult<(String, usize)> {
    let arch = match arch {
        "x86_64" | "amd64" | "i386:x86-64" => Arch::X86_64,
        "aarch64" | "arm64" => Arch::Aarch64,
        other => {
            return Err(CgocoreError::new_err(format!(
                "architecture {other} is not supported (x86_64, aarch64)"
            )))
        }
    };
    // The GIL is released while Rust works, and each bridged read takes it
    // back for its Python call. Every read is made on this thread, the
    // debugger's own (gdb's API is not for other threads).
    py.detach(move || {
        cgocore::on_this_thread(|| {
            guard(move || {
                let reader = move |addr: u64, len: usize| -> Option<Vec<u8>> {
                    Python::attach(|py| {
                        let v = read.call1(py, (addr, len)).ok()?;
                        let b = v.bind(py).cast::<PyBytes>().ok()?;
                        Some(b.as_bytes().to_vec())
                    })
                };
                let mem = PagedMemory::with_block_pages(Box::new(reader), read_pages);
                let reads = mem.reads.clone();
                let desc = TargetDesc {
                    arch,
                    exe,
                    tls: threads
                        .iter()
                        .map(|(_, r)| r.get("tpidr").copied())
                        .collect(),
                    threads: threads
                        .into_iter()
                        .map(|(tid, r)| (tid, r.into_iter().collect()))
                        .collect(),
                    modules,
                    pid,
                    sysroot,
                };
                let p = cgocore::open_target(desc, Box::new(mem))?;
                let a = cgocore::analyze_with(p, None, &options(goroutine_frames, rules)?)?;
                let n = reads.load(std::sync::atomic::Ordering::Relaxed);
                Ok((serde_json::to_string(&a.report)?, n))
            })
        })
    })
}

fn report(json: &str) -> anyhow::Result<Report> {
    Ok(serde_json::from_str(json)?)
}

/// The whole text report, as `cgocore analyze` prints it.
#[pyfunction]
#[pyo3(signature = (report_json, goroutines="none", stacks=false))]
fn render(report_json: &str, goroutines: &str, stacks: bool) -> PyResult<String> {
    guard(|| {
        let r = report(report_json)?;
        Ok(text::render_with(&r, filter(goroutines)?, stacks))
    })
}

fn filter(s: &str) -> anyhow::Result<GoroutineFilter> {
    Ok(match s {
        "none" => GoroutineFilter::None,
        "all" => GoroutineFilter::All,
        "cgo" => GoroutineFilter::Cgo,
        "locked" => GoroutineFilter::Locked,
        other => anyhow::bail!("unknown goroutine filter {other:?} (all, cgo, locked)"),
    })
}

/// The per-thread table; `labels` maps tids to a debugger's thread numbers.
#[pyfunction]
#[pyo3(signature = (report_json, labels=None))]
fn render_threads(report_json: &str, labels: Option<HashMap<u32, String>>) -> PyResult<String> {
    guard(|| {
        let r = report(report_json)?;
        let labels = labels.unwrap_or_default();
        Ok(text::threads_table(&r, &|tid| labels.get(&tid).cloned()))
    })
}

/// Goroutines in the shape of Go's dump.
#[pyfunction]
#[pyo3(signature = (report_json, which="all"))]
fn render_goroutines(report_json: &str, which: &str) -> PyResult<String> {
    guard(|| Ok(text::goroutines(&report(report_json)?, filter(which)?)))
}

/// One goroutine in the shape of Go's dump.
#[pyfunction]
fn render_goroutine(report_json: &str, goid: u64) -> PyResult<String> {
    guard(|| {
        text::goroutine(&report(report_json)?, goid)
            .ok_or_else(|| anyhow::anyhow!("no goroutine {goid} in the report"))
    })
}

/// One thread's stitched stack, every frame.
#[pyfunction]
fn render_thread_stack(report_json: &str, tid: u32) -> PyResult<String> {
    guard(|| {
        text::thread_stack(&report(report_json)?, tid)
            .ok_or_else(|| anyhow::anyhow!("no thread {tid} in the report"))
    })
}

/// The findings, most severe first.
#[pyfunction]
fn render_findings(report_json: &str) -> PyResult<String> {
    guard(|| Ok(text::findings(&report(report_json)?)))
}

/// Run the `cgocore` command line (`argv[0]` is the program name); returns
/// its exit status. The `cgocore` console script of the wheel calls this.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| cgocore::cli::main_with(argv))
}

#[pymodule]
fn _cgocore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add("CgocoreError", m.py().get_type::<CgocoreError>())?;
    m.add("NotACoreError", m.py().get_type::<NotACoreError>())?;
    m.add("NotGoError", m.py().get_type::<NotGoError>())?;
    m.add("WrongBinaryError", m.py().get_type::<WrongBinaryError>())?;
    m.add(
        "UnsupportedGoVersionError",
        m.py().get_type::<UnsupportedGoVersionError>(),
    )?;
    m.add(
        "CorruptRuntimeError",
        m.py().get_type::<CorruptRuntimeError>(),
    )?;
    m.add("TargetMemoryError", m.py().get_type::<TargetMemoryError>())?;
    m.add_function(wrap_pyfunction!(analyze_core_json, m)?)?;
    m.add_function(wrap_pyfunction!(analyze_target_json, m)?)?;
    m.add_function(wrap_pyfunction!(render, m)?)?;
    m.add_function(wrap_pyfunction!(render_threads, m)?)?;
    m.add_function(wrap_pyfunction!(render_goroutines, m)?)?;
    m.add_function(wrap_pyfunction!(render_thread_stack, m)?)?;
    m.add_function(wrap_pyfunction!(render_goroutine, m)?)?;
    m.add_function(wrap_pyfunction!(render_findings, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
