//! `nethouse serve`'s store flags: `--store embedded` (the default: `--data-dir`) or
//! `--store etcd` (`--etcd-*`), checked together so a flag of the other store is an error that
//! names it rather than something silently ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use nethouse_api::duration::parse_duration;

use super::error::CliError;
use crate::server::running::StoreOptions;
use crate::store::etcd::{EtcdOptions, EtcdTls};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// One redb file under --data-dir: one replica.
    Embedded,
    /// etcd (--etcd-endpoints): several replicas, each serving reads and writes.
    Etcd,
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// Where leases are kept.
    #[arg(long, value_enum, env = "NETHOUSE_STORE", default_value = "embedded")]
    pub store: StoreKind,
    /// Directory of the embedded store (--store embedded).
    #[arg(long, env = "NETHOUSE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// How to reach etcd: `nethouse serve --store etcd` and `nethouse store migrate`.
#[derive(Args, Debug)]
pub struct EtcdArgs {
    /// etcd's client URLs, comma-separated: http://HOST:PORT, https://HOST:PORT, or HOST:PORT
    /// (https with the TLS flags) (--store etcd).
    #[arg(long, env = "NETHOUSE_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Put in front of every key NetHouse writes in etcd, so several installs can share one
    /// etcd; must end with `/` [default: /nethouse/].
    #[arg(long, env = "NETHOUSE_ETCD_PREFIX")]
    pub etcd_prefix: Option<String>,
    /// PEM CA bundle that signed etcd's certificate (https endpoints).
    #[arg(long)]
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate, for an etcd that checks clients (--client-cert-auth).
    #[arg(long, requires = "etcd_key_file")]
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM key of --etcd-cert-file.
    #[arg(long, requires = "etcd_cert_file")]
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user (etcd's auth); the password comes from --etcd-password-file.
    #[arg(
        long,
        conflicts_with = "etcd_user_file",
        requires = "etcd_password_file"
    )]
    pub etcd_user: Option<String>,
    /// A file holding the etcd user (as a Secret mounts it).
    #[arg(long, requires = "etcd_password_file")]
    pub etcd_user_file: Option<PathBuf>,
    /// A file holding the etcd user's password (not a flag: arguments show in `ps`).
    #[arg(long)]
    pub etcd_password_file: Option<PathBuf>,
    /// Bound on one round-trip to one etcd member; past it a read goes to the next member
    /// [default: 1s].
    #[arg(long, value_parser = parse_duration)]
    pub etcd_request_timeout: Option<Duration>,
    /// etcd's --max-txn-ops, if etcd runs with another than its default: commits waiting
    /// together are sent as one transaction within it [default: 128].
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..))]
    pub etcd_max_txn_ops: Option<u32>,
    /// While etcd elects a leader every member refuses ("no leader"; a dead member refuses
    /// the connection): requests wait for a leader, asking the members again, until they have
    /// all refused this long, then fail and /readyz turns 503. etcd's election timeout is 1s;
    /// the wait stays well inside the CNI plugin's 3s exchange with a replica. 0s: no wait
    /// [default: 2s, at most 30s].
    #[arg(long, value_parser = leader_wait)]
    pub etcd_leader_wait: Option<Duration>,
    /// Under load, how long the next group of commits is gathered before it goes to etcd as
    /// one transaction, once a group of more than one was answered (its callers come back
    /// within a millisecond or two): larger groups, fewer etcd requests, more allocations per
    /// second. A lone commit never waits. 0s: send at once [default: 2ms, at most 100ms].
    #[arg(long, value_parser = group_wait)]
    pub etcd_group_wait: Option<Duration>,
}

/// The longest `--etcd-group-wait`: beyond it every allocation under load waits longer than
/// an etcd round-trip for nothing.
const MAX_GROUP_WAIT: Duration = Duration::from_millis(100);

/// `--etcd-group-wait`: a duration of at most [`MAX_GROUP_WAIT`] (clap names the flag).
fn group_wait(text: &str) -> Result<Duration, String> {
    at_most(
        text,
        MAX_GROUP_WAIT,
        "each allocation under load would wait that long (etcd answers a group in a few \
         milliseconds)",
    )
}

