//! The hostile instance's SFTP subsystem (russh-sftp's server traits) over the namespace of
//! [`super::names`]. Every answer is built for one request; nothing a client sends is kept
//! beyond a bounded table of open handles and of files and directories it made.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;

use super::names::{
    BIG_FILE, BIG_LEN, EVIL_CONTENT, FILE, HONEST_LEN, LISTED_DIR, Lies, Node, READ_MAX,
    SHORT_READ_MAX, UPLOAD_DIR, attrs, content, normalize,
};

/// Open handles per connection; more are refused (OpenSSH's sftp-server allows 512).
const MAX_HANDLES: usize = 256;
/// Files and directories a client may create per connection (names and sizes only).
const MAX_CREATED: usize = 1024;

enum Open {
    Read { node: Node },
    Write { path: String, len: u64 },
    Dir { path: String, batches: u64 },
}

/// One SFTP session on the hostile instance.
pub struct Sftp {
    lies: Lies,
    handles: HashMap<String, Open>,
    next_handle: u64,
    /// Uploaded files: path → length (kept under `MAX_CREATED` entries).
    files: BTreeMap<String, u64>,
    dirs: BTreeSet<String>,
}

impl Sftp {
    pub fn new(lies: Lies) -> Sftp {
        Sftp {
            lies,
            handles: HashMap::new(),
            next_handle: 0,
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
        }
    }

    /// A failure status, its message a lie when `lying-status` is on.
    fn fail(&self, code: StatusCode) -> StatusReply {
        if self.lies.lying_status {
            code.with_message(super::names::EVIL_STATUS)
        } else {
            StatusReply::new(code)
        }
    }

    /// What `path` is, without following the loop link.
    fn node(&self, path: &str) -> Option<Node> {
        if self.lies.is_loop(path) {
            return Some(Node::LoopLink);
        }
        let p = normalize(path);
        if ["/", LISTED_DIR, UPLOAD_DIR].contains(&p.as_str()) || self.dirs.contains(&p) {
            return Some(Node::Dir);
        }
        if p == FILE || p == format!("{LISTED_DIR}/ok.txt") {
            return Some(self.lies.file(HONEST_LEN));
        }
        if p == BIG_FILE {
            return Some(self.lies.file(BIG_LEN));
        }
        if let Some(&len) = self.files.get(&p) {
            return Some(self.lies.file(len));
        }
        if self.lies.endless_listing && p.starts_with(&format!("{LISTED_DIR}/endless-")) {
            return Some(self.lies.file(10));
        }
        if self.lies.symlink_loop && p.ends_with("/x") && path.contains("/loop/") {
            return Some(self.lies.file(HONEST_LEN));
        }
        // Whatever a hostile listing named (`../x`, an absolute path, …) reads as a file.
        if self.lies.evil_names {
            return Some(self.lies.file(EVIL_CONTENT.len() as u64));
        }
        None
    }

    fn stat_of(&self, id: u32, path: &str, follow: bool) -> Result<Attrs, StatusReply> {
        match self.node(path) {
            Some(node) => Ok(Attrs {
                id,
                attrs: attrs(node, follow),
            }),
            None => Err(self.fail(StatusCode::NoSuchFile)),
        }
    }

