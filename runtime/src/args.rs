//! The connection flags every long-running binary takes, spelled once: the NetHouse servers with
//! their credentials and the cluster name, and the Kubernetes API. Binaries `#[command(flatten)]`
//! them, so `--help` reads the same everywhere.

use std::path::PathBuf;

use nethouse_api::{Client, ClientConfig, ClientError, Setting};

use crate::Error;

#[derive(clap::Args, Clone, Debug)]
pub struct NetHouseArgs {
    /// NetHouse URL(s), tried in order.
    #[arg(
        long = "nethouse",
        env = "NETHOUSE_SERVER",
        required = true,
        value_delimiter = ','
    )]
    pub nethouse: Vec<String>,
    /// File holding the bearer token for NetHouse.
    #[arg(long, env = "NETHOUSE_TOKEN_FILE")]
    pub nethouse_token_file: Option<PathBuf>,
    /// PEM CA bundle trusted for an `https` NetHouse (default: the platform's roots).
    #[arg(long, env = "NETHOUSE_CA_FILE")]
    pub nethouse_ca_file: Option<PathBuf>,
    /// Cluster name, part of a fixed lease's owner (as in nethouse-cni's config).
    #[arg(long, default_value = "default")]
    pub cluster: String,
}

impl NetHouseArgs {
    /// The NetHouse client these flags describe; a bad value names its flag.
    pub fn client(&self) -> Result<Client, Error> {
        let flag = |e: ClientError| Error::NetHouse {
            flag: match e.setting() {
                Some(Setting::Token) => "--nethouse-token-file",
                Some(Setting::CaBundle) => "--nethouse-ca-file",
                _ => "--nethouse",
            },
            source: e,
        };
        let config = ClientConfig::with_token_file(
            self.nethouse.clone(),
            self.nethouse_token_file.as_deref(),
        )
        .map_err(flag)?
        .with_ca_file(self.nethouse_ca_file.as_deref())
        .map_err(flag)?;
        Client::new(config).map_err(flag)
    }
}

#[cfg(feature = "kube")]
#[derive(clap::Args, Clone, Debug)]
pub struct KubeArgs {
    /// Kubeconfig; without it, the pod's service account (or ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

#[cfg(feature = "kube")]
impl KubeArgs {
    pub async fn client(&self) -> Result<kube::Client, Error> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let named = |source| Error::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                };
                let kc = kube::config::Kubeconfig::read_from(path).map_err(named)?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(named)?
            }
            None => kube::Config::infer().await.map_err(Error::KubeInfer)?,
        };
        kube::Client::try_from(config).map_err(Error::KubeClient)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        nethouse: NetHouseArgs,
    }

    #[test]
    fn flags_parse_and_errors_name_the_flag() {
        let cli = Cli::try_parse_from([
            "x",
            "--nethouse",
            "http://a:1,http://b:2",
            "--cluster",
            "c1",
        ])
        .unwrap();
        assert_eq!(cli.nethouse.nethouse, ["http://a:1", "http://b:2"]);
        assert_eq!(cli.nethouse.cluster, "c1");

        let missing = NetHouseArgs {
            nethouse_token_file: Some("/nonexistent/token".into()),
            ..cli.nethouse.clone()
        };
        let e = missing.client().unwrap_err().to_string();
        assert!(e.starts_with("--nethouse-token-file: "), "{e}");
        let bad_ca = NetHouseArgs {
            nethouse_ca_file: Some("/nonexistent/ca.pem".into()),
            ..cli.nethouse.clone()
        };
        let e = bad_ca.client().unwrap_err().to_string();
        assert!(e.starts_with("--nethouse-ca-file: "), "{e}");
        let bad_url = NetHouseArgs {
            nethouse: vec!["ftp://x".into()],
            ..cli.nethouse
        };
        let e = bad_url.client().unwrap_err().to_string();
        assert!(e.starts_with("--nethouse: ") && e.contains("scheme"), "{e}");
    }

    #[cfg(feature = "kube")]
    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_flag() {
        let args = KubeArgs {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
        };
        let e = args
            .client()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("--kubeconfig /nonexistent/kubeconfig: "),
            "{e}"
        );
    }
}
