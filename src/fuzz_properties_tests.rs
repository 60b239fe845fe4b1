//! The fuzz properties ([`crate::fuzz`]) as ordinary tests, so CI's `cargo test` checks
//! them on every run: for each parser, its valid seeds, a deterministic pseudo-random
//! corpus (xorshift, inputs of 0..512 bytes, half of them runs of the parser's own
//! tokens) and mutations of the seeds (bit flips, truncations, splices, inserted tokens).
//! cargo-fuzz (`fuzz/`) explores the same properties further.

use crate::fuzz;

const RANDOM: usize = 3000;
const MUTATIONS: usize = 3000;
const MAX_LEN: usize = 512;

struct Rng(u64);

impl Rng {
    fn new(name: &str) -> Rng {
        // FNV-1a of the parser's name: each test has its own fixed stream.
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a [u8]]) -> &'a [u8] {
        from[self.below(from.len())]
    }
}

/// Random bytes, or a run of tokens with random bytes between them.
fn random_input(rng: &mut Rng, tokens: &[&[u8]]) -> Vec<u8> {
    let len = rng.below(MAX_LEN);
    let mut out = Vec::with_capacity(len);
    let tokenised = rng.below(2) == 0;
    while out.len() < len {
        if tokenised && rng.below(4) != 0 {
            out.extend_from_slice(rng.pick(tokens));
        } else {
            out.push(rng.next() as u8);
        }
    }
    out.truncate(len);
    out
}

/// A seed changed one to four times.
fn mutate(rng: &mut Rng, seeds: &[&[u8]], tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = rng.pick(seeds).to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.truncate(at),
            2 => {
                let other = rng.pick(seeds);
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            3 => {
                let token = rng.pick(tokens);
                out.splice(at..at, token.iter().copied());
            }
            4 => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            _ => {
                let i = rng.below(out.len() + 1);
                out.insert(i.min(out.len()), rng.next() as u8);
            }
        }
    }
    out.truncate(MAX_LEN);
    out
}

/// Runs `property` on the seeds, the random corpus and the mutations; on a violation,
/// names the input before failing. Some inputs beyond the seeds must be accepted, or the
/// corpus never reached past the parser's first check.
fn check(name: &str, property: fn(&[u8]) -> bool, seeds: &[&[u8]], tokens: &[&[u8]]) {
    let run = |input: &[u8]| match std::panic::catch_unwind(|| property(input)) {
        Ok(accepted) => accepted,
        Err(panic) => {
            eprintln!("{name}: property violated by {input:?}");
            std::panic::resume_unwind(panic)
        }
    };
    for seed in seeds {
        assert!(
            run(seed),
            "{name}: seed {:?} not accepted",
            String::from_utf8_lossy(seed)
        );
    }
    let mut rng = Rng::new(name);
    let mut accepted = 0;
    for _ in 0..RANDOM {
        accepted += usize::from(run(&random_input(&mut rng, tokens)));
    }
    for _ in 0..MUTATIONS {
        accepted += usize::from(run(&mutate(&mut rng, seeds, tokens)));
    }
    assert!(accepted > 0, "{name}: no generated input was accepted");
}

fn frame(cmd: u8, id: u32, data: &[u8]) -> Vec<u8> {
    let mut f = vec![1, cmd];
    f.extend_from_slice(&(data.len() as u16).to_le_bytes());
    f.extend_from_slice(&id.to_le_bytes());
    f.extend_from_slice(data);
    f
}

#[test]
fn smux_frames() {
    let syn = frame(0, 3, b"");
    let psh = frame(2, 3, b"hello");
    let all = [syn.clone(), psh.clone(), frame(1, 3, b""), frame(3, 0, b"")].concat();
    let seeds: &[&[u8]] = &[&syn, &psh, &all];
    let tokens: &[&[u8]] = &[&[1], &[0], &[2], &[3], &[0xff, 0xff], &[5, 0], &syn, &psh];
    check("smux", fuzz::smux, seeds, tokens);
}

#[test]
fn payload_json() {
    let seeds: &[&[u8]] = &[
        br#"{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22"}}}]}"#,
        br#"{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"arn:aws:kms:us-east-1:1:key/k"}},{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"Other"}]}"#,
        br#"{"AgentVersion":"1","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"InteractiveCommands"}}],"HandshakeTimeToComplete":5,"CustomerMessage":"hi","Challenge":"/wAB"}"#,
    ];
    let tokens: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"\"",
        b"null",
        b"1",
        b"-9e999",
        b"\\u0000",
        b"\"ActionType\"",
        b"\"SessionType\"",
        b"\"KMSEncryption\"",
        b"\"KMSKeyId\"",
        b"\"RequestedClientActions\"",
        b"\"ActionParameters\"",
        b"\"Challenge\"",
        b"\"AcknowledgedMessageSequenceNumber\"",
        b"\"Output\"",
        b"[[[[[[[[",
    ];
    check("payload", fuzz::payload, seeds, tokens);
}

#[test]
fn socks_requests() {
    let mut name = vec![5, 1, 0, 5, 1, 0, 3, 9];
    name.extend_from_slice(b"localhost\x1f\x90");
    let v4: &[u8] = &[5, 2, 0, 2, 5, 1, 0, 1, 10, 0, 0, 1, 0, 80];
    let mut v6 = vec![5, 1, 0, 5, 1, 0, 4];
    v6.extend_from_slice(&[0; 15]);
    v6.extend_from_slice(&[1, 0, 22]);
    let seeds: &[&[u8]] = &[&name, v4, &v6];
    let tokens: &[&[u8]] = &[&[5], &[0], &[1], &[3], &[4], &[0xff], b"host", &[0x1b]];
    check("socks", fuzz::socks, seeds, tokens);
}