    fn new_handle(&mut self, id: u32, open: Open) -> Result<Handle, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(self.fail(StatusCode::Failure));
        }
        self.next_handle += 1;
        let handle = format!("h{}", self.next_handle);
        self.handles.insert(handle.clone(), open);
        Ok(Handle { id, handle })
    }

    fn ok(id: u32) -> Status {
        Status {
            id,
            status_code: StatusCode::Ok,
            error_message: "Success".to_owned(),
            language_tag: "en-US".to_owned(),
        }
    }

    fn rename_file(&mut self, from: &str, to: &str) -> Result<(), StatusReply> {
        let (from, to) = (normalize(from), normalize(to));
        match self.files.remove(&from) {
            Some(len) => {
                self.files.insert(to, len);
                Ok(())
            }
            None => Err(self.fail(StatusCode::NoSuchFile)),
        }
    }

    /// One READDIR answer for the directory `path`, `batches` answers in.
    fn entries(&self, path: &str, batches: u64) -> Vec<File> {
        let mut out = Vec::new();
        if batches == 0 {
            for dot in [".", ".."] {
                out.push(File::new(dot, attrs(Node::Dir, false)));
            }
        }
        let listing = self.lies.listing(path, batches);
        out.extend(
            listing
                .into_iter()
                .map(|(name, node)| File::new(name, attrs(node, false))),
        );
        if batches == 0 && normalize(path) == UPLOAD_DIR {
            let prefix = format!("{UPLOAD_DIR}/");
            for (p, &len) in &self.files {
                if let Some(name) = p.strip_prefix(&prefix).filter(|n| !n.contains('/')) {
                    out.push(File::new(name, attrs(self.lies.file(len), false)));
                }
            }
        }
        out
    }
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        self.fail(StatusCode::OpUnsupported)
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        let mut v = Version::new();
        v.extensions
            .insert("posix-rename@openssh.com".to_owned(), "1".to_owned());
        Ok(v)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        if pflags.contains(OpenFlags::WRITE) {
            let exists = self.files.contains_key(&normalize(&filename));
            if !exists && self.files.len() >= MAX_CREATED {
                return Err(self.fail(StatusCode::Failure));
            }
            let open = Open::Write {
                path: normalize(&filename),
                len: 0,
            };
            return self.new_handle(id, open);
        }
        match self.node(&filename) {
            Some(node @ Node::File { .. }) => self.new_handle(id, Open::Read { node }),
            Some(_) => Err(self.fail(StatusCode::Failure)),
            None => Err(self.fail(StatusCode::NoSuchFile)),
        }
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(Open::Write { .. }) if self.lies.lying_status => {
                Err(self.fail(StatusCode::Failure))
            }
            Some(Open::Write { path, len }) => {
                if self.files.len() < MAX_CREATED || self.files.contains_key(&path) {
                    self.files.insert(path, len);
                }
                Ok(Self::ok(id))
            }
            Some(_) => Ok(Self::ok(id)),
            None => Err(self.fail(StatusCode::Failure)),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let Some(Open::Read { node }) = self.handles.get(&handle) else {
            return Err(self.fail(StatusCode::Failure));
        };
        let Node::File { len: real, .. } = *node else {
            return Err(self.fail(StatusCode::Failure));
        };
        if offset >= real {
            return Err(StatusCode::Eof.into());
        }
        let cap = if self.lies.short_read {
            SHORT_READ_MAX
        } else {
            READ_MAX
        };
        let n = (len.min(cap) as u64).min(real - offset) as usize;
        let data = if real == EVIL_CONTENT.len() as u64 && self.lies.evil_names {
            EVIL_CONTENT[offset as usize..offset as usize + n].to_vec()
        } else {
            content(offset, n)
        };
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let lying = self.lies.lying_status;
        match self.handles.get_mut(&handle) {
            // The lie: OK, though nothing is kept.
            Some(Open::Write { .. }) if lying => Ok(Self::ok(id)),
            Some(Open::Write { len, .. }) => {
                *len = (*len).max(offset.saturating_add(data.len() as u64));
                Ok(Self::ok(id))
            }
            _ => Err(self.fail(StatusCode::Failure)),
        }
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat_of(id, &path, false)
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat_of(id, &path, true)
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let attrs = match self.handles.get(&handle) {
            Some(Open::Read { node }) => attrs(*node, true),
            Some(Open::Write { len, .. }) => attrs(self.lies.file(*len), true),
            Some(Open::Dir { .. }) => attrs(Node::Dir, true),
            None => return Err(self.fail(StatusCode::Failure)),
        };
        Ok(Attrs { id, attrs })
    }

    async fn setstat(
        &mut self,
        id: u32,
        _path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Ok(Self::ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        _handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Ok(Self::ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        match self.node(&path) {
            Some(Node::Dir | Node::LoopLink) => {
                let open = Open::Dir { path, batches: 0 };
                self.new_handle(id, open)
            }
            Some(_) => Err(self.fail(StatusCode::Failure)),
            None => Err(self.fail(StatusCode::NoSuchFile)),
        }
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let endless = self.lies.endless_listing;
        let (path, batch) = match self.handles.get_mut(&handle) {
            Some(Open::Dir { batches, .. }) if *batches > 0 && !endless => {
                return Err(StatusCode::Eof.into());
            }
            Some(Open::Dir { path, batches }) => {
                *batches += 1;
                (path.clone(), *batches - 1)
            }
            _ => return Err(self.fail(StatusCode::Failure)),
        };
        Ok(Name {
            id,
            files: self.entries(&path, batch),
        })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        self.files.remove(&normalize(&filename));
        Ok(Self::ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        if self.node(&path).is_some() && !self.lies.evil_names {
            return Err(self.fail(StatusCode::Failure));
        }
        if self.dirs.len() >= MAX_CREATED {
            return Err(self.fail(StatusCode::Failure));
        }
        self.dirs.insert(normalize(&path));
        Ok(Self::ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        self.dirs.remove(&normalize(&path));
        Ok(Self::ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        // The loop's lie: the path as asked, so `…/loop/loop` never matches an ancestor.
        let real = if self.lies.symlink_loop && path.starts_with('/') && path.contains("/loop") {
            path.trim_end_matches('/').to_owned()
        } else {
            normalize(&path)
        };
        Ok(Name {
            id,
            files: vec![File::dummy(real)],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        self.rename_file(&oldpath, &newpath)?;
        Ok(Self::ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        match self.node(&path) {
            Some(Node::LoopLink) => Ok(Name {
                id,
                files: vec![File::dummy(".")],
            }),
            _ => Err(self.fail(StatusCode::Failure)),
        }
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        if request != "posix-rename@openssh.com" {
            return Err(self.fail(StatusCode::OpUnsupported));
        }
        let mut rest = data.as_slice();
        let mut take = || -> Option<String> {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_be_bytes(*len) as usize;
            let (s, tail) = (tail.get(..len)?, tail.get(len..)?);
            rest = tail;
            String::from_utf8(s.to_vec()).ok()
        };
        let (Some(from), Some(to)) = (take(), take()) else {
            return Err(self.fail(StatusCode::BadMessage));
        };
        self.rename_file(&from, &to)?;
        Ok(Packet::Status(Self::ok(id)))
    }
}

#[cfg(test)]
mod tests {
    use russh_sftp::server::Handler as _;

    use super::*;
    use crate::world::hostile_ssh::HostileSsh;

    #[tokio::test]
    async fn an_endless_listing_never_says_eof_and_an_honest_one_does() {
        let mut sftp = Sftp::new(Lies::new(&[HostileSsh::EndlessListing]));
        let handle = sftp.opendir(1, "/d".to_owned()).await.unwrap().handle;
        let mut seen = std::collections::HashSet::new();
        for id in 0..200 {
            let name = sftp.readdir(id, handle.clone()).await.unwrap();
            assert!(!name.files.is_empty());
            for f in name.files {
                assert!(seen.insert(f.filename), "a name repeated");
            }
        }
        assert!(seen.len() > 200 * 256);
        let mut honest = Sftp::new(Lies::default());
        let handle = honest.opendir(1, "/d".to_owned()).await.unwrap().handle;
        assert!(honest.readdir(2, handle.clone()).await.is_ok());
        let eof = honest.readdir(3, handle).await.unwrap_err();
        assert_eq!(eof.status_code, StatusCode::Eof);
    }

    #[tokio::test]
    async fn short_reads_end_early_and_lying_status_drops_writes() {
        let mut sftp = Sftp::new(Lies::new(&[HostileSsh::ShortRead]));
        let h = (sftp.open(
            1,
            FILE.to_owned(),
            OpenFlags::READ,
            FileAttributes::default(),
        ))
        .await
        .unwrap()
        .handle;
        let data = sftp.read(2, h.clone(), 0, 65536).await.unwrap().data;
        assert_eq!(data.len(), SHORT_READ_MAX as usize);
        let eof = sftp
            .read(3, h, crate::instance::hostile::names::SHORT_EOF, 10)
            .await;
        assert_eq!(eof.unwrap_err().status_code, StatusCode::Eof);

        let mut sftp = Sftp::new(Lies::new(&[HostileSsh::LyingStatus]));
        let flags = OpenFlags::WRITE | OpenFlags::CREATE;
        let h = (sftp.open(1, "/up/x".to_owned(), flags, FileAttributes::default()))
            .await
            .unwrap()
            .handle;
        let ok = sftp.write(2, h.clone(), 0, vec![1; 100]).await.unwrap();
        assert_eq!(ok.status_code, StatusCode::Ok);
        let closed = sftp.close(3, h).await.unwrap_err();
        assert!(closed.error_message.unwrap().contains('\x1b'));
        assert!(
            sftp.stat(4, "/up/x".to_owned()).await.is_err(),
            "nothing kept"
        );
    }

    #[tokio::test]
    async fn handles_are_bounded() {
        let mut sftp = Sftp::new(Lies::default());
        for id in 0..MAX_HANDLES as u32 {
            sftp.opendir(id, "/".to_owned()).await.unwrap();
        }
        assert!(sftp.opendir(9999, "/".to_owned()).await.is_err());
    }
}
