//! Where runtime fields live. Offsets come from the binary's DWARF when it has
//! any, else from the generated per-version tables in `core-analyzer/layouts/`
//! (the only place offsets are written down). Nothing else knows a number.
pub mod dwarf;
pub mod table;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Structs and the members cgocore reads. Nested members use a dot
/// (`sched.sp` is `g.sched` + `gobuf.sp`), resolved when a layout is built.
pub const WANTED: &[(&str, &[&str])] = &[
    (
        "runtime.m",
        &[
            "g0",
            "procid",
            "gsignal",
            "tls",
            "mstartfn",
            "curg",
            "caughtsig",
            "p",
            "nextp",
            "oldp",
            "id",
            "mallocing",
            "throwing",
            "preemptoff",
            "locks",
            "dying",
            "spinning",
            "blocked",
            "incgo",
            "isextra",
            "isExtraInC",
            "isExtraInSig",
            "needextram",
            "ncgocall",
            "ncgo",
            "alllink",
            "schedlink",
            "idleNode",
            "lockedg",
            "lockedExt",
            "lockedInt",
            "syscalltick",
            "freelink",
            "vdsoSP",
            "vdsoPC",
        ],
    ),
    (
        "runtime.g",
        &[
            "stack",
            "m",
            "sched",
            "syscallsp",
            "syscallpc",
            "syscallbp",
            "atomicstatus",
            "goid",
            "schedlink",
            "waitsince",
            "waitreason",
            "lockedm",
            "parentGoid",
            "gopc",
            "startpc",
            "sigpc",
            "labels",
            "waiting",
        ],
    ),
    ("runtime.gobuf", &["sp", "pc", "g", "ctxt", "lr", "bp"]),
    ("runtime.stack", &["lo", "hi"]),
    (
        "runtime.p",
        &[
            "id",
            "status",
            "link",
            "schedtick",
            "syscalltick",
            "m",
            "runqhead",
            "runqtail",
            "runnext",
            "gFree",
            "timers",
        ],
    ),
    (
        "runtime.schedt",
        &[
            "goidgen",
            "lastpoll",
            "midle",
            "nmidle",
            "nmidlelocked",
            "mnext",
            "maxmcount",
            "nmsys",
            "nmfreed",
            "ngsys",
            "nGsyscallNoP",
            "pidle",
            "npidle",
            "nmspinning",
            "needspinning",
            "runq",
            "runqsize",
            "gcwaiting",
            "stopwait",
            "sysmonwait",
        ],
    ),
    ("runtime.gQueue", &["head", "tail", "size"]),
    // Where the pclntab's text start and the funcdata base are, in stripped
    // binaries too.
    ("runtime.moduledata", &["text", "gofunc", "rodata"]),
    // What a parked goroutine waits on (see `runtime::waits`): its sudogs,
    // the channels and the sync values they name.
    (
        "runtime.sudog",
        &[
            "g", "next", "prev", "elem", "ticket", "isSelect", "parent", "waitlink", "c",
        ],
    ),
    (
        "runtime.hchan",
        &["qcount", "dataqsiz", "closed", "recvq", "sendq"],
    ),
    ("runtime.waitq", &["first", "last"]),
    ("runtime.notifyList", &["wait", "notify", "head", "tail"]),
    // The object a heap address belongs to: its span's start and element size.
    ("runtime.mheap", &["arenas"]),
    ("runtime.heapArena", &["spans"]),
    (
        "runtime.mspan",
        &["startAddr", "npages", "elemsize", "state"],
    ),
    // The sync values, by their semaphores: before Go 1.24 `sync.Mutex`
    // holds `state` and `sema`; since, it wraps `internal/sync.Mutex` (`mu`).
    ("sync.Mutex", &["state", "sema", "mu"]),
    ("internal/sync.Mutex", &["state", "sema"]),
    (
        "sync.RWMutex",
        &["w", "writerSem", "readerSem", "readerCount", "readerWait"],
    ),
    ("sync.WaitGroup", &["state", "sema"]),
    ("sync.Cond", &["L", "notify"]),
];

/// The compile unit that holds the types `WANTED` names: Go's linker puts
/// every package's types in the runtime's (seen 1.21-1.27).
pub fn wanted_unit(cu: &[u8]) -> bool {
    cu == b"runtime"
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructLayout {
    pub size: u64,
    pub fields: BTreeMap<String, u64>,
    /// Members' type names, when every member was asked for (`["*"]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub types: BTreeMap<String, String>,
}

/// Offsets of the wanted structs for one Go release (or one binary's DWARF).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// "go1.27" for tables; the full version for DWARF-derived layouts.
    pub go: String,
    /// Where the numbers came from.
    pub source: String,
    pub structs: BTreeMap<String, StructLayout>,
}

impl Layout {
    pub fn field(&self, strukt: &str, field: &str) -> Option<u64> {
        let s = self.structs.get(strukt)?;
        match field.split_once('.') {
            None => s.fields.get(field).copied(),
            Some((outer, inner)) => {
                let base = s.fields.get(outer)?;
                let inner_struct = match (strukt, outer) {
                    ("runtime.g", "sched") => "runtime.gobuf",
                    ("runtime.g", "stack") => "runtime.stack",
                    ("runtime.schedt", "runq") => "runtime.gQueue",
                    ("runtime.hchan", "recvq" | "sendq") => "runtime.waitq",
                    ("sync.Mutex", "mu") => "internal/sync.Mutex",
                    ("sync.RWMutex", "w") => "sync.Mutex",
                    _ => return None,
                };
                Some(base + self.field(inner_struct, inner)?)
            }
        }
    }
    pub fn size(&self, strukt: &str) -> Option<u64> {
        self.structs.get(strukt).map(|s| s.size)
    }

    /// A field of `sync.Mutex` (`state`, `sema`) in either shape.
    pub fn mutex_field(&self, field: &str) -> Option<u64> {
        self.field("sync.Mutex", field)
            .or_else(|| self.field("sync.Mutex", &format!("mu.{field}")))
    }

    /// Structs this layout lacks taken from `other` (the release's table):
    /// a program's DWARF only has the types it uses.
    pub fn fill_from(&mut self, other: &Layout) {
        for (name, s) in &other.structs {
            self.structs
                .entry(name.clone())
                .or_insert_with(|| s.clone());
        }
    }
}
