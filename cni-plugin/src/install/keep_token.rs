//! `nethouse-cni install --keep-token SRC DST [--every SECONDS]`: the DaemonSet's main
//! container. The plugin runs on the host, executed by the container runtime, so the node's
//! credential must be a host file; but the kubelet renews the pod's projected ServiceAccount
//! token (at 80% of its hour) inside the pod only. Every `--every` seconds (30) the token is
//! copied onto the host if it changed, atomically: the plugin reads it on every call and sees
//! the old token or the new one. SIGTERM (or SIGINT) ends the loop with exit 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::InstallError;
use super::files::replace;

/// Well inside the kubelet's renewal margin (12 of the token's 60 minutes).
const DEFAULT_EVERY: Duration = Duration::from_secs(30);
/// How soon a stop request is noticed between two copies.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepToken {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub every: Duration,
}

/// `SRC DST [--every SECONDS]` (what follows `--keep-token`).
pub fn parse(args: &[String]) -> Result<KeepToken, InstallError> {
    let usage = |problem: &str| InstallError::KeepTokenUsage {
        problem: problem.to_string(),
    };
    let (src, dst, rest) = match args {
        [src, dst, rest @ ..] if !src.starts_with("--") && !dst.starts_with("--") => {
            (src, dst, rest)
        }
        _ => return Err(usage("SRC and DST are required")),
    };
    let every = match rest {
        [] => DEFAULT_EVERY,
        [flag, secs] if flag == "--every" => match secs.parse::<u64>() {
            Ok(n) if n > 0 => Duration::from_secs(n),
            _ => {
                return Err(usage(&format!(
                    "--every {secs:?}: expected whole seconds, 1 or more"
                )));
            }
        },
        [other, ..] => return Err(usage(&format!("unexpected {other:?}"))),
    };
    Ok(KeepToken {
        src: src.into(),
        dst: dst.into(),
        every,
    })
}

/// Copies the token to `dst` (mode 0600) if it differs; `Ok(false)`: unchanged, not rewritten.
pub fn sync(k: &KeepToken) -> Result<bool, InstallError> {
    let token = std::fs::read(&k.src).map_err(|source| InstallError::KeepTokenRead {
        path: k.src.clone(),
        source,
    })?;
    // An empty file would make every CNI call of the node a 401: keep the last good token.
    if token.iter().all(u8::is_ascii_whitespace) {
        return Err(InstallError::KeepTokenEmpty {
            path: k.src.clone(),
        });
    }
    replace(&k.dst, &token, 0o600)
}

/// Copies at once (a failure then is a setup error, returned), then every `k.every` until
/// `stop`; later failures are reported through `log` and retried at the next period.
pub fn run(
    k: &KeepToken,
    stop: &AtomicBool,
    log: &mut dyn FnMut(String),
) -> Result<(), InstallError> {
    if sync(k)? {
        log(format!(
            "{} written from {}",
            k.dst.display(),
            k.src.display()
        ));
    }
    loop {
        let next = Instant::now() + k.every;
        while Instant::now() < next {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            std::thread::sleep(TICK.min(next.saturating_duration_since(Instant::now())));
        }
        match sync(k) {
            Ok(true) => log(format!(
                "{} updated: the token was renewed",
                k.dst.display()
            )),
            Ok(false) => {}
            Err(e) => log(format!(
                "{e} (kept the last token; retrying in {:?})",
                k.every
            )),
        }
    }
}