#[test]
fn proxy_connect_answers() {
    let seeds: &[&[u8]] = &[
        b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n",
        b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n",
        b"HTTP/1.1 403\r\n\r\nafter",
    ];
    let tokens: &[&[u8]] = &[
        b"\r\n",
        b"\r\n\r\n",
        b"HTTP/",
        b"1.1 ",
        b"200",
        b" ",
        b"\xff",
    ];
    check("connect", fuzz::connect_answer, seeds, tokens);
}

#[test]
fn known_hosts_lines() {
    let plain = format!("i-0123456789abcdef0 ssh-ed25519 {}\n", fuzz::KEY_BLOB);
    let ported = format!(
        "# c\n[db-1]:2222,!x* ssh-rsa AAAAB3Nza\n[db-1]:2222 ssh-ed25519 {}\n",
        fuzz::KEY_BLOB
    );
    let revoked = format!("@revoked [db-*]:2222 ssh-ed25519 {}\n", fuzz::KEY_BLOB);
    // `ssh-keygen -H` of i-0123456789abcdef0, salt 0x00 * 20.
    let hashed = format!("|1|AAAAAAAAAAAAAAAAAAAAAAAAAAA=|{} ssh-rsa AAAA\n", HASHED);
    let seeds: &[&[u8]] = &[
        plain.as_bytes(),
        ported.as_bytes(),
        revoked.as_bytes(),
        hashed.as_bytes(),
    ];
    let tokens: &[&[u8]] = &[
        b" ",
        b"\n",
        b",",
        b"!",
        b"*",
        b"?",
        b"[",
        b"]:",
        b"|1|",
        b"|",
        b"@revoked ",
        b"@cert-authority ",
        b"ssh-ed25519 ",
        b"#",
        b"i-0123456789abcdef0",
        b"db-1",
    ];
    check("known_hosts", fuzz::known_hosts, seeds, tokens);
}

/// base64 HMAC-SHA1 of "i-0123456789abcdef0" keyed with 20 zero bytes.
const HASHED: &str = "la9tB+onIJD3DSqNEToQ7MmF8aE=";

#[test]
fn config_toml() {
    let full = format!(
        "profile = \"dev\"\nregion = \"eu-west-1\"\nendpoint_url = \"https://vpce-1.example.com\"\nproxy = \"http://u:{}@proxy.corp:3128\"\nparallel = 4\n\n[profiles.research]\nregion = \"us-east-2\"\n\n[alias]\njupyter = \"i-0123456789abcdef0\"\nnotebook = {{ tag = \"Name=j\", profile = \"research\" }}\ndb = {{ target = \"db-1\", region = \"eu-central-1\" }}\n",
        fuzz::SECRET
    );
    let proxy = format!(
        "proxy = \"https://al%40ice:{}@[::1]:8443/\"\n",
        fuzz::SECRET
    );
    let seeds: &[&[u8]] = &[
        full.as_bytes(),
        proxy.as_bytes(),
        b"user = \"ec2-user\"\n[profiles.\"a\\nb\"]\nregion = \"x\"\n[alias]\n\"c\\u001bd\" = \"e\"\n",
    ];
    let tokens: &[&[u8]] = &[
        b"=",
        b"\"",
        b"\n",
        b"[",
        b"]",
        b"{",
        b"}",
        b"'''",
        b"[profiles.",
        b"[alias]",
        b"proxy",
        b"http://",
        b"@",
        b":",
        b"%",
        b"%ff",
        b"endpoint_url",
        b"tag",
        b"target",
        b"\\n",
        b"\\u001b",
        b"\"\"",
        b"region = \"\"\n",
    ];
    check("config", fuzz::config, seeds, tokens);
}

#[test]
fn target_strings() {
    let seeds: &[&[u8]] = &[
        b"i-0123456789abcdef0",
        b"tag:Name=web-1",
        b"[fd00::1]",
        b"web-1.",
        b"ec2-user@db-1:/var/log ./logs",
        b"./a:b i-0123456789abcdef0:",
        b"8080:db:5432",
        b"[::1]:80:[fd00::1]:80",
    ];
    let tokens: &[&[u8]] = &[
        b":", b"@", b"/", b"[", b"]", b"tag:", b"=", b"i-", b"mi-", b".", b"*", b"?", b" ",
        b"$(x)", b"\x1b", b"8080", b"::1",
    ];
    check("target", fuzz::target, seeds, tokens);
}

#[test]
fn aws_answers() {
    let seeds: &[&[u8]] = &[
        br#"{"schemaVersion":"1.0","inputs":{"kmsKeyId":"alias/ssm"},"parameters":{"separateOutputStream":{"type":"String"}}}"#,
        b"arn:aws:ec2:us-east-1:123456789012:instance/i-0abc",
        b"User: arn:aws:iam::1:user/u is not authorized to perform: ssm:StartSession on resource: arn:aws:ec2:us-east-1:1:instance/i-0abc because",
    ];
    let tokens: &[&[u8]] = &[
        b"{",
        b"}",
        b"\"",
        b":",
        b",",
        b"\"inputs\"",
        b"\"kmsKeyId\"",
        b"\"parameters\"",
        b"arn:",
        b":instance/",
        b"i-",
        b"not authorized to perform: ",
        b" on resource: ",
    ];
    check("aws", fuzz::aws_answers, seeds, tokens);
}
