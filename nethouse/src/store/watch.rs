//! What [`super::Store::watch`] hands out: what was committed after a revision, one
//! [`Changes`] per revision, as a stream every store can feed (its own change log, or an etcd
//! watch).

use futures::stream::{BoxStream, StreamExt};

use super::{Revision, StoreError};

/// One key a commit wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    /// The new value, or `None`: the key was deleted.
    pub value: Option<Vec<u8>>,
}

/// Everything written at one revision: by one transaction, or by several the store committed
/// together (group commit; they never write the same key). A revision at which nothing was
/// written (no ops, or only deletes of missing keys) is not reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    pub revision: Revision,
    pub changes: Vec<Change>,
}

/// A stream of [`Changes`] in revision order; see [`super::Store::watch`].
pub struct Watch {
    stream: BoxStream<'static, Result<Changes, StoreError>>,
}

impl Watch {
    pub fn new(stream: BoxStream<'static, Result<Changes, StoreError>>) -> Self {
        Watch { stream }
    }

    /// The next revision's changes; `None` once the watch was cut (watch again from the
    /// last revision seen). After an error the watch is over.
    pub async fn next(&mut self) -> Option<Result<Changes, StoreError>> {
        self.stream.next().await
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}
