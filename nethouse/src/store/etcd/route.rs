//! One round-trip to etcd, on the first member that serves it: each attempt is bounded by the
//! request timeout and timed; a member that fails is passed over (`members`) and the request
//! goes on to the next one when that is safe — a read always, a commit only when it certainly
//! did nothing (otherwise its outcome is unknown and the caller re-reads). Whether etcd can be
//! reached at all (`/readyz`) follows from whether every member failed lately, not from one
//! member's failure: a replica whose member died serves on through the others.

use std::sync::Weak;
use std::time::Duration;

use etcd_client::{Client, GetOptions};

use super::members::Members;
use super::reach::{CallError, Reach};

/// How often the probe asks etcd while nothing else does; `/readyz` follows etcd this closely.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Which failures may be tried again on the next member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A read: whatever failed, asking another member is harmless.
    Any,
    /// A commit: only when the failed attempt certainly did nothing.
    IfNotApplied,
}

pub struct Conn {
    pub members: Members,
    pub reach: Reach,
    pub timeout: Duration,
}

impl Conn {
    /// Runs `f` on the first member that serves it; returns its answer and that member.
    pub async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        retry: Retry,
        f: F,
    ) -> Result<(T, usize), CallError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last: Option<CallError> = None;
        for i in self.members.order() {
            let attempt = async {
                let client = self.members.client(i).await?;
                f(client).await
            };
            match self.reach.call(op, self.timeout, attempt).await {
                Ok(v) => {
                    self.members.answered(i);
                    self.reach.reached();
                    return Ok((v, i));
                }
                // A refusal of the request itself: every member would answer the same.
                Err(e) if !e.unreachable => return Err(e),
                Err(e) => {
                    self.members.failed(i, &e.message);
                    let next = retry == Retry::Any || e.not_applied;
                    let message = format!("{}: {}", self.members.url(i), e.message);
                    last = Some(CallError { message, ..e });
                    if !next {
                        break;
                    }
                }
            }
        }
        let e = last.unwrap_or_else(|| CallError {
            message: "no etcd member configured".into(),
            unreachable: true,
            not_applied: true,
        });
        if self.members.all_failing() {
            self.reach.lost(op, &e.message);
        }
        Err(e)
    }
}

/// Asks etcd for one key's count every [`PROBE_EVERY`] (a linearizable read: it needs a leader
/// and a quorum, as a commit does) for as long as the store lives, so that `/readyz` follows
/// etcd while no request does.
pub async fn probe(conn: Weak<Conn>, key: String) {
    loop {
        // At start and after every probe: which member leads (after an election, another).
        match conn.upgrade() {
            Some(conn) => super::leader::follow(&conn).await,
            None => return,
        }
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(conn) = conn.upgrade() else { return };
        let key = key.clone();
        let probed = conn
            .call("probe", Retry::Any, |c| {
                let key = key.clone();
                async move {
                    c.kv_client()
                        .get(key, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await;
        // Even while nothing else talks to etcd, the watch-lag metrics learn its revision.
        if let Ok((resp, _)) = probed {
            conn.reach
                .seen(resp.header().map_or(0, |h| h.revision()), false);
        }
    }
}
