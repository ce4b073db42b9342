//! `nethouse-cni install --keep-token` as the DaemonSet's main container runs it: the token is
//! copied onto the "host", a renewal follows within a period, and SIGTERM ends it with exit 0
//! (without a handler, the signal would kill it, and as a container's PID 1 it would ignore it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn holds(path: &Path, want: &str) -> bool {
    std::fs::read_to_string(path).ok().as_deref() == Some(want)
}

#[test]
fn keeps_the_host_token_current_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (
        dir.path().join("node.token"),
        dir.path().join("host/node.token"),
    );
    std::fs::write(&src, "token-1").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nethouse-cni"))
        .args(["install", "--keep-token"])
        .args([&src, &dst])
        .args(["--every", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the first copy", || holds(&dst, "token-1"));
    let tmp = dir.path().join("node.token.new");
    std::fs::write(&tmp, "token-2").unwrap();
    std::fs::rename(&tmp, &src).unwrap();
    wait_until("the renewed token", || holds(&dst, "token-2"));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopped = Instant::now();
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "still running 3 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{:?}: {stderr}", out.status);
    assert!(
        stderr.contains("updated: the token was renewed"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stopped"),
        "{out:?}"
    );
    assert!(holds(&dst, "token-2"), "the host file stays");
}

#[test]
fn a_missing_token_fails_at_once_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("absent");
    let out = Command::new(env!("CARGO_BIN_EXE_nethouse-cni"))
        .args(["install", "--keep-token"])
        .arg(&src)
        .arg(dir.path().join("dst"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("--keep-token: reading {}", src.display())),
        "{stderr}"
    );
}
