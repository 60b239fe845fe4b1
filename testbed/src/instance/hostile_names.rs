//! The hostile instance's namespace: which paths exist, what they claim, what they hold,
//! and the names and texts it lies with. Pure functions of the path and the lies.

use russh_sftp::protocol::{FileAttributes, FileMode};

use crate::world::hostile_ssh::HostileSsh;

/// The directory whose listing carries the lies (`scp -r host:/d …`).
pub const LISTED_DIR: &str = "/d";
/// An honest regular file (`scp host:/f …`), [`HONEST_LEN`] bytes.
pub const FILE: &str = "/f";
/// An honest file of [`BIG_LEN`] bytes: big enough that `scp -j 4` opens several sessions.
pub const BIG_FILE: &str = "/big";
pub const BIG_LEN: u64 = 16 * 1024 * 1024;
/// An honest directory that takes uploads (`scp … host:/up/`).
pub const UPLOAD_DIR: &str = "/up";
/// The length of every honest file.
pub const HONEST_LEN: u64 = 64 * 1024;
/// What a file claims under `short-read`, and where its data really ends.
pub const SHORT_CLAIM: u64 = 1024 * 1024;
pub const SHORT_EOF: u64 = 300_000;
/// The most bytes one READ answers under `short-read`.
pub const SHORT_READ_MAX: u32 = 1000;
/// The most bytes one READ answers otherwise (OpenSSH's sftp-server reads 256 KiB at most;
/// a smaller answer is legal and exercises the client's loop).
pub const READ_MAX: u32 = 32 * 1024;
/// Names per READDIR answer under `endless-listing`.
pub const ENDLESS_BATCH: usize = 256;
/// What every path read under `evil-names` holds, apart from the honest files.
pub const EVIL_CONTENT: &[u8] = b"planted by a hostile instance\n";
/// The absolute path `evil-names` lists; a client that writes it has been steered
/// outside its destination.
pub const ABSOLUTE_NAME: &str = "/tmp/sallyport-hostile-absolute";

/// Names a listing under `evil-names` holds besides `ok.txt`. A client must write none of
/// them outside its destination and print none of them raw.
pub const EVIL_NAMES: &[&str] = &[
    ".",
    "..",
    "../hostile-up",
    "../../hostile-up",
    "../../../hostile-up",
    "../hostile-sibling/planted",
    "../../hostile-sibling/planted",
    ABSOLUTE_NAME,
    "a/b",
    "nul\0byte",
    "new\nline",
    "\x1b]0;owned\x07\x1b[2J\x1b[31mescape",
    "bell\x07\x08\x08\x08\x08",
];

/// The message of every status a `lying-status` instance sends: a title change, a screen
/// clear, colours and a forged line of the client's own.
pub const EVIL_STATUS: &str = "\x1b]0;owned\x07\x1b[2J\x1b[31mPermission denied\x1b[0m\r\n\
                               sallyport: all files copied\n";

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    /// A regular file: what it claims (`size`) and where its data really ends.
    File {
        claim: u64,
        len: u64,
    },
    /// A symlink (`lstat`); `stat` follows it to a directory.
    LoopLink,
}

/// The lies an instance tells, as flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lies {
    pub evil_names: bool,
    pub huge_size: bool,
    pub endless_listing: bool,
    pub short_read: bool,
    pub lying_status: bool,
    pub symlink_loop: bool,
    pub new_host_key: bool,
    pub mute: bool,
}

impl Lies {
    pub fn new(behaviours: &[HostileSsh]) -> Lies {
        let mut l = Lies::default();
        for b in behaviours {
            match b {
                HostileSsh::EvilNames => l.evil_names = true,
                HostileSsh::HugeSize => l.huge_size = true,
                HostileSsh::EndlessListing => l.endless_listing = true,
                HostileSsh::ShortRead => l.short_read = true,
                HostileSsh::LyingStatus => l.lying_status = true,
                HostileSsh::SymlinkLoop => l.symlink_loop = true,
                HostileSsh::NewHostKey => l.new_host_key = true,
                HostileSsh::Mute => l.mute = true,
            }
        }
        l
    }

