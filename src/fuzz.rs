//! Properties of every parser fed by a peer or by the user, checked on arbitrary bytes:
//! the shared core of the cargo-fuzz targets in `fuzz/` and of the ordinary tests in
//! `fuzz_properties_tests` (as [`crate::proto::ops`] is for the channel).
//!
//! Each function runs one family of parsers on `data` and panics if a property is
//! violated: any input gives a value or an `Err`, never a panic or a wait on input that
//! has all arrived; nothing decoded is larger than what its input could justify; an
//! error meant for the user is one line. Each returns whether its main parser accepted
//! the input, so tests can tell that their inputs reach past the first check.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A password the seeds put in proxy URLs: no error message may show it.
pub const SECRET: &str = "hunter2secret";

/// Runs a future over in-memory IO: it must finish at its first poll, since all its input
/// is there (an end of input is an error, not a wait).
fn ready<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("waits for more input after the end of its input"),
    }
}

/// What a text parser sees: the bytes as UTF-8, invalid sequences replaced.
fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A message for the user: one line, with nothing a terminal would act on.
fn one_line(what: &str, msg: &str) {
    assert!(
        !msg.chars().any(crate::text::needs_escape),
        "{what}: the message is not one line of plain text: {msg:?}"
    );
}

/// A message about input holding `user:SECRET@` must not show the password. (Where
/// mutations left the secret elsewhere too, it is no longer only a password.)
fn no_secret(input: &str, msg: &str) {
    let as_password = input.matches(&format!(":{SECRET}@")).count();
    if as_password > 0 && as_password == input.matches(SECRET).count() {
        assert!(
            !msg.contains(SECRET),
            "the message shows the password: {msg}"
        );
    }
}

/// smux frames (docs/protocol.md §7.2): [`Frame::decode`] takes what the header claims
/// and no more, and what it accepts encodes back to the same bytes; a session fed the
/// bytes in pieces delivers no more data, events or streams than the bytes carry.
///
/// [`Frame::decode`]: crate::proto::smux::Frame::decode
pub fn smux(data: &[u8]) -> bool {
    use crate::proto::smux::{Frame, HEADER_LEN, KeepAlive, Mux, MuxEvent, Role, VERSION};
    let accepted = match Frame::decode(data) {
        Ok(Some((frame, used))) => {
            assert_eq!(used, HEADER_LEN + frame.data.len());
            assert!(used <= data.len());
            let mut again = Vec::new();
            frame.encode_into(&mut again);
            assert_eq!(again, data[..used], "re-encoded frame differs");
            true
        }
        Ok(None) => {
            assert!(
                data.len() < HEADER_LEN
                    || data.len()
                        < HEADER_LEN + usize::from(u16::from_le_bytes([data[2], data[3]]))
            );
            false
        }
        Err(e) => {
            assert!(data.len() >= HEADER_LEN && (data[0] != VERSION || data[1] > 3));
            one_line("smux", &e.to_string());
            false
        }
    };
    let t0 = Instant::now();
    let mut mux = Mux::new(Role::Server, Some(KeepAlive::default()), t0);
    let piece = 1 + usize::from(data.first().copied().unwrap_or(0) % 97);
    let (mut events, mut delivered) = (0, 0);
    for (i, chunk) in data.chunks(piece).enumerate() {
        let result = mux.handle_input(t0 + Duration::from_millis(i as u64), chunk);
        while let Some(ev) = mux.poll_event() {
            events += 1;
            if let MuxEvent::Data(_, d) = ev {
                delivered += d.len();
            }
        }
        if result.is_err() {
            break;
        }
    }
    assert!(delivered <= data.len(), "delivered {delivered} bytes");
    assert!(events <= data.len() / HEADER_LEN, "{events} events");
    assert!(mux.stream_count() <= data.len() / HEADER_LEN);
    let _ = mux.handle_timeout(t0 + Duration::from_secs(3600));
    accepted
}

