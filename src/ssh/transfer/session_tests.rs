use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use russh_sftp::protocol::{File as Entry, Handle, Name, Status};

use super::super::test_fixture::{self as fx, LIMIT};
use super::*;
use crate::error::{ExitCode, Failure};
use crate::ssh::transfer::{CopyOptions, CopyPlan, Direction, copy_reporting, sftp_config};

/// An SFTP server whose every directory lists `entries` names of `name_len` bytes
/// (`e000000000xxx…`; `usize::MAX` entries: endless, a lying server), `per_reply` to a
/// READDIR answer, then EOF. Counts the READDIRs it answered.
struct Listing {
    entries: usize,
    per_reply: usize,
    name_len: usize,
    next: usize,
    readdirs: Arc<AtomicUsize>,
}

/// The answer to a STAT of a directory (0755).
fn a_dir(id: u32) -> russh_sftp::protocol::Attrs {
    let attrs = FileAttributes {
        permissions: Some(0o040755),
        ..FileAttributes::default()
    };
    russh_sftp::protocol::Attrs { id, attrs }
}

/// The answer to a request that worked.
fn ok_status(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_owned(),
        language_tag: "en-US".to_owned(),
    }
}

/// Name `i` of a [`Listing`].
fn listed_name(i: usize, name_len: usize) -> String {
    let mut name = format!("e{i:09}");
    name.extend(std::iter::repeat_n('x', name_len.saturating_sub(10)));
    name
}

impl russh_sftp::server::Handler for Listing {
    type Error = StatusCode;

    fn unimplemented(&self) -> StatusCode {
        StatusCode::OpUnsupported
    }

    async fn opendir(&mut self, id: u32, _path: String) -> Result<Handle, StatusCode> {
        self.next = 0;
        Ok(Handle {
            id,
            handle: "d".to_owned(),
        })
    }

    async fn readdir(&mut self, id: u32, _handle: String) -> Result<Name, StatusCode> {
        self.readdirs.fetch_add(1, Ordering::Relaxed);
        if self.next >= self.entries {
            return Err(StatusCode::Eof);
        }
        let end = self.next.saturating_add(self.per_reply).min(self.entries);
        let files = (self.next..end)
            .map(|i| Entry::new(listed_name(i, self.name_len), FileAttributes::default()))
            .collect();
        self.next = end;
        Ok(Name { id, files })
    }

    async fn close(&mut self, id: u32, _handle: String) -> Result<Status, StatusCode> {
        Ok(ok_status(id))
    }
}

/// An [`Sftp`] whose both channels reach a [`Listing`] server of `entries` names,
/// `per_reply` to an answer; each byte takes `delay` each way, if given.
async fn listing(
    entries: usize,
    per_reply: usize,
    name_len: usize,
    delay: Option<std::time::Duration>,
) -> (Sftp, Arc<AtomicUsize>) {
    let readdirs = Arc::new(AtomicUsize::new(0));
    let handler = || Listing {
        entries,
        per_reply,
        name_len,
        next: 0,
        readdirs: readdirs.clone(),
    };
    (sftp_on(handler, delay).await, readdirs)
}

/// An [`Sftp`] whose two channels (the session's, the lister's) reach a server each made
/// by `handler`, each byte taking `delay` each way if given.
async fn sftp_on<H>(handler: impl Fn() -> H, delay: Option<std::time::Duration>) -> Sftp
where
    H: russh_sftp::server::Handler + Send + 'static,
{
    let mut ends = Vec::new();
    for _ in 0..2 {
        let (client, server) = tokio::io::duplex(1 << 20);
        russh_sftp::server::run(server, handler()).await;
        ends.push(match delay {
            None => client,
            Some(d) => {
                let (from_server, to_server) = tokio::io::split(client);
                fx::delayed(from_server, to_server, d)
            }
        });
    }
    let lister = RawSftpSession::new_with_config(ends.pop().unwrap(), sftp_config());
    lister.init().await.expect("init");
    let session = SftpSession::new_with_config(ends.pop().unwrap(), sftp_config())
        .await
        .expect("init");
    Sftp::new(session, lister)
}

