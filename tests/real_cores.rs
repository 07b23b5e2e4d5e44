//! `cgocore analyze` on real cores of real Go programs, checked against Go's own
//! dump and the scenario program's record of which thread runs what.
mod common;

use cgocore::report::{Report, ThreadKind};
use common::*;
use std::collections::{HashMap, HashSet};

fn minfo(r: &Report, id: Option<i64>) -> Option<&cgocore::report::MInfo> {
    r.ms.iter().find(|m| Some(m.id) == id)
}

/// Every mismatch between the report and the truth, as readable lines.
fn check(case: &CoreCase, a: &cgocore::Analysis) -> Vec<String> {
    let r = &a.report;
    let t = &case.truth;
    let mut errs = vec![];
    let mut e = |s: String| errs.push(format!("{}: {s}", case.name));

    if r.go_version != t.go_version {
        e(format!("go_version {} != {}", r.go_version, t.go_version));
    }
    // Each NT_PRSTATUS thread exactly once.
    let core_tids: Vec<u32> = a.process.threads.iter().map(|t| t.tid).collect();
    let tids: Vec<u32> = r.threads.iter().map(|t| t.tid).collect();
    if core_tids != tids || tids.iter().collect::<HashSet<_>>().len() != tids.len() {
        e(format!("threads {tids:?} != core threads {core_tids:?}"));
    }
    // Goroutines: same ids, states, lock and M as Go's dump.
    let ours: HashMap<u64, &cgocore::report::GoroutineInfo> =
        r.goroutines.iter().map(|g| (g.goid, g)).collect();
    let theirs: HashSet<u64> = t.goroutines.iter().map(|g| g.goid).collect();
    let extra: Vec<_> = ours.keys().filter(|k| !theirs.contains(k)).collect();
    if !extra.is_empty() {
        e(format!("goroutines not in Go's dump: {extra:?}"));
    }
    for tg in &t.goroutines {
        let Some(g) = ours.get(&tg.goid) else {
            e(format!("goroutine {} ({}) missing", tg.goid, tg.state));
            continue;
        };
        if g.state() != tg.state {
            e(format!(
                "goroutine {} state {:?} != Go's {:?}",
                tg.goid,
                g.state(),
                tg.state
            ));
        }
        if g.locked != tg.locked {
            e(format!(
                "goroutine {} locked {} != Go's {}",
                tg.goid, g.locked, tg.locked
            ));
        }
        // Go's dump shows the Go frames; ours carry the C frames between them.
        let frames: Vec<(String, Option<String>, Option<i64>)> = g
            .frames
            .iter()
            .filter(|f| f.lang == cgocore::unwind::Lang::Go)
            .map(|f| {
                (
                    f.function.as_deref().unwrap_or_default().to_string(),
                    f.file.as_deref().map(str::to_string),
                    f.line.map(i64::from),
                )
            })
            .collect();
        let want: Vec<(String, Option<String>, Option<i64>)> = tg
            .frames
            .iter()
            .map(|f| (f.function.clone(), f.file.clone(), f.line))
            .collect();
        if frames != want && !tg.frames.is_empty() {
            e(format!("goroutine {} frames differ from Go's dump:\n  ours   {frames:?}\n  theirs {want:?}", tg.goid));
        }
        if tg.m_known && g.m != tg.m {
            e(format!(
                "goroutine {} m {:?} != Go's {:?}",
                tg.goid, g.m, tg.m
            ));
        }
    }
    // Scenarios: the thread the program recorded has the expected M facts.
    let thread = |name: &str| {
        let s = &t.scenarios[name];
        (s, r.threads.iter().find(|th| th.tid == s.tid))
    };
    for name in [
        "read_pipe",
        "cond_wait",
        "mutex_holder",
        "mutex_waiter",
        "sleep",
        "accept",
        "locked_in_c",
    ] {
        let (s, th) = thread(name);
        let Some(th) = th else {
            e(format!("{name}: thread {} not in report", s.tid));
            continue;
        };
        let m = minfo(r, th.m);
        if th.kind != ThreadKind::Go
            || !th.in_cgo
            || th.curg != Some(s.goid)
            || m.is_none_or(|m| m.ncgo < 1)
        {
            e(format!(
                "{name}: thread {} = {th:?}, want go thread in cgo for goroutine {}",
                s.tid, s.goid
            ));
        }
        let want_ext = u32::from(name == "locked_in_c");
        if m.is_none_or(|m| m.locked_ext != want_ext)
            || (name == "locked_in_c") != (th.lockedg == Some(s.goid))
        {
            e(format!("{name}: lockedExt/lockedg wrong: {m:?}"));
        }
    }
    {
        let (s, th) = thread("locked_twice_go");
        let m = th.and_then(|th| minfo(r, th.m));
        if th.is_none_or(|th| th.kind != ThreadKind::Go || th.lockedg != Some(s.goid) || th.in_cgo)
            || m.is_none_or(|m| m.locked_ext != 2)
        {
            e(format!(
                "locked_twice_go: thread {th:?} M {m:?}; want lockedg {} lockedExt 2",
                s.goid
            ));
        }
    }
    {
        let (s, th) = thread("callback");
        let m = th.and_then(|th| minfo(r, th.m));
        if th.is_none_or(|th| th.kind != ThreadKind::Go || th.lockedg != Some(s.goid) || th.in_cgo)
            || m.is_none_or(|m| m.locked_int < 1 || m.ncgo < 1 || m.locked_ext != 0)
        {
            e(format!(
                "callback: thread {th:?} M {m:?}; want lockedg {} lockedInt>=1 ncgo>=1",
                s.goid
            ));
        }
    }
    {
        let (s, th) = thread("extra_m_parked");
        let m = th.and_then(|th| minfo(r, th.m));
        if th.is_none_or(|th| {
            th.kind != ThreadKind::Extra || th.lockedg != Some(s.goid) || th.in_cgo
        }) || m.is_none_or(|m| !m.isextra || m.is_extra_in_c || m.locked_int != 2)
        {
            e(format!("extra_m_parked: thread {th:?} M {m:?}; want extra M inside a callback (lockedInt 2)"));
        }
    }
    {
        let (s, th) = thread("extra_m_in_c");
        let m = th.and_then(|th| minfo(r, th.m));
        if th.is_none_or(|th| th.kind != ThreadKind::Extra || th.curg != Some(s.goid) || !th.in_cgo)
            || m.is_none_or(|m| !m.isextra || !m.is_extra_in_c || m.ncgo != 0 || m.locked_int != 1)
        {
            e(format!(
                "extra_m_in_c: thread {th:?} M {m:?}; want extra M back in C"
            ));
        }
    }
    {
        let (s, th) = thread("foreign_thread");
        if th.is_none_or(|th| th.kind != ThreadKind::Foreign || th.m.is_some()) {
            e(format!(
                "foreign_thread: thread {} = {th:?}, want foreign",
                s.tid
            ));
        }
    }
    // The spare extra M (no thread) is listed among Ms but its goroutine is not.
    // ... unless a thread borrowed it to run the crash signal's handler.
    if !r
        .ms
        .iter()
        .any(|m| m.isextra && (m.tid.is_none() || m.signal_borrowed))
    {
        e("no spare extra M without a thread".into());
    }
    // Text the core left out (libc, the executable) is spliced in from the
    // files (a static program has no libc of its own to splice; musl's
    // libc is also its dynamic linker, which a program may name instead).
    if !case.truth.is_static()
        && !a
            .process
            .libraries
            .iter()
            .any(|l| l.path.contains("libc.so") || l.path.contains("/ld-musl-"))
    {
        e("libc not spliced from NT_FILE".into());
    }
    // The executable is spliced once, as the executable, never again as a library.
    if let Some(l) = a
        .process
        .libraries
        .iter()
        .find(|l| l.path.ends_with("/cgostuck"))
    {
        e(format!("executable {} loaded as a library too", l.path));
    }
    for th in &a.process.threads {
        let mut b = [0u8; 16];
        if let Err(err) = a.process.mem.read(th.regs.pc(), &mut b) {
            e(format!("thread {} pc unreadable: {err}", th.tid));
        }
    }
    // runtime.sched agrees with the M list (allm holds every live M).
    if let Some(s) = &r.sched {
        let bound =
            r.ms.iter()
                .filter(|m| m.isextra && (m.tid.is_some() || m.signal_borrowed))
                .count() as u32;
        // A goroutine that exits locked to the main thread wedges m0 in
        // mexit: counted as freed, still on allm.
        let wedged = r
            .threads
            .iter()
            .filter(|t| t.has_frame("runtime.mexit"))
            .count() as i64;
        if s.mcount + wedged != r.ms.len() as i64 || s.extra_ms_in_use != Some(bound) {
            e(format!(
                "sched {s:?} disagrees with {} Ms, {bound} bound extra Ms",
                r.ms.len()
            ));
        }
    } else if r.roots_from == "symbols" {
        e("runtime.sched not decoded".into());
    }
    if r.incomplete {
        e(format!("report incomplete: {:?}", r.warnings));
    }
    for s in waits_mismatches(r, t) {
        e(s);
    }
    errs
}

