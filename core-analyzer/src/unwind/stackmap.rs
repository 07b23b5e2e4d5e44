//! Go's stack maps: which words of a frame hold live pointers at the frame's
//! call site, exactly the slots the garbage collector scans (the runtime's
//! `getStackMap`): the locals and arguments bitmaps, and the stack objects
//! (address-taken locals: a `defer`'s closure) a live pointer reaches. They
//! live in the pclntab's funcdata, so stripped binaries have them too. A
//! pointer found here is a live reference, not a stale word.
//!
//! A frame's map depends only on its pc (its size does too), so it is decoded
//! once per pc as offsets from the frame's SP: 100k goroutines parked at a
//! few places cost a few decodes.
use super::go::PhysFrame;
use crate::elf::regs::Arch;
use crate::memory::{Memory, ReadExt};
use crate::symbolize::pclntab::{
    Func, Pclntab, FUNCDATA_ARGS_POINTERS, FUNCDATA_LOCALS_POINTERS, FUNCDATA_STACK_OBJECTS,
};
use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::rc::Rc;

/// Bits a stack map may have (a frame of 8 MiB): more is a corrupt table.
const MAX_BITS: i32 = 1 << 20;
/// Stack objects a frame may declare before its table is taken for corrupt.
const MAX_OBJECTS: u64 = 4096;
/// How far from SP a stack object may lie (8 MiB: a frame can be no larger).
const MAX_FRAME_OBJECT_OFFSET: u64 = 8 << 20;
/// Frame maps kept before the cache starts over (bounded memory).
const CACHE_MAX: usize = 1 << 16;

/// A frame's live pointer slots, as offsets from its SP.
#[derive(Debug, Default)]
struct FrameMap {
    slots: Vec<u64>,
    objects: Vec<StackObject>,
}

/// A stack object: where it starts (from SP), its size, and the offsets of
/// its pointer words within it.
#[derive(Debug)]
struct StackObject {
    start: u64,
    size: u64,
    pointers: Vec<u64>,
}

/// Decodes frames' stack maps, once per pc.
pub struct StackMaps<'a> {
    pcln: &'a Pclntab,
    mem: &'a dyn Memory,
    arch: Arch,
    cache: RefCell<HashMap<u64, Rc<FrameMap>>>,
}

