//! One address lookup per host name for a command: the AWS API calls (through the SDK's
//! HTTP client), the data channel's websockets (the connection opened during StartSession,
//! each `scp -j N` lane's, a resume's redial) and EICE tunnels all ask one [`Resolver`],
//! owned by the command's [`Network`](super::Network). Without it each new connection
//! asked the system again: `scp -j 8` looked up the same two hosts 16 times.
//!
//! - Lookups of the same name at the same time share one (the later callers wait for it).
//! - An answer is kept for [`TTL`]: the system resolver does not tell us the record's
//!   TTL, and a long session's redial after a drop should see a moved endpoint.
//! - A failed lookup is not kept: the next caller asks again.
//! - At most [`MAX_NAMES`] names are kept; past that, names are looked up uncached.
//! - An IP address literal is never looked up.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long an answer is reused.
pub const TTL: Duration = Duration::from_secs(60);

/// How many names are kept (a command dials a handful: SSM, KMS, ssmmessages, EC2...).
pub const MAX_NAMES: usize = 32;

type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// The system lookup, replaceable in tests.
type Lookup = dyn Fn(String) -> LookupFuture + Send + Sync;

/// A name's answer, or the lock a lookup in flight holds.
type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Arc<[IpAddr]>)>>>;

/// The command's address cache; clones share it.
#[derive(Clone)]
pub struct Resolver(Arc<Inner>);

struct Inner {
    lookup: Box<Lookup>,
    names: Mutex<HashMap<String, Slot>>,
}

impl Default for Resolver {
    /// The system's resolver (`getaddrinfo`, as tokio runs it).
    fn default() -> Self {
        Resolver::with_lookup(|name| {
            Box::pin(async move {
                Ok(tokio::net::lookup_host((name.as_str(), 0))
                    .await?
                    .map(|a| a.ip())
                    .collect())
            })
        })
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// A cache in front of `lookup`.
    pub fn with_lookup(
        lookup: impl Fn(String) -> LookupFuture + Send + Sync + 'static,
    ) -> Resolver {
        Resolver(Arc::new(Inner {
            lookup: Box::new(lookup),
            names: Mutex::default(),
        }))
    }

    /// The addresses of `host` (a name, an IP address, or a bracketed IPv6 address).
    pub async fn lookup(&self, host: &str) -> io::Result<Arc<[IpAddr]>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Arc::from([ip]));
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        let Some(slot) = self.slot(&name) else {
            return self.ask(name).await;
        };
        let mut kept = slot.lock().await;
        if let Some((at, addrs)) = kept.as_ref()
            && at.elapsed() < TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = self.ask(name).await?;
        *kept = Some((Instant::now(), addrs.clone()));
        Ok(addrs)
    }

    /// The slot for `name`, made if there is room (stale names are dropped first).
    fn slot(&self, name: &str) -> Option<Slot> {
        let mut names = self.0.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = names.get(name) {
            return Some(slot.clone());
        }
        if names.len() >= MAX_NAMES {
            // A slot whose lock is held has a lookup in flight: keep it.
            names.retain(|_, slot| match slot.try_lock() {
                Ok(kept) => kept.as_ref().is_some_and(|(at, _)| at.elapsed() < TTL),
                Err(_) => true,
            });
            if names.len() >= MAX_NAMES {
                return None;
            }
        }
        Some(names.entry(name.to_owned()).or_default().clone())
    }

    async fn ask(&self, name: String) -> io::Result<Arc<[IpAddr]>> {
        tracing::debug!(host = %crate::text::shown(&name), "address lookup");
        let addrs = (self.0.lookup)(name.clone()).await?;
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} has no addresses", crate::text::shown(&name)),
            ));
        }
        Ok(addrs.into())
    }
}

/// The SDK's HTTP client asks the same cache.
impl aws_smithy_runtime_api::client::dns::ResolveDns for Resolver {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        aws_smithy_runtime_api::client::dns::DnsFuture::new(async move {
            self.lookup(name)
                .await
                .map(|addrs| addrs.to_vec())
                .map_err(aws_smithy_runtime_api::client::dns::ResolveDnsError::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver that answers 192.0.2.1 for every name after `delay`, counting lookups
    /// per name; names starting with "fail" fail.
    fn counting(delay: Duration) -> (Resolver, Arc<Mutex<HashMap<String, usize>>>) {
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let seen = counts.clone();
        let r = Resolver::with_lookup(move |name| {
            *seen.lock().unwrap().entry(name.clone()).or_default() += 1;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                if name.starts_with("fail") {
                    Err(io::Error::other("no such host"))
                } else {
                    Ok(vec!["192.0.2.1".parse().unwrap()])
                }
            })
        });
        (r, counts)
    }

    fn count(counts: &Mutex<HashMap<String, usize>>, name: &str) -> usize {
        counts.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn eight_lookups_at_once_of_one_name_ask_once() {
        let (r, counts) = counting(Duration::from_millis(50));
        let all = (0..8).map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.lookup("ssmmessages.us-east-1.amazonaws.com").await })
        });
        for task in all {
            let addrs = task.await.unwrap().unwrap();
            assert_eq!(&addrs[..], &["192.0.2.1".parse::<IpAddr>().unwrap()]);
        }
        assert_eq!(count(&counts, "ssmmessages.us-east-1.amazonaws.com"), 1);
        // Case and a trailing dot name the same host.
        r.lookup("SSMMessages.us-east-1.amazonaws.com.")
            .await
            .unwrap();
        assert_eq!(count(&counts, "ssmmessages.us-east-1.amazonaws.com"), 1);
        r.lookup("ssm.us-east-1.amazonaws.com").await.unwrap();
        assert_eq!(count(&counts, "ssm.us-east-1.amazonaws.com"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_expires_and_a_failure_is_not_kept() {
        let (r, counts) = counting(Duration::ZERO);
        r.lookup("a.example").await.unwrap();
        tokio::time::advance(TTL - Duration::from_secs(1)).await;
        r.lookup("a.example").await.unwrap();
        assert_eq!(count(&counts, "a.example"), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        r.lookup("a.example").await.unwrap();
        assert_eq!(count(&counts, "a.example"), 2);

        assert!(r.lookup("fail.example").await.is_err());
        assert!(r.lookup("fail.example").await.is_err());
        assert_eq!(count(&counts, "fail.example"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_are_not_looked_up_and_names_are_bounded() {
        let (r, counts) = counting(Duration::ZERO);
        for host in ["127.0.0.1", "[::1]", "::1"] {
            let addrs = r.lookup(host).await.unwrap();
            assert!(addrs[0].is_loopback(), "{host}");
        }
        assert!(counts.lock().unwrap().is_empty());
        for i in 0..MAX_NAMES + 10 {
            r.lookup(&format!("h{i}.example")).await.unwrap();
        }
        assert_eq!(r.0.names.lock().unwrap().len(), MAX_NAMES);
        // Past the bound a name is still answered, uncached.
        r.lookup("late.example").await.unwrap();
        r.lookup("late.example").await.unwrap();
        assert_eq!(count(&counts, "late.example"), 2);
        // Once the kept answers are stale they make room.
        tokio::time::advance(TTL).await;
        r.lookup("late.example").await.unwrap();
        r.lookup("late.example").await.unwrap();
        assert_eq!(count(&counts, "late.example"), 3);
    }
}
