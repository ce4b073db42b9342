//! A [`Txn`] as one etcd transaction, several as one grouped etcd transaction, and etcd's
//! answers as [`Outcome`]s. Pure: tested without an etcd.

use std::collections::HashMap;

use etcd_client::{
    Compare, CompareOp, GetOptions, Txn as EtcdTxn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::revision_of;
use crate::store::{Expect, Op, Outcome, Txn, first_failed_check};

/// Compares from the checks, puts and deletes on success; on failure, the checked keys are
/// read (keys only: their revisions) so the answer can name the first check that failed.
pub fn to_etcd(t: &Txn, prefix: &str) -> EtcdTxn {
    let full = |k: &str| format!("{prefix}{k}");
    let compares: Vec<Compare> = t
        .checks
        .iter()
        .map(|(k, expect)| match expect {
            // A missing key has version 0; any existing one at least 1.
            Expect::Absent => Compare::version(full(k), CompareOp::Equal, 0),
            Expect::Revision(r) => Compare::mod_revision(full(k), CompareOp::Equal, *r as i64),
        })
        .collect();
    let ops: Vec<TxnOp> = t
        .ops
        .iter()
        .map(|op| match op {
            Op::Put(k, v) => TxnOp::put(full(k), v.clone(), None),
            Op::Delete(k) => TxnOp::delete(full(k), None),
        })
        .collect();
    let reads: Vec<TxnOp> = t
        .checks
        .iter()
        .map(|(k, _)| TxnOp::get(full(k), Some(GetOptions::new().with_keys_only())))
        .collect();
    EtcdTxn::new().when(compares).and_then(ops).or_else(reads)
}

/// Several transactions as ONE etcd transaction: an outer one without compares (so its success
/// branch always runs) holding each as a nested transaction with its own compares and
/// branches. etcd evaluates every compare of the request against the state before it, then
/// applies the branches taken, all at one revision, in one raft entry: so each nested
/// transaction succeeds or fails on its own, exactly as alone, provided no key one of them
/// writes is checked or written by another (`batch` sees to that).
pub fn group_to_etcd<'a>(ts: impl Iterator<Item = &'a Txn>, prefix: &str) -> EtcdTxn {
    let nested: Vec<TxnOp> = ts.map(|t| TxnOp::txn(to_etcd(t, prefix))).collect();
    EtcdTxn::new().and_then(nested)
}

/// The outcome of `t` sent alone.
pub fn outcome(t: &Txn, prefix: &str, resp: &TxnResponse) -> Outcome {
    outcome_at(
        t,
        prefix,
        resp,
        revision_of(resp.header().map_or(0, |h| h.revision())),
    )
}

/// The outcome of each member of a group sent with [`group_to_etcd`], in order; `None` for a
/// member the answer has no nested response for (etcd always gives one: then the outcome is
/// not known). The nested responses carry no revision of their own: every member that
/// committed did so at the group's.
pub fn group_outcomes<'a>(
    ts: impl ExactSizeIterator<Item = &'a Txn>,
    prefix: &str,
    resp: &TxnResponse,
) -> Vec<Option<Outcome>> {
    let revision = revision_of(resp.header().map_or(0, |h| h.revision()));
    let mut nested = resp.op_responses().into_iter();
    ts.map(|t| match nested.next() {
        Some(TxnOpResponse::Txn(r)) => Some(outcome_at(t, prefix, &r, revision)),
        _ => None,
    })
    .collect()
}

fn outcome_at(t: &Txn, prefix: &str, resp: &TxnResponse, revision: u64) -> Outcome {
    if resp.succeeded() {
        return Outcome::Committed(revision);
    }
    // The failure branch read every checked key at the same revision the compares saw (in a
    // group too: no other member writes a key this one checks).
    let mut found: HashMap<Vec<u8>, u64> = HashMap::new();
    for r in resp.op_responses() {
        if let TxnOpResponse::Get(g) = r {
            for kv in g.kvs() {
                found.insert(kv.key().to_vec(), revision_of(kv.mod_revision()));
            }
        }
    }
    let failed = first_failed_check(t, |k| {
        Ok(found.get(format!("{prefix}{k}").as_bytes()).copied())
    });
    let key = match failed {
        Ok(Some(k)) => k.to_string(),
        // Cannot happen (the reads saw what the compares saw); name the first check rather
        // than answer a commit that did not happen.
        _ => {
            tracing::warn!(
                checks = t.checks.len(),
                "etcd refused a transaction but every check holds in its own reads"
            );
            t.checks.first().map(|(k, _)| k.clone()).unwrap_or_default()
        }
    };
    Outcome::Conflict { key }
}