/// Every goroutine Go's dump shows parked on a sync value or a channel has
/// `waits_on` of that kind (from the runtime's sudogs, on every release,
/// architecture and libc, stripped too), and the goroutines the scenario
/// parks on one object (`parked()`: one mutex, one RWMutex, ...) agree on
/// its address.
fn waits_mismatches(r: &Report, t: &Truth) -> Vec<String> {
    let mut errs = vec![];
    let mut addrs: HashMap<(String, Option<String>), HashSet<u64>> = HashMap::new();
    for tg in &t.goroutines {
        let want: &[&str] = match tg.state.as_str() {
            "sync.Mutex.Lock" => &["mutex", "rwmutex"],
            "sync.RWMutex.RLock" | "sync.RWMutex.Lock" => &["rwmutex"],
            "sync.WaitGroup.Wait" => &["waitgroup"],
            "semacquire" => &["waitgroup", "sema"],
            "sync.Cond.Wait" => &["cond"],
            "chan send" | "chan receive" => &["chan"],
            "select" => &["select"],
            _ => continue,
        };
        let Some(g) = r.goroutines.iter().find(|g| g.goid == tg.goid) else {
            continue;
        };
        match g.waits_on.as_deref() {
            Some(w) if want.contains(&&*w.kind) && w.addr != 0 => {
                // The function that waits: one object per call site in parked().
                let site = tg
                    .frames
                    .iter()
                    .find(|f| f.function.starts_with("main."))
                    .map(|f| format!("{}:{:?}", f.function, f.line));
                addrs
                    .entry((tg.state.clone(), site))
                    .or_default()
                    .insert(w.addr);
            }
            other => errs.push(format!(
                "goroutine {} ({}): waits_on {:?}, want one of {want:?}",
                tg.goid,
                tg.state,
                other.map(|w| (&w.kind, w.addr))
            )),
        }
    }
    for ((state, site), a) in addrs {
        if a.len() > 1
            && site
                .as_deref()
                .is_some_and(|s| s.starts_with("main.parked"))
        {
            errs.push(format!(
                "{state} at {site:?}: {} objects {a:x?}, the scenario parks them on one",
                a.len()
            ));
        }
    }
    errs
}