    /// A regular file whose data really is `len` bytes, with the size these lies claim.
    pub fn file(&self, len: u64) -> Node {
        if self.huge_size {
            Node::File {
                claim: u64::MAX,
                len: len.min(HONEST_LEN),
            }
        } else if self.short_read {
            Node::File {
                claim: SHORT_CLAIM,
                len: SHORT_EOF,
            }
        } else {
            Node::File { claim: len, len }
        }
    }

    /// Whether `path` is (under `symlink-loop`) the looping link: its last name is `loop`.
    pub fn is_loop(&self, path: &str) -> bool {
        self.symlink_loop && path.trim_end_matches('/').rsplit('/').next() == Some("loop")
    }

    /// The names (and nodes) a directory lists besides `.` and `..`, for one answer.
    /// `batch` counts the answers already given for this handle (for `endless-listing`).
    pub fn listing(&self, dir: &str, batch: u64) -> Vec<(String, Node)> {
        if self.endless_listing {
            let first = batch * ENDLESS_BATCH as u64;
            return (first..first + ENDLESS_BATCH as u64)
                .map(|n| (format!("endless-{n:012}"), self.file(10)))
                .collect();
        }
        let mut out = vec![("ok.txt".to_owned(), self.file(HONEST_LEN))];
        if self.evil_names && dir.trim_end_matches('/') == LISTED_DIR {
            let len = EVIL_CONTENT.len() as u64;
            out.extend(EVIL_NAMES.iter().map(|n| (n.to_string(), self.file(len))));
        }
        if self.symlink_loop {
            out.push(("loop".to_owned(), Node::LoopLink));
        }
        out
    }
}

/// The attributes a node shows. `follow`: a symlink shows its target (stat), else
/// itself (lstat, directory entries).
pub fn attrs(node: Node, follow: bool) -> FileAttributes {
    let (size, mode) = match node {
        Node::Dir => (4096, FileMode::DIR.bits() | 0o755),
        Node::File { claim, .. } => (claim, FileMode::REG.bits() | 0o644),
        Node::LoopLink if follow => (4096, FileMode::DIR.bits() | 0o755),
        Node::LoopLink => (4, FileMode::LNK.bits() | 0o777),
    };
    FileAttributes {
        size: Some(size),
        uid: Some(0),
        gid: Some(0),
        permissions: Some(mode),
        atime: Some(1_500_000_000),
        mtime: Some(1_500_000_000),
        ..FileAttributes::default()
    }
}

/// `n` bytes of file data from `offset`: a fixed pattern, so a test can check what came.
pub fn content(offset: u64, n: usize) -> Vec<u8> {
    (0..n as u64).map(|i| ((offset + i) % 251) as u8).collect()
}

/// `path` without `.`, `..` and repeated slashes, absolute (relative paths start at `/`).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_stays_under_the_root() {
        assert_eq!(normalize("/d/../../x//y/."), "/x/y");
        assert_eq!(normalize("."), "/");
        assert_eq!(normalize(""), "/");
        assert_eq!(normalize("up/a"), "/up/a");
    }

    #[test]
    fn lies_shape_sizes_and_listings() {
        let honest = Lies::default();
        assert_eq!(honest.file(7), Node::File { claim: 7, len: 7 });
        assert_eq!(honest.listing(LISTED_DIR, 0).len(), 1);
        let huge = Lies::new(&[HostileSsh::HugeSize]);
        assert_eq!(
            huge.file(HONEST_LEN),
            Node::File {
                claim: u64::MAX,
                len: HONEST_LEN
            }
        );
        let endless = Lies::new(&[HostileSsh::EndlessListing]);
        let (a, b) = (endless.listing("/d", 0), endless.listing("/d", 1));
        assert_eq!(a.len(), ENDLESS_BATCH);
        assert_ne!(a[0].0, b[0].0, "every batch brings new names");
        let evil = Lies::new(&[HostileSsh::EvilNames]);
        assert_eq!(evil.listing(LISTED_DIR, 0).len(), 1 + EVIL_NAMES.len());
        assert_eq!(evil.listing(UPLOAD_DIR, 0).len(), 1);
        let looping = Lies::new(&[HostileSsh::SymlinkLoop]);
        assert!(looping.is_loop("/d/loop/loop") && !looping.is_loop("/d/loopy"));
        assert!(attrs(Node::LoopLink, false).file_type().is_symlink());
        assert!(attrs(Node::LoopLink, true).is_dir());
        assert_eq!(content(250, 3), vec![250, 0, 1]);
    }
}
