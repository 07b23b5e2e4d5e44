//! Blocked-call classes, lock owners and findings on real cores: one scenario
//! thread per class, checked against the class the scenario was built to
//! reach, the syscall the kernel recorded, and the thread the scenario says
//! holds the lock. Findings are checked both ways: they fire on the threads
//! whose condition holds, and on no others.
mod checks;
mod common;

use cgocore::report::Report;
use checks::classes::*;
use common::*;
use std::collections::BTreeSet;

/// Without libc's debug info (a sysroot holding only the libraries, as on
/// most production hosts), the exported names and the syscall still give
/// every class: a test axis over every glibc core, fixtures and generated.
#[test]
fn classes_hold_without_libc_debug_info() {
    let mut cases: Vec<CoreCase> = fixtures()
        .into_iter()
        .filter(|c| c.truth.variant == "plain")
        .collect();
    cases.extend(generated());
    let mut errs = vec![];
    for case in &cases {
        errs.extend(check_without_debug_info(case));
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

fn check_without_debug_info(case: &CoreCase) -> Vec<String> {
    let full = analyze(case);
    let tmp = Scratch::new("classify-sysroot");
    let root = tmp.0.clone();
    bare_sysroot(&full, &root);
    let opts = cgocore::OpenOptions {
        exe: Some(case.exe.clone()),
        sysroot: Some(root.clone()),
    };
    let p = cgocore::Process::from_core(&case.core, &opts).unwrap();
    assert!(!p.libraries.is_empty(), "libraries found under the sysroot");
    let bare = cgocore::analyze(p, None).unwrap();
    let libc_dbg = bare
        .process
        .libraries
        .iter()
        .any(|l| cgocore::testing::debug_file(&l.binary, &Some(root.clone())).is_some());
    assert!(
        !libc_dbg,
        "no debug file is reachable under the bare sysroot"
    );
    // Every frame in libc is named, if only by the nearest exported symbol
    // plus an offset (never a bare ??), and such a name stays out of rules.
    for t in &bare.report.threads {
        for f in t
            .frames
            .iter()
            .filter(|f| f.module.as_deref() == Some("libc.so.6"))
        {
            let n = f.function.as_deref().unwrap_or("??");
            assert!(
                n != "??",
                "{}: thread {} has an unnamed libc frame",
                case.name,
                t.tid
            );
        }
    }
    let approx = bare
        .report
        .threads
        .iter()
        .flat_map(|t| &t.frames)
        .filter(|f| {
            f.function.as_deref().is_some_and(|n| n.contains("+0x")) && f.known_function().is_none()
        });
    assert!(
        approx.count() > 0,
        "internal glibc functions named by a neighbour"
    );
    // glibc's sem_wait and setenv tail-call static functions: with only
    // exported names nothing on the stack says "semaphore" or "environment"
    // (they stay unclassified, with their futex); fork's malloc locking and
    // list_lock are internal names, so that holder is not known. Every other
    // class holds.
    check_classes_except(
        case,
        &bare.report,
        bare.process.arch,
        &[
            "sem_wait",
            "setenv_self",
            "setenv_waiter",
            "fork_wedged",
            "arena_waiter",
        ],
    )
}

/// aarch64 cores (qemu's form and the kernel's): the same classes, syscalls
/// and owners as on x86_64, with exported names only (no arm64 libc debug
/// info here), so the same scenarios as without debug info stay unnamed.
#[test]
fn arm64_cores_classify_every_blocked_call() {
    let cases = generated_arm64();
    let mut errs = vec![];
    for case in &cases {
        let a = analyze(case);
        errs.extend(check_classes_except(
            case,
            &a.report,
            a.process.arch,
            &[
                "sem_wait",
                "setenv_self",
                "setenv_waiter",
                "fork_wedged",
                "arena_waiter",
            ],
        ));
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// musl, dynamic (only exported names) and static (musl's own symbols): the
/// same classes and owners as glibc's for every scenario the program runs
/// under musl.
#[test]
fn musl_cores_classify_every_blocked_call() {
    let cases = generated_musl();
    let mut errs = vec![];
    for case in &cases {
        let a = analyze(case);
        errs.extend(check_classes(case, &a.report, a.process.arch));
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// A user rules file is tried before the built-in rules.
#[test]
fn user_rules_come_first() {
    let Some(case) = fixtures().into_iter().next() else {
        return;
    };
    let tmp = Scratch::new("classify-rules");
    let path = tmp.join("rules.json");
    std::fs::write(
        &path,
        r#"{"classes": [{"class": "unclassified", "frames": [["pause"]],
            "explain": "our service's idle loop", "advice": "expected"}]}"#,
    )
    .unwrap();
    let rules = cgocore::Rules::with_user_file(&path).unwrap();
    let p = cgocore::Process::from_core(
        &case.core,
        &cgocore::OpenOptions {
            exe: Some(case.exe.clone()),
            sysroot: None,
        },
    )
    .unwrap();
    let a = cgocore::analyze_with(
        p,
        None,
        &cgocore::AnalyzeOptions {
            rules,
            ..Default::default()
        },
    )
    .unwrap();
    let t = thread(&a.report, tid(&case, "locked_in_c"));
    let b = t.blocked.as_ref().unwrap();
    assert_eq!(
        (b.class.as_str(), b.explain.as_str()),
        ("unclassified", "our service's idle loop")
    );
    // Other threads still get the built-in classes.
    let s = thread(&a.report, tid(&case, "read_pipe"));
    assert_eq!(s.blocked.as_ref().unwrap().class, "read");
}

/// `poll` names each fd with its events (read from the `pollfd` array in
/// the core): the scenario polls one pipe's read end for input.
#[test]
fn poll_names_each_fd_and_its_events() {
    let mut cases = fixtures();
    cases.extend(generated());
    for c in &cases {
        let r = analyze(c).report;
        let t = thread(&r, tid(c, "poll"));
        let d = &t.blocked.as_ref().expect("poll blocked").detail;
        let ok = d.contains("poll(fd ") && d.contains(" POLLIN");
        assert!(ok, "{}: {d}", c.name);
    }
}

/// Goroutines blocked in system calls Go makes itself (raw `syscall.Read`,
/// `Flock`, `Accept`, `Nanosleep`, `Wait4`; no cgo call), in a program built
/// without cgo (a static binary) and with it: each gets the blocked object a
/// cgo call would, and the locked one the same finding.
#[test]
fn go_side_syscalls_are_classified() {
    let cases = generated_gosyscall();
    if require_generated() {
        let kinds: BTreeSet<_> = cases.iter().map(|c| c.truth.variant.clone()).collect();
        assert_eq!(kinds.len(), 2, "built with and without cgo: {kinds:?}");
    }
    const WANT: &[(&str, &str, &[&str])] = &[
        ("go_read", "read", &["read"]),
        ("go_read_locked", "read", &["read"]),
        ("go_flock", "file-lock", &["flock"]),
        ("go_accept", "accept", &["accept", "accept4"]),
        // Go's crash signal may end the sleep with EINTR (the number lost):
        // then the Go wrapper's name says it.
        ("go_nanosleep", "sleep", &["nanosleep", "clock_nanosleep"]),
        ("go_wait4", "wait-child", &["wait4"]),
    ];
    let mut errs = vec![];
    for case in &cases {
        let r = analyze(case).report;
        let mut e = |s: String| errs.push(format!("{}: {s}", case.name));
        // Goroutines and states as Go's dump has them.
        for g in &case.truth.goroutines {
            match r.goroutines.iter().find(|x| x.goid == g.goid) {
                Some(x) if x.state() == g.state => {}
                other => e(format!(
                    "goroutine {}: {:?}, Go says {}",
                    g.goid,
                    other.map(|x| x.state()),
                    g.state
                )),
            }
        }
        for (scn, class, syscalls) in WANT {
            let goid = case.truth.scenarios[*scn].goid;
            let Some(t) = r.threads.iter().find(|t| t.curg == Some(goid)) else {
                e(format!("{scn}: no thread runs goroutine {goid}"));
                continue;
            };
            let Some(b) = &t.blocked else {
                e(format!("{scn}: thread {} not blocked", t.tid));
                continue;
            };
            let syscall_ok = b.syscall.as_deref().is_none_or(|s| syscalls.contains(&s))
                && (b.syscall.is_some() || *scn == "go_nanosleep");
            if b.class != *class
                || !syscall_ok
                || t.in_cgo
                || !b.explain.contains("Go makes itself")
            {
                e(format!("{scn}: {b:?} (in_cgo {})", t.in_cgo));
            }
            if !b.detail.contains(" in syscall.") {
                e(format!(
                    "{scn}: detail {:?} does not name Go's wrapper",
                    b.detail
                ));
            }
        }
        let locked: Vec<_> = of_kind(&r, "locked-thread-blocked-in-c");
        let want = r
            .threads
            .iter()
            .find(|t| t.curg == Some(case.truth.scenarios["go_read_locked"].goid))
            .map(|t| t.tid);
        if locked.len() != 1 || first_tid(locked[0]) != want {
            e(format!(
                "locked-thread-blocked-in-c: {:?}, want thread {want:?}",
                locked.iter().map(|f| &f.summary).collect::<Vec<_>>()
            ));
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// `connect` names where it connects: the scenario's listener is an
/// abstract unix socket named after the process (`@cgostuck-PID`), read
/// from the `sockaddr` in the core, on every platform.
#[test]
fn connect_names_its_target() {
    let mut cases = fixtures();
    cases.extend(generated());
    cases.extend(generated_arm64());
    cases.extend(generated_musl());
    for c in &cases {
        let r = analyze(c).report;
        let t = thread(&r, tid(c, "connect"));
        let d = &t.blocked.as_ref().expect("connect blocked").detail;
        assert!(d.contains(", to unix:@cgostuck-"), "{}: {d}", c.name);
    }
}

/// SQLite's busy waiter waits for the writer's thread: read from the
/// connections (`dwarf`: the writer's connection holds the WAL write lock in a
/// write transaction on the scenario's database file), or likely, the only
/// other thread inside SQLite with a write in progress.
fn sqlite_waits_for_writer(
    r: &cgocore::Report,
    case: &CoreCase,
    dwarf: bool,
) -> Result<(), String> {
    let writer = tid(case, "sqlite_writer");
    let w = thread(r, tid(case, "sqlite_busy"))
        .blocked
        .clone()
        .ok_or("sqlite_busy: not blocked")?;
    let how = if dwarf {
        w.lock_symbol
            .as_deref()
            .is_some_and(|l| l.ends_with("/libs.db"))
            && w.explain
                .contains(&format!("held by thread {writer}'s connection 0x"))
            && w.explain
                .contains("(the WAL write lock, a write transaction)")
            // The evidence: each connection's mutex names its thread.
            && w.explain
                .contains("each connection's mutex names the thread using it")
            && thread(r, writer)
                .blocked
                .as_ref()
                .is_some_and(|b| b.explain.contains("holds SQLite's lock"))
    } else {
        w.explain.contains(&format!(
            "likely held by thread {writer}, the only other thread inside sqlite with a write in progress"
        ))
    };
    let ok = w.class == "db-lock"
        && w.owner_tid == Some(writer)
        && w.owner_likely != dwarf
        && w.library.as_deref() == Some("sqlite")
        && how;
    ok.then_some(())
        .ok_or_else(|| format!("{}: sqlite_busy (dwarf {dwarf}): {w:?}", case.name))
}

/// Threads stuck inside real Debian libraries (libsqlite3, libssl, libcurl,
/// libuv; `corefiles/scenarios/libs`, Go 1.21 and 1.27): each thread's
/// class, detail and library from evidence (no tag for an application
/// thread named `tls_…`, no busy handler for an application SQL function
/// that sleeps), SQLite's busy waiter linked to the writer holding the
/// database lock (likely, from the writer's frames; read from SQLite's own
/// structures where its DWARF is compiled in), libcurl's connect and
/// response waits told apart.
#[test]
fn third_party_libraries_from_evidence() {
    let cases = generated_libs();
    assert!(
        cases.len() >= 3 && cases.iter().any(|c| c.truth.variant == "libs-bundled")
            || !require_generated(),
        "libs cores: {}",
        cases.len()
    );
    let mut errs = vec![];
    for case in &cases {
        let r = analyze(case).report;
        let mut e = |s: String| errs.push(format!("{}: {s}", case.name));
        let t = |scn: &str| thread(&r, tid(case, scn));
        let b = |scn: &str| t(scn).blocked.clone();
        let lib = |scn: &str| b(scn).and_then(|b| b.library);
        for g in &case.truth.goroutines {
            if !r
                .goroutines
                .iter()
                .any(|x| x.goid == g.goid && x.state() == g.state)
            {
                e(format!(
                    "goroutine {} ({}) not as Go's dump has it",
                    g.goid, g.state
                ));
            }
        }
        // SQLite (WAL): the busy waiter waits for the writer, whose commit
        // is in progress; the reader inside an application SQL function
        // holds nothing the waiter needs. Likely, from the frames (the
        // writer in sqlite3VdbeHalt); read from the connections where
        // SQLite's DWARF is compiled in.
        let (writer, reader) = (tid(case, "sqlite_writer"), tid(case, "sqlite_reader"));
        if let Err(why) = sqlite_waits_for_writer(&r, case, case.truth.variant == "libs-bundled") {
            e(why);
        }
        for scn in ["sqlite_writer", "sqlite_reader"] {
            match b(scn) {
                Some(w)
                    if w.class == "sleep"
                        && w.library.as_deref() == Some("sqlite")
                        && !w.explain.contains("busy handler") => {}
                other => e(format!(
                    "{scn} (an application callback inside SQLite): {other:?}"
                )),
            }
        }
        if b("sqlite_reader").is_some_and(|w| w.explain.contains("holds SQLite's lock"))
            || b("sqlite_busy").is_some_and(|w| w.explain.contains(&reader.to_string()))
        {
            e(format!("the reader {reader} taken for a holder"));
        }
        let holder = r
            .incidents
            .iter()
            .find(|i| i.root.as_ref().is_some_and(|x| x.tid == Some(writer)));
        match holder {
            Some(i)
                if i.kind == "lock-holder"
                    && i.victims.tids.contains(&tid(case, "sqlite_busy")) => {}
            other => e(format!("no lock-holder incident at the writer: {other:?}")),
        }
        // OpenSSL: the handshake, from the function the application called.
        match b("tls_handshake") {
            Some(w)
                if w.class == "read"
                    && w.library.as_deref() == Some("openssl")
                    && w.explain.contains("handshake") => {}
            other => e(format!("tls_handshake: {other:?}")),
        }
        if b("tls_server_main").map(|b| b.class) != Some("condvar".into())
            || lib("tls_server_main").is_some()
        {
            e(format!(
                "tls_server_main (an application thread): {:?}",
                b("tls_server_main")
            ));
        }
        // libcurl: connecting (POLLOUT) vs waiting for the response.
        for (scn, out) in [("curl_connecting", true), ("curl_waiting", false)] {
            match b(scn) {
                Some(w)
                    if w.class == "poll"
                        && w.library.as_deref() == Some("libcurl")
                        && w.detail.contains("POLLOUT") == out => {}
                other => e(format!("{scn}: {other:?}")),
            }
        }
        // The deadlock across the cgo boundary: one incident, rooted at the
        // locked goroutine's thread that holds the C mutex and is parked in
        // Go, with the goroutine's and the foreign thread's waits as victims.
        let (holder, waiter, foreign) = (
            tid(case, "boundary_holder"),
            tid(case, "boundary_waiter"),
            tid(case, "boundary_foreign"),
        );
        let about: Vec<_> = r
            .incidents
            .iter()
            .filter(|i| {
                i.root
                    .as_ref()
                    .and_then(|x| x.tid)
                    .is_some_and(|t| [holder, waiter, foreign].contains(&t))
                    || i.victims.tids.iter().any(|t| [waiter, foreign].contains(t))
            })
            .collect();
        let waiter_goid = case.truth.scenarios["boundary_waiter"].goid;
        match about.as_slice() {
            [i] if i.kind == "lock-holder"
                && i.root.as_ref().and_then(|x| x.tid) == Some(holder)
                && i.victims.tids.contains(&waiter)
                && i.victims.tids.contains(&foreign)
                && i.victims.goids.contains(&waiter_goid)
                && i.summary.contains("parked in Go") => {}
            other => e(format!("boundary deadlock: {other:?}")),
        }
        // libuv: the loop's callback into Go is parked, its C caller in libuv.
        let uv = tid(case, "uv_callback");
        let parked = of_kind(&r, "internal-lock-parked");
        if !parked.iter().any(|f| tids(f).contains(&uv)) {
            e(format!(
                "uv_callback: no internal-lock-parked finding on {uv}"
            ));
        }
        if !t("uv_callback")
            .frames
            .iter()
            .any(|f| f.module.as_deref().is_some_and(|m| m.starts_with("libuv")))
        {
            e("uv_callback: no libuv frame under the callback".into());
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// SQLite compiled in, its DWARF stripped (symbols kept, as `go build
/// -ldflags=-w` leaves them): the busy waiter's holder is the likely one from
/// the frames, the same thread the DWARF names.
#[test]
fn sqlite_without_dwarf_falls_back_to_the_frames() {
    let Some(case) = generated_libs()
        .into_iter()
        .find(|c| c.truth.variant == "libs-bundled")
    else {
        assert!(!require_generated(), "no libs-bundled core");
        return;
    };
    let (_tmp, twin) = without_dwarf(&case);
    let r = analyze(&twin).report;
    sqlite_waits_for_writer(&r, &twin, false).unwrap();
}

/// The database/sql pool (SetMaxOpenConns 2) whose connections goroutines
/// in SQLite's busy handler hold: each caller waiting for a connection waits
/// on the *DB the program printed, held by the goroutines it recorded (read
/// through database/sql's types: DWARF; without it, never a wrong definite
/// holder), and is counted in the incident at the writer whose lock those
/// holders wait for (read through SQLite's DWARF), else in the incident at
/// the pool's holders.
fn check_pool_behind_sqlite(
    case: &CoreCase,
    r: &Report,
    dwarf: bool,
    go_dwarf: bool,
) -> Vec<String> {
    let mut errs = vec![];
    let mut e = |s: String| errs.push(format!("{}: pool: {s}", case.name));
    let Some(pool) = case.truth.objects.get("pool") else {
        return vec![format!("{}: no OBJECT pool record", case.name)];
    };
    let recorded: BTreeSet<u64> = pool.holders.iter().copied().collect();
    let mut found = BTreeSet::new();
    for &w in &pool.waiters {
        let Some(wo) = r
            .goroutines
            .iter()
            .find(|g| g.goid == w)
            .and_then(|g| g.waits_on.as_ref())
        else {
            e(format!("waiter {w} has no waits_on"));
            continue;
        };
        if wo.kind != "select" || (go_dwarf && wo.addr != pool.addr) {
            e(format!("waiter {w} waits on {} {:#x}", wo.kind, wo.addr));
        }
        for h in wo.holders.iter() {
            found.insert(h.goid);
            if !h.likely && !recorded.contains(&h.goid) {
                e(format!(
                    "definite holder {} not one of {recorded:?}",
                    h.goid
                ));
            }
        }
        if dwarf && (wo.state.open, wo.state.max_open, wo.state.idle) != (Some(2), Some(2), Some(0))
        {
            e(format!("state {:?}", wo.state));
        }
    }
    if go_dwarf && found != recorded {
        e(format!("holders {found:?}, recorded {recorded:?}"));
    }
    if !go_dwarf {
        return errs;
    }
    let writer = tid(case, "journal_writer");
    let inc = r.incidents.iter().find(|i| {
        let root = i.root.as_ref();
        if dwarf {
            root.and_then(|x| x.tid) == Some(writer)
        } else {
            root.and_then(|x| x.goid)
                .is_some_and(|g| recorded.contains(&g))
        }
    });
    match inc {
        Some(i)
            if pool.waiters.iter().all(|w| i.victims.goids.contains(w))
                && (!dwarf
                    || i.summary.contains(&format!(
                        "{} goroutines queued in Go behind it on database/sql pool",
                        pool.waiters.len()
                    ))) => {}
        other => e(format!(
            "the writer's incident: {:?}",
            other.map(|i| (&i.summary, &i.victims))
        )),
    }
    errs
}

/// `case` with its executable's DWARF stripped (`objcopy --strip-debug`:
/// symbols kept, as `go build -ldflags=-w` leaves them), in a scratch folder.
fn without_dwarf(case: &CoreCase) -> (Scratch, CoreCase) {
    let tmp = Scratch::new("sqlite-nodwarf");
    let exe = tmp.join("cgostuck");
    // The host's objcopy reads only its own architecture's files.
    let objcopy = if case.truth.variant.contains("arm64") {
        "aarch64-linux-gnu-objcopy"
    } else {
        "objcopy"
    };
    let ok = std::process::Command::new(objcopy)
        .arg("--strip-debug")
        .arg(&case.exe)
        .arg(&exe)
        .status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "objcopy --strip-debug failed"
    );
    let twin = CoreCase {
        name: format!("{} (DWARF stripped)", case.name),
        core: case.core.clone(),
        exe,
        truth: case.truth.clone(),
    };
    (tmp, twin)
}

/// A database/sql service over github.com/mattn/go-sqlite3 (Debian's
/// package; every release over Debian's libsqlite3, Go 1.21 and 1.27 with
/// the amalgamation compiled in: amd64 kernel cores and gcores, arm64 under
/// qemu-user in both core forms, static musl): writers holding
/// write transactions while a Go SQL function sleeps inside sqlite3_step,
/// busy-timeout waiters (rollback journal and WAL), one waiter on a locked
/// thread that first ran statements on the writers' connections (their
/// stale pointers), and a transaction left open by a goroutine parked in Go.
/// Each waiter's holder is the program's record: read from SQLite's
/// structures where its DWARF is compiled in, or none with the reason;
/// without the DWARF (Debian's libsqlite3, or the bundled build stripped)
/// likely candidates that include the writer, and never a definite holder.
#[test]
fn sqlite_holders_over_go_sqlite3() {
    let cases = generated_mattn();
    assert!(
        cases.len() >= 24 || !require_generated(),
        "go-sqlite3 cores: {}",
        cases.len()
    );
    let mut errs = vec![];
    for case in &cases {
        // Every build but Debian's libsqlite3 one compiles the amalgamation in.
        let dwarf = case.truth.variant != "mattn";
        errs.extend(check_go_sqlite3(case, dwarf, true));
        if dwarf {
            let (_tmp, twin) = without_dwarf(case);
            errs.extend(check_go_sqlite3(&twin, false, false));
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// `dwarf`: SQLite's DWARF is in the executable; `go_dwarf`: Go's is.
fn check_go_sqlite3(case: &CoreCase, dwarf: bool, go_dwarf: bool) -> Vec<String> {
    let r = analyze(case).report;
    let mut errs = vec![];
    let mut e = |s: String| errs.push(format!("{}: {s}", case.name));
    assert!(
        case.truth.holders.len() >= 4,
        "{}: no HOLDER record",
        case.name
    );
    let waiters: BTreeSet<u32> = case.truth.holders.keys().map(|w| tid(case, w)).collect();
    for (waiter, holder) in &case.truth.holders {
        let w = tid(case, waiter);
        let Some(b) = thread(&r, w).blocked.clone() else {
            e(format!("{waiter} ({w}): not blocked"));
            continue;
        };
        if b.class != "db-lock" || b.library.as_deref() != Some("sqlite") {
            e(format!("{waiter}: {} [{:?}]", b.class, b.library));
        }
        let want = holder.as_deref().map(|h| tid(case, h));
        // Never a definite holder the record contradicts; never a waiter.
        if !b.owner_likely && b.owner_tid.is_some() && b.owner_tid != want {
            e(format!(
                "{waiter}: definite holder {:?}, the program says {want:?}",
                b.owner_tid
            ));
        }
        if b.owner_tid.is_some_and(|o| waiters.contains(&o)) {
            e(format!(
                "{waiter}: a waiter named as its holder: {}",
                b.explain
            ));
        }
        match (dwarf, want) {
            (true, Some(h)) => {
                let ok = b.owner_tid == Some(h)
                    && !b.owner_likely
                    && b.explain
                        .contains(&format!("held by thread {h}'s connection 0x"))
                    && b.explain
                        .contains("each connection's mutex names the thread using it");
                if !ok {
                    e(format!("{waiter}: not read as held by {h}: {b:?}"));
                }
            }
            // No thread holds it: the goroutine that left the transaction
            // open, likely (its stack leads to the connection).
            (true, None) => {
                let open_tx = case.truth.scenarios["open_tx"].goid;
                let named = format!(
                    "likely held by goroutine {open_tx}, parked in Go, through connection 0x"
                );
                if b.owner_tid.is_some()
                    || !b.explain.contains("a transaction left open")
                    || (go_dwarf && !b.explain.contains(&named))
                {
                    e(format!(
                        "{waiter}: no thread holds it; goroutine {open_tx} expected: {b:?}"
                    ));
                }
            }
            (false, Some(h)) => {
                if b.owner_tid.is_some_and(|o| o != h) || !b.explain.contains(&h.to_string()) {
                    e(format!(
                        "{waiter}: the writer {h} not among the candidates: {b:?}"
                    ));
                }
                // Narrowed by SQLite's own accessors: the writer's
                // connection is inside a transaction, its mutex names it.
                if !b
                    .explain
                    .contains("whose connection is inside a transaction (")
                    || !b.explain.contains(&format!("thread {h}'s 0x"))
                {
                    e(format!(
                        "{waiter}: not narrowed to the writer's transaction: {b:?}"
                    ));
                }
            }
            (false, None) => {}
        }
        if dwarf {
            // The database each waiter waits for, by the program's design.
            let db = match waiter.as_str() {
                "wal_busy" => "/wal.db",
                "left_busy" => "/left.db",
                _ => "/journal.db",
            };
            if !b.lock_symbol.as_deref().is_some_and(|l| l.ends_with(db)) {
                e(format!("{waiter}: lock {:?}", b.lock_symbol));
            }
        }
    }
    let pool = check_pool_behind_sqlite(case, &r, dwarf, go_dwarf);
    // The writers: a Go callback parked inside sqlite3_step, its thread
    // locked by the runtime (not LockOSThread), holding what the waiters want.
    for writer in ["journal_writer", "wal_writer"] {
        let t = tid(case, writer);
        let goid = case.truth.scenarios[writer].goid;
        match r.goroutines.iter().find(|g| g.goid == goid) {
            Some(g) if g.state() == "select (no cases)" => {}
            other => e(format!(
                "{writer}: goroutine {goid}: {:?}",
                other.map(|g| g.state())
            )),
        }
        let m =
            r.ms.iter()
                .find(|m| m.tid == Some(t))
                .map(|m| (m.locked_ext, m.locked_int));
        if m != Some((0, 1)) {
            e(format!("{writer}: lockedExt/lockedInt {m:?}"));
        }
        if dwarf {
            let waiting: BTreeSet<u32> = case
                .truth
                .holders
                .iter()
                .filter(|(_, h)| h.as_deref() == Some(writer))
                .map(|(w, _)| tid(case, w))
                .collect();
            let ok = r.incidents.iter().any(|i| {
                i.kind == "lock-holder"
                    && i.root.as_ref().and_then(|x| x.tid) == Some(t)
                    && waiting.iter().all(|w| i.victims.tids.contains(w))
                    && i.advice.contains("not LockOSThread")
            });
            if !ok {
                e(format!("{writer}: no lock-holder incident for {waiting:?}"));
            }
        }
    }
    errs.extend(pool);
    errs
}

/// A bare sysroot (the libraries alone) as in `classes_hold_without_libc_debug_info`,
/// into `root`; the libraries' build ids and their debug files on this host.
fn bare_sysroot(
    full: &cgocore::Analysis,
    root: &std::path::Path,
) -> Vec<(String, std::path::PathBuf)> {
    let mut debug = vec![];
    for lib in &full.process.libraries {
        let dst = root.join(lib.path.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        // A link to this host's file would resolve inside the sysroot (as a
        // core's names must): the file itself, hard-linked or copied.
        std::fs::hard_link(lib.binary.path(), &dst)
            .or_else(|_| std::fs::copy(lib.binary.path(), &dst).map(|_| ()))
            .unwrap();
        if let Some(id) = lib.binary.build_id() {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let p = std::path::PathBuf::from(format!(
                "/usr/lib/debug/.build-id/{}/{}.debug",
                &hex[..2],
                &hex[2..]
            ));
            if p.exists() {
                debug.push((hex, p));
            }
        }
    }
    debug
}

/// `cgocore analyze` as JSON, with `env`.
fn cli_json(
    args: &[&dyn AsRef<std::ffi::OsStr>],
    env: &[(&str, &dyn AsRef<std::ffi::OsStr>)],
) -> (serde_json::Value, String, std::time::Duration) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cgocore"));
    cmd.arg("analyze")
        .args(args.iter().map(|a| a.as_ref()))
        .arg("--json");
    for (k, v) in env {
        cmd.env(k, v.as_ref());
    }
    let t0 = std::time::Instant::now();
    let out = cmd.output().unwrap();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    (v, err, took)
}

/// What the classes and libc frames say, thread by thread.
fn libc_view(r: &serde_json::Value) -> Vec<String> {
    r["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let frames: Vec<String> = t["frames"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["module"] == "libc.so.6")
                .map(|f| f["function"].as_str().unwrap_or("??").to_string())
                .collect();
            format!(
                "{} {} {} {}",
                t["tid"],
                t["blocked"]["class"],
                t["blocked"]["owner_tid"],
                frames.join(",")
            )
        })
        .collect()
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `http://127.0.0.1:port/buildid/ID/debuginfo` answers 200.
fn serves(port: u16, id: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let req = format!("GET /buildid/{id}/debuginfo HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    s.read(&mut head)
        .is_ok_and(|n| String::from_utf8_lossy(&head[..n]).contains(" 200"))
}

/// A real `debuginfod` (Debian's package) on loopback, serving the ELF
/// files in `dir` by build id; stopped when dropped.
struct Debuginfod {
    child: std::process::Child,
    url: String,
}

impl Debuginfod {
    /// Started, and waited for until it serves `id`.
    fn start(db: &std::path::Path, dir: &std::path::Path, id: &str) -> Debuginfod {
        let port = free_port();
        let child = std::process::Command::new("debuginfod")
            .args(["-p", &port.to_string(), "-F", "-d"])
            .arg(db)
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = Debuginfod {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let t0 = std::time::Instant::now();
        while !serves(port, id) {
            assert!(t0.elapsed().as_secs() < 60, "debuginfod did not index {id}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        server
    }
}

impl Drop for Debuginfod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has_debuginfod() -> bool {
    let found = std::process::Command::new("debuginfod")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found || !require_generated(),
        "debuginfod is installed by scripts/test-all"
    );
    found
}

/// SQLite's DWARF of a go-sqlite3 build with the amalgamation compiled in,
/// stripped from the executable and served by a loopback debuginfod by the
/// executable's build id: every waiter's holder reads as it does with the
/// DWARF in the file (definite, from SQLite's structures).
#[test]
fn sqlite_holders_with_the_dwarf_from_debuginfod() {
    if !has_debuginfod() {
        return;
    }
    let Some(case) = generated_mattn()
        .into_iter()
        .find(|c| c.truth.variant == "mattn-bundled" && c.truth.kind == "kernel")
    else {
        assert!(!require_generated(), "no mattn-bundled kernel core");
        return;
    };
    let tmp = Scratch::new("sqlite-debuginfod");
    let (served, exe) = (tmp.join("served"), tmp.join("cgostuck"));
    std::fs::create_dir_all(&served).unwrap();
    let objcopy = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let ok = std::process::Command::new("objcopy")
            .args(args.iter().map(|a| a.as_ref()))
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "objcopy failed");
    };
    objcopy(&[
        &"--only-keep-debug",
        &case.exe,
        &served.join("cgostuck.debug"),
    ]);
    objcopy(&[&"--strip-debug", &case.exe, &exe]);
    let bin = cgocore::testing::Binary::open(&case.exe).unwrap();
    let id: String = bin
        .build_id()
        .expect("a build id")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let server = Debuginfod::start(&tmp.join("db.sqlite"), &served, &id);
    let holders = |r: &serde_json::Value| -> Vec<String> {
        case.truth
            .holders
            .keys()
            .map(|w| {
                let t = r["threads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["tid"] == tid(&case, w))
                    .unwrap();
                let b = &t["blocked"];
                format!(
                    "{w}: {} {} {}",
                    b["owner_tid"], b["owner_likely"], b["lock_symbol"]
                )
            })
            .collect()
    };
    let (full, _, _) = cli_json(&[&case.core, &"--exe", &case.exe], &[]);
    let cache = tmp.join("cache");
    let (fetched, err, _) = cli_json(
        &[&case.core, &"--exe", &exe],
        &[
            ("DEBUGINFOD_URLS", &server.url),
            ("DEBUGINFOD_CACHE_PATH", &cache),
        ],
    );
    assert_eq!(holders(&fetched), holders(&full), "{err}");
    assert!(
        cache.join(&id).join("debuginfo").exists(),
        "fetched into gdb's cache layout"
    );
    // (`WAITER: OWNER LIKELY LOCK`: an owner read for some.)
    assert!(
        holders(&full).iter().any(|h| !h.contains(": null ")),
        "some holder read: {:?}",
        holders(&full)
    );
    // Without the server: the DWARF is gone, no holder is stated as fact.
    drop(server);
    let (bare, _, _) = cli_json(
        &[&case.core, &"--exe", &exe, &"--offline"],
        &[("DEBUGINFOD_CACHE_PATH", &tmp.join("off-cache"))],
    );
    assert_ne!(holders(&bare), holders(&full));
}

/// Debug info from a real `debuginfod` server on loopback (Debian's
/// package) serving this host's libc debug files, with a bare sysroot: the
/// classes, owners and libc frames equal those with the files installed;
/// `--offline` fetches nothing; a server that is down or never answers
/// costs at most the fetch deadline, and the report says what it could not
/// fetch.
#[test]
fn debug_info_from_a_loopback_debuginfod() {
    if !has_debuginfod() {
        eprintln!("debuginfod not installed; skipped");
        return;
    }
    let case = fixtures()
        .into_iter()
        .find(|c| c.truth.variant == "plain")
        .unwrap();
    let full = analyze(&case);
    let tmp = Scratch::new("debuginfod");
    let root = tmp.join("root");
    let debug = bare_sysroot(&full, &root);
    let libc_id = debug
        .iter()
        .find(|(_, p)| {
            full.process.libraries.iter().any(|l| {
                l.path.ends_with("/libc.so.6")
                    && l.binary.build_id().is_some_and(|id| {
                        p.to_string_lossy().replace(['/', '.'], "").contains(
                            &id.iter().map(|b| format!("{b:02x}")).collect::<String>()[2..],
                        )
                    })
            })
        })
        .map(|(id, _)| id.clone())
        .expect("libc's debug file on this host (libc6-dbg)");
    let served = tmp.join("served");
    std::fs::create_dir_all(&served).unwrap();
    for (id, p) in &debug {
        std::fs::copy(p, served.join(format!("{id}.debug"))).unwrap();
    }
    let server = Debuginfod::start(&tmp.join("db.sqlite"), &served, &libc_id);
    let url = server.url.clone();
    let want = libc_view(&cli_json(&[&case.core, &"--exe", &case.exe], &[]).0);
    let base: [&dyn AsRef<std::ffi::OsStr>; 5] =
        [&case.core, &"--exe", &case.exe, &"--sysroot", &root];
    let cache = tmp.join("cache");
    let (got, err, _) = cli_json(
        &base,
        &[("DEBUGINFOD_URLS", &url), ("DEBUGINFOD_CACHE_PATH", &cache)],
    );
    assert_eq!(libc_view(&got), want, "{err}");
    assert!(
        cache.join(&libc_id).join("debuginfo").exists(),
        "gdb's cache layout"
    );
    // Offline: nothing fetched (a fresh cache), the approximate names.
    let off_cache = tmp.join("off-cache");
    let mut args = base.to_vec();
    args.push(&"--offline");
    let (off, _, _) = cli_json(
        &args,
        &[
            ("DEBUGINFOD_URLS", &url),
            ("DEBUGINFOD_CACHE_PATH", &off_cache),
        ],
    );
    assert_ne!(libc_view(&off), want, "--offline fetched");
    assert!(!off_cache.exists());
    drop(server);
    // Down: refused at once, said.
    let (down, _, took) = cli_json(
        &base,
        &[
            ("DEBUGINFOD_URLS", &url),
            ("DEBUGINFOD_CACHE_PATH", &tmp.join("down-cache")),
        ],
    );
    assert!(took.as_secs() < 30, "{took:?}");
    assert!(
        down["warnings"]
            .to_string()
            .contains("not fetched from debuginfod"),
        "{}",
        down["warnings"]
    );
    // A server that accepts and never answers: the deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (slow, _, took) = cli_json(
        &base,
        &[
            ("DEBUGINFOD_URLS", &url),
            ("DEBUGINFOD_CACHE_PATH", &tmp.join("slow-cache")),
            ("CGOCORE_DEBUGINFOD_SECONDS", &"3"),
        ],
    );
    assert!(took.as_secs() < 20, "{took:?}");
    assert!(
        slow["warnings"]
            .to_string()
            .contains("not fetched from debuginfod"),
        "{}",
        slow["warnings"]
    );
    assert_eq!(slow["threads"].as_array().unwrap().len(), want.len());
}

/// Incident signatures group cores by cause: per Go release, the plain
/// kernel core, the plain gcore and the PIE kernel core (three runs of the
/// program, different tids, addresses and crash states) give the same set,
/// and within a core each problem its own.
#[test]
fn incident_signatures_group_cores_of_the_same_hang() {
    let cases = generated();
    if cases.is_empty() {
        assert!(!require_generated(), "no generated cores");
        return;
    }
    let mut versions: Vec<String> = cases.iter().map(|c| c.truth.go_version.clone()).collect();
    versions.sort();
    versions.dedup();
    let mut errs = vec![];
    for v in &versions {
        let sigs: Vec<(String, Vec<String>)> = ["plain/kernel", "plain/gcore", "pie/kernel"]
            .iter()
            .filter_map(|k| {
                let c = cases
                    .iter()
                    .find(|c| c.truth.go_version == *v && c.name.ends_with(k))?;
                let mut s: Vec<String> = analyze(c)
                    .report
                    .incidents
                    .iter()
                    .map(|i| i.signature.clone())
                    .collect();
                s.sort();
                Some((c.name.clone(), s))
            })
            .collect();
        for (name, s) in &sigs {
            let unique: BTreeSet<&String> = s.iter().collect();
            if unique.len() != s.len() || s.iter().any(|x| x.contains("0x")) {
                errs.push(format!("{name}: {s:#?}"));
            }
            if s != &sigs[0].1 {
                errs.push(format!(
                    "{name} differs from {}: {s:#?} vs {:#?}",
                    sigs[0].0, sigs[0].1
                ));
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// A crash core's report, with every goroutine of Go's dump; none (or a
/// failure when generated cores are required) without the core.
fn crash_core(cases: Vec<CoreCase>, missing: &str) -> Option<(CoreCase, Report)> {
    let Some(case) = cases.into_iter().next() else {
        assert!(!require_generated(), "{missing}");
        return None;
    };
    let r = analyze(&case).report;
    assert_eq!(
        r.counts.goroutines,
        case.truth.goroutines.len(),
        "Go's dump"
    );
    Some((case, r))
}

/// The crash at Go's 10000-thread limit (the scenario's goroutines enter a
/// C call that never returns until the runtime aborts: a kernel core of
/// 10,000 threads made in each run): every goroutine of Go's dump, the
/// runtime's limit read, and one pile-up as the first problem, its
/// signature naming the call.
#[test]
fn the_crash_at_the_thread_limit() {
    let Some((_, r)) = crash_core(generated_exhaust(), "no exhaustion core") else {
        return;
    };
    assert_eq!(r.sched.as_ref().map(|s| s.maxmcount), Some(10000));
    assert!(
        r.counts.threads >= 10000 && r.ms.len() >= 10000,
        "{:?}",
        r.counts
    );
    assert!(r.counts.threads_in_cgo >= 9900, "{:?}", r.counts);
    assert!(!r.incomplete, "{:?}", r.warnings);
    // Threads are unwound and classified in parts on all cores: each of
    // them, whatever its part, has its C call under its Go caller.
    let in_sleep = r
        .threads
        .iter()
        .filter(|t| {
            let names: Vec<&str> = t
                .frames
                .iter()
                .filter_map(|f| f.function.as_deref())
                .collect();
            let c = names.iter().position(|n| *n == "climb_sleep");
            let go = names.iter().position(|n| n.ends_with("_Cfunc_climb_sleep"));
            c.zip(go).is_some_and(|(c, go)| c < go) && t.blocked.is_some()
        })
        .count();
    assert!(in_sleep >= 9900, "{in_sleep} threads in climb_sleep");
    assert!(
        r.threads.iter().all(|t| !t
            .stack_truncated
            .as_deref()
            .unwrap_or("")
            .contains("internal error")),
        "a part of the threads was lost"
    );
    let first = &r.incidents[0];
    assert_eq!(first.kind, "thread-pileup", "{}", first.summary);
    assert!(first.victims.tids.len() >= 9900, "{}", first.summary);
    // How the process ended, under the pile-up that caused it.
    assert!(
        first.summary.contains("thread exhaustion"),
        "{}",
        first.summary
    );
    assert!(
        first
            .signature
            .starts_with("thread-pileup: sleep in C.climb_sleep"),
        "{}",
        first.signature
    );
}

/// The crash under a low `ulimit -u` (the same program, RLIMIT_NPROC 300):
/// runtime/cgo's pthread_create fails and aborts. The report opens with the
/// pile-up, which says how the process ended, naming the thread whose M
/// Go's dump names, and the cause's advice (the process limit).
#[test]
fn the_crash_at_the_process_limit() {
    let Some((case, r)) = crash_core(generated_exhaust_nproc(), "no process-limit core") else {
        return;
    };
    assert!(r.counts.threads <= 300, "{:?}", r.counts);
    let first = &r.incidents[0];
    assert_eq!(first.kind, "thread-pileup", "{}", first.summary);
    assert!(
        first.summary.contains("pthread_create failed"),
        "{}",
        first.summary
    );
    assert!(first.advice.contains("RLIMIT_NPROC"), "{}", first.advice);
    let crash = r
        .findings
        .iter()
        .find(|f| f.kind == cgocore::FindingKind::ThreadCreateFailed)
        .expect("a thread-create-failed finding");
    let tid = crash.tids()[0];
    let m = r.threads.iter().find(|t| t.tid == tid).and_then(|t| t.m);
    assert_eq!(m, case.truth.crash_m, "the M Go's dump names");
    assert!(first
        .findings
        .iter()
        .any(|&i| r.findings[i].kind == crash.kind));
}

/// Goroutines queued in Go behind goroutines in C (the queue program: every
/// release's kernel core, gcore and stripped build; Go 1.21 and 1.27 on
/// arm64 under qemu-user in qemu's form and the kernel's, and static musl): each waiter's
/// `waits_on` names the object the program recorded (kind and address), its
/// state is the program's, the holders are the recorded ones where the
/// evidence reaches, a definite holder is never wrong, and each incident's
/// victims are the goroutines queued behind its root, through the chain.
#[test]
fn goroutines_queued_in_go_are_linked_to_their_holders() {
    let mut cases = generated_queue();
    cases.extend(queue_fixture());
    if require_generated() {
        let kinds: BTreeSet<_> = cases
            .iter()
            .map(|c| {
                (
                    c.truth.go_version.clone(),
                    c.truth.variant.clone(),
                    c.truth.kind.clone(),
                )
            })
            .collect();
        assert_eq!(
            kinds.len(),
            7 * 3 + 2 * 3,
            "every release: kernel, gcore, stripped; 1.21 and 1.27: arm64 (qemu's form and the kernel's), musl: {kinds:?}"
        );
    }
    let mut errs = vec![];
    for case in &cases {
        let r = analyze(case).report;
        let stripped = case.truth.variant == "queue-stripped";
        let mut e = |s: String| errs.push(format!("{}: {s}", case.name));
        let g = |id: u64| r.goroutines.iter().find(|x| x.goid == id);
        for (name, o) in &case.truth.objects {
            let mut holders = BTreeSet::new();
            for &w in &o.waiters {
                let Some(wo) = g(w).and_then(|x| x.waits_on.as_ref()) else {
                    e(format!("{name}: waiter {w} has no waits_on"));
                    continue;
                };
                // A database/sql pool wait is a select whose object is the
                // *DB (its types from DWARF: a stripped binary keeps the select).
                let (kind, addr) = match o.kind.as_str() {
                    "sqlpool" if stripped => ("select", wo.addr),
                    "sqlpool" => ("select", o.addr),
                    k => (k, o.addr),
                };
                if wo.kind != kind || wo.addr != addr {
                    e(format!(
                        "{name}: waiter {w} waits on {} {:#x}, the program says {} {:#x}",
                        wo.kind, wo.addr, kind, addr
                    ));
                }
                for h in wo.holders.iter() {
                    holders.insert(h.goid);
                    if !h.likely && !o.holders.contains(&h.goid) {
                        e(format!(
                            "{name}: definite holder {} is not one of {:?}",
                            h.goid, o.holders
                        ));
                    }
                }
            }
            let recorded: BTreeSet<u64> = o.holders.iter().copied().collect();
            let ok = match name.as_str() {
                // Found through the heap object that holds the value (its
                // span), which a stripped binary does not name: there only
                // a pointer to the value itself counts.
                "store" | "cache" | "pool" | "wg" | "sqldb" if stripped => {
                    holders.is_subset(&recorded)
                }
                "store" | "cache" | "pool" | "wg" | "sqldb" | "config" | "sem" | "ledger"
                | "jobs" => holders == recorded,
                // No evidence reaches them: the holders stay unknown.
                _ => holders.is_empty(),
            };
            if !ok {
                e(format!(
                    "{name}: holders {holders:?}, recorded {recorded:?}"
                ));
            }
        }
        // The state the program left each object in.
        let state = |name: &str| {
            let o = &case.truth.objects[name];
            g(o.waiters[0])
                .and_then(|x| x.waits_on.as_ref())
                .map(|w| w.state.clone())
                .unwrap_or_default()
        };
        let s = state("store");
        if s.locked != Some(true) || s.waiters != Some(200) {
            e(format!("store state {s:?}"));
        }
        let s = state("sem");
        if (s.len, s.cap, s.senders) != (Some(2), Some(2), Some(50)) {
            e(format!("sem state {s:?}"));
        }
        let s = state("cache");
        if (s.readers, s.writer_pending, s.waiters) != (Some(2), Some(true), Some(6)) {
            e(format!("cache state {s:?}"));
        }
        let s = state("wg");
        if (s.counter, s.waiters) != (Some(3), Some(1)) {
            e(format!("wg state {s:?}"));
        }
        if state("cond").waiters != Some(3) {
            e(format!("cond state {:?}", state("cond")));
        }
        let s = state("sqldb");
        if !stripped && (s.open, s.max_open, s.idle) != (Some(2), Some(2), Some(0)) {
            e(format!("sqldb state {s:?}"));
        }
        // Heap objects named from the method whose frame points to them,
        // checked against the DWARF (none without it). Pool and Ledger are
        // 16 pointer-free bytes: Go's tiny allocator may pack them with
        // other values, so no pointer into the block says whose they are.
        for (obj, want) in [
            ("store", Some("main.Store.mu")),
            ("cache", Some("main.Cache.rw")),
            ("pool", None),
            ("ledger", None),
        ] {
            let o = &case.truth.objects[obj];
            let got = g(o.waiters[0])
                .and_then(|x| x.waits_on.as_ref())
                .and_then(|w| w.object.clone());
            let want = want.filter(|_| !stripped).map(str::to_string);
            if got != want {
                e(format!("{obj} is named {got:?}, want {want:?}"));
            }
        }
        let config = &case.truth.objects["config"];
        let name = g(config.waiters[0])
            .and_then(|x| x.waits_on.as_ref())
            .and_then(|w| w.object.clone());
        if !stripped && name.as_deref() != Some("main.configMu") {
            e(format!("config is named {name:?}"));
        }
        // The chain: the jobs' producers and the ledger's waiter are victims
        // of the incident rooted at the goroutine in C that holds the ledger.
        let ledger = &case.truth.objects["ledger"];
        let jobs = &case.truth.objects["jobs"];
        match r
            .incidents
            .iter()
            .find(|i| i.root.as_ref().and_then(|s| s.goid) == Some(ledger.holders[0]))
        {
            Some(i) => {
                let behind: BTreeSet<u64> = ledger
                    .waiters
                    .iter()
                    .chain(&jobs.waiters)
                    .copied()
                    .collect();
                let got: BTreeSet<u64> = i.victims.goids.iter().copied().collect();
                if !behind.is_subset(&got) {
                    e(format!(
                        "ledger incident victims {got:?} lack {:?}",
                        behind.difference(&got).collect::<Vec<_>>()
                    ));
                }
            }
            None => e(format!(
                "no incident rooted at the ledger's holder {}",
                ledger.holders[0]
            )),
        }
        if !stripped {
            let store = &case.truth.objects["store"];
            let i = r
                .incidents
                .iter()
                .find(|i| i.root.as_ref().and_then(|s| s.goid) == Some(store.holders[0]));
            match i {
                Some(i)
                    if i.victims.goids.len() >= 200
                        && i.summary.contains("200 goroutines wait for sync.Mutex") => {}
                other => e(format!("store incident: {:?}", other.map(|i| &i.summary))),
            }
        }
        // Wait reasons as Go's dump prints them.
        for o in case.truth.objects.values() {
            for &w in &o.waiters {
                let dump = case
                    .truth
                    .goroutines
                    .iter()
                    .find(|x| x.goid == w)
                    .map(|x| x.state.clone());
                let ours = g(w).map(|x| x.state().to_string());
                if dump != ours {
                    e(format!("goroutine {w}: {ours:?}, Go says {dump:?}"));
                }
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// The moment Go starts a thread (gdb stopped the program where the clone
/// returns in the new thread; gosyscall builds use Go's own clone, the
/// go-sqlite3 program pthread_create): every thread gdb saw created is Go's,
/// never "a thread created by C": joined to its M by its stack pointer at
/// the M's g0 stack top (Go's clone), or a thread Go is starting while an M
/// waits for its thread (pthread_create, before runtime/cgo's threadentry).
#[test]
fn a_thread_go_is_starting_is_not_foreign() {
    let cases = generated_starting();
    assert!(
        cases.len() >= 3 || !require_generated(),
        "thread-starting cores: {}",
        cases.len()
    );
    let mut errs = vec![];
    for case in &cases {
        let r = analyze(case).report;
        let mut e = |s: String| errs.push(format!("{}: {s}", case.name));
        let starting = of_kind(&r, "threads-starting");
        let foreign = of_kind(&r, "foreign-threads");
        if case.truth.starting_tids.is_empty() {
            e("gdb saw no thread created".into());
        }
        for &tid in &case.truth.starting_tids {
            let t = thread(&r, tid);
            if foreign.iter().any(|f| tids(f).contains(&tid)) {
                e(format!("{tid}: called a C thread"));
            }
            // gdb stopped it at its first system call: Go's clone's gettid,
            // before its M records the id (joined by its stack pointer at
            // the M's g0 stack top), or glibc's rseq in start_thread, before
            // runtime/cgo's threadentry (a thread Go is starting while its M
            // waits for it).
            let ok = if case.truth.variant.starts_with("mattn") {
                starting.iter().any(|f| {
                    tids(f).contains(&tid)
                        && r.ms.iter().any(|m| {
                            m.tid.is_none()
                                && !m.isextra
                                && f.summary
                                    .contains(&format!("waiting for a thread: M{}", m.id))
                        })
                })
            } else {
                t.kind == cgocore::report::ThreadKind::Go
                    && t.m
                        .is_some_and(|m| r.ms.iter().any(|x| x.id == m && x.procid == 0))
                    && t.frames.first().and_then(|f| f.function.as_deref()) == Some("runtime.clone")
            };
            if !ok {
                e(format!(
                    "{tid}: {:?} M{:?}, frames {:?}; starting: {starting:?}",
                    t.kind,
                    t.m,
                    t.frames
                        .iter()
                        .map(|f| f.function.clone())
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}
