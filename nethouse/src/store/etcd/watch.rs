//! etcd's watch as the store's [`Watch`]: every key under the prefix, from the revision after
//! the one asked for. etcd keeps a revision's events together in one response (it never splits
//! a revision unless asked to fragment, which we do not), so they come out as one [`Changes`]:
//! one transaction's, or a whole group's (`group`). A start revision etcd has compacted away cancels the watch with the
//! compaction's revision: that becomes [`StoreError::Compacted`] (re-read the store).
//!
//! A watch lives on one member. A member that stops answering (frozen, cut off) sends nothing
//! and closes nothing, which from here looks just like a quiet store: so after [`QUIET`]
//! without a message the watch asks the member for its progress (etcd answers at once), and a
//! member that does not answer that within the request timeout ends the watch with an error.
//! The follower then watches again, from where it was, on another member: the view lags by
//! seconds, not for as long as the member stays frozen.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchResponse, WatchStream};
use futures::stream::{self, StreamExt};

use super::route::{Conn, Retry};
use super::{prefix_end, revision_of};
use crate::store::watch::{Change, Changes, Watch};
use crate::store::{Revision, StoreError};

/// How long a watch may go without a message before the member is asked whether it is alive.
pub const QUIET: Duration = Duration::from_secs(1);

pub async fn start(conn: Arc<Conn>, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
    let opts = WatchOptions::new()
        .with_range(prefix_end(prefix.as_bytes()))
        .with_start_revision(after as i64 + 1);
    let (stream, member) = conn
        .call("watch", Retry::Any, |c| {
            let (key, opts) = (prefix.to_string(), opts.clone());
            async move { c.watch_client().watch(key, Some(opts)).await }
        })
        .await
        .map_err(|e| e.read("a watch of the store"))?;
    let state = Follow {
        stream,
        conn,
        member,
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
    conn: Arc<Conn>,
    /// The member the watch is on.
    member: usize,
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
        let mut asked = false;
        loop {
            let wait = if asked { self.conn.timeout } else { QUIET };
            let message = match tokio::time::timeout(wait, self.stream.message()).await {
                Ok(m) => m,
                Err(_) if !asked => {
                    asked = true;
                    // A failed send: the stream is gone, and the next message says why.
                    let _ = self.stream.request_progress().await;
                    continue;
                }
                Err(_) => {
                    let message = format!(
                        "the etcd member {} did not answer within {:?}",
                        self.conn.members.url(self.member),
                        QUIET + wait
                    );
                    return Some(vec![Err(self.failed(message))]);
                }
            };
            asked = false;
            let resp = match message {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => return Some(vec![Err(self.failed(format!("etcd: {e}")))]),
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

    /// The watch is over because its member failed: that member is passed over, so the next
    /// watch goes to another.
    fn failed(&mut self, message: String) -> StoreError {
        self.done = true;
        self.conn.members.failed(self.member, &message);
        StoreError::Read {
            what: "the store's watch".into(),
            message,
        }
    }

    fn canceled(&mut self, resp: &WatchResponse) -> StoreError {
        if resp.compact_revision() > 0 {
            StoreError::Compacted {
                after: self.last,
                why: format!(
                    "etcd compacted its history up to revision {}",
                    resp.compact_revision()
                ),
            }
        } else {
            // E.g. the member lost its leader ("no leader"): the next watch goes elsewhere.
            self.failed(format!(
                "the etcd member {} canceled it: {}",
                self.conn.members.url(self.member),
                resp.cancel_reason()
            ))
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
