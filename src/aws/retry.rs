//! Retrying what is worth retrying, inside a time budget: throttling (exponential backoff
//! with jitter) and, with `--wait`, an agent that is not connected yet (right after a boot
//! the agent flaps between online and offline for tens of seconds).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::instances::Instances;
use super::{AwsError, AwsErrorKind, SessionDocument, Ssm, StartedSession};

/// How long to keep retrying throttled calls when no `--wait` budget is larger.
pub const DEFAULT_THROTTLE_BUDGET: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often to ask again while waiting for an agent.
const WAIT_POLL: Duration = Duration::from_secs(2);
/// How often to say that we are still waiting.
const WAIT_NOTICE: Duration = Duration::from_secs(15);
/// Bound on the extra lookup that says when an agent was last seen.
const LAST_SEEN_BUDGET: Duration = Duration::from_secs(5);

/// Tells a retrying call that nobody awaits it any more (its command was stopped): it
/// makes no new attempt and ends its pauses at once. An attempt in flight still finishes,
/// so that a session it starts is known, and ended.
#[derive(Clone, Debug, Default)]
pub struct Abandon(Arc<AbandonState>);

#[derive(Debug, Default)]
struct AbandonState {
    set: AtomicBool,
    notify: Notify,
}

impl Abandon {
    pub fn set(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Sleeps `d`; `false` (at once) when abandoned before or meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        let notified = self.0.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_set() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_set(),
            _ = notified => false,
        }
    }
}

/// Runs `call` until it succeeds, fails with something other than throttling, or
/// `budget` runs out (then the last throttling error, with advice).
/// (Not an `async fn` of its own: one more layer of async nesting overflows the
/// compiler's layout depth for the commands' futures.)
pub fn retry_throttled<T, F, Fut>(
    budget: Duration,
    call: F,
) -> impl Future<Output = Result<T, AwsError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    retry_throttled_until(budget, Abandon::default(), call)
}

