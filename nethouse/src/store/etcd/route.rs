//! One round-trip to etcd, on the first member that serves it: each attempt is bounded by the
//! request timeout and timed; a member that fails is passed over (`members`) and the request
//! goes on to the next one when that is safe — a read always, a commit only when it certainly
//! did nothing (otherwise its outcome is unknown and the caller re-reads). Whether etcd can be
//! reached at all (`/readyz`) follows from whether every member failed lately, not from one
//! member's failure: a replica whose member died serves on through the others.
//!
//! While etcd elects a leader, every member refuses at once ("no leader"; a dead one refuses
//! the connection): the request certainly did nothing anywhere, and in a second or two it would
//! be served. So when every member of a round refused that way, the call pauses and goes round
//! again, the pause growing from [`FIRST_PAUSE`] to [`LONGEST_PAUSE`], for as long as every
//! member has refused for less than `--etcd-leader-wait` ([`again`]). That bound counts from
//! the first such round of any call, not from each call's start: calls arriving during an
//! outage stop waiting together, a commit queued behind a waiting group waits no longer, and
//! once the bound is over calls fail at once, as etcd is then reported unreachable. A round
//! with a failure of unknown outcome (no answer in time, a reset) ends a commit at once, as
//! before; a member that answers is used with no added wait.

use std::sync::Weak;
use std::time::Duration;

use etcd_client::{Client, GetOptions};

use super::members::Members;
use super::reach::{CallError, Reach};

/// How often the probe asks etcd while nothing else does; `/readyz` follows etcd this closely.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The pause after the first round in which every member refused; it doubles each round.
pub const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two rounds: an election that ends is noticed this soon at worst.
pub const LONGEST_PAUSE: Duration = Duration::from_millis(500);

/// How long calls go round the members while every one refuses (`--etcd-leader-wait`).
///
/// etcd's followers notice a lost leader after the election timeout (1 s by default; each
/// member draws its own between 1 and 2 s), and refuse ("no leader") from when the first of
/// them stands for election until one has won. That is a round-trip when the other follower
/// grants its vote, and another randomized timeout (1-2 s) when it does not (it still counted
/// the old leader alive, or both stood at once). In the chaos test, where clients met them
/// as errors (311-797 in a run, 64 clients trying again every ~60 ms), they lasted under a
/// second. 2 s rides out such a window several times over, or a vote taken again, and keeps
/// a waiting replica's answer well inside its clients' deadlines: the CNI plugin gives one
/// exchange with a replica 3 s (`ipam.requestTimeoutSeconds`, within 10 s for the whole
/// call), NetHouse's client 5 s. 3 s would equal the plugin's exchange: it would give up on
/// a replica just as the replica answered.
pub const DEFAULT_LEADER_WAIT: Duration = Duration::from_secs(2);

/// Whether an outage in which every member has refused for `refusing_for` (`None`: not every
/// one refused) is still a wait for an election, within `bound`, rather than etcd lost. Pure.
pub fn waiting(refusing_for: Option<Duration>, bound: Duration) -> bool {
    refusing_for.is_some_and(|d| d < bound)
}

/// After a round in which no member served: the pause before going round again, or `None`
/// to give up. `refusing_for` is how long every member has refused, having certainly done
/// nothing — `None` when a failure of this round may have done something or says nothing
/// of an election (no answer in time, a reset connection): then a wait is not called for,
/// and a commit must not be sent again. The last pause is cut so that the last round starts
/// when the bound is reached. Pure.
pub fn again(refusing_for: Option<Duration>, pause: Duration, bound: Duration) -> Option<Duration> {
    match refusing_for {
        Some(d) if waiting(refusing_for, bound) => Some(pause.min(bound - d)),
        _ => None,
    }
}

/// The pause after `pause`: twice as long, at most [`LONGEST_PAUSE`]. Pure.
pub fn next_pause(pause: Duration) -> Duration {
    (pause * 2).min(LONGEST_PAUSE)
}

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
    /// How long every member may refuse before calls give up (`--etcd-leader-wait`).
    pub leader_wait: Duration,
}

/// How one round over the members ended.
enum Round<T> {
    Served(T, usize),
    /// No member served. `certain`: every failure certainly did nothing (refused, no leader).
    Failed {
        error: CallError,
        certain: bool,
    },
}