/// The longest `--etcd-leader-wait`: far past every client's deadline already.
const MAX_LEADER_WAIT: Duration = Duration::from_secs(30);

/// `--etcd-leader-wait`: a duration of at most [`MAX_LEADER_WAIT`] (clap names the flag).
fn leader_wait(text: &str) -> Result<Duration, String> {
    at_most(
        text,
        MAX_LEADER_WAIT,
        "clients give up on a replica long before (NetHouse's client after 5s, the CNI plugin \
         after 3s)",
    )
}

/// A duration of at most `max`; longer ones are refused saying `why`.
fn at_most(text: &str, max: Duration, why: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d > max {
        return Err(format!("{text:?} is longer than {max:?}: {why}"));
    }
    Ok(d)
}

/// A file's text without its final line break; an empty one is an error naming `flag`.
fn read_secret(flag: &'static str, path: &Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Flag(format!("{flag} {}: {e}", path.display())))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(CliError::Flag(format!("{flag} {}: empty", path.display())));
    }
    Ok(text.to_string())
}

impl EtcdArgs {
    /// The first `--etcd-*` flag given, if any.
    fn flag_given(&self) -> Option<&'static str> {
        [
            (!self.etcd_endpoints.is_empty(), "--etcd-endpoints"),
            (self.etcd_prefix.is_some(), "--etcd-prefix"),
            (self.etcd_ca_file.is_some(), "--etcd-ca-file"),
            (self.etcd_cert_file.is_some(), "--etcd-cert-file"),
            (self.etcd_user.is_some(), "--etcd-user"),
            (self.etcd_user_file.is_some(), "--etcd-user-file"),
            (self.etcd_password_file.is_some(), "--etcd-password-file"),
            (
                self.etcd_request_timeout.is_some(),
                "--etcd-request-timeout",
            ),
            (self.etcd_max_txn_ops.is_some(), "--etcd-max-txn-ops"),
            (self.etcd_leader_wait.is_some(), "--etcd-leader-wait"),
            (self.etcd_group_wait.is_some(), "--etcd-group-wait"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// etcd's options from the flags (reading the user and password files).
    pub fn options(&self) -> Result<EtcdOptions, CliError> {
        if self.etcd_endpoints.is_empty() {
            return Err(CliError::Flag(
                "--etcd-endpoints is required with --store etcd".into(),
            ));
        }
        let tls = (self.etcd_ca_file.is_some() || self.etcd_cert_file.is_some()).then(|| EtcdTls {
            ca_file: self.etcd_ca_file.clone(),
            identity: self.etcd_cert_file.clone().zip(self.etcd_key_file.clone()),
        });
        let user = match (&self.etcd_user, &self.etcd_user_file) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(path)) => Some(read_secret("--etcd-user-file", path)?),
            (None, None) => None,
        };
        let user = match (user, &self.etcd_password_file) {
            (Some(u), Some(path)) => Some((u, read_secret("--etcd-password-file", path)?)),
            (None, Some(_)) => {
                return Err(CliError::Flag(
                    "--etcd-password-file needs --etcd-user or --etcd-user-file".into(),
                ));
            }
            // clap requires the password file with a user.
            (_, None) => None,
        };
        let prefix = self.etcd_prefix.as_deref().unwrap_or("/nethouse/");
        let mut opts =
            EtcdOptions::new(&self.etcd_endpoints, prefix, tls, user).map_err(CliError::Etcd)?;
        if let Some(t) = self.etcd_request_timeout {
            opts.request_timeout = t;
        }
        if let Some(n) = self.etcd_max_txn_ops {
            opts.max_txn_ops = n as usize;
        }
        if let Some(d) = self.etcd_leader_wait {
            opts.leader_wait = d;
        }
        if let Some(d) = self.etcd_group_wait {
            opts.group_wait = d;
        }
        Ok(opts)
    }
}

