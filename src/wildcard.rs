//! The one wildcard matcher: `*` (any run of characters) and `?` (one character), as
//! `sallyport ls` filters names and known_hosts patterns name hosts; with
//! [`Syntax::SHELL`] also the shell's `[…]` classes and `\` quoting, as scp and sftp
//! expand source patterns. Iterative with one backtrack point (the last `*`), so any
//! input takes at most pattern × text steps and cannot blow the stack.

/// What a pattern may hold beyond `*` and `?`, and how characters compare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Syntax {
    /// ASCII letters match either case (pattern and text are folded to lower case).
    pub ignore_case: bool,
    /// `[…]` classes (`!` or `^` negates, `a-z` ranges, `]` first is literal) and `\`
    /// quoting the next character; without it `[` and `\` are plain characters.
    pub shell: bool,
}

impl Syntax {
    /// `*` and `?` only, case-sensitive.
    pub const PLAIN: Syntax = Syntax {
        ignore_case: false,
        shell: false,
    };
    /// `*` and `?` only, ASCII case ignored.
    pub const IGNORE_CASE: Syntax = Syntax {
        ignore_case: true,
        shell: false,
    };
    /// The shell's patterns (classes and quoting), case-sensitive.
    pub const SHELL: Syntax = Syntax {
        ignore_case: false,
        shell: true,
    };
}

/// Whether all of `text` matches `pattern`. A pattern without wildcards is plain
/// equality (under the case rule).
pub fn matches(pattern: &str, text: &str, syntax: Syntax) -> bool {
    let fold = |c: char| {
        if syntax.ignore_case {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    let p: Vec<char> = pattern.chars().map(fold).collect();
    let t: Vec<char> = text.chars().map(fold).collect();
    let (mut pi, mut ti) = (0, 0);
    // Where to resume after the last '*': (pattern index after it, text index it took).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if p.get(pi) == Some(&'*') {
            star = Some((pi + 1, ti));
            pi += 1;
            continue;
        }
        match step(&p[pi..], t[ti], syntax.shell) {
            Some(len) => {
                pi += len;
                ti += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    pi = sp;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// How many pattern characters the start of `p` takes to match `c` (not a `*`), or
/// `None` if it does not match.
fn step(p: &[char], c: char, shell: bool) -> Option<usize> {
    match p.first()? {
        '?' => Some(1),
        '[' if shell => match match_class(p, c) {
            Some((true, len)) => Some(len),
            Some((false, _)) => None,
            // An unclosed '[' is a literal.
            None => (c == '[').then_some(1),
        },
        '\\' if shell && p.len() > 1 => (p[1] == c).then_some(2),
        &l => (l == c).then_some(1),
    }
}

/// Matches `c` against the class at the start of `p` (`[…]`); returns whether it matched
/// and the class's length, or `None` if the class is not closed.
fn match_class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&h| h != ']') {
            hi = p[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *p.get(i)?;
                i += 1;
            }
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Syntax, matches};

    #[test]
    fn stars_and_question_marks() {
        let m = |p: &str, t: &str| matches(p, t, Syntax::PLAIN);
        assert!(m("web-*", "web-12"));
        assert!(m("*", ""));
        assert!(m("w?b-*2", "web-12"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("api", "api") && !m("api", "api2"));
        assert!(!m("web-?", "web-"));
        assert!(m("i-0?bc", "i-0abc"));
        assert!(!m("i-0?bc", "i-0abbc"));
        assert!(m("*日本*", "é 日本.txt"));
        // A star stays a wildcard where the text holds a star too.
        assert!(m("a*", "a*b"));
    }

    #[test]
    fn case_is_a_choice() {
        assert!(!matches("WEB-*", "web-1", Syntax::PLAIN));
        assert!(matches("WEB-*", "web-1", Syntax::IGNORE_CASE));
        assert!(matches("web-?", "WEB-1", Syntax::IGNORE_CASE));
    }

    #[test]
    fn classes_and_quoting_only_in_shell_patterns() {
        assert!(matches("[a-c]x", "bx", Syntax::SHELL));
        assert!(!matches("[!a-c]x", "bx", Syntax::SHELL));
        assert!(matches("[]]", "]", Syntax::SHELL));
        assert!(matches("a\\*", "a*", Syntax::SHELL));
        assert!(!matches("a\\*", "ab", Syntax::SHELL));
        assert!(matches("[", "[", Syntax::SHELL));
        // Plain patterns take them literally.
        assert!(matches("[a-c]x", "[a-c]x", Syntax::PLAIN));
        assert!(!matches("[a-c]x", "bx", Syntax::PLAIN));
        assert!(matches("a\\b", "a\\b", Syntax::PLAIN));
    }

    #[test]
    fn long_hostile_patterns_end_quickly() {
        let text = "a".repeat(4000);
        let pattern = format!("{}b", "*a".repeat(2000));
        assert!(!matches(&pattern, &text, Syntax::PLAIN));
    }
}