impl Conn {
    /// Runs `f` on the first member that serves it; returns its answer and that member.
    /// While every member refuses (an election), goes round them again (see the module).
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
        let mut pause = FIRST_PAUSE;
        loop {
            let (e, certain) = match self.round(op, retry, &f).await? {
                Round::Served(v, i) => return Ok((v, i)),
                Round::Failed { error, certain } => (error, certain),
            };
            let refusing_for = certain.then(|| self.reach.refusing(op, &e.message));
            if let Some(p) = again(refusing_for, pause, self.leader_wait) {
                tokio::time::sleep(p).await;
                pause = next_pause(pause);
                continue;
            }
            let e = match refusing_for {
                Some(d) if !self.leader_wait.is_zero() => CallError {
                    message: format!(
                        "{} (every member refused for {:.1} s, --etcd-leader-wait {:?})",
                        e.message,
                        d.as_secs_f64(),
                        self.leader_wait
                    ),
                    ..e
                },
                _ => e,
            };
            // A wait under way in another call is no outage yet; one past the bound is.
            if self.members.all_failing() && !waiting(self.reach.refusing_for(), self.leader_wait) {
                self.reach.lost(op, &e.message);
            }
            return Err(e);
        }
    }

    /// Asks the members in order until one serves, as far as `retry` allows. `Err`: a refusal
    /// of the request itself, which every member would repeat.
    async fn round<T, F, Fut>(
        &self,
        op: &'static str,
        retry: Retry,
        f: &F,
    ) -> Result<Round<T>, CallError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last: Option<CallError> = None;
        // What each member said, for the error: all of them refusing says "election" at once.
        let mut said: Vec<String> = Vec::new();
        let mut certain = true;
        for i in self.members.order() {
            let attempt = async {
                let client = self.members.client(i).await?;
                f(client).await
            };
            match self.reach.call(op, self.timeout, attempt).await {
                Ok(v) => {
                    self.members.answered(i);
                    self.reach.reached();
                    return Ok(Round::Served(v, i));
                }
                // A refusal of the request itself: every member would answer the same.
                Err(e) if !e.unreachable => return Err(e),
                Err(e) => {
                    self.members.failed(i, &e.message);
                    certain &= e.not_applied;
                    let next = retry == Retry::Any || e.not_applied;
                    said.push(format!("{}: {}", self.members.url(i), e.message));
                    last = Some(e);
                    if !next {
                        break;
                    }
                }
            }
        }
        Ok(match last {
            Some(e) => Round::Failed {
                error: CallError {
                    message: said.join("; "),
                    ..e
                },
                certain,
            },
            None => Round::Failed {
                error: CallError {
                    message: "no etcd member configured".into(),
                    unreachable: true,
                    not_applied: true,
                },
                certain: false,
            },
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_round_of_refusals_is_followed_by_another_until_the_bound() {
        let bound = Duration::from_secs(2);
        for (refusing_for, pause, then) in [
            // A failure that may have done something, or no answer: no wait.
            (None, ms(50), None),
            // The first round of an outage: the first pause.
            (Some(ms(0)), ms(50), Some(ms(50))),
            (Some(ms(900)), ms(500), Some(ms(500))),
            // The last pause is cut: the last round starts at the bound.
            (Some(ms(1900)), ms(500), Some(ms(100))),
            (Some(ms(1999)), ms(500), Some(ms(1))),
            // Refused for the whole bound, or longer (another call waited already): give up.
            (Some(bound), ms(50), None),
            (Some(ms(7000)), ms(50), None),
        ] {
            assert_eq!(
                again(refusing_for, pause, bound),
                then,
                "{refusing_for:?} {pause:?}"
            );
            assert_eq!(
                waiting(refusing_for, bound),
                then.is_some(),
                "{refusing_for:?}"
            );
        }
        // --etcd-leader-wait=0s: never waits, as before there was a wait.
        assert_eq!(again(Some(ms(0)), ms(50), Duration::ZERO), None);
        assert!(!waiting(Some(ms(0)), Duration::ZERO));
    }

    #[test]
    fn pauses_double_up_to_the_longest() {
        let mut pauses = vec![FIRST_PAUSE];
        while pauses.len() < 7 {
            pauses.push(next_pause(*pauses.last().unwrap()));
        }
        assert_eq!(pauses, [50, 100, 200, 400, 500, 500, 500].map(ms));
    }

    /// Rounds that take no time, as when every member refuses at once: the pauses of one wait
    /// add up to the bound exactly, and there are few of them.
    #[test]
    fn a_wait_ends_at_the_bound() {
        let bound = DEFAULT_LEADER_WAIT;
        let (mut refusing_for, mut pause, mut pauses) = (Duration::ZERO, FIRST_PAUSE, vec![]);
        while let Some(p) = again(Some(refusing_for), pause, bound) {
            pauses.push(p);
            refusing_for += p;
            pause = next_pause(pause);
        }
        assert_eq!(refusing_for, bound);
        assert_eq!(pauses, [50, 100, 200, 400, 500, 500, 250].map(ms));
    }
}