/// An endless [`listing`]: a lying server.
async fn endless(per_reply: usize, name_len: usize) -> (Sftp, Arc<AtomicUsize>) {
    listing(usize::MAX, per_reply, name_len, None).await
}

/// [`copy_reporting`] with default options, bounded; the per-file reports as text.
async fn copy_noting(
    sftp: &Sftp,
    plan: &CopyPlan,
) -> (
    Result<crate::ssh::transfer::CopyStats, SshError>,
    Vec<String>,
) {
    let mut reports = Vec::new();
    let mut report = |f: &SshError| reports.push(f.to_string());
    let copied = tokio::time::timeout(
        LIMIT,
        copy_reporting(sftp, plan, &CopyOptions::default(), &mut report),
    )
    .await
    .expect("bounded");
    (copied, reports)
}

#[tokio::test]
async fn an_endless_listing_stops_at_the_entry_bound() {
    let (mut sftp, readdirs) = endless(100, 10).await;
    sftp.set_max_entries(5_000);
    let listed = tokio::time::timeout(LIMIT, sftp.list("/d"))
        .await
        .expect("bounded");
    assert!(
        matches!(listed, Err(ListError::TooLong { entries: 5_000 })),
        "{listed:?}"
    );
    // It stopped reading at the bound: the 50 replies to reach it, and the ones in flight.
    assert!(
        readdirs.load(Ordering::Relaxed) <= 50 + READDIRS_IN_FLIGHT,
        "{readdirs:?}"
    );
    let p = list_problem("/d", &listed.unwrap_err());
    let Problem::Item(f) = p else {
        panic!("an item problem")
    };
    let f = Failure::from(f);
    assert_eq!(f.code, ExitCode::RemoteFile);
    assert!(
        f.message.contains("more than 5000 entries"),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn an_endless_listing_of_long_names_stops_at_the_byte_bound() {
    // 100 KB names, one a reply (with its long form, within the 256 KiB packet): the
    // default entry bound is far away; the bytes stop it.
    let (sftp, readdirs) = endless(1, 100_000).await;
    let listed = tokio::time::timeout(LIMIT, sftp.list("/d"))
        .await
        .expect("bounded");
    assert!(
        matches!(listed, Err(ListError::TooLong { .. })),
        "{listed:?}"
    );
    let replies = readdirs.load(Ordering::Relaxed);
    let most = MAX_LISTING_NAME_BYTES / 100_000 + 2;
    assert!(replies <= most, "{replies} > {most}");
}

#[tokio::test]
async fn an_endless_tree_fails_the_copy_with_one_line_per_directory() {
    let (mut sftp, _) = endless(100, 10).await;
    sftp.set_max_entries(1_000);
    let local = fx::TempDir::new("endless-local");
    let plan = CopyPlan {
        direction: Direction::Download,
        sources: vec!["/d/*".to_owned()],
        destination: local.path().to_str().unwrap().to_owned(),
    };
    let (copied, reports) = copy_noting(&sftp, &plan).await;
    let err = Failure::from(copied.expect_err("refused"));
    assert_eq!(err.code, ExitCode::RemoteFile);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0].contains("/d/*: the server lists more than 1000"),
        "{reports:?}"
    );
}

#[tokio::test]
async fn a_real_listing_within_the_bound_is_whole_and_the_bound_holds_for_globs() {
    let dir = fx::TempDir::new("listing");
    for i in 0..30 {
        std::fs::write(dir.path().join(format!("f{i:02}")), b"x").unwrap();
    }
    let Some(mut server) = fx::start(dir.path(), sftp_config(), None).await else {
        return;
    };
    let base = dir.path().to_str().unwrap().to_owned();
    let mut names: Vec<String> = server
        .sftp
        .list(&base)
        .await
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    assert_eq!(names.len(), 30, "no . or ..: {names:?}");
    assert_eq!(names[0], "f00");
    let pattern = format!("{}/f*", crate::ssh::glob::escape_glob(&base));
    let all = crate::ssh::glob::remote_glob(&server.sftp, &pattern).await;
    assert_eq!(all.expect("30 matches").paths.len(), 30);
    server.sftp.set_max_entries(29);
    let capped = crate::ssh::glob::remote_glob(&server.sftp, &pattern).await;
    assert!(
        matches!(capped, Err(ListError::TooLong { entries: 29 })),
        "{capped:?}"
    );
}

