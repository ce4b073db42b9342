//! A test PKI made with the openssl CLI. std only, so that the test crates of other members
//! (`nethouse-cni`, `nethouse-scheduler-extender`) include this file by path instead of keeping
//! copies: a shared test-support crate would make those crates depend on each other in a circle.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and a server certificate it signs for 127.0.0.1 and `nethouse.test`, as an operator's
/// PKI would have:
/// (ca.crt, tls.crt, tls.key) in `d`.
pub fn tls_files(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    let (crt, key) = issue(
        d,
        "nethouse",
        "tls",
        "ext",
        "subjectAltName=IP:127.0.0.1,DNS:nethouse.test\nbasicConstraints=CA:FALSE\n",
    );
    (d.join("ca.crt"), crt, key)
}

fn openssl(d: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(d)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key and a certificate for `cn` that the CA in `d` signs with the extensions `ext`
/// (written to `ext_file`): (`<stem>.crt`, `<stem>.key`).
fn issue(d: &Path, cn: &str, stem: &str, ext_file: &str, ext: &str) -> (PathBuf, PathBuf) {
    let (crt, key, csr) = (
        format!("{stem}.crt"),
        format!("{stem}.key"),
        format!("{stem}.csr"),
    );
    let subj = format!("/CN={cn}");
    openssl(
        d,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subj, "-keyout", &key, "-out", &csr,
        ],
    );
    std::fs::write(d.join(ext_file), ext).unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            ext_file,
            "-out",
            &crt,
        ],
    );
    (d.join(crt), d.join(key))
}

/// A client certificate for `cn` signed by the CA of [`tls_files`] in `d` (call that first), as
/// a client that authenticates with TLS holds: (`<cn>.crt`, `<cn>.key`) in `d`.
#[allow(dead_code)]
pub fn client_files(d: &Path, cn: &str) -> (PathBuf, PathBuf) {
    issue(
        d,
        cn,
        cn,
        "client-ext",
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    )
}
