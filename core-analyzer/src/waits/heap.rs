//! Which heap object an address is in: its span, from the heap's arena
//! index (`mheap_.arenas`), gives the object's start and size, as the
//! garbage collector finds them (`spanOf`, `findObject`).
use crate::elf::regs::Arch;
use crate::memory::{Memory, ReadExt};
use crate::runtime::GoRuntime;

/// The arena index's shape per architecture (Linux, 64-bit: one level of
/// 2^22 arenas of 64 MiB, addresses offset by `arenaBaseOffset`; the
/// runtime's malloc.go), and its page size.
struct ArenaShape {
    arch: Arch,
    base_offset: u64,
    l2_bits: u32,
}
const ARENA_SHAPES: &[ArenaShape] = &[
    ArenaShape {
        arch: Arch::X86_64,
        base_offset: 0xffff_8000_0000_0000,
        l2_bits: 22,
    },
    ArenaShape {
        arch: Arch::Aarch64,
        base_offset: 0,
        l2_bits: 22,
    },
];
const LOG_ARENA_BYTES: u32 = 26;
const PAGE_SIZE: u64 = 8192;
const PAGES_PER_ARENA: u64 = (1 << LOG_ARENA_BYTES) / PAGE_SIZE;
/// `mSpanInUse`: a span of allocated objects.
const SPAN_IN_USE: u8 = 1;

/// Reads spans; `None` where the heap's root is not known (no symbols).
pub struct Heap<'a> {
    mem: &'a dyn Memory,
    shape: &'static ArenaShape,
    /// The first-level entry: the array of heapArena pointers.
    l2: u64,
    spans: u64,
    start: u64,
    npages: u64,
    elemsize: u64,
    state: u64,
}

impl<'a> Heap<'a> {
    pub fn new(
        rt: &GoRuntime,
        mheap: Option<u64>,
        mem: &'a dyn Memory,
        arch: Arch,
    ) -> Option<Heap<'a>> {
        let shape = ARENA_SHAPES.iter().find(|s| s.arch == arch)?;
        let l = &rt.layout;
        let arenas = mheap?.checked_add(l.field("runtime.mheap", "arenas")?)?;
        Some(Heap {
            mem,
            shape,
            l2: mem.u64(arenas).ok().filter(|&a| a != 0)?,
            spans: l.field("runtime.heapArena", "spans")?,
            start: l.field("runtime.mspan", "startAddr")?,
            npages: l.field("runtime.mspan", "npages")?,
            elemsize: l.field("runtime.mspan", "elemsize")?,
            state: l.field("runtime.mspan", "state")?,
        })
    }

    /// The heap object holding `addr`: (start, size).
    pub fn object(&self, addr: u64) -> Option<(u64, u64)> {
        let ai = addr.wrapping_sub(self.shape.base_offset) >> LOG_ARENA_BYTES;
        if ai >> self.shape.l2_bits != 0 {
            return None;
        }
        let arena = self
            .mem
            .u64(self.l2.wrapping_add(8 * ai))
            .ok()
            .filter(|&a| a != 0)?;
        let page = (addr / PAGE_SIZE) % PAGES_PER_ARENA;
        let span = self
            .mem
            .u64(arena.wrapping_add(self.spans).wrapping_add(8 * page))
            .ok()
            .filter(|&s| s != 0)?;
        let word = |off: u64| self.mem.u64(span.wrapping_add(off)).ok();
        let (start, npages, size) = (word(self.start)?, word(self.npages)?, word(self.elemsize)?);
        let in_use = self.mem.u8(span.wrapping_add(self.state)).ok()? == SPAN_IN_USE;
        let end = start.checked_add(npages.checked_mul(PAGE_SIZE)?)?;
        if !in_use || size == 0 || addr < start || addr >= end {
            return None;
        }
        Some((start + (addr - start) / size * size, size))
    }
}