/// What one channel's server was asked.
#[derive(Default)]
struct Asked {
    realpaths: AtomicUsize,
    stats: AtomicUsize,
}

/// An SFTP server whose start directory is `/home/u`, holding the file `/home/u/file`
/// (42 bytes) and the directories `/home/u/sub` and `/abs/dir`; it counts what it is
/// asked.
struct Home {
    asked: Arc<Asked>,
}

impl Home {
    fn attrs(path: &str) -> Option<FileAttributes> {
        let (size, permissions) = match path {
            "/home/u/file" | "file" => (42, 0o100644),
            "/abs/dir" | "/home/u/sub" | "sub" => (4096, 0o040755),
            "/home/u" | "." => (4096, 0o040700),
            _ => return None,
        };
        Some(FileAttributes {
            size: Some(size),
            permissions: Some(permissions),
            ..FileAttributes::default()
        })
    }
}

impl russh_sftp::server::Handler for Home {
    type Error = StatusCode;

    fn unimplemented(&self) -> StatusCode {
        StatusCode::OpUnsupported
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, StatusCode> {
        self.asked.realpaths.fetch_add(1, Ordering::Relaxed);
        let full = match path.as_str() {
            "." => "/home/u".to_owned(),
            p if p.starts_with('/') => p.to_owned(),
            p => format!("/home/u/{p}"),
        };
        Ok(Name {
            id,
            files: vec![Entry::new(full, FileAttributes::default())],
        })
    }

    async fn stat(
        &mut self,
        id: u32,
        path: String,
    ) -> Result<russh_sftp::protocol::Attrs, StatusCode> {
        self.asked.stats.fetch_add(1, Ordering::Relaxed);
        let attrs = Home::attrs(&path).ok_or(StatusCode::NoSuchFile)?;
        Ok(russh_sftp::protocol::Attrs { id, attrs })
    }
}

/// An [`Sftp`] on two [`Home`] servers (the session's, the lister's), started with `warm`.
async fn home(warm: &Warm) -> (Sftp, Arc<Asked>, Arc<Asked>) {
    let (session_asked, lister_asked) = (Arc::new(Asked::default()), Arc::new(Asked::default()));
    let mut ends = Vec::new();
    for asked in [&session_asked, &lister_asked] {
        let (client, server) = tokio::io::duplex(1 << 20);
        let handler = Home {
            asked: asked.clone(),
        };
        russh_sftp::server::run(server, handler).await;
        ends.push(client);
    }
    let lister = ends.pop().unwrap();
    let session = ends.pop().unwrap();
    let sftp = tokio::time::timeout(
        LIMIT,
        Sftp::start(async { Ok(session) }, async { Ok(lister) }, warm),
    )
    .await
    .expect("bounded")
    .expect("started");
    (sftp, session_asked, lister_asked)
}

fn count(a: &AtomicUsize) -> usize {
    a.load(Ordering::Relaxed)
}

fn download(sources: &[&str]) -> CopyPlan {
    CopyPlan {
        direction: Direction::Download,
        sources: sources.iter().map(|s| s.to_string()).collect(),
        destination: ".".to_owned(),
    }
}

#[tokio::test]
async fn the_first_questions_are_answered_ahead_on_the_lister_once_each() {
    // A relative source, an absolute directory, a missing file; a pattern and a `~user`
    // path are left to the walk.
    let warm = Warm::for_copy(&download(&[
        "file", "/abs/dir", "/missing", "*.txt", "~bob/x",
    ]));
    let (sftp, session, lister) = home(&warm).await;
    assert_eq!(count(&lister.realpaths), 1);
    assert_eq!(count(&lister.stats), 3);

    // The walk's questions, as it names them: no request reaches the session.
    assert_eq!(sftp.canonicalize(".").await.expect("start dir"), "/home/u");
    let file = sftp.metadata("/home/u/file").await.expect("file");
    assert_eq!((file.size, file.is_dir()), (Some(42), false));
    assert!(sftp.metadata("/abs/dir").await.expect("dir").is_dir());
    let missing = sftp.metadata("/missing").await;
    assert!(
        matches!(&missing, Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile),
        "{missing:?}"
    );
    assert_eq!((count(&session.realpaths), count(&session.stats)), (0, 0));

    // Each answer is handed out once: asked again, the server answers.
    assert_eq!(
        sftp.metadata("/home/u/file").await.expect("file").size,
        Some(42)
    );
    assert_eq!(sftp.canonicalize(".").await.expect("start dir"), "/home/u");
    assert_eq!((count(&session.realpaths), count(&session.stats)), (1, 1));
    // Nothing more went to the lister.
    assert_eq!((count(&lister.realpaths), count(&lister.stats)), (1, 3));
}

#[tokio::test]
async fn an_upload_asks_its_destination_ahead_and_the_sftp_prompt_its_start() {
    for (destination, key) in [
        ("", "/home/u"),
        ("~", "/home/u"),
        ("~/file", "/home/u/file"),
        ("file", "/home/u/file"),
        ("/abs/dir", "/abs/dir"),
    ] {
        let plan = CopyPlan {
            direction: Direction::Upload,
            sources: vec!["a".to_owned(), "b".to_owned()],
            destination: destination.to_owned(),
        };
        let (sftp, session, lister) = home(&Warm::for_copy(&plan)).await;
        assert_eq!(count(&lister.stats), 1, "{destination:?}");
        sftp.metadata(key).await.expect(key);
        assert_eq!(count(&session.stats), 0, "{destination:?} -> {key}");
    }
    // `~user` needs the server's expand-path: left to the walk.
    let plan = CopyPlan {
        direction: Direction::Upload,
        sources: vec!["a".to_owned()],
        destination: "~bob/x".to_owned(),
    };
    let (_, _, lister) = home(&Warm::for_copy(&plan)).await;
    assert_eq!((count(&lister.realpaths), count(&lister.stats)), (0, 0));

    let (sftp, session, lister) = home(&Warm::start_dir()).await;
    assert_eq!((count(&lister.realpaths), count(&lister.stats)), (1, 0));
    assert_eq!(sftp.canonicalize(".").await.expect("start dir"), "/home/u");
    assert_eq!(count(&session.realpaths), 0);
}

#[tokio::test]
async fn a_copy_walks_with_the_answers_asked_ahead() {
    // The walk itself (not just the accessors) finds the answers: a download of
    // directories without -r, one named relative to the start directory, asks the session
    // nothing to say so.
    let local = fx::TempDir::new("warm-walk");
    let plan = CopyPlan {
        direction: Direction::Download,
        sources: vec!["sub".to_owned(), "/abs/dir".to_owned()],
        destination: local.path().to_str().unwrap().to_owned(),
    };
    let (sftp, session, _) = home(&Warm::for_copy(&plan)).await;
    let (copied, reports) = copy_noting(&sftp, &plan).await;
    assert!(copied.is_err(), "{copied:?}");
    assert!(
        reports.len() == 2
            && reports
                .iter()
                .all(|r| r.contains("is a directory (use -r)")),
        "{reports:?}"
    );
    assert_eq!((count(&session.realpaths), count(&session.stats)), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_listing_ends_in_the_round_trip_of_its_last_names() {
    // Each way takes 50 ms (a round trip is 100 ms), on tokio's paused clock.
    const RTT: std::time::Duration = std::time::Duration::from_millis(100);
    // (entries, round trips): OPENDIR, then the replies two at a time (the EOF with the
    // last names when they pair up); the CLOSE is not waited for.
    for (entries, trips) in [(0, 2), (30, 2), (150, 3), (250, 3)] {
        let (sftp, _) = listing(entries, 100, 10, Some(RTT / 2)).await;
        let started = tokio::time::Instant::now();
        let listed = sftp.list("/d").await.expect("listing");
        let took = started.elapsed();
        let names: Vec<String> = listed.into_iter().map(|(n, _)| n).collect();
        let expected: Vec<String> = (0..entries).map(|i| listed_name(i, 10)).collect();
        assert_eq!(names, expected, "{entries} entries, in the server's order");
        assert!(
            took >= trips * RTT && took < trips * RTT + RTT / 2,
            "{entries} entries took {took:?}, not {trips} round trips of {RTT:?}"
        );
    }
}

/// A server holding `/t` with `dirs` empty subdirectories `/t/d0`, …; counts OPENDIRs.
struct Tree {
    dirs: usize,
    read: std::collections::HashSet<String>,
    opendirs: Arc<AtomicUsize>,
}

impl russh_sftp::server::Handler for Tree {
    type Error = StatusCode;

    fn unimplemented(&self) -> StatusCode {
        StatusCode::OpUnsupported
    }

    async fn stat(
        &mut self,
        id: u32,
        _path: String,
    ) -> Result<russh_sftp::protocol::Attrs, StatusCode> {
        Ok(a_dir(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, StatusCode> {
        Ok(Name {
            id,
            files: vec![Entry::new(path, FileAttributes::default())],
        })
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, StatusCode> {
        self.opendirs.fetch_add(1, Ordering::Relaxed);
        self.read.remove(&path);
        Ok(Handle { id, handle: path })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, StatusCode> {
        if handle != "/t" || !self.read.insert(handle) {
            return Err(StatusCode::Eof);
        }
        let dir = FileAttributes {
            permissions: Some(0o040755),
            ..FileAttributes::default()
        };
        let files = (0..self.dirs)
            .map(|i| Entry::new(format!("d{i}"), dir.clone()))
            .collect();
        Ok(Name { id, files })
    }

    async fn close(&mut self, id: u32, _handle: String) -> Result<Status, StatusCode> {
        Ok(ok_status(id))
    }
}

#[tokio::test(start_paused = true)]
async fn a_tree_walk_lists_subdirectories_ahead() {
    // Each way takes 50 ms (a round trip is 100 ms), on tokio's paused clock.
    const RTT: std::time::Duration = std::time::Duration::from_millis(100);
    let opendirs = Arc::new(AtomicUsize::new(0));
    let handler = || Tree {
        dirs: 8,
        read: Default::default(),
        opendirs: opendirs.clone(),
    };
    let sftp = sftp_on(handler, Some(RTT / 2)).await;
    let local = fx::TempDir::new("tree-ahead");
    let plan = CopyPlan {
        direction: Direction::Download,
        sources: vec!["/t".to_owned()],
        destination: local.path().to_str().unwrap().to_owned(),
    };
    let opts = CopyOptions {
        recursive: true,
        ..CopyOptions::default()
    };
    let started = tokio::time::Instant::now();
    let mut report = |f: &SshError| panic!("{f}");
    let copied = copy_reporting(&sftp, &plan, &opts, &mut report).await;
    let took = started.elapsed();
    assert_eq!(copied.expect("copied").dirs, 9);
    for i in 0..8 {
        assert!(local.path().join(format!("t/d{i}")).is_dir());
    }
    // Stat and realpath of /t, its listing (2), then its eight subdirectories listed
    // side by side: about 7 round trips, where one after the other took 20.
    assert!(
        took < 8 * RTT,
        "{took:?} for the walk (a round trip is {RTT:?})"
    );
    assert_eq!(
        opendirs.load(Ordering::Relaxed),
        9,
        "each directory listed once"
    );
}

#[tokio::test]
async fn a_listing_ahead_is_held_to_its_share_of_the_bound_and_asked_again_past_it() {
    // 30 entries, 10 to an answer; a listing may hold 80, one ahead 80 / 8 = 10.
    let (mut sftp, readdirs) = listing(30, 10, 10, None).await;
    sftp.set_max_entries(80);
    sftp.list_ahead(["/d"]);
    let listed = tokio::time::timeout(LIMIT, sftp.list("/d"))
        .await
        .expect("bounded")
        .expect("listed in full");
    let names: Vec<String> = listed.into_iter().map(|(n, _)| n).collect();
    let expected: Vec<String> = (0..30).map(|i| listed_name(i, 10)).collect();
    assert_eq!(names, expected);
    // The listing ahead stopped at its share (two answers of 10, the second past it);
    // the full listing took four (three of names, the EOF) and its pair's partner.
    assert_eq!(readdirs.load(Ordering::Relaxed), 2 + 4);
    // Handed out once: another listing of /d asks the server.
    sftp.list("/d").await.expect("listed again");
    assert_eq!(readdirs.load(Ordering::Relaxed), 2 + 4 + 4);
}

/// A server whose start directory is `/h`, where directories can be made (0755, as under
/// umask 022); counts MKDIRs.
struct Dirs {
    made: std::collections::HashSet<String>,
    mkdirs: Arc<AtomicUsize>,
}

impl russh_sftp::server::Handler for Dirs {
    type Error = StatusCode;

    fn unimplemented(&self) -> StatusCode {
        StatusCode::OpUnsupported
    }

    async fn stat(
        &mut self,
        id: u32,
        path: String,
    ) -> Result<russh_sftp::protocol::Attrs, StatusCode> {
        if path != "/h" && !self.made.contains(&path) {
            return Err(StatusCode::NoSuchFile);
        }
        Ok(a_dir(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, StatusCode> {
        self.mkdirs.fetch_add(1, Ordering::Relaxed);
        if path == "/h" || !self.made.insert(path) {
            return Err(StatusCode::Failure);
        }
        Ok(ok_status(id))
    }

    async fn setstat(
        &mut self,
        id: u32,
        _path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, StatusCode> {
        Ok(ok_status(id))
    }
}

#[tokio::test(start_paused = true)]
async fn a_tree_upload_makes_each_directory_in_one_round_trip() {
    use std::os::unix::fs::PermissionsExt;
    // Each way takes 50 ms (a round trip is 100 ms), on tokio's paused clock.
    const RTT: std::time::Duration = std::time::Duration::from_millis(100);
    let mkdirs = Arc::new(AtomicUsize::new(0));
    let handler = || Dirs {
        made: Default::default(),
        mkdirs: mkdirs.clone(),
    };
    let sftp = sftp_on(handler, Some(RTT / 2)).await;
    let local = fx::TempDir::new("tree-up");
    let top = local.path().join("up");
    for i in 0..8 {
        std::fs::create_dir_all(top.join(format!("d{i}"))).unwrap();
    }
    for dir in std::iter::once(top.clone()).chain((0..8).map(|i| top.join(format!("d{i}")))) {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let plan = CopyPlan {
        direction: Direction::Upload,
        sources: vec![top.to_str().unwrap().to_owned()],
        destination: "/h/up".to_owned(),
    };
    let opts = CopyOptions {
        recursive: true,
        ..CopyOptions::default()
    };
    let started = tokio::time::Instant::now();
    let mut report = |f: &SshError| panic!("{f}");
    let copied = copy_reporting(&sftp, &plan, &opts, &mut report).await;
    let took = started.elapsed();
    assert_eq!(copied.expect("copied").dirs, 9);
    assert_eq!(mkdirs.load(Ordering::Relaxed), 9);
    // The destination's stat, then each of the 9 directories made and looked at in one
    // round trip: 10, where MKDIR then STAT took 19.
    assert!(
        took < 11 * RTT,
        "{took:?} for the upload (a round trip is {RTT:?})"
    );
}