fn run_all(cases: &[CoreCase]) {
    // A "gcore" core must be gdb's: one overwritten by the kernel's crash
    // core once made every gcore test a second kernel test.
    for c in cases {
        let want = if c.truth.kind == "gcore" {
            "gdb gcore"
        } else {
            "kernel"
        };
        assert_eq!(core_writer(&c.core), want, "{}: who wrote the core", c.name);
    }
    let mut errs = vec![];
    for c in cases {
        let a = analyze(c);
        errs.extend(check(c, &a));
        let r = &a.report;
        if r.core_writer.as_deref() != Some(core_writer(&c.core)) {
            errs.push(format!("{}: core_writer {:?}", c.name, r.core_writer));
        }
        // gdb attached with SIGSTOP: nothing ended the process. The kernel's
        // core names the signal Go's crash relay died of.
        let killed = r.signal.is_some_and(|s| s == 3 || s == 6);
        if (c.truth.kind == "gcore") == killed {
            errs.push(format!("{}: signal {:?}", c.name, r.signal));
        }
    }
    assert!(
        errs.is_empty(),
        "{} mismatches:\n{}",
        errs.len(),
        errs.join("\n")
    );
}

#[test]
fn fixtures_match_go_dump() {
    let cases = fixtures();
    assert!(
        cases.len() >= 3,
        "expected committed fixtures in corefiles/fixtures"
    );
    run_all(&cases);
}

