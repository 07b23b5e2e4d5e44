//! Strings from the target (thread names, file paths, symbol names, fd
//! targets, SQLite file names...) printed for people: a control character in
//! one must neither drive the terminal (escape sequences retitle or clear
//! it, a carriage return overwrites a line) nor start a forged report line.
//! Each is shown escaped (`\x1b`, `\n`, `\u{9b}`); JSON keeps them as they
//! are (JSON escapes them itself).
use super::model::Report;
use std::borrow::Cow;
use std::fmt::Write as _;

fn is_control(c: char) -> bool {
    c.is_control()
}

fn escaped(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn escape_where(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_control(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) && !keep(c) {
            escaped(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One value on one line: every control character escaped, newlines too.
pub fn escape_line(s: &str) -> Cow<'_, str> {
    escape_where(s, |_| false)
}

/// Text cgocore laid out itself (its newlines and tabs kept), with anything
/// else that could drive a terminal escaped: the last guard on every text
/// output.
pub fn escape_terminal(s: &str) -> Cow<'_, str> {
    escape_where(s, |c| c == '\n' || c == '\t')
}

/// The report with every string from the target made printable on one line.
pub fn for_text(r: &Report) -> Cow<'_, Report> {
    if !needs_escaping(r) {
        return Cow::Borrowed(r);
    }
    escaped_report(r).map_or(Cow::Borrowed(r), Cow::Owned)
}

/// Whether a string of the report holds a character to escape. Nearly every
/// report has none: that is found by one pass of its JSON through a
/// scanner, without keeping the text.
pub fn needs_escaping(r: &Report) -> bool {
    let mut scan = Scanner::default();
    serde_json::to_writer(&mut scan, r).is_ok() && scan.found
}

/// The report with its strings escaped, through its JSON. Where the round
/// trip fails, the final guard (`escape_terminal`) still escapes what could
/// drive the terminal.
fn escaped_report(r: &Report) -> Option<Report> {
    let mut v = serde_json::to_value(r).ok()?;
    escape_value(&mut v);
    serde_json::from_value(v).ok()
}

fn escape_value(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            if let Cow::Owned(e) = escape_line(s) {
                *s = e;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(escape_value),
        Value::Object(o) => o.values_mut().for_each(escape_value),
        _ => {}
    }
}

/// Watches JSON go by for a string holding a control character: JSON writes
/// those below 0x20 as `\n`, `\u001b`, ...; DEL and C1 characters as they are.
#[derive(Default)]
struct Scanner {
    /// Inside an escape: the byte after a backslash comes next.
    backslash: bool,
    /// The last byte was 0xc2, the lead byte of U+0080..U+00BF.
    c2: bool,
    found: bool,
}

impl std::io::Write for Scanner {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if self.backslash {
                self.backslash = false;
                if !matches!(b, b'"' | b'\\' | b'/') {
                    self.found = true;
                }
            } else if b == b'\\' {
                self.backslash = true;
            }
            if b == 0x7f || (self.c2 && (0x80..0xa0).contains(&b)) {
                self.found = true;
            }
            self.c2 = b == 0xc2;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_sent() {
        assert_eq!(escape_line("plain/path é"), "plain/path é");
        assert_eq!(
            escape_line("a\x1b]0;pwned\x07b\nFORGED\r\u{9b}2J\x7f"),
            "a\\x1b]0;pwned\\x07b\\nFORGED\\r\\u{9b}2J\\x7f"
        );
        assert_eq!(
            escape_terminal("line\n\tnext\x1b[2J"),
            "line\n\tnext\\x1b[2J"
        );
    }

    #[test]
    fn the_scanner_sees_what_json_escapes_and_what_it_does_not() {
        use std::io::Write;
        for (s, want) in [
            ("ok \\ \" / é", false),
            ("esc \x1b", true),
            ("nl \n", true),
            ("del \x7f", true),
            ("csi \u{9b}", true),
            ("nbsp \u{a0}", false),
        ] {
            let mut scan = Scanner::default();
            // Byte by byte: an escape split across writes is still seen.
            for b in serde_json::to_vec(s).unwrap() {
                scan.write_all(&[b]).unwrap();
            }
            assert_eq!(scan.found, want, "{s:?}");
        }
    }
}
