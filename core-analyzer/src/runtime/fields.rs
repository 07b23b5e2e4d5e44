//! Decode fields from one struct's bytes, read in a single memory access.
pub struct View<'a>(pub &'a [u8]);

impl View<'_> {
    pub fn u8(&self, off: Option<u64>) -> u8 {
        off.and_then(|o| self.0.get(o as usize))
            .copied()
            .unwrap_or(0)
    }
    pub fn bool(&self, off: Option<u64>) -> bool {
        self.u8(off) != 0
    }
    pub fn u32(&self, off: Option<u64>) -> u32 {
        off.and_then(|o| self.0.get(o as usize..o as usize + 4))
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .unwrap_or(0)
    }
    pub fn u64(&self, off: Option<u64>) -> u64 {
        off.and_then(|o| self.0.get(o as usize..o as usize + 8))
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .unwrap_or(0)
    }
}
