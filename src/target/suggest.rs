//! "Did you mean …?": the closest candidates by edit distance.

/// Up to `n` candidates closest to `query` (case-insensitive Levenshtein distance at most a
/// third of the query's length, at least 2; a candidate containing the query also counts),
/// best first, each with its kind.
pub fn closest<'a>(
    query: &str,
    candidates: &'a [(String, &'a str)],
    n: usize,
) -> Vec<(&'a str, &'a str)> {
    let q = query.to_lowercase();
    let limit = (q.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str, &str)> = candidates
        .iter()
        .filter_map(|(c, kind)| {
            let lc = c.to_lowercase();
            let d = distance(&q, &lc);
            let contains = q.len() >= 3 && lc.contains(&q);
            (d <= limit || contains).then_some((d.min(limit), c.as_str(), *kind))
        })
        .collect();
    scored.sort();
    let mut out: Vec<(&str, &str)> = Vec::new();
    for (_, c, kind) in scored {
        if !out.iter().any(|(seen, _)| seen.eq_ignore_ascii_case(c)) {
            out.push((c, kind));
        }
        if out.len() == n {
            break;
        }
    }
    out
}

/// Levenshtein distance over chars, two rows of memory.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("web-1", "web-1"), 0);
        assert_eq!(distance("jupiter", "jupyter"), 1);
    }

    #[test]
    fn suggests_close_names_best_first() {
        let c = |s: &str, k: &'static str| (s.to_owned(), k);
        let cands = vec![
            c("jupyter", "alias"),
            c("web-1", "host name"),
            c("web-12", "host name"),
            c("database", "host name"),
            c("WEB-1", "host name"),
        ];
        assert_eq!(closest("jupiter", &cands, 3), [("jupyter", "alias")]);
        assert_eq!(
            closest("web-2", &cands, 3),
            [("WEB-1", "host name"), ("web-12", "host name")],
            "one of each spelling"
        );
        assert!(closest("zzzzzz", &cands, 3).is_empty());
    }
}