/// Payload JSON (docs/protocol.md §3-5) and flags: each document the peer sends parses
/// or is an `Err`; the client's handshake answers any HandshakeRequest with a response
/// bounded by the request's size; acknowledges and channel_closed go through a channel.
pub fn payload(data: &[u8]) -> bool {
    use crate::proto::payload::{
        Acknowledge, ChannelClosed, EncChallenge, HandshakeResponse, KmsEncryptionResult,
        PayloadFlag,
    };
    let n = data.len();
    if let Ok(a) = serde_json::from_slice::<Acknowledge>(data) {
        assert!(a.acknowledged_message_type.len() <= n);
    }
    if let Ok(c) = serde_json::from_slice::<ChannelClosed>(data) {
        let texts = [&c.message_id, &c.session_id, &c.message_type, &c.output];
        assert!(texts.iter().map(|t| t.len()).sum::<usize>() <= n);
    }
    if let Ok(c) = serde_json::from_slice::<EncChallenge>(data) {
        assert!(c.challenge.len() <= n);
    }
    if let Ok(r) = serde_json::from_slice::<KmsEncryptionResult>(data) {
        assert!(r.kms_cipher_text_key.len() + r.kms_cipher_text_hash.map_or(0, |h| h.len()) <= n);
    }
    if let Ok(r) = serde_json::from_slice::<HandshakeResponse>(data) {
        assert!(r.processed_client_actions.len() <= n);
    }
    if PayloadFlag::decode(data).is_some() {
        assert_eq!(n, 4);
    }
    let accepted = handshake(data);
    channel_control(data);
    accepted
}

/// The client's handshake steps on `data` as each of the agent's payloads.
fn handshake(data: &[u8]) -> bool {
    use crate::proto::handshake::{AwaitingRequest, Requested};
    use crate::proto::payload::HandshakeResponse;
    let bound = 16 * data.len() + 512;
    let answer_ok = |response: &[u8]| {
        assert!(response.len() <= bound, "{} response bytes", response.len());
        assert!(serde_json::from_slice::<HandshakeResponse>(response).is_ok());
    };
    match AwaitingRequest::default().on_request(data) {
        Ok(Requested::Respond(next, response)) => {
            answer_ok(&response);
            if let Ok(done) = next.on_complete(data) {
                assert!(done.customer_message.len() <= data.len());
            }
            true
        }
        Ok(Requested::NeedDataKey(waiting)) => {
            assert!(waiting.key_id().len() <= data.len());
            match waiting.on_data_key(b"ciphertext", &[7; 64], 1) {
                Ok((challenge, response)) => {
                    answer_ok(&response);
                    if let Err(e) = challenge.on_challenge(data) {
                        one_line("challenge", &e.to_string());
                    }
                }
                Err(refusal) => answer_ok(&refusal.response),
            }
            true
        }
        Err(e) => {
            one_line("handshake", &e.to_string());
            false
        }
    }
}

/// `data` as an acknowledge and as a channel_closed payload, into a client channel.
fn channel_control(data: &[u8]) {
    use crate::proto::channel::{Channel, ChannelConfig, ChannelEvent};
    use crate::proto::message::{Message, MessageType, flags};
    let t0 = Instant::now();
    let mut ch = Channel::new(ChannelConfig::client(), t0, 1_700_000_000_000, 1);
    for message_type in [MessageType::Acknowledge, MessageType::ChannelClosed] {
        let frame = Message {
            message_type,
            schema_version: 1,
            created_date: 1_700_000_000_000,
            sequence_number: 0,
            flags: flags::ACK,
            message_id: uuid::Uuid::nil(),
            payload_type: 0,
            payload: data.to_vec(),
        }
        .encode();
        if let Err(e) = ch.handle_frame(t0, &frame) {
            one_line("channel", &e.to_string());
        }
    }
    let mut events = 0;
    while let Some(ev) = ch.poll_event() {
        events += 1;
        if let ChannelEvent::Closed(c) = ev {
            assert!(c.output.len() <= data.len());
        }
    }
    assert!(events <= 2, "{events} events from two control messages");
}

