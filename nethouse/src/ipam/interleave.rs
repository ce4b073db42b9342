//! Overlapping calls, for tests: a store whose every call first yields to the runtime a
//! scripted number of times, so IPAM calls joined in one task interleave at each await in an
//! order the test chooses (the same script gives the same interleaving), and whose commits can
//! be made to fail through the [`FaultyStore`] underneath.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use crate::store::faulty::FaultyStore;
use crate::store::{Outcome, Revision, Store, StoreError, Txn, Versioned, Watch};

/// What one commit does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Apply,
    /// Fails and applies nothing.
    Fail,
    /// Applies, then fails: the caller cannot tell.
    LoseAnswer,
}

#[derive(Default)]
struct Script {
    /// Yields before each store call, in call order; none once used up.
    yields: VecDeque<u8>,
    /// What each commit does, in commit order.
    commits: VecDeque<Fault>,
}

#[derive(Clone, Default)]
pub struct Interleaved {
    pub faulty: FaultyStore,
    script: Arc<Mutex<Script>>,
}

impl Interleaved {
    /// Replaces the script; an empty one makes a plain store.
    pub fn script(&self, yields: Vec<u8>, commits: Vec<Fault>) {
        let mut s = self.lock();
        s.yields = yields.into();
        s.commits = commits.into();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn turn(&self) {
        let n = self.lock().yields.pop_front().unwrap_or(0);
        for _ in 0..n {
            tokio::task::yield_now().await;
        }
    }
}

impl Store for Interleaved {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.turn().await;
        self.faulty.get(key).await
    }

    async fn scan_each<A, F>(&self, prefix: &str, acc: A, visit: F) -> Result<A, StoreError>
    where
        A: Send + 'static,
        F: FnMut(&mut A, &str, Revision, &[u8]) -> Result<(), String> + Send + 'static,
    {
        self.faulty.scan_each(prefix, acc, visit).await
    }

    async fn commit(&self, txn: Txn) -> Result<Outcome, StoreError> {
        self.turn().await;
        // Armed and consumed in one poll: FaultyStore reads its flags before and right after
        // the memory store's commit, which never yields, so no other call can take them.
        // Past the script the flags are left alone: a test may have armed them itself.
        let fault = self.lock().commits.pop_front();
        match fault {
            Some(Fault::Apply) => self.faulty.disarm(),
            Some(Fault::Fail) => self.faulty.fail_next_commit(),
            Some(Fault::LoseAnswer) => self.faulty.lose_next_answer(),
            None => {}
        }
        self.faulty.commit(txn).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.faulty.revision().await
    }

    async fn watch(&self, after: Revision) -> Result<Watch, StoreError> {
        self.faulty.watch(after).await
    }

    fn max_txn_ops(&self) -> Option<usize> {
        self.faulty.max_txn_ops()
    }

    fn shared(&self) -> bool {
        self.faulty.shared()
    }
}

/// Runs `futs` concurrently in this task, polling them in order each time, and gives their
/// outputs in the same order. One task and a fixed polling order keep an interleaving
/// repeatable.
pub async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (f, out) in futs.iter_mut().zip(outs.iter_mut()) {
            if out.is_none()
                && let Poll::Ready(v) = f.as_mut().poll(cx)
            {
                *out = Some(v);
            }
        }
        if outs.iter().all(Option::is_some) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}
