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
        let leaf = |name: &str, subject: &str, ext: &str| -> anyhow::Result<()> {
            let (key, csr, crt, extfile) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
            );
            std::fs::write(dir.join(&extfile), ext)?;
            let mut req = vec!["req", "-subj", subject, "-keyout", &key, "-out", &csr];
            req.extend_from_slice(&ec);
            openssl(dir, &req)?;
            openssl(
                dir,
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
                    "3",
                    "-extfile",
                    &extfile,
                    "-out",
                    &crt,
                ],
            )
        };
        leaf(
            "apiserver",
            "/CN=kube-apiserver",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n",
        )?;
        for (name, subject) in CLIENTS {
            leaf(
                name,
                subject,
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
            )?;
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
