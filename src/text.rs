//! Remote text shown as text. Names, tags, paths and messages that come from an instance,
//! from AWS or from a network peer reach a terminal only through [`shown`]: a terminal
//! acts on control characters (an escape sequence can retitle the window, rewrite what
//! was printed above, or answer back on some terminals), and bidirectional overrides
//! make text read in another order than its bytes. Everything a terminal could act on
//! is written as an escape instead, and the length is bounded.

use std::borrow::Cow;

/// The most characters [`shown`] prints of one string (then `…`): a long remote path
/// fits, a name of a megabyte does not flood the screen.
pub const MAX_SHOWN: usize = 4096;

/// `s` safe to print: C0 controls (ESC included), DEL, C1 controls (U+0080..U+009F,
/// CSI among them), bidirectional marks and overrides, and the Unicode line and
/// paragraph separators are written as `\n`, `\t`, `\r`, `\x1b` or `\u{202e}`;
/// everything else, other scripts included, is kept. At most [`MAX_SHOWN`] characters.
pub fn shown(s: &str) -> Cow<'_, str> {
    shown_max(s, MAX_SHOWN)
}

/// [`shown`] with room for `max` characters of output (then `…`).
pub fn shown_max(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max && !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max * 4) + 3);
    let mut count = 0;
    let mut piece = String::new();
    for c in s.chars() {
        piece.clear();
        escape_into(c, &mut piece);
        let n = piece.chars().count();
        if count + n > max {
            out.push('…');
            return Cow::Owned(out);
        }
        out.push_str(&piece);
        count += n;
    }
    Cow::Owned(out)
}

/// Whether a terminal could act on `c`, or show it out of order.
pub fn needs_escape(c: char) -> bool {
    c.is_control() // C0, DEL and C1: general category Cc
        || matches!(
            c,
            '\u{061c}'                  // ARABIC LETTER MARK
            | '\u{200e}' | '\u{200f}'   // LRM, RLM
            | '\u{202a}'..='\u{202e}'   // LRE, RLE, PDF, LRO, RLO
            | '\u{2066}'..='\u{2069}'   // LRI, RLI, FSI, PDI
            | '\u{2028}' | '\u{2029}'   // LINE and PARAGRAPH SEPARATOR
        )
}

fn escape_into(c: char, out: &mut String) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if (c as u32) < 0x80 && needs_escape(c) => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// JSON text (as `serde_json` writes it) with the characters [`needs_escape`] names and
/// JSON leaves raw (C1 controls, bidirectional marks) written as `\uXXXX`: the same
/// JSON value, safe on a terminal. Such characters can only occur inside strings, where
/// `\uXXXX` means them.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    if !json.chars().any(needs_escape) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // Outside strings serde_json writes only spaces and newlines, which stay.
        if needs_escape(c) && !matches!(c, '\n' | ' ') {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No character a terminal acts on, and no byte of one: C0, DEL, a C1 control
    /// (U+0080..U+009F, in UTF-8 `0xc2 0x80..0x9f`), a bidi override.
    fn assert_inert(out: &str, input: &str) {
        for c in out.chars() {
            assert!(!needs_escape(c), "{c:?} left in {out:?} (from {input:?})");
        }
        let bytes = out.as_bytes();
        assert!(
            !bytes.iter().any(|&b| b < 0x20 || b == 0x7f),
            "{out:?} (from {input:?})"
        );
        assert!(
            !bytes
                .windows(2)
                .any(|w| w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1])),
            "{out:?} (from {input:?})"
        );
    }

    #[test]
    fn escape_sequences_become_visible_text() {
        assert_eq!(shown("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(shown("a\nb\tc\rd\x7f"), "a\\nb\\tc\\rd\\x7f");
        assert_eq!(shown("\u{9b}31m"), "\\u{9b}31m", "8-bit CSI");
        assert_eq!(shown("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(shown("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(shown("\0"), "\\x00");
    }

    #[test]
    fn plain_text_and_other_scripts_pass_unchanged() {
        for s in [
            "web-1",
            "ip-172-31-1-7.ec2.internal",
            "Überwachung",
            "数据库",
            "a b\\c",
            "",
        ] {
            assert!(matches!(shown(s), Cow::Borrowed(_)), "{s:?}");
            assert_eq!(shown(s), s);
        }
    }

    #[test]
    fn length_is_bounded() {
        let long = "x".repeat(MAX_SHOWN + 10);
        let out = shown(&long);
        assert_eq!(out.chars().count(), MAX_SHOWN + 1);
        assert!(out.ends_with('…'));
        // Escapes count: a string of ESCs stays within the bound too.
        let escs = "\x1b".repeat(100);
        let out = shown_max(&escs, 10);
        assert_eq!(out, "\\x1b\\x1b…");
        assert_eq!(shown_max("abc", 3), "abc");
        assert_eq!(shown_max("abcd", 3), "abc…");
    }

    #[test]
    fn any_input_comes_out_inert() {
        // Every character up to U+3000 and the specials beyond, alone and in company.
        let mut all: Vec<char> = (0u32..0x3000).filter_map(char::from_u32).collect();
        all.extend(['\u{feff}', '\u{fffd}', '\u{10ffff}', '\u{1f600}']);
        for &c in &all {
            let s = format!("a{c}b");
            assert_inert(&shown(&s), &s);
        }
        // Pseudo-random strings (xorshift, so a failure reproduces), weighted to the edges.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut s = String::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pick = match x % 4 {
                    0 => (x >> 8) as u32 % 0x20,
                    1 => 0x7f + (x >> 8) as u32 % 0x22,
                    2 => 0x2000 + (x >> 8) as u32 % 0x70,
                    _ => (x >> 8) as u32 % 0x11_0000,
                };
                s.extend(char::from_u32(pick));
            }
            assert_inert(&shown(&s), &s);
            assert!(shown_max(&s, 16).chars().count() <= 17);
            let json = serde_json::to_string(&s).unwrap();
            let safe = json_safe(&json);
            assert_inert(&safe, &s);
            let back: String = serde_json::from_str(&safe).unwrap();
            assert_eq!(back, s, "json_safe keeps the value");
        }
    }
    #[test]
    fn sftp_status_messages_and_paths_are_shown_as_text() {
        use crate::ssh::transfer::{Problem, sftp_problem};
        use russh_sftp::client::error::Error as SftpError;
        use russh_sftp::protocol::{Status, StatusCode};
        let lie = SftpError::Status(Status {
            id: 1,
            status_code: StatusCode::Failure,
            error_message: format!("\x1b[2J\x1b]0;pwned\x07{}", "x".repeat(10_000)),
            language_tag: String::new(),
        });
        let Problem::Item(f) = sftp_problem("/d/\u{9b}31mname", &lie) else {
            panic!("a status concerns the file");
        };
        let f = crate::error::Failure::from(f);
        assert_inert(&f.message, "status");
        assert!(
            f.message
                .starts_with("/d/\\u{9b}31mname: \\x1b[2J\\x1b]0;pwned\\x07")
        );
        assert!(
            f.message.chars().count() < 700,
            "bounded: {}",
            f.message.len()
        );
    }
}
