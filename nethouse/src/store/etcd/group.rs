//! Group commit on etcd, as the embedded store's writer does on its file: commits queue up,
//! and one task sends whatever waits as ONE etcd transaction (`txn::group_to_etcd`: each
//! commit a nested transaction with its own checks), so many waiting allocations cost one
//! round-trip, one raft entry and one fsync on each member instead of one each. Each commit
//! still gets its own outcome: committed (all members of a group at the group's revision) or
//! the conflict that names its own failed check.
//!
//! While a group is in flight, whatever arrives waits and goes into the next one: an idle
//! store sends a commit at once (no timer), a busy one sends larger groups rather than more
//! round-trips. Only independent commits share a group (`batch`); the others wait for the next.
//!
//! Under load a group is also gathered a moment (`--etcd-group-wait`, 2 ms) before it is sent:
//! the callers just answered come back with their next commit within a millisecond or two, and
//! without the wait each group carried only those that arrived while the last was in flight —
//! with three replicas on one etcd, groups of ~10 where one replica alone gathered ~30. etcd's
//! cost is largely per request (its gRPC, raft entry, apply and garbage), so larger groups are
//! more allocations per second from the same etcd, and with callers always waiting, a shorter
//! wait for each (bench: 6,100-6,500 allocations/s, p99 22-25 ms before; see BENCHMARKS.md).
//! A lone commit never waits: the gathering follows a group of more than one (`gather`).
//!
//! Failures: a group whose answer is lost (timeout, connection reset) leaves every member's
//! outcome unknown, as one commit's today — each caller re-reads. A group etcd refuses as a
//! whole (it applied nothing: more ops than its `--max-txn-ops`, too large) is sent again
//! commit by commit, so each gets etcd's answer to itself.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::batch::{self, Limits};
use super::route::{Conn, Retry};
use super::txn;
use crate::store::{Outcome, StoreError, Txn};

/// Groups in flight at once. One, as the embedded store's writer: under load a second one
/// would only split what waits into smaller groups (more round-trips for etcd to order), and
/// the wait it saves is at most one round-trip.
const IN_FLIGHT: usize = 1;

type Answer = Result<Outcome, StoreError>;

struct Waiting {
    txn: Txn,
    reply: oneshot::Sender<Answer>,
}

/// The queue of commits; the task that sends them ends once this is dropped and every queued
/// commit was answered.
pub struct Committer {
    queue: mpsc::UnboundedSender<Waiting>,
}

/// `--etcd-group-wait`'s default: about the time callers just answered take to come back with
/// their next commit (an HTTP answer and the next request); in the bench 1 ms gained nothing,
/// 2 ms the most, 3-5 ms less again.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_millis(2);

/// How many commits to gather before the next group is sent, after a group of `last` was
/// answered with `waiting` commits queued: `None` to send at once. After a group of one (light
/// load) nothing waits; after a larger one, as many more as it carried (its callers coming
/// back), for at most `wait`.
pub fn gather(last: usize, waiting: usize, wait: Duration) -> Option<usize> {
    (!wait.is_zero() && last > 1).then_some(waiting + last)
}

impl Committer {
    /// Starts the sending task, which gathers each group for up to `wait` under load
    /// ([`gather`]). Needs a tokio runtime.
    pub fn start(conn: Arc<Conn>, prefix: &str, limits: Limits, wait: Duration) -> Committer {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, prefix.into(), limits, wait, rx));
        Committer { queue }
    }

    pub async fn commit(&self, txn: Txn) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Waiting { txn, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.unwrap_or_else(|_| {
            // The task is gone (the runtime is shutting down) with the commit possibly sent.
            Err(StoreError::Commit {
                message: "the store stopped before the commit was answered; it may or may not \
                          have been applied"
                    .into(),
            })
        })
    }
}

