//! Re-opening the store after a failed commit. redb latches the first I/O error of a database
//! (a full disk, EIO) and refuses every later call until the file is closed and opened again;
//! opening repairs it to its last durable commit. So: refuse commits (at once, with the cause),
//! close the database, wait for the disk to take writes, open it again, prove a commit goes
//! through, and only then let commits in. Whoever keeps a view of the data must re-read it
//! after a re-open ([`Health::reopens`]): a commit that reported failure may still be on disk.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::writer::kind_of;
use super::{META, META_REVISION, Reply, Shared, open_db};
use crate::store::Txn;
use crate::store::health::{Failure, FailureKind, Health};

/// The first retry comes soon: a one-off I/O error should cost little.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Each attempt repairs the whole file, about a second per million leases: not more often.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A store that fails again this soon after a re-open goes on from the last delay, so a disk
/// that is nearly full cannot make it repair its file back to back.
const CALM: Duration = Duration::from_secs(60);
/// What the disk must take before a re-open is tried: far more than a commit of thousands of
/// leases writes. On a full disk redb could re-open (it reuses pages it freed) and then fail at
/// the next commit that grows the file; that would flap readiness and repair for nothing.
const ROOM_PROBE_BYTES: usize = 1 << 20;
const ROOM_PROBE_FILE: &str = ".nethouse-room-probe";

/// How long to wait before the next attempt; kept across outages (see [`CALM`]).
#[derive(Default)]
pub(super) struct Backoff {
    delay: Option<Duration>,
    last_reopen: Option<Instant>,
}

impl Backoff {
    /// The wait before the first attempt of a new outage.
    fn start(&mut self) -> Duration {
        match self.last_reopen {
            Some(at) if at.elapsed() < CALM => self.next(),
            _ => {
                self.delay = None;
                Duration::ZERO
            }
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.delay.map_or(FIRST_DELAY, |d| (d * 2).min(MAX_DELAY));
        self.delay = Some(delay);
        delay
    }
}

/// Marks the store failing (commits are refused from now on) after a commit failed with
/// `cause`; returns when the outage began. Called before the failed batch is answered, so that
/// a caller who retries at once is refused, not queued.
pub(super) fn fail(shared: &Shared, kind: FailureKind, cause: String) -> Instant {
    let since = Instant::now();
    shared
        .health
        .send_modify(|h| h.failing = Some(Failure { since, kind, cause }));
    shared.observe(|o| {
        o.failure(kind);
        o.healthy(false);
    });
    since
}

/// Runs on the writer thread after [`fail`]; returns once the store takes commits again, or
/// `false` if it was closed meanwhile.
pub(super) fn recover(
    shared: &Shared,
    rx: &mut mpsc::UnboundedReceiver<(Txn, Reply)>,
    backoff: &mut Backoff,
    since: Instant,
) -> bool {
    if !close(shared, rx) {
        return false;
    }
    let mut wait = backoff.start();
    loop {
        if !wait_refusing(shared, rx, wait) {
            return false;
        }
        match reopen(shared) {
            Ok((db, at)) => {
                // A commit that reported failure may be in the file: watchers cannot be told
                // what it wrote, so every watch ends and must read the store again.
                shared.log.reset(at);
                shared.set_db(Some(Arc::new(db)));
                shared.health.send_modify(|h: &mut Health| {
                    h.failing = None;
                    h.reopens += 1;
                });
                shared.observe(|o| {
                    o.reopened();
                    o.healthy(true);
                });
                backoff.last_reopen = Some(Instant::now());
                tracing::info!(
                    outage_ms = since.elapsed().as_millis() as u64,
                    "store re-opened after the failure; commits go on"
                );
                return true;
            }
            Err((kind, cause)) => {
                wait = backoff.next();
                tracing::warn!(
                    error = %cause,
                    kind = kind.as_str(),
                    outage_s = since.elapsed().as_secs(),
                    retry_in_ms = wait.as_millis() as u64,
                    "the store cannot be re-opened yet; commits stay refused"
                );
                shared.observe(|o| o.failure(kind));
                shared.health.send_modify(|h| {
                    if let Some(f) = &mut h.failing {
                        f.kind = kind;
                        f.cause = cause;
                    }
                });
            }
        }
    }
}

/// Takes the database away from readers and closes it once the last one let go of it: the
/// file lock is per open file, so the re-open would otherwise find the file still taken.
fn close(shared: &Shared, rx: &mut mpsc::UnboundedReceiver<(Txn, Reply)>) -> bool {
    let Some(mut db) = shared.set_db(None) else {
        return true;
    };
    loop {
        match Arc::try_unwrap(db) {
            Ok(db) => {
                // The error is the latched one again; redb leaves the file for the next open
                // to repair, which is the point.
                if let Err(e) = db.close() {
                    tracing::debug!(error = %e, "closing the failed store");
                }
                return true;
            }
            Err(shared_db) => {
                db = shared_db;
                if !wait_refusing(shared, rx, Duration::from_millis(10)) {
                    return false;
                }
            }
        }
    }
}

/// Sleeps `wait`, answering what was queued before the failure became visible; `false` once
/// the store is closed.
fn wait_refusing(
    shared: &Shared,
    rx: &mut mpsc::UnboundedReceiver<(Txn, Reply)>,
    wait: Duration,
) -> bool {
    let until = Instant::now() + wait;
    loop {
        loop {
            match rx.try_recv() {
                Ok((_, reply)) => {
                    let _ = reply.send(Err(shared.unavailable()));
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

type Failed = (FailureKind, String);

/// The re-opened database and its revision.
fn reopen(shared: &Shared) -> Result<(Database, u64), Failed> {
    room_probe(shared)?;
    let db = open_db(&shared.open).map_err(|e| (kind_of(&e), e.to_string()))?;
    // A commit that writes pages, as every real one does; the open alone may write none.
    let probe = || -> Result<u64, redb::Error> {
        let w = db.begin_write()?;
        let revision = {
            let mut meta = w.open_table(META)?;
            let revision = meta.get(META_REVISION)?.map(|v| v.value()).unwrap_or(0);
            meta.insert(META_REVISION, revision)?;
            revision
        };
        w.commit()?;
        Ok(revision)
    };
    let at = probe().map_err(|e| (kind_of(&e), e.to_string()))?;
    Ok((db, at))
}

/// Writes and syncs [`ROOM_PROBE_BYTES`] next to the store, then deletes them.
fn room_probe(shared: &Shared) -> Result<(), Failed> {
    let path = shared.dir.join(ROOM_PROBE_FILE);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; ROOM_PROBE_BYTES])?;
        f.sync_all()
    };
    let written = write();
    let removed = std::fs::remove_file(&path);
    written.and(removed).map_err(|e| {
        (
            FailureKind::of_io(&e),
            format!(
                "the disk does not take {} KiB yet ({}): {e}",
                ROOM_PROBE_BYTES >> 10,
                path.display()
            ),
        )
    })
}