#[test]
fn generated_cores_match_go_dump() {
    let cases = generated();
    if cases.is_empty() {
        assert!(
            !require_generated(),
            "CGOCORE_REQUIRE_GENERATED=1 but no generated cores (run corefiles/generate.py)"
        );
        eprintln!("no generated cores; run corefiles/generate.py (the full test run does)");
        return;
    }
    if require_generated() {
        let versions: HashSet<_> = cases.iter().map(|c| c.truth.go_version.clone()).collect();
        assert_eq!(
            versions.len(),
            7,
            "every supported Go version must have generated cores: {versions:?}"
        );
    }
    run_all(&cases);
}

/// The same core read with a `strip`ped copy of its binary (no .symtab, no DWARF)
/// must give the same answer: roots found by heuristics, layout from the table.
/// aarch64 cores of Go 1.21 and 1.27 made under qemu-user, as qemu wrote
/// them (no NT_FILE: libraries from the dynamic linker's list) and in the
/// kernel's form: threads, Ms, goroutines and frames against Go's dump.
#[test]
fn arm64_cores_match_go_dump() {
    let cases = generated_arm64();
    require_variety(&cases, |c| c.truth.kind.clone(), &["qemu", "kernel"]);
    check_platform(&cases, |c, a| {
        assert_eq!(a.report.arch, "aarch64", "{}", c.name);
        assert!(
            a.process
                .libraries
                .iter()
                .any(|l| l.path.contains("libc.so")),
            "{}: libc found from the dynamic linker's list",
            c.name
        );
    });
}

/// musl builds of Go 1.21 and 1.27: a dynamic (Alpine-style) one's gcore, a
/// static one's kernel core, a static arm64 one under qemu-user, against
/// Go's dump.
#[test]
fn musl_cores_match_go_dump() {
    let cases = generated_musl();
    require_variety(
        &cases,
        |c| c.truth.variant.clone(),
        &["musl", "musl-static", "musl-arm64", "musl-arm64-dynamic"],
    );
    check_platform(&cases, |c, _| {
        let writer = if c.truth.kind == "gcore" {
            "gdb gcore"
        } else {
            "kernel"
        };
        assert_eq!(core_writer(&c.core), writer, "{}", c.name);
    });
}

/// With CGOCORE_REQUIRE_GENERATED=1: every kind named, of two Go releases.
fn require_variety(cases: &[CoreCase], kind: impl Fn(&CoreCase) -> String, want: &[&str]) {
    if !require_generated() {
        return;
    }
    let kinds: HashSet<String> = cases.iter().map(kind).collect();
    let versions: HashSet<_> = cases.iter().map(|c| c.truth.go_version.clone()).collect();
    assert!(
        want.iter().all(|k| kinds.contains(*k)) && versions.len() >= 2,
        "cores of {want:?} for two Go releases: {kinds:?} {versions:?}"
    );
}

/// `check` on each core, after the platform's own assertions.
fn check_platform(cases: &[CoreCase], also: impl Fn(&CoreCase, &cgocore::Analysis)) {
    let mut errs = vec![];
    for c in cases {
        let a = analyze(c);
        also(c, &a);
        errs.extend(check(c, &a));
    }
    assert!(
        errs.is_empty(),
        "{} mismatches:\n{}",
        errs.len(),
        errs.join("\n")
    );
}

