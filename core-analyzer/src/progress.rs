//! Progress of long work (decompressing a multi-GB core, unwinding 100k
//! goroutines, a live capture), reported to whatever the face installed: the
//! CLI shows a bar on a terminal; by default nothing is shown. Work calls
//! `begin`, `advance` and `end`; a face calls `set` once.
use std::sync::OnceLock;

pub trait Sink: Send + Sync {
    /// A phase starts: what it does, and its size where known.
    fn begin(&self, what: &str, total: Option<u64>);
    /// `n` more units (bytes, goroutines) of the phase are done.
    fn advance(&self, n: u64);
    fn end(&self);
}

static SINK: OnceLock<Box<dyn Sink>> = OnceLock::new();

/// Install the sink (once; later calls are ignored).
pub fn set(sink: Box<dyn Sink>) {
    let _ = SINK.set(sink);
}

pub fn begin(what: &str, total: Option<u64>) {
    if let Some(s) = SINK.get() {
        s.begin(what, total);
    }
}

pub fn advance(n: u64) {
    if let Some(s) = SINK.get() {
        s.advance(n);
    }
}

pub fn end() {
    if let Some(s) = SINK.get() {
        s.end();
    }
}

/// A phase from `new` to drop: ended on every path, errors included.
pub struct Phase(());

impl Phase {
    pub fn new(what: &str, total: Option<u64>) -> Phase {
        begin(what, total);
        Phase(())
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        end();
    }
}

/// Counts what passes through a reader as progress.
pub struct Reader<R>(pub R);

impl<R: std::io::Read> std::io::Read for Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        advance(n as u64);
        Ok(n)
    }
}
