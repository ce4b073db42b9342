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
//! Failures: a group whose answer is lost (timeout, connection reset) leaves every member's
//! outcome unknown, as one commit's today — each caller re-reads. A group etcd refuses as a
//! whole (it applied nothing: more ops than its `--max-txn-ops`, too large) is sent again
//! commit by commit, so each gets etcd's answer to itself.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

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

impl Committer {
    /// Starts the sending task. Needs a tokio runtime.
    pub fn start(conn: Arc<Conn>, prefix: &str, limits: Limits) -> Committer {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, prefix.into(), limits, rx));
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
    mut queue: mpsc::UnboundedReceiver<Waiting>,
) {
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut flying = FuturesUnordered::new();
    let mut open = true;
    loop {
        while let Ok(w) = queue.try_recv() {
            waiting.push_back(w);
        }
        while flying.len() < IN_FLIGHT && !waiting.is_empty() {
            let group = take(&mut waiting, limits);
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