#[test]
fn stripped_twin_agrees() {
    let mut cases: Vec<CoreCase> = fixtures();
    cases.extend(
        generated()
            .into_iter()
            .filter(|c| c.truth.variant == "plain"),
    );
    let tmp = Scratch::new("strip");
    for (i, c) in cases.iter().enumerate() {
        let full = analyze(c);
        let raw = uncompressed(&c.exe);
        let stripped = tmp.join(format!("exe{i}.stripped"));
        let ok = std::process::Command::new("objcopy")
            .arg("--strip-all")
            .arg(&raw)
            .arg(&stripped)
            .status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "objcopy --strip-all failed (binutils needed)"
        );
        let twin = CoreCase {
            name: format!("{} (stripped twin)", c.name),
            core: c.core.clone(),
            exe: stripped,
            truth: c.truth.clone(),
        };
        let s = analyze(&twin);
        assert_eq!(s.report.roots_from, "heuristics", "{}", twin.name);
        assert_eq!(s.report.layout_from, "table", "{}", twin.name);
        // Everything but what only symbols give: names (and inlined calls)
        // of the C code in the executable, and the module's file name.
        let j = |r: &Report| {
            let mut v =
                serde_json::to_value((&r.threads, &r.ms, &r.goroutines, r.gomaxprocs)).unwrap();
            let exe_c = |f: &serde_json::Value| {
                f["lang"] == "c"
                    && f["module"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("exe") || m.starts_with("cgostuck"))
            };
            for list in [0, 2] {
                for item in v[list].as_array_mut().unwrap() {
                    let frames = item["frames"].as_array_mut().unwrap();
                    frames.retain(|f| !(exe_c(f) && f["inlined"] == true));
                    for f in frames.iter_mut() {
                        if exe_c(f) {
                            for k in ["function", "file", "line"] {
                                f[k] = serde_json::Value::Null;
                            }
                        }
                        f["module"] = serde_json::Value::Null;
                    }
                    // `interrupted.frame` counts the dropped inlined frames too.
                    item["interrupted"] = serde_json::Value::Null;
                    item["signals"] = serde_json::Value::Null;
                    // The blocked call's text names the C function and the lock.
                    if item["blocked"].is_object() {
                        item["blocked"]["detail"] = serde_json::Value::Null;
                        item["blocked"]["lock_symbol"] = serde_json::Value::Null;
                    }
                    item["goroutine_frame"] = serde_json::Value::Null;
                }
            }
            v
        };
        assert_eq!(
            j(&full.report),
            j(&s.report),
            "{}: stripped twin differs",
            twin.name
        );
        let errs = check(&twin, &s);
        assert!(errs.is_empty(), "{}", errs.join("\n"));
    }
}

/// The built-in tables equal the DWARF of every binary we have.
#[test]
fn tables_equal_dwarf() {
    let mut cases: Vec<CoreCase> = fixtures();
    cases.extend(
        generated()
            .into_iter()
            .filter(|c| c.truth.variant != "stripped"),
    );
    let mut seen = HashSet::new();
    for c in cases {
        if !seen.insert(c.exe.clone()) {
            continue;
        }
        let bin = cgocore::elf::exe::Binary::open(&c.exe).unwrap();
        let dwarf = cgocore::layout::dwarf::layout_from_dwarf(&bin, &c.truth.go_version)
            .unwrap()
            .expect("DWARF");
        let table = cgocore::layout::table::for_version(&c.truth.go_version).expect("table");
        assert_eq!(
            dwarf.structs, table.structs,
            "{}: layout table differs from DWARF",
            c.name
        );
    }
}

