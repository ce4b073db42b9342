//! A test PKI made with the openssl CLI. std only, so that the test crates of other members
//! (`nethouse-cni`, `nethouse-scheduler-extender`) include this file by path instead of keeping
//! copies: a shared test-support crate would make those crates depend on each other in a circle.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and a server certificate it signs for 127.0.0.1 and `nethouse.test`, as an operator's
/// PKI would have:
/// (ca.crt, tls.crt, tls.key) in `d`.
pub fn tls_files(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| openssl(d, args);
    openssl(&[
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
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=nethouse",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ]);
    std::fs::write(
        d.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:nethouse.test\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext",
        "-out",
        "tls.crt",
    ]);
    (d.join("ca.crt"), d.join("tls.crt"), d.join("tls.key"))
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

/// A client certificate for `cn` signed by the CA of [`tls_files`] in `d` (call that first), as
/// a client that authenticates with TLS holds: (`<cn>.crt`, `<cn>.key`) in `d`.
#[allow(dead_code)]
pub fn client_files(d: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let (crt, key, csr) = (
        format!("{cn}.crt"),
        format!("{cn}.key"),
        format!("{cn}.csr"),
    );
    let subj = format!("/CN={cn}");
    openssl(
        d,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subj, "-keyout", &key, "-out", &csr,
        ],
    );
    std::fs::write(
        d.join("client-ext"),
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
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
            "client-ext",
            "-out",
            &crt,
        ],
    );
    (d.join(crt), d.join(key))
}