/// SOCKS5 requests (RFC 1928): the server reads no more than a greeting and a request
/// can hold, answers at most two short replies, and a destination it accepts is an IP
/// address or a name from the request with nothing a terminal would act on.
pub fn socks(data: &[u8]) -> bool {
    use crate::session::forward::Remote;
    let mut stream = tokio::io::join(data, Vec::new());
    let result = ready(crate::session::forward::socks::negotiate(&mut stream));
    let (rest, answer) = stream.into_inner();
    let used = data.len() - rest.len();
    assert!(used <= 2 + 255 + 4 + 1 + 255 + 2, "read {used} bytes");
    assert!(answer.len() <= 2 + 10, "answered {} bytes", answer.len());
    match result {
        Ok(Remote::Host { host, .. }) => {
            let ip = host.parse::<std::net::IpAddr>().is_ok();
            let name = host.len() <= 255 && !host.chars().any(crate::text::needs_escape);
            assert!(ip || name, "destination {host:?}");
            true
        }
        Ok(other) => panic!("SOCKS gave {other:?}"),
        Err(e) => {
            one_line("socks", &e.to_string());
            false
        }
    }
}

/// The proxy's answer to CONNECT (docs/protocol.md §2.7): the head is read up to its
/// blank line and never past it, within the bound; the status is three digits.
pub fn connect_answer(data: &[u8]) -> bool {
    use crate::transport::{HeadError, MAX_RESPONSE, parse_status, read_head};
    let mut input = data;
    let accepted = match ready(read_head(&mut input)) {
        Ok(head) => {
            let used = data.len() - input.len();
            assert!(used <= MAX_RESPONSE);
            assert!(data[..used].ends_with(b"\r\n\r\n"));
            assert!(!data[..used - 4].windows(4).any(|w| w == b"\r\n\r\n"));
            match parse_status(&head) {
                Some((code, status)) => {
                    // The status reaches the user's terminal in "refused CONNECT … with
                    // HTTP {status}".
                    one_line("connect status", &status);
                    assert!(code <= 999 && status.len() <= 4 * head.len());
                    true
                }
                None => false,
            }
        }
        Err(HeadError::Io(m) | HeadError::Malformed(m)) => {
            one_line("connect", &m);
            false
        }
    };
    let t = text(data);
    if let Some((code, status)) = parse_status(&t) {
        one_line("connect status", &status);
        assert!(code <= 999 && status.len() <= 4 * t.len());
    }
    accepted
}

/// known_hosts text: a lookup answers with line numbers and algorithms from the text, for
/// a fixed key and for the first name in it.
pub fn known_hosts(data: &[u8]) -> bool {
    use crate::ssh::known_hosts::{HostKey, Recorded, lookup, typed_host_name};
    let t = text(data);
    let lines = t.lines().count();
    let key = HostKey {
        algorithm: "ssh-ed25519".into(),
        base64: KEY_BLOB.into(),
        fingerprint: String::new(),
    };
    let first = t.split_whitespace().next().unwrap_or("x");
    let mut accepted = false;
    for (host, port) in [("i-0123456789abcdef0", 22), ("db-1", 2222), (first, 22)] {
        match lookup(&t, host, port, &key) {
            Recorded::Known => accepted = true,
            Recorded::Unknown => {}
            Recorded::Changed(others) => {
                accepted = true;
                assert!(!others.is_empty() && others.len() <= lines);
                for (line, algorithm) in others {
                    assert!((1..=lines).contains(&line) && algorithm.len() <= t.len());
                }
            }
            Recorded::Revoked(line) => {
                accepted = true;
                assert!((1..=lines).contains(&line));
            }
        }
    }
    if let Some(name) = typed_host_name(&t, "i-0123456789abcdef0") {
        assert!(!name.is_empty() && name.len() <= t.len());
    }
    accepted
}

/// The host key blob the known_hosts seeds use (an ed25519 key).
pub const KEY_BLOB: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

