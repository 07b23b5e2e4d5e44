//! Small hand-written reports for the detectors' unit tests.
use crate::report::frame::{Frame, Lang};
use crate::report::*;

pub fn thread(tid: u32) -> ThreadInfo {
    ThreadInfo {
        tid,
        kind: ThreadKind::Go,
        m: None,
        curg: None,
        lockedg: None,
        in_cgo: false,
        signal: None,
        signal_m: None,
        pc: 0,
        sp: 0,
        syscall: None,
        frames: vec![],
        stack_truncated: None,
        stack_goroutine: None,
        interrupted: None,
        signals: vec![],
        cgo_call: None,
        blocked: None,
        goroutine_frame: None,
        name: None,
    }
}

/// A thread blocked in `class` on `lock` (0: none), held by `owner`.
pub fn waiting(tid: u32, class: &str, lock: u64, owner: Option<u32>) -> ThreadInfo {
    let mut t = thread(tid);
    t.blocked = Some(Blocked {
        class: class.into(),
        syscall: Some("futex".into()),
        detail: format!("futex({lock:#x}, FUTEX_WAIT_PRIVATE) in __lll_lock_wait"),
        owner_tid: owner,
        library: None,
        explain: String::new(),
        advice: String::new(),
        lock: (lock != 0).then_some(lock),
        lock_symbol: None,
        owner_likely: false,
    });
    t
}

pub fn frame(name: &str, lang: Lang) -> Frame {
    Frame {
        pc: 0x1000,
        function: Some(name.into()),
        file: None,
        line: None,
        module: None,
        lang,
        inlined: false,
    }
}

pub fn m_info(id: i64, locked_ext: u32, locked_int: u32, lockedg: Option<u64>) -> MInfo {
    MInfo {
        id,
        tid: None,
        signal_borrowed: false,
        procid: 0,
        locked_ext,
        locked_int,
        lockedg,
        curg: lockedg,
        incgo: false,
        ncgo: 0,
        ncgocall: 0,
        isextra: false,
        is_extra_in_c: false,
        is_extra_in_sig: false,
        spinning: false,
        blocked: false,
        p: None,
        start_fn: None,
        addr: 0,
    }
}

pub fn goroutine(goid: u64, status: &str, wait_reason: Option<&str>) -> GoroutineInfo {
    GoroutineInfo {
        goid,
        status: status.into(),
        wait_reason: wait_reason.map(str::to_string),
        locked: false,
        m: None,
        lockedm: None,
        in_cgo: false,
        system: false,
        start_function: None,
        created_by: None,
        parent_goid: None,
        addr: 0,
        frames: vec![],
        stack_truncated: None,
        cgo_call: None,
        waits_on: None,
        references: vec![],
        waitsince: None,
    }
}

pub fn sched(nmfreed: i64) -> crate::report::Sched {
    crate::report::Sched {
        mcount: 10,
        nmfreed,
        maxmcount: 10_000,
        idle_ms: 0,
        idle_locked_ms: 0,
        spinning_ms: 0,
        idle_ps: 0,
        ngsys: 0,
        runqueue: 0,
        extra_ms_free: None,
        extra_ms_in_use: None,
    }
}

pub fn report(threads: Vec<ThreadInfo>) -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        go_version: "go1.27.3".into(),
        binary: "server".into(),
        core: None,
        pid: None,
        signal: None,
        core_writer: None,
        arch: "x86_64".into(),
        gomaxprocs: Some(2),
        roots_from: "symbols".into(),
        layout_from: "DWARF".into(),
        counts: Counts::default(),
        sched: None,
        threads,
        ms: vec![],
        ps: vec![],
        goroutines: vec![],
        incidents: vec![],
        findings: vec![],
        warnings: vec![],
        incomplete: false,
        stopped_ms: None,
        unstopped_threads: vec![],
    }
}

/// The tids a finding names, subject first.
pub fn tids(f: &Finding) -> Vec<u32> {
    f.tids()
}
