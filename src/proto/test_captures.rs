//! Loads the frames recorded between AWS's own plugin and agent (tests/data/captures).

use serde::Deserialize;

#[derive(Deserialize)]
struct Line {
    t: f64,
    dir: String,
    hex: String,
}

/// One recorded websocket frame.
pub struct Frame {
    /// Relay receive time, seconds since the Unix epoch.
    pub t: f64,
    /// True for agent -> client.
    pub from_agent: bool,
    pub bytes: Vec<u8>,
}

pub const FILES: [&str; 2] = [
    "official-ssh-echo.jsonl",
    "official-scp-256k-download.jsonl",
];

pub fn load(name: &str) -> Vec<Frame> {
    let path = format!("{}/tests/data/captures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let line: Line = serde_json::from_str(l).expect("capture line is JSON");
            Frame {
                t: line.t,
                from_agent: line.dir == "agent->client",
                bytes: hex(&line.hex),
            }
        })
        .collect()
}

pub fn all() -> Vec<(&'static str, Vec<Frame>)> {
    FILES.iter().map(|n| (*n, load(n))).collect()
}

/// Bytes from hex text; whitespace and other separators are skipped.
pub fn hex(s: &str) -> Vec<u8> {
    let clean: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    clean
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}
