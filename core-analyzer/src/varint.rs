//! Go's unsigned varint (pc-value tables, `.go.buildinfo` lengths).

/// Decode one uvarint: (value, bytes used), or None if truncated or over 10 bytes.
pub fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &c) in b.iter().enumerate().take(10) {
        v |= ((c & 0x7f) as u64) << (7 * i);
        if c < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects_overlong() {
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(uvarint(&[0x80; 11]), None);
        assert_eq!(uvarint(&[0x80]), None);
    }
}
