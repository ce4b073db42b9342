//! Which waiting transactions may go to etcd together, as one grouped transaction (`group`).
//! Pure: tested without an etcd.
//!
//! etcd evaluates every compare of a request against the state before the request, then applies
//! the branches taken. Members of a group therefore behave exactly as if each were committed
//! alone, one after another, only when none of them depends on another: no key that one member
//! writes (puts or deletes) may be checked or written by any other. Keys that several members
//! only check are fine (nobody in the group changes them). etcd itself refuses a request that
//! puts a key twice, nested transactions included.
//!
//! etcd's `--max-txn-ops` (128 by default) is counted per transaction, nested ones included:
//! a transaction counts the most of its compares, its success ops and its failure ops, and each
//! nested transaction must count no more than the limit minus what its parent counts. Our outer
//! transaction counts its members (it has no compares and no failure branch), so a group of `n`
//! members fits when `n` plus the largest member's count is at most the limit. The test against
//! a real etcd (`group_tests`) checks both sides of that edge.

use std::collections::HashMap;

use crate::store::{Op, Txn};

/// What one etcd request may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// etcd's `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// Bound on the keys and values of one group, well under etcd's `--max-request-bytes`
    /// (1.5 MiB by default): a group refused as too large is sent member by member, at the
    /// cost of a wasted round-trip.
    pub max_bytes: usize,
}

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// A third of etcd's default `--max-request-bytes`: framing and the failure branches' reads
/// come on top of the keys and values counted here.
pub const DEFAULT_MAX_BYTES: usize = 512 << 10;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What etcd counts against `--max-txn-ops` for `t` as `txn::to_etcd` builds it: its
/// compares (the checks), its success ops (the ops) and its failure ops (a read per check).
pub fn ops_of(t: &Txn) -> usize {
    // The failure ops are as many as the compares: the larger of compares and success ops.
    t.size()
}

/// The keys and values `t` puts into a request (each checked key twice: compared, read back).
fn bytes_of(t: &Txn) -> usize {
    let checks: usize = t.checks.iter().map(|(k, _)| 2 * k.len() + 16).sum();
    let ops: usize = t
        .ops
        .iter()
        .map(|op| match op {
            Op::Put(k, v) => k.len() + v.len() + 8,
            Op::Delete(k) => k.len() + 8,
        })
        .sum();
    checks + ops
}

/// How a group uses a key so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    Checked,
    Written,
}

/// A group being put together.
#[derive(Default)]
struct Group<'a> {
    keys: HashMap<&'a str, Use>,
    members: usize,
    most_ops: usize,
    bytes: usize,
}

impl<'a> Group<'a> {
    /// Whether `t` may join: its keys and the group's are independent, and the group stays
    /// within `limits`. The first member always may (alone, it is sent as it is).
    fn admits(&self, t: &'a Txn, limits: Limits) -> bool {
        if self.members == 0 {
            return true;
        }
        let ops = self.most_ops.max(ops_of(t));
        if self.members + 1 + ops > limits.max_txn_ops
            || self.bytes + bytes_of(t) > limits.max_bytes
        {
            return false;
        }
        let mut written: Vec<&str> = Vec::with_capacity(t.ops.len());
        for op in &t.ops {
            let (Op::Put(k, _) | Op::Delete(k)) = op;
            // A key written twice by `t` itself: etcd refuses it however it is sent; alone,
            // the refusal is its own.
            if self.keys.contains_key(k.as_str()) || written.contains(&k.as_str()) {
                return false;
            }
            written.push(k);
        }
        t.checks
            .iter()
            .all(|(k, _)| self.keys.get(k.as_str()) != Some(&Use::Written))
    }

    fn add(&mut self, t: &'a Txn) {
        for (k, _) in &t.checks {
            self.keys.entry(k).or_insert(Use::Checked);
        }
        for op in &t.ops {
            let (Op::Put(k, _) | Op::Delete(k)) = op;
            self.keys.insert(k, Use::Written);
        }
        self.members += 1;
        self.most_ops = self.most_ops.max(ops_of(t));
        self.bytes += bytes_of(t);
    }

    /// No transaction at all could join any more.
    fn full(&self, limits: Limits) -> bool {
        self.members > 0 && self.members + 1 + self.most_ops > limits.max_txn_ops
    }
}

/// The positions in `waiting` (oldest first) of the transactions that go to etcd next, as one
/// group: the oldest always (so none waits for ever), then every later one that is independent
/// of those taken and fits. The others wait for the next group.
pub fn next_group<'a>(waiting: impl Iterator<Item = &'a Txn>, limits: Limits) -> Vec<usize> {
    let mut group = Group::default();
    let mut taken = Vec::new();
    for (i, t) in waiting.enumerate() {
        if group.full(limits) {
            break;
        }
        if group.admits(t, limits) {
            group.add(t);
            taken.push(i);
        }
    }
    taken
}
