//! The goroutines as a pprof goroutine profile (gzipped protobuf, as
//! `runtime/pprof` writes it; `go tool pprof` reads it): one sample per
//! goroutine, its stack with the C frames of its cgo call on top of its Go
//! frames, labelled with its state, M, thread, lock and what it waits for.
//! The messages are profile.proto's, declared here with prost's derive.
use super::frame::{Frame, Lang};
use super::{GoroutineInfo, Report};
use std::collections::HashMap;
use std::io::Write;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// Strings are interned: index 0 is "" as profile.proto requires.
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings::default();
        s.id("");
        s
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// How a frame is named in the profile: a C frame with its library, as
/// `name (libc.so.6)`, so `pprof -traces` shows where it lies.
pub fn frame_name(f: &Frame) -> String {
    let name = f.function.as_deref().unwrap_or("??");
    match (f.lang, f.module.as_deref()) {
        (Lang::C, Some(m)) => format!("{name} ({m})"),
        _ => name.to_string(),
    }
}

/// The profile of a report's goroutines.
pub fn profile(r: &Report) -> Profile {
    let mut s = Strings::new();
    let mut functions: HashMap<(String, String), u64> = HashMap::new();
    // By the frame's identity (shared names, no hashing of strings): 100k
    // goroutines repeat a few frames.
    let mut locations: HashMap<super::frame::FrameKey, u64> = HashMap::new();
    let mut p = Profile {
        sample_type: vec![ValueType {
            r#type: s.id("goroutine"),
            unit: s.id("count"),
        }],
        period_type: Some(ValueType {
            r#type: s.id("goroutine"),
            unit: s.id("count"),
        }),
        period: 1,
        mapping: vec![Mapping {
            id: 1,
            filename: s.id(&r.binary),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        }],
        ..Default::default()
    };
    p.comment.push(s.id(&format!(
        "cgocore goroutine profile of {} ({})",
        r.core.as_deref().unwrap_or("a live process"),
        r.go_version
    )));
    let thread_of: HashMap<u64, u32> = r
        .threads
        .iter()
        .filter_map(|t| Some((t.curg.or(t.stack_goroutine)?, t.tid)))
        .collect();
    let blocked_of: HashMap<u32, &str> = r
        .threads
        .iter()
        .filter_map(|t| Some((t.tid, t.blocked.as_ref()?.class.as_str())))
        .collect();
    for g in &r.goroutines {
        let mut ids = vec![];
        for f in &g.frames {
            if let Some(&lid) = locations.get(&f.key()) {
                ids.push(lid);
                continue;
            }
            let name = frame_name(f);
            let file = f.file.as_deref().unwrap_or("").to_string();
            let next = functions.len() as u64 + 1;
            let fid = *functions
                .entry((name.clone(), file.clone()))
                .or_insert_with(|| {
                    p.function.push(Function {
                        id: next,
                        name: s.id(&name),
                        system_name: s.id(&name),
                        filename: s.id(&file),
                    });
                    next
                });
            let lid = p.location.len() as u64 + 1;
            p.location.push(Location {
                id: lid,
                mapping_id: 1,
                address: f.pc,
                line: vec![Line {
                    function_id: fid,
                    line: f.line.map_or(0, i64::from),
                }],
            });
            locations.insert(f.key(), lid);
            ids.push(lid);
        }
        p.sample.push(Sample {
            location_id: ids,
            value: vec![1],
            label: labels(&mut s, g, thread_of.get(&g.goid), &blocked_of),
        });
    }
    p.string_table = s.table;
    p
}

fn labels(
    s: &mut Strings,
    g: &GoroutineInfo,
    tid: Option<&u32>,
    blocked_of: &HashMap<u32, &str>,
) -> Vec<Label> {
    let mut out = vec![];
    let mut text = |s: &mut Strings, k: &str, v: &str| {
        out.push(Label {
            key: s.id(k),
            str: s.id(v),
            num: 0,
        })
    };
    text(s, "goid", &g.goid.to_string());
    text(s, "state", g.state());
    text(s, "locked", if g.locked { "true" } else { "false" });
    if let Some(m) = g.m {
        text(s, "m", &m.to_string());
    }
    if let Some(t) = tid {
        text(s, "thread", &t.to_string());
        if let Some(class) = blocked_of.get(t) {
            text(s, "blocked", class);
        }
    }
    if let Some(c) = &g.cgo_call {
        text(s, "cgo_call", c);
    }
    out
}

/// Write the profile, gzipped, as pprof files are.
pub fn write(r: &Report, w: impl Write) -> std::io::Result<()> {
    use prost::Message;
    let bytes = profile(r).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::sample::{frame, goroutine, report};
    use prost::Message;

    #[test]
    fn one_sample_per_goroutine_with_c_frames_on_top() {
        let mut r = report(vec![]);
        let mut c = frame("__lll_lock_wait", Lang::C);
        c.module = Some("libc.so.6".into());
        let mut g = goroutine(7, "syscall", None);
        g.frames = vec![
            c,
            frame("runtime.cgocall", Lang::Go),
            frame("main.main", Lang::Go),
        ];
        r.goroutines = vec![g, goroutine(8, "waiting", Some("chan receive"))];
        let p = Profile::decode(&*profile(&r).encode_to_vec()).unwrap();
        assert_eq!(p.sample.len(), 2);
        let names: Vec<&str> = p.sample[0]
            .location_id
            .iter()
            .map(|id| {
                let l = &p.location[*id as usize - 1];
                let f = &p.function[l.line[0].function_id as usize - 1];
                p.string_table[f.name as usize].as_str()
            })
            .collect();
        assert_eq!(
            names,
            vec![
                "__lll_lock_wait (libc.so.6)",
                "runtime.cgocall",
                "main.main"
            ]
        );
        let state = p.sample[1]
            .label
            .iter()
            .find(|l| p.string_table[l.key as usize] == "state")
            .unwrap();
        assert_eq!(p.string_table[state.str as usize], "chan receive");
        assert_eq!(p.string_table[0], "");
    }
}