/// [`retry_throttled`], giving up (with the last error) once `abandon` is set.
async fn retry_throttled_until<T, F, Fut>(
    budget: Duration,
    abandon: Abandon,
    mut call: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let deadline = Instant::now() + budget;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match call().await {
            Err(e) if e.kind == AwsErrorKind::Throttled => {
                let pause = jitter(backoff);
                if Instant::now() + pause > deadline {
                    let secs = budget.as_secs_f64();
                    return Err(e.with_hint(format!(
                        "AWS kept throttling requests for {secs:.0} s; wait a minute and try again, \
                         or pass a longer --wait"
                    )));
                }
                tracing::info!("throttled, retrying in {pause:?}: {e}");
                if !abandon.pause(pause).await {
                    return Err(e);
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

/// Half to all of `d`, from fresh randomness (full jitter halves the herd).
fn jitter(d: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    d / 2 + d / 2 * r / 1000
}

/// How `StartSession` is retried and how its failures are explained.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Keep retrying `TargetNotConnected` this long (`--wait`), saying so on stderr.
    pub wait: Option<Duration>,
    /// Looks up when a disconnected agent was last seen; without it the error says less.
    pub instances: Option<Instances>,
    /// The AWS profile in use, for advice such as `aws sso login --profile X`.
    pub profile: Option<String>,
}

/// StartSession with throttling retries, `--wait` for a connecting agent, and errors that
/// say what to do. Once `abandon` is set, no new attempt is made (the last error returns).
pub async fn start_session(
    ssm: &Ssm,
    target: &str,
    document: &SessionDocument,
    opts: &StartOptions,
    abandon: &Abandon,
) -> Result<StartedSession, AwsError> {
    let wait = opts.wait.unwrap_or_default();
    // `--wait` is how long the user is willing to wait, for a throttling AWS too.
    let budget = opts.wait.unwrap_or(DEFAULT_THROTTLE_BUDGET);
    let started = Instant::now();
    let deadline = started + wait;
    let mut last_notice: Option<Instant> = None;
    loop {
        let result = retry_throttled_until(budget, abandon.clone(), || {
            ssm.start_session(target, document)
        })
        .await;
        match result {
            Err(e) if e.kind == AwsErrorKind::TargetNotConnected && Instant::now() < deadline => {
                let now = Instant::now();
                if last_notice.is_none_or(|t| now.duration_since(t) >= WAIT_NOTICE) {
                    let left = deadline.saturating_duration_since(now).as_secs();
                    if last_notice.is_none() {
                        eprintln!(
                            "sallyport: {target} is not connected yet; waiting up to {left} s for its SSM agent"
                        );
                    } else {
                        eprintln!("sallyport: still waiting for {target} ({left} s left)");
                    }
                    last_notice = Some(now);
                }
                let poll = WAIT_POLL.min(deadline.saturating_duration_since(now));
                if !abandon.pause(poll).await {
                    return Err(e);
                }
            }
            Err(e) => {
                let waited = (wait > Duration::ZERO).then(|| started.elapsed());
                return Err(explain(e, target, opts, waited).await);
            }
            Ok(s) => {
                if last_notice.is_some() {
                    eprintln!("sallyport: {target} is connected");
                }
                return Ok(s);
            }
        }
    }
}

/// Adds the advice only this layer can give: when the agent was last seen, which profile to
/// log in again, which IAM action on which resource is missing.
pub async fn explain(
    e: AwsError,
    target: &str,
    opts: &StartOptions,
    waited: Option<Duration>,
) -> AwsError {
    if e.hint.is_some() {
        return e;
    }
    match e.kind {
        AwsErrorKind::TargetNotConnected => {
            let node = match &opts.instances {
                Some(i) => tokio::time::timeout(LAST_SEEN_BUDGET, i.node(target))
                    .await
                    .ok()
                    .and_then(Result::ok),
                None => None,
            };
            let waited = match waited {
                Some(w) => format!(" (waited {} s)", w.as_secs()),
                None => String::new(),
            };
            let hint = match node {
                Some(Some(n)) => format!(
                    "its SSM agent is {}, last seen {}{waited}; check that the instance is running \
                     and can reach SSM, or retry with --wait 90s if it is still booting",
                    n.ping_status,
                    n.last_seen(SystemTime::now())
                ),
                Some(None) => format!(
                    "SSM does not know {target} in this account and region{waited}: check the \
                     ID, --profile and --region, that the instance is running, and that its SSM \
                     agent is online"
                ),
                None => format!(
                    "check that {target} exists in this account and region, is running, and \
                     that its SSM agent is online{waited}; retry with --wait 90s if it is still booting"
                ),
            };
            e.with_hint(hint)
        }
        _ => advise(e, opts.profile.as_deref()),
    }
}

/// Advice for credential and permission errors, from the error's own text.
pub fn advise(e: AwsError, profile: Option<&str>) -> AwsError {
    if e.hint.is_some() {
        return e;
    }
    match e.kind {
        AwsErrorKind::Credentials => {
            let expired = e
                .code
                .as_deref()
                .is_some_and(|c| c.starts_with("ExpiredToken"))
                || e.message.to_ascii_lowercase().contains("expired");
            let login = match profile {
                Some(p) => format!("`aws sso login --profile {p}`"),
                None => "`aws sso login`".to_owned(),
            };
            let hint = if expired {
                format!(
                    "your AWS credentials have expired: run {login} for an SSO profile, or get \
                     fresh keys from wherever these came from"
                )
            } else {
                format!(
                    "check your AWS credentials: run {login} for an SSO profile, or set \
                     --profile / AWS_PROFILE or AWS_ACCESS_KEY_ID"
                )
            };
            e.with_hint(hint)
        }
        AwsErrorKind::AccessDenied => match missing_permission(&e.message) {
            Some((action, resource)) => {
                let hint = format!(
                    "your IAM identity needs {action} on {resource}; ask your AWS administrator \
                     to allow it, or use a --profile that has it"
                );
                e.with_hint(hint)
            }
            None => e,
        },
        _ => e,
    }
}

/// `(action, resource)` from IAM's "is not authorized to perform: A on resource: R" text.
pub fn missing_permission(message: &str) -> Option<(String, String)> {
    let rest = message.split("not authorized to perform: ").nth(1)?;
    let action = rest.split_whitespace().next()?;
    let resource = rest
        .split(" on resource: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("the target");
    let trim = |s: &str| s.trim_end_matches([',', '.', ';']).to_owned();
    Some((trim(action), trim(resource)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_missing_permission() {
        let m = "StartSession failed: AccessDeniedException: User: arn:aws:iam::1:user/u is not \
                 authorized to perform: ssm:StartSession on resource: \
                 arn:aws:ec2:us-east-1:1:instance/i-0abc because no identity-based policy allows";
        assert_eq!(
            missing_permission(m),
            Some((
                "ssm:StartSession".to_owned(),
                "arn:aws:ec2:us-east-1:1:instance/i-0abc".to_owned()
            ))
        );
        assert_eq!(missing_permission("Access denied"), None);
    }

    #[test]
    fn expired_credentials_name_the_profile() {
        let mut e = AwsError::new(AwsErrorKind::Credentials, "x: ExpiredTokenException");
        e.code = Some("ExpiredTokenException".to_owned());
        let e = advise(e, Some("research"));
        let hint = e.hint.unwrap();
        assert!(hint.contains("expired"), "{hint}");
        assert!(hint.contains("aws sso login --profile research"), "{hint}");
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_is_retried_inside_the_budget() {
        let mut calls = 0;
        let r = retry_throttled(Duration::from_secs(10), || {
            calls += 1;
            let n = calls;
            async move {
                if n < 4 {
                    Err(AwsError::new(AwsErrorKind::Throttled, "Rate exceeded"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 4);

        let started = Instant::now();
        let r: Result<(), _> = retry_throttled(Duration::from_secs(3), || async {
            Err(AwsError::new(AwsErrorKind::Throttled, "Rate exceeded"))
        })
        .await;
        let e = r.unwrap_err();
        assert!(e.hint.unwrap().contains("kept throttling"));
        assert!(started.elapsed() <= Duration::from_secs(3));
        assert!(started.elapsed() >= Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_call_makes_no_new_attempt() {
        use std::sync::atomic::AtomicUsize;
        let abandon = Abandon::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (abandon, calls) = (abandon.clone(), calls.clone());
            async move {
                retry_throttled_until(Duration::from_secs(60), abandon, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err::<(), _>(AwsError::new(AwsErrorKind::Throttled, "Rate exceeded")) }
                })
                .await
            }
        });
        // Wait (virtual time) for the first attempt: the call is in its first pause.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        abandon.set();
        let r = task.await.unwrap();
        assert_eq!(r.unwrap_err().kind, AwsErrorKind::Throttled);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no attempt after abandon");
        assert!(
            started.elapsed() < FIRST_BACKOFF / 2,
            "{:?}",
            started.elapsed()
        );
        // Set before the first pause: no pause at all.
        let set = Abandon::default();
        set.set();
        assert!(!set.pause(Duration::from_secs(5)).await);
        assert!(started.elapsed() < FIRST_BACKOFF / 2);
    }
}