/// config.toml, and the proxy settings (`proxy =`, `NO_PROXY`): what parses holds no
/// more than the text; an error is one line naming the file and never shows a password.
pub fn config(data: &[u8]) -> bool {
    use crate::transport::{NoProxy, ProxyUrl};
    let t = text(data);
    let accepted = match crate::config_file::parse(&t, Path::new("config.toml")) {
        Ok(c) => {
            assert!(c.aliases.len() + c.profiles.len() <= t.len());
            for a in c.aliases.values() {
                assert!(!a.target.trim().is_empty() && a.target.len() <= t.len() + 4);
            }
            assert!(c.parallel.is_none_or(|p| (1..=16).contains(&p)));
            true
        }
        Err(e) => {
            one_line("config", &e.0);
            no_secret(&t, &e.0);
            assert!(e.0.contains("config.toml"), "{}", e.0);
            false
        }
    };
    match ProxyUrl::parse(&t, "test") {
        Ok(u) => assert!(!u.host.is_empty() && u.host.len() <= t.len()),
        Err(e) => {
            one_line("proxy URL", &e.message);
            no_secret(&t, &e.message);
        }
    }
    let _ = NoProxy::parse(&t).matches("ssm.us-east-1.amazonaws.com", 443);
    if let Err(m) = crate::config_file::plain_http_check(&t) {
        no_secret(&t, &m);
    }
    accepted
}

/// Target strings as typed: targets, scp operands and forward specs. What parses is no
/// longer than the text and holds no shell syntax; refusals are one line.
pub fn target(data: &[u8]) -> bool {
    use crate::target::Spec;
    let t = text(data);
    let accepted = match crate::target::parse(&t) {
        Ok(spec) => {
            match &spec {
                Spec::Id(id) => assert!(crate::target::is_instance_id(id)),
                Spec::Tag { key, value } => {
                    assert!(!key.is_empty() && !value.is_empty());
                    assert!(key.len() + value.len() < t.len());
                }
                Spec::Ip(_) => {}
                Spec::Name(name) => assert!(!name.is_empty() && name.len() <= t.len()),
                Spec::Pick => panic!("a typed target parsed as no target"),
            }
            assert!(crate::target::check_word("target", &spec.to_string()).is_ok());
            true
        }
        Err(f) => {
            one_line("target", &f.to_string());
            false
        }
    };
    if let Some(name) = crate::ssh::known_hosts::typed_host_name(&t, "i-0abc") {
        assert!(name.len() <= t.len());
    }
    use crate::wildcard::{Syntax, matches};
    let _ = matches(&t, "web-1.example.com", Syntax::IGNORE_CASE);
    let _ = matches("*web-?", &t, Syntax::PLAIN);
    let _ = matches(&t, "[x]*.txt", Syntax::SHELL);
    scp_and_forward(&t);
    accepted
}

fn scp_and_forward(t: &str) {
    use crate::session::forward::{ForwardSpec, Remote};
    use crate::ssh::scp_args::{parse_operands, split_remote};
    if let Some(r) = split_remote(t) {
        assert!(r.user.map_or(0, str::len) + r.target.len() + r.path.len() < t.len());
    }
    let words: Vec<&str> = t.split(' ').collect();
    match parse_operands(&words) {
        Ok(ops) => assert!(ops.target.len() <= t.len()),
        Err(e) => one_line("scp operands", &e.0),
    }
    match t.parse::<ForwardSpec>() {
        Ok(spec) => {
            if let Remote::Host { host, .. } = &spec.remote {
                assert!(!host.is_empty() && host.len() <= t.len());
            }
        }
        Err(m) => one_line("forward spec", &m),
    }
}

/// What the client parses by hand from AWS answers (the SDK parses the rest): GetDocument
/// content (the exec document's parameters, the preferences' KMS key), instance ARNs
/// from GetResources, and IAM's "not authorized" text.
pub fn aws_answers(data: &[u8]) -> bool {
    use crate::aws::account::{SessionKms, kms_of_document};
    let t = text(data);
    let mut accepted = false;
    if crate::session::exec_document::declares(&t, "separateOutputStream").is_some() {
        accepted = true;
    }
    if let SessionKms::Key(k) = kms_of_document(&t) {
        assert!(!k.is_empty() && k.len() <= t.len());
        accepted = true;
    }
    if let Some(id) = crate::aws::instance_id(&t) {
        assert!(id.starts_with("i-") && t.ends_with(id));
        accepted = true;
    }
    if let Some((action, resource)) = crate::aws::missing_permission(&t) {
        assert!(action.len() <= t.len() && resource.len() <= t.len());
        accepted = true;
    }
    accepted
}