impl<'a> StackMaps<'a> {
    pub fn new(pcln: &'a Pclntab, mem: &'a dyn Memory, arch: Arch) -> StackMaps<'a> {
        StackMaps {
            pcln,
            mem,
            arch,
            cache: Default::default(),
        }
    }

    /// The memory the frames are read from.
    pub fn memory(&self) -> &'a dyn Memory {
        self.mem
    }

    /// The frame's function name.
    pub fn function_name(&self, fr: &PhysFrame) -> &'a str {
        self.pcln.name(&fr.func)
    }

    /// The values of the frame's live pointer slots, then the pointer words
    /// of the stack objects they reach. Frames a signal interrupted have no
    /// map at their pc (Go scans them conservatively): none are given.
    pub fn live_pointers(&self, fr: &PhysFrame) -> Vec<u64> {
        let mut out = vec![];
        if fr.interrupted || self.pcln.gofunc == 0 {
            return out;
        }
        let map = self.map(fr);
        let word = |off: u64| {
            self.mem
                .u64(fr.sp.wrapping_add(off))
                .ok()
                .filter(|&v| v != 0)
        };
        out.extend(map.slots.iter().filter_map(|&o| word(o)));
        // Objects a live pointer reaches, until no further one is reached.
        let mut scanned = vec![false; map.objects.len()];
        loop {
            let mut grew = false;
            for (i, o) in map.objects.iter().enumerate() {
                let lo = fr.sp.wrapping_add(o.start);
                let hi = lo.wrapping_add(o.size);
                if scanned[i] || !out.iter().any(|&p| lo <= p && p < hi) {
                    continue;
                }
                scanned[i] = true;
                grew = true;
                out.extend(
                    o.pointers
                        .iter()
                        .filter_map(|&w| word(o.start.wrapping_add(w))),
                );
            }
            if !grew {
                return out;
            }
        }
    }

    fn map(&self, fr: &PhysFrame) -> Rc<FrameMap> {
        if let Some(m) = self.cache.borrow().get(&fr.pc) {
            return m.clone();
        }
        let m = Rc::new(self.decode(fr));
        let mut c = self.cache.borrow_mut();
        if c.len() > CACHE_MAX {
            c.clear();
        }
        c.insert(fr.pc, m.clone());
        m
    }

    fn decode(&self, fr: &PhysFrame) -> FrameMap {
        let (pcln, f) = (self.pcln, &fr.func);
        // At a call site the map is the one in effect at the call instruction.
        let index = if fr.pc == f.entry {
            0
        } else {
            pcln.stackmap_index(f, fr.pc - 1).unwrap_or(-1).max(0)
        };
        let (varp, argp, min_locals) = frame_areas(self.arch, fr);
        let (varp, argp) = (varp.wrapping_sub(fr.sp), argp.wrapping_sub(fr.sp));
        let mut map = FrameMap::default();
        if varp > min_locals {
            if let Some(bits) = self.bitmap(f, FUNCDATA_LOCALS_POINTERS, index) {
                let base = varp.wrapping_sub(8 * bits.n as u64);
                map.slots
                    .extend(bits.set().map(|i| base.wrapping_add(8 * i)));
            }
        }
        if pcln.args_size(f) > 0 {
            if let Some(bits) = self.bitmap(f, FUNCDATA_ARGS_POINTERS, index) {
                map.slots
                    .extend(bits.set().map(|i| argp.wrapping_add(8 * i)));
            }
        }
        map.objects = self.stack_objects(f, (varp, argp));
        map
    }

    /// Bitmap `index` of the function's stack map `which`.
    fn bitmap(&self, f: &Func, which: usize, index: i32) -> Option<Bits> {
        let at = self
            .pcln
            .gofunc
            .wrapping_add(self.pcln.funcdata_off(f, which)? as u64);
        let count = self.mem.u32(at).ok()? as i32;
        let nbit = self.mem.u32(at.wrapping_add(4)).ok()? as i32;
        if index >= count || !(0..=MAX_BITS).contains(&nbit) {
            return None;
        }
        let stride = ((nbit + 7) / 8) as u64;
        let bytes = self
            .mem
            .bytes(at.wrapping_add(8 + index as u64 * stride), stride as usize)
            .ok()?;
        Some(Bits { n: nbit, bytes })
    }

    /// The frame's stack object records (`FUNCDATA_StackObjects`: offset
    /// from varp when negative, else from argp; size; pointer bytes; the
    /// pointer mask at moduledata.rodata + gcdataoff).
    fn stack_objects(&self, f: &Func, (varp, argp): (u64, u64)) -> Vec<StackObject> {
        let (pcln, mem) = (self.pcln, self.mem);
        let Some(off) = pcln.funcdata_off(f, FUNCDATA_STACK_OBJECTS) else {
            return vec![];
        };
        if pcln.rodata == 0 {
            return vec![];
        }
        let at = pcln.gofunc.wrapping_add(off as u64);
        let n = mem.u64(at).unwrap_or(0).min(MAX_OBJECTS);
        (0..n)
            .filter_map(|i| {
                let r = mem.bytes(at.wrapping_add(8 + 16 * i), 16).ok()?;
                let word = |k: usize| i32::from_le_bytes(r[k..k + 4].try_into().unwrap());
                let (o, size, ptr_bytes) = (word(0) as i64, word(4), word(8));
                // A negative size is a GC program (Go 1.21's large objects): not read.
                if size <= 0 || ptr_bytes <= 0 {
                    return None;
                }
                let gcdata = u32::from_le_bytes(r[12..16].try_into().unwrap()) as u64;
                let words = ptr_bytes as u64 / 8;
                let mask = mem
                    .bytes(pcln.rodata.wrapping_add(gcdata), words.div_ceil(8) as usize)
                    .ok()?;
                let bits = Bits {
                    n: words as i32,
                    bytes: mask,
                };
                let start = if o < 0 { varp } else { argp }.wrapping_add(o as u64);
                // An object outside the frame and its arguments is a corrupt record.
                if start > MAX_FRAME_OBJECT_OFFSET || size as u64 > MAX_FRAME_OBJECT_OFFSET {
                    return None;
                }
                Some(StackObject {
                    start,
                    size: size as u64,
                    pointers: bits.set().map(|i| 8 * i).collect(),
                })
            })
            .collect()
    }
}

/// Where the locals end (`varp`, below the saved frame pointer) and the
/// arguments start (`argp`), and the locals size under which there are none.
fn frame_areas(arch: Arch, fr: &PhysFrame) -> (u64, u64, u64) {
    match arch {
        // [locals][saved BP][return address] | args
        Arch::X86_64 => {
            let mut varp = fr.cfa.wrapping_sub(8);
            if varp > fr.sp {
                varp -= 8;
            }
            (varp, fr.cfa, 0)
        }
        // The return address at 0(SP), the frame pointer saved below SP; the
        // caller's outgoing area starts one word above its SP.
        Arch::Aarch64 => {
            let mut varp = fr.cfa;
            if varp > fr.sp {
                varp -= 8;
            }
            (varp, fr.cfa.wrapping_add(8), 16)
        }
    }
}

struct Bits {
    n: i32,
    bytes: Vec<u8>,
}

impl Bits {
    /// The indexes of the set bits.
    fn set(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.n.max(0) as u64).filter(|i| self.bytes[(i / 8) as usize] & (1 << (i % 8)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_bits_are_the_pointer_words() {
        let b = Bits {
            n: 11,
            bytes: vec![0b1000_0101, 0b0000_0100],
        };
        assert_eq!(b.set().collect::<Vec<_>>(), vec![0, 2, 7, 10]);
    }

    #[test]
    fn the_locals_end_below_the_saved_frame_pointer() {
        let fr = |sp, cfa| PhysFrame {
            func: Func::for_tests(0x1000, 0x2000),
            pc: 0x1010,
            sp,
            cfa,
            interrupted: false,
        };
        // amd64: a 32-byte frame: [locals 24][BP][ret] | args at the CFA.
        assert_eq!(
            frame_areas(Arch::X86_64, &fr(0x100, 0x128)),
            (0x118, 0x128, 0)
        );
        // arm64: [ret][locals] with FP below SP; args one word above the CFA.
        assert_eq!(
            frame_areas(Arch::Aarch64, &fr(0x100, 0x120)),
            (0x118, 0x128, 16)
        );
    }
}
