//! From `nethouse serve`'s etcd flags to connected members: endpoints, TLS (a CA, a client
//! certificate) and a user. Every error names the flag to fix.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use super::members::Members;

/// How to reach etcd, as the flags give it (validated by [`EtcdOptions::new`]).
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// Put in front of every key, so several NetHouse installs can share one etcd.
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// User and password (etcd's auth); the password is read from a file by the caller.
    pub user: Option<(String, String)>,
    /// Bound on one round-trip to one member; a commit that runs out has an unknown outcome
    /// (re-read), a read goes on to the next member.
    pub request_timeout: Duration,
    /// etcd's `--max-txn-ops`: how large a group of commits sent as one transaction may get.
    pub max_txn_ops: usize,
    /// How long every member may refuse (no leader: an election) while calls wait for a
    /// leader, going round the members again, before they fail (`route`).
    pub leader_wait: Duration,
    /// Under load, how long the next group of commits is gathered before it is sent
    /// (`group::gather`); zero: at once.
    pub group_wait: Duration,
}

/// The PEM files of etcd's TLS: the CA that signed etcd's certificate (the system roots are
/// not used: etcd's are an operator's own PKI) and, when etcd checks clients, a certificate.
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    pub ca_file: Option<PathBuf>,
    pub identity: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("--etcd-endpoints: {0}")]
    Endpoints(String),
    #[error("--etcd-prefix: {0}")]
    Prefix(String),
    #[error("{flag} {}: {source}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The client could not be built, or authenticating the user failed.
    #[error("connecting to etcd at {endpoints}: {message}")]
    Connect { endpoints: String, message: String },
}

/// Tens of times what a round-trip takes on an etcd under load (milliseconds), so it runs out
/// only on a member that does not answer; short enough that such a member costs a caller far
/// less than its own deadline (the CNI plugin gives one exchange with NetHouse 3 s), and that
/// a commit stuck behind a leader that died (etcd holds it until its own 7 s timeout) is given
/// up and tried again once the new leader is elected (1-2 s with etcd's defaults).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

impl EtcdOptions {
    /// Checks the endpoints (a scheme is added where missing: `https://` with TLS) and the
    /// prefix.
    pub fn new(
        endpoints: &[String],
        prefix: &str,
        tls: Option<EtcdTls>,
        user: Option<(String, String)>,
    ) -> Result<EtcdOptions, ConnectError> {
        if endpoints.is_empty() {
            return Err(ConnectError::Endpoints("no endpoint given".into()));
        }
        let mut checked = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            checked.push(endpoint(e.trim(), tls.is_some())?);
        }
        if prefix.is_empty() {
            return Err(ConnectError::Prefix(
                "empty: NetHouse's keys would mix with everything else in etcd".into(),
            ));
        }
        if !prefix.ends_with('/') {
            return Err(ConnectError::Prefix(format!(
                "{prefix:?} must end with \"/\", or it would also cover another install's \
                 prefix that merely starts the same ({prefix:?}2/...)"
            )));
        }
        Ok(EtcdOptions {
            endpoints: checked,
            prefix: prefix.to_string(),
            tls,
            user,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_txn_ops: super::batch::DEFAULT_MAX_TXN_OPS,
            leader_wait: super::route::DEFAULT_LEADER_WAIT,
            group_wait: super::group::DEFAULT_GROUP_WAIT,
        })
    }
}

fn endpoint(e: &str, tls: bool) -> Result<String, ConnectError> {
    let bad = |why: &str| ConnectError::Endpoints(format!("{e:?}: {why}"));
    let (scheme, rest) = match e.split_once("://") {
        Some((s, rest)) => (s, rest),
        None => (if tls { "https" } else { "http" }, e),
    };
    match (scheme, tls) {
        ("https", _) | ("http", false) => {}
        ("http", true) => {
            return Err(bad(
                "http:// with --etcd-ca-file/--etcd-cert-file: write https:// (or drop the TLS flags)",
            ));
        }
        _ => return Err(bad("expected http://HOST:PORT or https://HOST:PORT")),
    }
    let authority = rest.trim_end_matches('/');
    let port = authority.rsplit_once(':').map(|(_, p)| p);
    if authority.is_empty()
        || authority.contains('/')
        || port.is_none_or(|p| p.parse::<u16>().is_err())
    {
        return Err(bad("expected HOST:PORT after the scheme"));
    }
    Ok(format!("{scheme}://{authority}"))
}

