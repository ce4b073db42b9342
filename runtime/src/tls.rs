//! HTTPS for a server: its certificate and key, and optionally the CA that must have signed
//! every client's certificate (mutual TLS). The kube-scheduler authenticates to an extender
//! this way (`tlsConfig.certFile`/`keyFile` in its extender configuration); without a client CA
//! anyone who reaches the port may call.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, a client must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

impl Tls {
    /// Certificate and key, no client authentication.
    pub fn server(cert: PathBuf, key: PathBuf) -> Tls {
        Tls {
            cert,
            key,
            client_ca: None,
        }
    }
}

fn io_err(flag: &'static str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::TlsFile {
        flag,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

pub(crate) async fn config(tls: &Tls) -> Result<RustlsConfig, Error> {
    let Some(client_ca) = &tls.client_ca else {
        return RustlsConfig::from_pem_file(&tls.cert, &tls.key)
            .await
            .map_err(|source| Error::Tls {
                cert: tls.cert.display().to_string(),
                key: tls.key.display().to_string(),
                source,
            });
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| io_err("--tls-cert", &tls.cert, e))?;
    let key =
        PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| io_err("--tls-key", &tls.key, e))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(client_ca)
        .map_err(|e| io_err("--tls-client-ca", client_ca, e))?
    {
        let cert = cert.map_err(|e| io_err("--tls-client-ca", client_ca, e))?;
        roots
            .add(cert)
            .map_err(|e| io_err("--tls-client-ca", client_ca, e))?;
    }
    if roots.is_empty() {
        return Err(io_err("--tls-client-ca", client_ca, "no certificate in it"));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| io_err("--tls-client-ca", client_ca, e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io_err("--tls-cert", &tls.cert, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| io_err("--tls-cert", &tls.cert, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}
