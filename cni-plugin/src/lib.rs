//! `nethouse-cni`: a CNI IPAM plugin (ADD, DEL, CHECK, STATUS, GC, VERSION; CNI 0.3.0 to 1.1.0)
//! that gets every pod address from NetHouse and keeps a fixed pod's address through its
//! sandbox being rebuilt — with no patched kubelet: the pod identity comes from `CNI_ARGS` and
//! the fixed-IP switch from the sandbox's annotations or labels.
#![forbid(unsafe_code)]

pub mod conf;
pub mod env;
pub mod error;
pub mod identity;
pub mod install;
pub mod invoke;
mod log;
pub mod refusal;
pub mod result;
pub mod verbs;

use std::collections::BTreeMap;
use std::time::Instant;

use env::Command;
use error::{CniError, TRY_AGAIN};

/// What the process prints on stdout and exits with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub exit_code: i32,
}

/// One CNI call: `env` is the process environment, `stdin` the network config.
pub fn run(env: &BTreeMap<String, String>, stdin: &[u8]) -> Output {
    let started = Instant::now();
    // Errors are reported in the config's version when it is one we speak.
    let requested = conf::version_of(stdin);
    let err_version = requested
        .clone()
        .filter(|v| conf::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".to_string());
    let (result, log_target, context) = call(env, stdin, requested.as_deref());
    log::record(log_target.as_deref(), &context, started.elapsed(), &result);
    match result {
        Ok(Some(v)) => Output {
            stdout: v.to_string(),
            exit_code: 0,
        },
        Ok(None) => Output {
            stdout: String::new(),
            exit_code: 0,
        },
        Err(e) => Output {
            stdout: e.to_json(&err_version),
            exit_code: 1,
        },
    }
}

type CallResult = Result<Option<serde_json::Value>, CniError>;

fn call(
    env: &BTreeMap<String, String>,
    stdin: &[u8],
    requested: Option<&str>,
) -> (CallResult, Option<std::path::PathBuf>, log::Context) {
    let mut context = log::Context::default();
    let command = match env::command(env) {
        Ok(c) => c,
        Err(e) => return (Err(e), None, context),
    };
    context.command = command.as_str();
    if command == Command::Version {
        return (Ok(Some(verbs::version(requested))), None, context);
    }
    let inv = match env::parse(env) {
        Ok(i) => i,
        Err(e) => return (Err(e), None, context),
    };
    context.container_id = inv.container_id.clone();
    context.ifname = inv.ifname.clone();
    context.pod = match (&inv.args.namespace, &inv.args.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        _ => String::new(),
    };
    let conf = match conf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return (Err(e), None, context),
    };
    let log_target = conf.ipam.log_file.clone();
    let result = execute(&inv, &conf);
    (result, log_target, context)
}

fn execute(inv: &env::Invocation, conf: &conf::NetConf) -> CallResult {
    let limit = conf.ipam.timeout();
    let deadline = Instant::now() + limit;
    let client = verbs::client(conf, deadline)?;
    let result = match inv.command {
        Command::Add => verbs::add(inv, conf, &client).map(Some),
        Command::Del => verbs::del(inv, conf, &client).map(|_| None),
        Command::Check => verbs::check(inv, conf, &client).map(|_| None),
        Command::Status => verbs::status(conf, &client).map(|_| None),
        // GC prints nothing on success; the summary goes to the log.
        Command::Gc => verbs::gc(conf, &client).map(|_| None),
        Command::Version => Ok(Some(verbs::version(Some(&conf.cni_version)))),
    };
    // A transient failure at the deadline is the deadline's: say so. A final answer that came
    // in time (a refusal, a CHECK mismatch) keeps its own code.
    match result {
        Err(e) if e.code == TRY_AGAIN && Instant::now() >= deadline => Err(CniError::new(
            TRY_AGAIN,
            format!(
                "{} did not finish within {limit:?} (ipam.timeoutSeconds)",
                inv.command.as_str()
            ),
        )
        .details(e.to_string())),
        other => other,
    }
}