fn read(flag: &'static str, path: &PathBuf) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::File {
        flag,
        path: path.clone(),
        source,
    })
}

/// The members of `opts`, one client each. With a user, every member is asked for a token
/// now: a wrong password fails here, at start, rather than on the first allocation; a member
/// that cannot be reached is connected on first use instead, as long as one member answered.
pub async fn members(opts: &EtcdOptions) -> Result<Members, ConnectError> {
    let members = Members::new(opts.endpoints.clone(), connect_options(opts)?);
    if opts.user.is_none() {
        // Without a user connecting is no round-trip: every client connects on first use.
        return Ok(members);
    }
    let tries = (0..members.len()).map(|i| {
        let members = &members;
        async move {
            tokio::time::timeout(opts.request_timeout.max(CONNECT_TIMEOUT), members.client(i))
                .await
                .map_err(|_| format!("{}: no answer", members.url(i)))?
                .map(|_| ())
                .map_err(|e| format!("{}: {e}", members.url(i)))
        }
    });
    let results = futures::future::join_all(tries).await;
    if results.iter().any(Result::is_ok) {
        return Ok(members);
    }
    let message = results
        .into_iter()
        .filter_map(Result::err)
        .collect::<Vec<_>>()
        .join("; ");
    Err(ConnectError::Connect {
        endpoints: opts.endpoints.join(","),
        message,
    })
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn connect_options(opts: &EtcdOptions) -> Result<ConnectOptions, ConnectError> {
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        // A connection to a member that stopped answering (a cut network, SIGSTOP) is dropped
        // within seconds, not at the kernel's TCP timeout. Requests notice sooner (their
        // timeout), and so does the watch (`watch`); pinging more often than every 5 s would
        // make etcd (its --grpc-keepalive-min-time) close the connection.
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        // etcd's auth tokens expire (5 min by default); the client gets a new one by itself.
        .with_auto_token_refresh(true)
        // A member cut off from the quorum refuses at once (and cancels its watches) instead of
        // stalling: the call is retried, the watch resumed, through another member.
        .with_require_leader(true);
    if let Some(tls) = &opts.tls {
        let mut t = TlsOptions::new();
        if let Some(ca) = &tls.ca_file {
            t = t.ca_certificate(Certificate::from_pem(read("--etcd-ca-file", ca)?));
        }
        if let Some((cert, key)) = &tls.identity {
            t = t.identity(Identity::from_pem(
                read("--etcd-cert-file", cert)?,
                read("--etcd-key-file", key)?,
            ));
        }
        connect = connect.with_tls(t);
    }
    if let Some((user, password)) = &opts.user {
        connect = connect.with_user(user, password);
    }
    Ok(connect)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(endpoints: &[&str], tls: bool) -> Result<EtcdOptions, String> {
        let endpoints: Vec<String> = endpoints.iter().map(|s| s.to_string()).collect();
        let tls = tls.then(EtcdTls::default);
        EtcdOptions::new(&endpoints, "/nethouse/", tls, None).map_err(|e| e.to_string())
    }

    #[test]
    fn endpoints_are_checked_and_completed() {
        assert_eq!(
            opts(&["127.0.0.1:2379", "http://a:1/", "https://b:2"], false)
                .unwrap()
                .endpoints,
            vec!["http://127.0.0.1:2379", "http://a:1", "https://b:2"]
        );
        assert_eq!(
            opts(&["etcd-0:2379"], true).unwrap().endpoints,
            vec!["https://etcd-0:2379"]
        );
        for (bad, tls, says) in [
            (&[][..], false, "no endpoint"),
            (&["http://a:1"][..], true, "https://"),
            (&["ftp://a:1"][..], false, "http://HOST:PORT"),
            (&["a"][..], false, "HOST:PORT"),
            (&["http://a:port"][..], false, "HOST:PORT"),
            (&["http://a:1/path"][..], false, "HOST:PORT"),
        ] {
            let e = opts(bad, tls).unwrap_err();
            assert!(
                e.starts_with("--etcd-endpoints: ") && e.contains(says),
                "{bad:?}: {e}"
            );
        }
        for bad in ["", "/nethouse"] {
            let e = EtcdOptions::new(&["a:1".into()], bad, None, None).unwrap_err();
            assert!(e.to_string().starts_with("--etcd-prefix: "), "{e}");
        }
    }
}