impl StoreArgs {
    /// The store the flags describe (reading the etcd user and password files).
    pub fn options(&self) -> Result<StoreOptions, CliError> {
        match self.store {
            StoreKind::Embedded => {
                if let Some(flag) = self.etcd.flag_given() {
                    return Err(CliError::Flag(format!(
                        "{flag} is only used with --store etcd (the store is embedded)"
                    )));
                }
                let data_dir = self.data_dir.clone().ok_or_else(|| {
                    CliError::Flag(
                        "--data-dir is required with --store embedded (the default)".into(),
                    )
                })?;
                Ok(StoreOptions::Embedded { data_dir })
            }
            StoreKind::Etcd => {
                if self.data_dir.is_some() {
                    return Err(CliError::Flag(
                        "--data-dir is only used with --store embedded; with --store etcd the \
                         state is etcd's"
                            .into(),
                    ));
                }
                Ok(StoreOptions::Etcd(self.etcd.options()?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::server::running::StoreOptions;

    /// `nethouse serve --insecure-no-auth <extra>`, parsed and checked: the options or the
    /// error text (clap's or ours).
    fn store(extra: &[&str]) -> Result<StoreOptions, String> {
        let args = ["nethouse", "serve", "--insecure-no-auth"];
        let cli = Cli::try_parse_from(args.iter().chain(extra)).map_err(|e| e.to_string())?;
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        s.store.options().map_err(|e| e.to_string())
    }

    #[test]
    fn embedded_stays_the_default_and_etcd_is_chosen_with_its_flags() {
        let Ok(StoreOptions::Embedded { data_dir }) = store(&["--data-dir", "/d"]) else {
            panic!("embedded by default")
        };
        assert_eq!(data_dir, std::path::Path::new("/d"));
        let Ok(StoreOptions::Etcd(o)) = store(&[
            "--store",
            "etcd",
            "--etcd-endpoints",
            "10.0.0.1:2379,http://10.0.0.2:2379",
        ]) else {
            panic!("etcd")
        };
        assert_eq!(
            o.endpoints,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!((o.prefix.as_str(), o.tls.is_none()), ("/nethouse/", true));
        // Well inside one exchange of a client with NetHouse (the CNI plugin's is 3 s): a
        // member that answers nothing costs a call one timeout, not the caller's deadline.
        assert_eq!(o.request_timeout, std::time::Duration::from_secs(1));
        // etcd's own default, which group commit stays within.
        assert_eq!(o.max_txn_ops, 128);
        // Rides out an election's refusals; a waiting replica still answers inside the CNI
        // plugin's 3 s exchange.
        assert_eq!(o.leader_wait, std::time::Duration::from_secs(2));
        // About the time callers just answered take to come back with their next commit.
        assert_eq!(o.group_wait, std::time::Duration::from_millis(2));

        let dir = tempfile::tempdir().unwrap();
        let (user, password) = (dir.path().join("user"), dir.path().join("password"));
        std::fs::write(&user, "nethouse\n").unwrap();
        std::fs::write(&password, "s3cret\n").unwrap();
        let Ok(StoreOptions::Etcd(o)) = store(&[
            "--store=etcd",
            "--etcd-endpoints=etcd-0:2379",
            "--etcd-prefix=/team-a/",
            "--etcd-ca-file=/ca.crt",
            "--etcd-cert-file=/tls.crt",
            "--etcd-key-file=/tls.key",
            &format!("--etcd-user-file={}", user.display()),
            &format!("--etcd-password-file={}", password.display()),
            "--etcd-request-timeout=2s",
            "--etcd-max-txn-ops=512",
            "--etcd-leader-wait=1500ms",
            "--etcd-group-wait=5ms",
        ]) else {
            panic!("etcd with TLS and auth")
        };
        assert_eq!(o.endpoints, ["https://etcd-0:2379"]);
        assert_eq!(o.prefix, "/team-a/");
        assert_eq!(o.user, Some(("nethouse".into(), "s3cret".into())));
        assert_eq!(o.request_timeout, std::time::Duration::from_secs(2));
        assert_eq!(o.max_txn_ops, 512);
        assert_eq!(o.leader_wait, std::time::Duration::from_millis(1500));
        assert_eq!(o.group_wait, std::time::Duration::from_millis(5));
        let tls = o.tls.unwrap();
        assert!(tls.ca_file.is_some() && tls.identity.is_some());
        // 0s: no wait for a leader, calls fail at the first round of refusals; groups go at
        // once.
        let Ok(StoreOptions::Etcd(o)) = store(&[
            "--store=etcd",
            "--etcd-endpoints=a:1",
            "--etcd-leader-wait=0s",
            "--etcd-group-wait=0s",
        ]) else {
            panic!("etcd without a wait for a leader")
        };
        assert!(o.leader_wait.is_zero() && o.group_wait.is_zero());
    }

    #[test]
    fn bad_store_flags_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let empty = format!("--etcd-password-file={}", empty.display());
        let missing = format!("--etcd-password-file={}", dir.path().join("no").display());
        for (args, says) in [
            (&["--store", "zookeeper"][..], "--store"),
            (&[][..], "--data-dir is required"),
            (
                &["--data-dir=/d", "--etcd-endpoints=a:1"][..],
                "--etcd-endpoints is only used",
            ),
            (&["--store=etcd"][..], "--etcd-endpoints is required"),
            (
                &["--store=etcd", "--data-dir=/d", "--etcd-endpoints=a:1"][..],
                "--data-dir is only used",
            ),
            (
                &["--store=etcd", "--etcd-endpoints=ftp://a:1"][..],
                "--etcd-endpoints: ",
            ),
            (
                &["--store=etcd", "--etcd-endpoints=a:1", "--etcd-prefix=/x"][..],
                "--etcd-prefix: ",
            ),
            (
                &[
                    "--store=etcd",
                    "--etcd-endpoints=http://a:1",
                    "--etcd-ca-file=/ca",
                ][..],
                "https://",
            ),
            (
                &[
                    "--store=etcd",
                    "--etcd-endpoints=a:1",
                    "--etcd-cert-file=/c",
                ][..],
                "--etcd-key-file",
            ),
            (
                &["--store=etcd", "--etcd-endpoints=a:1", "--etcd-user=u"][..],
                "--etcd-password-file",
            ),
            (
                &[
                    "--store=etcd",
                    "--etcd-endpoints=a:1",
                    "--etcd-user=u",
                    &empty,
                ][..],
                "empty",
            ),
            (
                &[
                    "--store=etcd",
                    "--etcd-endpoints=a:1",
                    "--etcd-user=u",
                    &missing,
                ][..],
                "--etcd-password-file",
            ),
            (
                &["--store=etcd", "--etcd-endpoints=a:1", &missing][..],
                "--etcd-user",
            ),
            (
                &[
                    "--store=etcd",
                    "--etcd-endpoints=a:1",
                    "--etcd-request-timeout=soon",
                ][..],
                "--etcd-request-timeout",
            ),
            (
                &[
                    "--store=etcd",
                    "--etcd-endpoints=a:1",
                    "--etcd-max-txn-ops=1",
                ][..],
                "--etcd-max-txn-ops",
            ),
            (
                &["--data-dir=/d", "--etcd-max-txn-ops=256"][..],
                "--etcd-max-txn-ops is only used",
            ),
            (
                &[
                    "--store=etcd",
                    "--etcd-endpoints=a:1",
                    "--etcd-leader-wait=3",
                ][..],
                "'3' for '--etcd-leader-wait",
            ),
            (
                &[
                    "--store=etcd",
                    "--etcd-endpoints=a:1",
                    "--etcd-leader-wait=1m",
                ][..],
                "'1m' for '--etcd-leader-wait <ETCD_LEADER_WAIT>': \"1m\" is longer than 30s",
            ),
            (
                &["--data-dir=/d", "--etcd-leader-wait=0s"][..],
                "--etcd-leader-wait is only used",
            ),
            (
                &[
                    "--store=etcd",
                    "--etcd-endpoints=a:1",
                    "--etcd-group-wait=1s",
                ][..],
                "'1s' for '--etcd-group-wait <ETCD_GROUP_WAIT>': \"1s\" is longer than 100ms",
            ),
            (
                &["--data-dir=/d", "--etcd-group-wait=2ms"][..],
                "--etcd-group-wait is only used",
            ),
        ] {
            let e = store(args).map(|_| ()).unwrap_err();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}