/// [`run`] until SIGTERM or SIGINT. The container's main process is PID 1, which the kernel
/// spares signals it has no handler for: without one, the pod would wait out its grace period
/// and be killed.
pub fn run_until_signalled(args: &[String]) -> Result<String, InstallError> {
    let k = parse(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|source| InstallError::Signal { source })?;
    }
    run(&k, &stop, &mut |line| {
        eprintln!("nethouse-cni install --keep-token: {line}")
    })?;
    Ok(format!(
        "nethouse-cni install --keep-token: stopped; {} stays",
        k.dst.display()
    ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    /// Replaces `path` as the kubelet renews a projected token: a new file renamed over it.
    fn renew(path: &Path, token: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, token).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn in_dir(dir: &Path, every: Duration) -> KeepToken {
        KeepToken {
            src: dir.join("projected/node.token"),
            dst: dir.join("host/etc/nethouse-cni/node.token"),
            every,
        }
    }

    #[test]
    fn arguments() {
        let k = parse(&strings(&["/s", "/d"])).unwrap();
        assert_eq!(
            (k.src.to_str(), k.dst.to_str(), k.every),
            (Some("/s"), Some("/d"), DEFAULT_EVERY)
        );
        let k = parse(&strings(&["/s", "/d", "--every", "5"])).unwrap();
        assert_eq!(k.every, Duration::from_secs(5));
        for (bad, says) in [
            (&[][..], "SRC and DST are required"),
            (&["/s"][..], "SRC and DST are required"),
            (&["/s", "--every", "5"][..], "SRC and DST are required"),
            (&["/s", "/d", "--every", "0"][..], "--every \"0\""),
            (&["/s", "/d", "--every", "1m"][..], "whole seconds"),
            (&["/s", "/d", "--every"][..], "unexpected \"--every\""),
            (&["/s", "/d", "/x"][..], "unexpected \"/x\""),
        ] {
            let e = parse(&strings(bad)).unwrap_err().to_string();
            assert!(
                e.starts_with("--keep-token SRC DST") && e.contains(says),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn a_changed_token_is_copied_an_unchanged_one_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let k = in_dir(dir.path(), DEFAULT_EVERY);
        std::fs::create_dir_all(k.src.parent().unwrap()).unwrap();
        renew(&k.src, "token-1");
        assert!(sync(&k).unwrap(), "first copy");
        assert_eq!(std::fs::read_to_string(&k.dst).unwrap(), "token-1");
        let meta = std::fs::metadata(&k.dst).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        assert!(!sync(&k).unwrap(), "unchanged");
        let again = std::fs::metadata(&k.dst).unwrap();
        assert_eq!(
            (again.ino(), again.mtime_nsec()),
            (meta.ino(), meta.mtime_nsec()),
            "not rewritten"
        );

        renew(&k.src, "token-2");
        assert!(sync(&k).unwrap(), "renewed");
        assert_eq!(std::fs::read_to_string(&k.dst).unwrap(), "token-2");
        assert_ne!(
            std::fs::metadata(&k.dst).unwrap().ino(),
            meta.ino(),
            "replaced by a rename"
        );

        renew(&k.src, "\n");
        let e = sync(&k).unwrap_err();
        assert!(matches!(e, InstallError::KeepTokenEmpty { .. }), "{e}");
        assert_eq!(
            std::fs::read_to_string(&k.dst).unwrap(),
            "token-2",
            "the last good one stays"
        );
        std::fs::remove_file(&k.src).unwrap();
        let e = sync(&k).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("--keep-token: reading {}", k.src.display())),
            "{e}"
        );
    }

    #[test]
    fn the_loop_follows_renewals_and_stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let k = in_dir(dir.path(), Duration::from_millis(50));
        // A source that is missing at start is a setup error, at once.
        let stop = AtomicBool::new(false);
        let e = run(&k, &stop, &mut |_| {}).unwrap_err();
        assert!(matches!(e, InstallError::KeepTokenRead { .. }), "{e}");

        std::fs::create_dir_all(k.src.parent().unwrap()).unwrap();
        renew(&k.src, "token-1");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, lines) = std::sync::mpsc::channel();
        let looping = {
            let (k, stop) = (k.clone(), stop.clone());
            std::thread::spawn(move || run(&k, &stop, &mut |l| tx.send(l).unwrap()))
        };
        let wait_for = |want: &str| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::read_to_string(&k.dst).ok().as_deref() != Some(want) {
                assert!(
                    Instant::now() < deadline,
                    "{} never became {want}",
                    k.dst.display()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for("token-1");
        renew(&k.src, "token-2");
        wait_for("token-2");
        let copied = std::fs::metadata(&k.dst).unwrap().ino();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            std::fs::metadata(&k.dst).unwrap().ino(),
            copied,
            "unchanged: not rewritten"
        );
        // A failure on the way is reported and the last token kept; the next renewal is copied.
        renew(&k.src, "");
        std::thread::sleep(Duration::from_millis(200));
        renew(&k.src, "token-3");
        wait_for("token-3");
        stop.store(true, Ordering::SeqCst);
        looping.join().unwrap().unwrap();
        let lines: Vec<String> = lines.try_iter().collect();
        assert!(lines[0].contains("written from"), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("is empty") && l.contains("kept the last token")),
            "{lines:?}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains("updated")).count(),
            2,
            "{lines:?}"
        );
    }
}
