//! A [`Txn`] as one etcd transaction, and etcd's answer as an [`Outcome`]. Pure: tested without
//! an etcd.

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

pub fn outcome(t: &Txn, prefix: &str, resp: &TxnResponse) -> Outcome {
    let revision = revision_of(resp.header().map_or(0, |h| h.revision()));
    if resp.succeeded() {
        return Outcome::Committed(revision);
    }
    // The failure branch read every checked key at the same revision the compares saw.
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