/// Facts `layouts/versions.json` holds that are not struct offsets, read
/// back from every (non-PIE, unstripped) binary we have: the runtime's own
/// status names and wait reasons, the funcID on `runtime.asmcgocall`. A new
/// Go release that changes one fails here, not on a user's core.
#[test]
fn version_facts_equal_each_binary() {
    use cgocore::memory::{ReadExt, SplicedMemory};
    let mut cases: Vec<CoreCase> = fixtures();
    cases.extend(generated());
    let mut seen = HashSet::new();
    for c in cases.iter().filter(|c| c.truth.variant == "plain") {
        if !seen.insert(c.exe.clone()) {
            continue;
        }
        let bin = cgocore::elf::exe::Binary::open(&c.exe).unwrap();
        let facts = cgocore::layout::table::facts(&c.truth.go_version).expect("facts");
        let mut pcln = cgocore::symbolize::pclntab::Pclntab::load(&bin, 0).unwrap();
        // As the runtime sets it (moduledata.text): where Go's text starts.
        pcln.text = bin.symbol("runtime.text").expect("runtime.text").0;
        // The assembly body; `runtime.asmcgocall` may be Go's ABI wrapper.
        let (asmcgocall, _) = bin
            .symbol("runtime.asmcgocall.abi0")
            .or_else(|| bin.symbol("runtime.asmcgocall"))
            .expect("asmcgocall");
        let f = pcln.find(asmcgocall).expect("asmcgocall in the pclntab");
        assert_eq!(pcln.name(&f), "runtime.asmcgocall", "{}", c.name);
        assert_eq!(
            pcln.func_id(&f),
            facts.funcid_asmcgocall,
            "{}: funcID of runtime.asmcgocall",
            c.name
        );
        // The binary's own data (a non-PIE binary's pointers need no relocation).
        let mut file = SplicedMemory::default();
        file.push_layer(bin.segments(0));
        let strings = |sym: &str| -> Vec<String> {
            let (addr, size) = bin.symbol(sym).unwrap_or_else(|| panic!("{sym}"));
            (0..size / 16)
                .map(|i| file.go_string(addr + 16 * i, 128).unwrap())
                .collect()
        };
        let reasons = strings("runtime.waitReasonStrings");
        assert_eq!(reasons.len(), facts.wait_reason_count, "{}", c.name);
        assert_eq!(
            reasons[facts.wait_reason_gc_assist_marking], "GC assist marking",
            "{}",
            c.name
        );
        assert_eq!(
            strings("runtime.gStatusStrings"),
            facts.g_status,
            "{}: g status names",
            c.name
        );
    }
    assert!(seen.len() >= 3, "binaries checked: {}", seen.len());
}

/// A C program that runs a Go library (`-buildmode=c-shared`): the runtime is
/// found in the library the core maps, whether the executable is named or
/// not; each thread has the M, lock state and goroutine the program printed.
#[test]
fn go_library_in_a_c_program() {
    let cases = generated_cshared();
    if require_generated() {
        let versions: HashSet<_> = cases.iter().map(|c| c.truth.go_version.clone()).collect();
        assert_eq!(
            versions.len(),
            7,
            "c-shared cores of every Go version: {versions:?}"
        );
    }
    for c in &cases {
        let lib = c.exe.with_file_name("libcgostuck.so");
        let named = analyze(c);
        let by_itself = cgocore::analyze(
            cgocore::Process::from_core(&c.core, &cgocore::OpenOptions::default()).unwrap(),
            None,
        )
        .unwrap();
        let lib_named = analyze(&CoreCase {
            name: c.name.clone(),
            core: c.core.clone(),
            exe: lib.clone(),
            truth: c.truth.clone(),
        });
        for a in [&named, &by_itself, &lib_named] {
            let r = &a.report;
            assert!(
                r.binary.ends_with("libcgostuck.so"),
                "{}: {}",
                c.name,
                r.binary
            );
            let s = |n: &str| &c.truth.scenarios[n];
            let t = |tid: u32| r.threads.iter().find(|t| t.tid == tid).unwrap();
            let m = |t: &cgocore::report::ThreadInfo| minfo(r, t.m).unwrap().clone();
            let host = t(s("cshared_host_main").tid);
            assert_eq!(host.kind, ThreadKind::Foreign, "{}", c.name);
            // An absolute deadline is named as one, not as a duration.
            let detail = &host.blocked.as_ref().unwrap().detail;
            assert!(
                detail.starts_with("clock_nanosleep(until CLOCK_MONOTONIC "),
                "{}: {detail}",
                c.name
            );

            let locked = t(s("cshared_locked_in_c").tid);
            let goid = s("cshared_locked_in_c").goid;
            let lm = m(locked);
            assert_eq!(locked.kind, ThreadKind::Extra, "{}", c.name);
            assert_eq!(
                (lm.locked_ext, lm.lockedg, lm.curg),
                (1, Some(goid), Some(goid))
            );
            assert_eq!(
                locked.blocked.as_ref().unwrap().class,
                "sleep",
                "{}",
                c.name
            );
            let names: Vec<&str> = locked
                .frames
                .iter()
                .filter_map(|f| f.function.as_deref())
                .collect();
            let at = |n: &str| names.iter().position(|f| *f == n);
            // C (pause) under Go (the exported function) under C (the host's thread).
            assert!(
                matches!((at("main.CgoLockedBlockInC"), at("locked")), (Some(g), Some(h)) if g < h)
                    && names.iter().any(|f| f.contains("pause")),
                "{}: {names:?}",
                c.name
            );

            let parked = t(s("cshared_parked_in_go").tid);
            assert_eq!(parked.kind, ThreadKind::Extra, "{}", c.name);
            assert_eq!(m(parked).lockedg, Some(s("cshared_parked_in_go").goid));
        }
    }
}