async fn run(
    conn: Arc<Conn>,
    prefix: Arc<str>,
    limits: Limits,
    wait: Duration,
    mut queue: mpsc::UnboundedReceiver<Waiting>,
) {
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut flying = FuturesUnordered::new();
    let mut open = true;
    // The size of the last group sent; it is the one answered whenever nothing is in flight.
    let mut last = 0;
    loop {
        while let Ok(w) = queue.try_recv() {
            waiting.push_back(w);
        }
        if flying.len() < IN_FLIGHT
            && !waiting.is_empty()
            && open
            && let Some(target) = gather(last, waiting.len(), wait)
        {
            let until = tokio::time::Instant::now() + wait;
            while waiting.len() < target {
                match tokio::time::timeout_at(until, queue.recv()).await {
                    Ok(Some(w)) => waiting.push_back(w),
                    Ok(None) => {
                        open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        while flying.len() < IN_FLIGHT && !waiting.is_empty() {
            let group = take(&mut waiting, limits);
            last = group.len();
            flying.push(send(conn.clone(), prefix.clone(), group));
        }
        if flying.is_empty() {
            // Nothing in flight, so nothing waits either.
            match queue.recv().await {
                Some(w) => waiting.push_back(w),
                None => return,
            }
        } else if flying.len() < IN_FLIGHT && open {
            tokio::select! {
                w = queue.recv() => match w {
                    Some(w) => waiting.push_back(w),
                    None => open = false,
                },
                _ = flying.next() => {}
            }
        } else {
            flying.next().await;
        }
    }
}

/// Takes the next group out of `waiting`; the others keep their order.
fn take(waiting: &mut VecDeque<Waiting>, limits: Limits) -> Vec<Waiting> {
    let chosen = batch::next_group(waiting.iter().map(|w| &w.txn), limits);
    if chosen.len() == waiting.len() {
        return waiting.drain(..).collect();
    }
    let mut group = Vec::with_capacity(chosen.len());
    let mut rest = VecDeque::with_capacity(waiting.len() - chosen.len());
    let mut chosen = chosen.into_iter().peekable();
    for (i, w) in waiting.drain(..).enumerate() {
        if chosen.next_if_eq(&i).is_some() {
            group.push(w);
        } else {
            rest.push_back(w);
        }
    }
    *waiting = rest;
    group
}

/// Sends one group and answers each of its commits.
async fn send(conn: Arc<Conn>, prefix: Arc<str>, group: Vec<Waiting>) {
    let started = Instant::now();
    let n = group.len();
    match <[Waiting; 1]>::try_from(group) {
        // Alone: sent as it is, exactly as before group commit.
        Ok([only]) => {
            let answer = alone(&conn, &prefix, &only.txn).await;
            let _ = only.reply.send(answer);
        }
        Err(group) => together(&conn, &prefix, group).await,
    }
    conn.reach.committed(started.elapsed(), n);
}

/// One commit as one etcd transaction.
async fn alone(conn: &Conn, prefix: &str, t: &Txn) -> Answer {
    let request = txn::to_etcd(t, prefix);
    // Tried on the next member only when it certainly did nothing: a commit whose answer
    // was lost may have landed, and only the caller's re-read can tell.
    let (resp, _) = conn
        .call("txn", Retry::IfNotApplied, |c| {
            let request = request.clone();
            async move { c.kv_client().txn(request).await }
        })
        .await
        .map_err(|e| e.commit(t))?;
    let outcome = txn::outcome(t, prefix, &resp);
    conn.reach.seen(
        resp.header().map_or(0, |h| h.revision()),
        matches!(outcome, Outcome::Committed(_)),
    );
    Ok(outcome)
}

/// Several commits as one etcd transaction.
async fn together(conn: &Conn, prefix: &str, group: Vec<Waiting>) {
    let request = txn::group_to_etcd(group.iter().map(|w| &w.txn), prefix);
    let sent = conn
        .call("txn", Retry::IfNotApplied, |c| {
            let request = request.clone();
            async move { c.kv_client().txn(request).await }
        })
        .await;
    match sent {
        Ok((resp, _)) => {
            let outcomes = txn::group_outcomes(group.iter().map(|w| &w.txn), prefix, &resp);
            conn.reach.seen(
                resp.header().map_or(0, |h| h.revision()),
                outcomes
                    .iter()
                    .any(|o| matches!(o, Some(Outcome::Committed(_)))),
            );
            let n = group.len();
            for (w, outcome) in group.into_iter().zip(outcomes) {
                let answer = outcome.ok_or_else(|| StoreError::Commit {
                    message: format!(
                        "etcd's answer to a group of {n} transactions lacks this one's: it may \
                         or may not have been applied"
                    ),
                });
                let _ = w.reply.send(answer);
            }
        }
        Err(e) if e.unreachable => {
            for w in group {
                let _ = w.reply.send(Err(e.clone().commit(&w.txn)));
            }
        }
        Err(e) => {
            // Refused before anything was applied; alone, each gets etcd's answer to itself.
            tracing::warn!(
                transactions = group.len(),
                error = %e.message,
                "etcd refused a group of transactions; sending each alone (is \
                 --etcd-max-txn-ops above etcd's --max-txn-ops?)"
            );
            let answers =
                futures::future::join_all(group.iter().map(|w| alone(conn, prefix, &w.txn))).await;
            for (w, answer) in group.into_iter().zip(answers) {
                let _ = w.reply.send(answer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_gathered_only_after_a_group_of_more_than_one() {
        let ms = Duration::from_millis;
        // (last group's size, waiting now, wait) -> how many to gather
        for (last, waiting, wait, want) in [
            (0, 1, ms(2), None),
            (1, 1, ms(2), None),
            (1, 9, ms(2), None),
            (2, 1, ms(2), Some(3)),
            (21, 0, ms(2), Some(21)),
            (10, 11, ms(2), Some(21)),
            (10, 11, Duration::ZERO, None),
        ] {
            assert_eq!(
                gather(last, waiting, wait),
                want,
                "last {last}, waiting {waiting}, wait {wait:?}"
            );
        }
    }
}
