//! Memory made of layered segments: the core's `PT_LOAD`s on top, the
//! executable's and libraries' file-backed segments below (the kernel leaves
//! read-only file mappings out of a core). Bytes past a core segment's
//! `p_filesz` were not saved: reading them is an error, never zeros.
use super::Memory;
use crate::error::Fault;
use std::sync::Arc;

/// The bytes behind a segment: an mmap'd file, or a core read through a cache.
pub type SegmentSource = Arc<dyn super::ReadAt>;

#[derive(Clone)]
pub struct Segment {
    pub vaddr: u64,
    /// Size in memory (`p_memsz`).
    pub memsz: u64,
    /// Bytes present in `source` from `offset` (`p_filesz`).
    pub filesz: u64,
    pub offset: u64,
    pub source: SegmentSource,
    /// `true` for core segments, where the gap filesz..memsz is "not saved";
    /// `false` for ELF file segments, where it is zero-filled `.bss`.
    pub from_core: bool,
}

impl Segment {
    fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.memsz)
    }
}

/// Segments searched in priority order (core first), each list sorted by address.
#[derive(Default, Clone)]
pub struct SplicedMemory {
    layers: Vec<Layer>,
}

/// One layer's segments, and their ends apart: the search for an address
/// runs over 8 bytes a segment (a core of 10,000 threads has 20,000).
#[derive(Clone)]
struct Layer {
    ends: Vec<u64>,
    segs: Vec<Segment>,
}

enum Piece {
    Copied(usize),
    NotSaved,
    Missing,
}

impl SplicedMemory {
    /// Add a layer below the existing ones.
    pub fn push_layer(&mut self, mut segs: Vec<Segment>) {
        segs.retain(|s| s.memsz > 0);
        segs.sort_by_key(|s| s.vaddr);
        let ends = segs.iter().map(Segment::end).collect();
        self.layers.push(Layer { ends, segs });
    }

    /// Whether `addr` lies in any segment with bytes behind it.
    pub fn is_mapped(&self, addr: u64) -> bool {
        let mut b = [0u8; 1];
        self.read(addr, &mut b).is_ok()
    }

    /// Address ranges of the first (core) layer that hold saved bytes.
    pub fn saved_ranges(&self, layer: usize) -> Vec<(u64, u64)> {
        self.layers
            .get(layer)
            .map(|l| {
                l.segs
                    .iter()
                    .filter(|s| s.filesz > 0)
                    .map(|s| (s.vaddr, s.vaddr + s.filesz.min(s.memsz)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn read_piece(layer: &Layer, addr: u64, buf: &mut [u8]) -> Piece {
        let i = layer.ends.partition_point(|&end| end <= addr);
        let Some(seg) = layer.segs.get(i) else {
            return Piece::Missing;
        };
        if addr < seg.vaddr {
            return Piece::Missing;
        }
        let off = addr - seg.vaddr;
        let avail = (seg.end() - addr).min(buf.len() as u64) as usize;
        if off >= seg.filesz {
            if seg.from_core {
                return Piece::NotSaved;
            }
            buf[..avail].fill(0);
            return Piece::Copied(avail);
        }
        let n = avail.min((seg.filesz - off) as usize);
        if seg
            .source
            .read_at(seg.offset.saturating_add(off), &mut buf[..n])
        {
            Piece::Copied(n)
        } else {
            // The file is shorter than its headers claim (a truncated core).
            Piece::NotSaved
        }
    }
}

impl Memory for SplicedMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let mut done = 0usize;
        while done < buf.len() {
            let a = addr.wrapping_add(done as u64);
            let mut not_saved = false;
            let mut copied = 0;
            for layer in &self.layers {
                match Self::read_piece(layer, a, &mut buf[done..]) {
                    Piece::Copied(n) => {
                        copied = n;
                        break;
                    }
                    Piece::NotSaved => not_saved = true,
                    Piece::Missing => {}
                }
            }
            if copied == 0 {
                let len = buf.len() - done;
                return Err(if not_saved {
                    Fault::NotSaved { addr: a, len }
                } else {
                    Fault::Unmapped { addr: a, len }
                });
            }
            done += copied;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(vaddr: u64, memsz: u64, data: Vec<u8>, from_core: bool) -> Segment {
        Segment {
            vaddr,
            memsz,
            filesz: data.len() as u64,
            offset: 0,
            source: Arc::new(data),
            from_core,
        }
    }

    #[test]
    fn core_layer_wins_and_gaps_are_faults() {
        let mut m = SplicedMemory::default();
        m.push_layer(vec![seg(0x1000, 0x20, vec![1; 0x10], true)]);
        m.push_layer(vec![seg(0x1000, 0x40, vec![2; 0x40], false)]);
        let mut b = [0u8; 0x10];
        m.read(0x1000, &mut b).unwrap();
        assert_eq!(b, [1; 0x10]);
        // Past the core segment's filesz the file layer answers (text left out of a core).
        m.read(0x1010, &mut b).unwrap();
        assert_eq!(b, [2; 0x10]);
        assert_eq!(
            m.read(0x2000, &mut b),
            Err(Fault::Unmapped {
                addr: 0x2000,
                len: 0x10
            })
        );
    }

    #[test]
    fn not_saved_is_reported_not_zeroed() {
        let mut m = SplicedMemory::default();
        m.push_layer(vec![seg(0x1000, 0x100, vec![7; 8], true)]);
        let mut b = [0u8; 4];
        assert_eq!(
            m.read(0x1010, &mut b),
            Err(Fault::NotSaved {
                addr: 0x1010,
                len: 4
            })
        );
    }

    #[test]
    fn reads_cross_segments() {
        let mut m = SplicedMemory::default();
        m.push_layer(vec![
            seg(0x1000, 4, vec![1, 2, 3, 4], true),
            seg(0x1004, 4, vec![5, 6, 7, 8], true),
        ]);
        let mut b = [0u8; 6];
        m.read(0x1002, &mut b).unwrap();
        assert_eq!(b, [3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn truncated_file_is_not_saved() {
        let mut m = SplicedMemory::default();
        let mut s = seg(0x1000, 0x100, vec![1; 4], true);
        s.filesz = 0x100; // header claims more than the file holds
        m.push_layer(vec![s]);
        let mut b = [0u8; 8];
        assert!(matches!(
            m.read(0x1000, &mut b),
            Err(Fault::NotSaved { .. })
        ));
    }
}
