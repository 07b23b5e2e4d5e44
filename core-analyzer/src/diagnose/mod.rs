//! Diagnosis: from each thread's facts in the report (its class, what it
//! waits on, the owner read or inferred) to what a person reads first: the
//! wait-for chains between threads, the findings (one detector per kind)
//! and the incidents (each root cause once, with what it holds up, most harm
//! first). It reads only the report model: `classify` below it produces the
//! per-thread facts, and nothing here reads a process.
pub mod chains;
pub mod findings;
pub mod incidents;
pub mod queues;
pub mod signature;

use crate::report::Report;

/// The report's findings and incidents, from its threads and goroutines.
pub fn diagnose(report: &mut Report) {
    report.findings = findings::findings(report);
    queues::holders(report);
    report.incidents = incidents::incidents(report);
}
