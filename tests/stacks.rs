//! Stitched thread stacks on real cores: C frames joined to the right
//! goroutine's Go frames, callbacks interleaved, signal frames crossed.
//! Expectations come from the scenario program (which thread runs which C
//! call) and Go's own dump (the goroutine's Go frames).
mod checks;
mod common;

use cgocore::report::frame::Lang;
use cgocore::report::Report;
use checks::stacks::{interrupted_frames, name, IN_C};
use common::*;

/// A kernel core (crash state, Go's handler on every thread) and a gcore
/// (natural state) of the same scenario show the same blocked C call.
#[test]
fn kernel_and_gcore_show_the_same_blocked_call() {
    let cases = generated();
    let mut compared = 0;
    for k in cases.iter().filter(|c| c.name.ends_with("/plain/kernel")) {
        let Some(g) = cases
            .iter()
            .find(|c| c.name == k.name.replace("/kernel", "/gcore"))
        else {
            continue;
        };
        let (ka, ga) = (analyze(k), analyze(g));
        for (scn, _, _) in IN_C {
            let blocked = |case: &CoreCase, r: &Report| -> Vec<String> {
                let tid = case.truth.scenarios[*scn].tid;
                let th = r.threads.iter().find(|t| t.tid == tid).unwrap();
                interrupted_frames(th)
                    .iter()
                    .take_while(|f| f.lang == Lang::C)
                    .map(|f| name(f).to_string())
                    .collect()
            };
            let (kb, gb) = (blocked(k, &ka.report), blocked(g, &ga.report));
            assert!(!kb.is_empty(), "{}: {scn}: no C frames", k.name);
            assert_eq!(kb, gb, "{} vs gcore: {scn}", k.name);
            compared += 1;
        }
    }
    if compared == 0 {
        assert!(!require_generated(), "no kernel/gcore pairs generated");
    }
}
