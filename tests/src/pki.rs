//! The cluster's certificates and service-account key, made with the openssl CLI: a CA, the
//! apiserver's serving certificate, and client certificates for the admin, the controller
//! manager and the scheduler (their identities are what RBAC sees).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// What a client certificate may do.
pub const CLIENT_EXT: &str = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";

/// A serving certificate's extensions for `sans` (`IP:…,DNS:…`); it may act as a client too
/// (etcd members dial each other with theirs).
pub fn server_ext(sans: &str) -> String {
    format!(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={sans}\n"
    )
}

/// `<out>/<stem>.{key,crt}` for `subject` with extensions `ext`, signed by the CA in `ca_dir`
/// (`ca.crt`, `ca.key`); returns (certificate, key).
pub fn issue(
    ca_dir: &Path,
    stem: &str,
    subject: &str,
    ext: &str,
    out: &Path,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let path = |suffix: &str| out.join(format!("{stem}.{suffix}")).display().to_string();
    let (key, csr, crt, extfile, serial) = (
        path("key"),
        path("csr"),
        path("crt"),
        path("ext"),
        path("srl"),
    );
    std::fs::create_dir_all(out)?;
    std::fs::write(&extfile, ext)?;
    openssl(
        out,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    )?;
    let (ca_crt, ca_key) = (
        ca_dir.join("ca.crt").display().to_string(),
        ca_dir.join("ca.key").display().to_string(),
    );
    openssl(
        out,
        &[
            "x509",
            "-req",
            "-days",
            "3",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-CAserial",
            &serial,
            "-extfile",
            &extfile,
            "-out",
            &crt,
        ],
    )?;
    Ok((PathBuf::from(crt), PathBuf::from(key)))
}

/// (file stem, subject, extensions)
const CLIENTS: &[(&str, &str)] = &[
    ("admin", "/O=system:masters/CN=nethouse-admin"),
    ("controller-manager", "/CN=system:kube-controller-manager"),
    ("scheduler", "/CN=system:kube-scheduler"),
];

impl Pki {
    pub fn create(dir: &Path) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "3",
            "-subj",
            "/CN=nethouse-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ];
        ca.extend_from_slice(&ec);
        openssl(dir, &ca)?;
        issue(
            dir,
            "apiserver",
            "/CN=kube-apiserver",
            &server_ext(
                "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc",
            ),
            dir,
        )?;
        for (name, subject) in CLIENTS {
            issue(dir, name, subject, CLIENT_EXT, dir)?;
        }
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "sa.key",
            ],
        )?;
        openssl(dir, &["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A kubeconfig for one of the client identities (`admin`, `controller-manager`, `scheduler`).
    pub fn kubeconfig(&self, who: &str, server: &str, out: &Path) -> anyhow::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: nethouse-test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
             users:\n- name: {who}\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n\
             contexts:\n- name: {who}\n  context:\n    cluster: nethouse-test\n    user: {who}\ncurrent-context: {who}\n",
            ca = self.file("ca.crt"),
            crt = self.file(&format!("{who}.crt")),
            key = self.file(&format!("{who}.key")),
        );
        std::fs::write(out, text)?;
        Ok(())
    }
}