/// A busy program (GC, preemption, deep stacks, short cgo calls, callbacks
/// from C threads) caught at random moments: every goroutine Go's dump
/// shows is there in the same state, with the same Go frames (the first and
/// last 50 where Go elides the middle), and a stack never ends early without
/// saying why.
#[test]
fn busy_cores_match_go_dump() {
    let cases = generated_busy();
    if cases.is_empty() {
        assert!(!require_generated(), "no busy cores");
        return;
    }
    let mut errs = vec![];
    let (mut compared, mut frames_checked) = (0usize, 0usize);
    // A gcore of the running program: Go's dump came after it, so only what
    // the core says of itself is checked: every stack reaches its top frame
    // or says why it ends.
    for c in cases.iter().filter(|c| c.truth.kind == "gcore") {
        let a = analyze(c);
        for g in &a.report.goroutines {
            let top = g.frames.last().and_then(|f| f.function.as_deref());
            if g.status != "running" && top != Some("runtime.goexit") && g.stack_truncated.is_none()
            {
                errs.push(format!(
                    "{}: goroutine {} ends at {top:?} without a reason",
                    c.name, g.goid
                ));
            }
            compared += 1;
        }
    }
    for c in cases.iter().filter(|c| c.truth.kind == "kernel") {
        let a = analyze(c);
        let ours: std::collections::HashMap<u64, &cgocore::report::GoroutineInfo> =
            a.report.goroutines.iter().map(|g| (g.goid, g)).collect();
        for tg in &c.truth.goroutines {
            let mut e = |s: String| errs.push(format!("{}: goroutine {}: {s}", c.name, tg.goid));
            let Some(g) = ours.get(&tg.goid) else {
                e(format!("in Go's dump ({}), not in ours", tg.state));
                continue;
            };
            compared += 1;
            // Go's dump is printed by the crash: goroutines it shows running
            // are caught mid-flight on their threads.
            if tg.state == "running" {
                continue;
            }
            // A goroutine the GC is scanning as the crash prints it shows
            // " (scan)": the GC's transient mark, not its state (the core
            // reads the same status word a moment apart).
            let go_state = tg.state.trim_end_matches(" (scan)");
            if g.state() != go_state {
                e(format!("state {:?} != Go's {:?}", g.state(), tg.state));
            }
            let go: Vec<(&str, Option<i64>)> = g
                .frames
                .iter()
                .filter(|f| f.lang == cgocore::unwind::Lang::Go)
                .map(|f| (f.function.as_deref().unwrap_or(""), f.line.map(i64::from)))
                .collect();
            let want: Vec<(&str, Option<i64>)> = tg
                .frames
                .iter()
                .map(|f| (f.function.as_str(), f.line))
                .collect();
            let same = if tg.elided {
                let n = want.len() / 2;
                go.len() >= want.len()
                    && go[..n] == want[..n]
                    && go[go.len() - (want.len() - n)..] == want[n..]
            } else {
                go == want
            };
            frames_checked += want.len();
            if !same {
                e(format!(
                    "frames differ (elided: {}):\n  ours   {} {:?}\n  theirs {} {:?}",
                    tg.elided,
                    go.len(),
                    &go[..go.len().min(8)],
                    want.len(),
                    &want[..want.len().min(8)]
                ));
            }
            if go.len() < want.len() && g.stack_truncated.is_none() {
                e(format!(
                    "stack ends after {} of {} frames without a reason",
                    go.len(),
                    want.len()
                ));
            }
        }
    }
    eprintln!(
        "busy: {compared} goroutines, {frames_checked} frames compared over {} cores",
        cases.len()
    );
    assert!(
        errs.is_empty(),
        "{} differences:\n{}",
        errs.len(),
        errs.join("\n")
    );
}
