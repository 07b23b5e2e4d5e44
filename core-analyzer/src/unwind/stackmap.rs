//! Go's stack maps: which words of a frame hold live pointers at the frame's
//! call site, exactly the slots the garbage collector scans (the runtime's
//! `getStackMap`). They live in the pclntab's funcdata, so stripped binaries
//! have them too. A pointer found here is a live reference, not a stale word.
use super::go::PhysFrame;
use crate::elf::regs::Arch;
use crate::memory::{Memory, ReadExt};
use crate::symbolize::pclntab::{
    Func, Pclntab, FUNCDATA_ARGS_POINTERS, FUNCDATA_LOCALS_POINTERS, FUNCDATA_STACK_OBJECTS,
};

/// Bits a stack map may have (a frame of 8 MiB): more is a corrupt table.
const MAX_BITS: i32 = 1 << 20;
/// Stack objects a frame may declare before its table is taken for corrupt.
const MAX_OBJECTS: u64 = 4096;

/// The values of the frame's live pointer slots (locals, then arguments).
/// Frames a signal interrupted have no map at their pc (Go scans them
/// conservatively): none are given for them.
pub fn live_pointers(pcln: &Pclntab, mem: &dyn Memory, arch: Arch, fr: &PhysFrame) -> Vec<u64> {
    let mut out = vec![];
    if fr.interrupted || pcln.gofunc == 0 {
        return out;
    }
    let f = &fr.func;
    // At a call site the map is the one in effect at the call instruction.
    let index = if fr.pc == f.entry {
        0
    } else {
        pcln.stackmap_index(f, fr.pc - 1).unwrap_or(-1).max(0)
    };
    let (varp, argp, min_locals) = frame_areas(arch, fr);
    if varp.saturating_sub(fr.sp) > min_locals {
        if let Some(bits) = bitmap(pcln, mem, f, FUNCDATA_LOCALS_POINTERS, index) {
            let base = varp.wrapping_sub(8 * bits.n as u64);
            collect(mem, base, &bits, &mut out);
        }
    }
    if pcln.args_size(f) > 0 {
        if let Some(bits) = bitmap(pcln, mem, f, FUNCDATA_ARGS_POINTERS, index) {
            collect(mem, argp, &bits, &mut out);
        }
    }
    stack_objects(pcln, mem, f, (varp, argp), &mut out);
    out
}

/// The frame's stack objects (address-taken locals: a `defer`'s closure, a
/// struct passed by pointer) that a live pointer reaches, as the GC scans
/// them: their pointer words join `out`, until no further object is reached.
fn stack_objects(
    pcln: &Pclntab,
    mem: &dyn Memory,
    f: &Func,
    (varp, argp): (u64, u64),
    out: &mut Vec<u64>,
) {
    if pcln.rodata == 0 {
        return;
    }
    let Some(off) = pcln.funcdata_off(f, FUNCDATA_STACK_OBJECTS) else {
        return;
    };
    let at = pcln.gofunc.wrapping_add(off as u64);
    let n = mem.u64(at).unwrap_or(0).min(MAX_OBJECTS);
    // (start, size, pointer bytes, mask address), each record 16 bytes.
    let objs: Vec<(u64, u64, u64, u64)> = (0..n)
        .filter_map(|i| {
            let r = mem.bytes(at + 8 + 16 * i, 16).ok()?;
            let word = |k: usize| i32::from_le_bytes(r[k..k + 4].try_into().unwrap());
            let (o, size, ptr_bytes) = (word(0) as i64, word(4), word(8));
            let mask = pcln
                .rodata
                .wrapping_add(u32::from_le_bytes(r[12..16].try_into().unwrap()) as u64);
            let start = if o < 0 {
                varp.wrapping_add(o as u64)
            } else {
                argp.wrapping_add(o as u64)
            };
            // A negative size is a GC program (Go 1.21's large objects): not read.
            (size > 0 && ptr_bytes > 0).then_some((start, size as u64, ptr_bytes as u64, mask))
        })
        .collect();
    let mut scanned = vec![false; objs.len()];
    loop {
        let mut grew = false;
        for (i, &(start, size, ptr_bytes, mask)) in objs.iter().enumerate() {
            let reached = out.iter().any(|&p| start <= p && p < start + size);
            if scanned[i] || !reached {
                continue;
            }
            scanned[i] = true;
            grew = true;
            let words = ptr_bytes / 8;
            let Ok(m) = mem.bytes(mask, words.div_ceil(8) as usize) else {
                continue;
            };
            let bits = Bits {
                n: words as i32,
                bytes: m,
            };
            collect(mem, start, &bits, out);
        }
        if !grew {
            return;
        }
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

/// Bitmap `index` of the function's stack map `which`.
fn bitmap(pcln: &Pclntab, mem: &dyn Memory, f: &Func, which: usize, index: i32) -> Option<Bits> {
    let at = pcln
        .gofunc
        .wrapping_add(pcln.funcdata_off(f, which)? as u64);
    let count = mem.u32(at).ok()? as i32;
    let nbit = mem.u32(at.wrapping_add(4)).ok()? as i32;
    if index >= count || !(0..=MAX_BITS).contains(&nbit) {
        return None;
    }
    let stride = ((nbit + 7) / 8) as u64;
    let bytes = mem
        .bytes(at + 8 + index as u64 * stride, stride as usize)
        .ok()?;
    Some(Bits { n: nbit, bytes })
}

fn collect(mem: &dyn Memory, base: u64, bits: &Bits, out: &mut Vec<u64>) {
    for i in 0..bits.n as u64 {
        if bits.bytes[(i / 8) as usize] & (1 << (i % 8)) != 0 {
            if let Ok(v) = mem.u64(base.wrapping_add(8 * i)) {
                if v != 0 {
                    out.push(v);
                }
            }
        }
    }
}
