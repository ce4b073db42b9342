//! etcd's watch as the store's [`Watch`]: every key under the prefix, from the revision after
//! the one asked for. etcd keeps a transaction's events together in one response, so they come
//! out as one [`Changes`]. A start revision etcd has compacted away cancels the watch with the
//! compaction's revision: that becomes [`StoreError::Compacted`] (re-read the store).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchClient, WatchOptions, WatchResponse, WatchStream};
use futures::stream::{self, StreamExt};

use super::reach::Reach;
use super::{prefix_end, revision_of};
use crate::store::watch::{Change, Changes, Watch};
use crate::store::{Revision, StoreError};

pub async fn start(
    mut client: WatchClient,
    prefix: &str,
    after: Revision,
    reach: Arc<Reach>,
    timeout: Duration,
) -> Result<Watch, StoreError> {
    let opts = WatchOptions::new()
        .with_range(prefix_end(prefix.as_bytes()))
        .with_start_revision(after as i64 + 1);
    let stream = reach
        .call("watch", timeout, client.watch(prefix, Some(opts)))
        .await
        .map_err(|e| e.read("a watch of the store"))?;
    let state = Follow {
        stream,
        prefix: prefix.to_string(),
        last: after,
        done: false,
    };
    let changes = stream::unfold(state, |mut f| async move {
        let item = f.next().await?;
        Some((item, f))
    })
    .flat_map(stream::iter);
    Ok(Watch::new(changes.boxed()))
}

struct Follow {
    /// Holds etcd's request side too: dropping it would end the watch.
    stream: WatchStream,
    prefix: String,
    last: Revision,
    done: bool,
}

impl Follow {
    /// The transactions of the next response that carries any; `None` when the watch is over.
    async fn next(&mut self) -> Option<Vec<Result<Changes, StoreError>>> {
        if self.done {
            return None;
        }
        loop {
            let resp = match self.stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(vec![Err(StoreError::Read {
                        what: "the store's watch".into(),
                        message: format!("etcd: {e}"),
                    })]);
                }
            };
            if resp.canceled() {
                self.done = true;
                return Some(vec![Err(self.canceled(&resp))]);
            }
            let batch = self.changes(&resp);
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }

    fn canceled(&self, resp: &WatchResponse) -> StoreError {
        if resp.compact_revision() > 0 {
            StoreError::Compacted {
                after: self.last,
                why: format!(
                    "etcd compacted its history up to revision {}",
                    resp.compact_revision()
                ),
            }
        } else {
            StoreError::Read {
                what: "the store's watch".into(),
                message: format!("etcd canceled it: {}", resp.cancel_reason()),
            }
        }
    }

    /// Events grouped by revision, in order; keys outside the prefix cannot come (the range
    /// is the prefix's) and would be skipped.
    fn changes(&mut self, resp: &WatchResponse) -> Vec<Result<Changes, StoreError>> {
        let mut out: Vec<Result<Changes, StoreError>> = Vec::new();
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = revision_of(kv.mod_revision());
            let key = match std::str::from_utf8(kv.key()) {
                Ok(k) => match k.strip_prefix(self.prefix.as_str()) {
                    Some(k) => k.to_string(),
                    None => continue,
                },
                Err(e) => {
                    out.push(Err(StoreError::Decode {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        message: format!("key is not UTF-8: {e}"),
                    }));
                    self.done = true;
                    return out;
                }
            };
            let value = match event.event_type() {
                EventType::Put => Some(kv.value().to_vec()),
                EventType::Delete => None,
            };
            let change = Change { key, value };
            match out.last_mut() {
                Some(Ok(c)) if c.revision == revision => c.changes.push(change),
                _ => out.push(Ok(Changes {
                    revision,
                    changes: vec![change],
                })),
            }
            self.last = revision;
        }
        out
    }
}
