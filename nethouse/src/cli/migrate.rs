//! `nethouse store migrate`: the embedded store copied into etcd, or etcd's NetHouse keys into a
//! new embedded store, for moving a single replica to HA and back. NetHouse must be stopped
//! (the embedded store is opened exclusively; nothing may write to etcd meanwhile). A target
//! holding any NetHouse key is refused: a copy over other data would mix two states. Every key
//! is written with an "absent" check, so a writer that appears meanwhile fails the copy instead
//! of being overwritten, and the target is then read back and compared key by key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::error::CliError;
use super::store_args::EtcdArgs;
use crate::store::embedded::EmbeddedStore;
use crate::store::etcd::EtcdStore;
use crate::store::{Expect, Op, Outcome, Store, StoreError, Txn};

/// Keys per transaction: etcd refuses more than 128 operations (`--max-txn-ops`) by default.
const BATCH: usize = 64;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// From the embedded store in --data-dir into etcd.
    Etcd,
    /// From etcd into a new embedded store in --data-dir.
    Embedded,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Where the keys go; they come from the other store.
    #[arg(long, value_enum)]
    pub to: Target,
    /// The embedded store's directory (source or target).
    #[arg(long, env = "NETHOUSE_DATA_DIR")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// Every key of a store with its value.
type Keys = BTreeMap<String, Vec<u8>>;

async fn read_all(store: &impl Store) -> Result<Keys, StoreError> {
    store
        .scan_each("", Keys::new(), |keys, key, _, value| {
            keys.insert(key.to_string(), value.to_vec());
            Ok(())
        })
        .await
}

/// What was copied, by the key's first segment (l: leases, i: addresses, s: subnets, m: meta).
fn summary(keys: &Keys) -> String {
    let mut kinds = BTreeMap::<&str, usize>::new();
    for k in keys.keys() {
        *kinds
            .entry(k.split('/').next().unwrap_or_default())
            .or_default() += 1;
    }
    kinds
        .iter()
        .map(|(kind, n)| format!("{kind}/: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first difference between what was meant to be copied and what the target holds.
pub fn first_difference(want: &Keys, got: &Keys) -> Option<String> {
    for (k, v) in want {
        match got.get(k) {
            None => return Some(format!("{k} is missing in the target")),
            Some(g) if g != v => return Some(format!("{k} differs in the target")),
            Some(_) => {}
        }
    }
    got.keys()
        .find(|k| !want.contains_key(*k))
        .map(|k| format!("{k} is in the target but not in the source"))
}

/// Copies `source` into the empty `target`, then verifies it; returns what was copied.
pub async fn copy(source: &impl Store, target: &impl Store) -> Result<String, CliError> {
    let fail = |what: &str, e: StoreError| CliError::Migrate(format!("{what}: {e}"));
    let already = read_all(target)
        .await
        .map_err(|e| fail("reading the target", e))?;
    if let Some(k) = already.keys().next() {
        return Err(CliError::Migrate(format!(
            "the target is not empty ({} keys, e.g. {k}): refusing to mix two states",
            already.len()
        )));
    }
    let keys = read_all(source)
        .await
        .map_err(|e| fail("reading the source", e))?;
    let entries: Vec<(&String, &Vec<u8>)> = keys.iter().collect();
    for batch in entries.chunks(BATCH) {
        let txn = Txn {
            checks: batch
                .iter()
                .map(|(k, _)| ((*k).clone(), Expect::Absent))
                .collect(),
            ops: batch
                .iter()
                .map(|(k, v)| Op::Put((*k).clone(), (*v).clone()))
                .collect(),
        };
        match target.commit(txn).await.map_err(|e| fail("writing", e))? {
            Outcome::Committed(_) => {}
            Outcome::Conflict { key } => {
                return Err(CliError::Migrate(format!(
                    "{key} appeared in the target during the copy: is a NetHouse running on it?"
                )));
            }
        }
    }
    let copied = read_all(target)
        .await
        .map_err(|e| fail("reading the target back", e))?;
    if let Some(diff) = first_difference(&keys, &copied) {
        return Err(CliError::Migrate(format!("verification failed: {diff}")));
    }
    Ok(format!(
        "{} keys copied and verified key by key ({})",
        keys.len(),
        summary(&keys)
    ))
}

pub async fn run(args: MigrateArgs) -> Result<(), CliError> {
    let etcd_opts = args.etcd.options()?;
    let etcd = EtcdStore::connect(&etcd_opts, None)
        .await
        .map_err(CliError::Etcd)?;
    let data_dir = args.data_dir.display().to_string();
    let open = || {
        EmbeddedStore::open(&args.data_dir)
            .map_err(|e| CliError::Migrate(format!("--data-dir {data_dir}: {e}")))
    };
    let (from, to, done) = match args.to {
        Target::Etcd => {
            let embedded = open()?;
            let done = copy(&embedded, &etcd).await?;
            (
                format!("embedded store {data_dir}"),
                format!("etcd {}", etcd_opts.prefix),
                done,
            )
        }
        Target::Embedded => {
            let embedded = open()?;
            let done = copy(&etcd, &embedded).await?;
            (
                format!("etcd {}", etcd_opts.prefix),
                format!("embedded store {data_dir}"),
                done,
            )
        }
    };
    println!("{from} -> {to}: {done}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    async fn with(keys: &[(&str, &str)]) -> MemoryStore {
        let s = MemoryStore::default();
        for (k, v) in keys {
            let txn = Txn::default().put(*k, v.as_bytes().to_vec());
            assert!(matches!(
                s.commit(txn).await.unwrap(),
                Outcome::Committed(_)
            ));
        }
        s
    }

    #[tokio::test]
    async fn copies_every_key_and_verifies() {
        let keys: Vec<(String, String)> = (0..150)
            .map(|i| (format!("i/s/10.0.0.{i}"), format!("v{i}")))
            .chain([("m/subnets".to_string(), "[]".to_string())])
            .collect();
        let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let source = with(&pairs).await;
        let target = MemoryStore::default();
        let done = copy(&source, &target).await.unwrap();
        assert!(done.starts_with("151 keys"), "{done}");
        assert!(done.contains("i/: 150") && done.contains("m/: 1"), "{done}");
        assert_eq!(
            read_all(&source).await.unwrap(),
            read_all(&target).await.unwrap()
        );
    }

    #[tokio::test]
    async fn a_target_with_any_key_is_refused_and_left_alone() {
        let source = with(&[("l/a", "1")]).await;
        let target = with(&[("s/x", "2")]).await;
        let e = copy(&source, &target).await.unwrap_err().to_string();
        assert!(e.contains("not empty") && e.contains("s/x"), "{e}");
        assert_eq!(read_all(&target).await.unwrap().len(), 1);
    }

    #[test]
    fn differences_are_named() {
        let a: Keys = [("k".to_string(), b"1".to_vec())].into();
        let b: Keys = [("k".to_string(), b"2".to_vec())].into();
        assert_eq!(first_difference(&a, &a), None);
        assert_eq!(first_difference(&a, &b).unwrap(), "k differs in the target");
        assert_eq!(
            first_difference(&a, &Keys::new()).unwrap(),
            "k is missing in the target"
        );
        assert_eq!(
            first_difference(&Keys::new(), &a).unwrap(),
            "k is in the target but not in the source"
        );
    }
}
