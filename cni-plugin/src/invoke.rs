//! How a container runtime calls a CNI plugin (the spec's execution protocol, done as libcni
//! does it): a fresh process, the call's parameters in the six `CNI_*` variables, the network
//! config on stdin. The plugin answers on stdout (result or error JSON), logs on stderr, and
//! exit status 0 is success. The tests, the benchmark and the e2e node agent call plugins
//! through this one builder, so they all call them the same way a runtime does.
//!
//! Only std: the plugin binary links this library and must stay free of an async runtime.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// The plugin's `PATH`: system directories only, for the tools a main plugin runs (iptables for
/// bridge's ipMasq). Nothing else of the caller's environment reaches the plugin.
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// One call of a plugin. libcni exports all six variables, empty when a verb has no value for
/// one, and so does this.
#[derive(Clone, Debug, Default)]
pub struct Call {
    command: String,
    container_id: String,
    netns: String,
    ifname: String,
    args: String,
    path: String,
}

/// What the plugin answered.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl Call {
    /// `CNI_COMMAND`: ADD, DEL, CHECK, STATUS, GC or VERSION.
    pub fn new(command: &str) -> Call {
        Call {
            command: command.to_string(),
            ..Call::default()
        }
    }

    /// `CNI_CONTAINERID`.
    pub fn container_id(mut self, id: &str) -> Call {
        self.container_id = id.to_string();
        self
    }

    /// `CNI_NETNS`: the path of the network namespace, e.g. `/var/run/netns/NAME`.
    pub fn netns(mut self, path: &str) -> Call {
        self.netns = path.to_string();
        self
    }

    /// `CNI_IFNAME`: the interface to create inside the namespace.
    pub fn ifname(mut self, name: &str) -> Call {
        self.ifname = name.to_string();
        self
    }

    /// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;` (the pod identity, from containerd).
    pub fn args(mut self, args: &str) -> Call {
        self.args = args.to_string();
        self
    }

    /// `CNI_PATH`: where a main plugin looks for the plugins it delegates to (its IPAM). Empty
    /// entries are left out, so callers can pass an optional directory as `""`.
    pub fn path<S: AsRef<str>>(mut self, dirs: impl IntoIterator<Item = S>) -> Call {
        let dirs: Vec<String> = dirs
            .into_iter()
            .map(|d| d.as_ref().to_string())
            .filter(|d| !d.is_empty())
            .collect();
        self.path = dirs.join(":");
        self
    }

    /// Runs `plugin` with `config` on stdin and waits for it. An error is only the process's
    /// (not found, not executable); a plugin's refusal is a [`Reply`] with a failed status.
    pub fn run(&self, plugin: &Path, config: &[u8]) -> io::Result<Reply> {
        let mut child = Command::new(plugin)
            .env_clear()
            .env("PATH", PATH)
            .env("CNI_COMMAND", &self.command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", &self.netns)
            .env("CNI_IFNAME", &self.ifname)
            .env("CNI_ARGS", &self.args)
            .env("CNI_PATH", &self.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // The whole config goes in before any output is read: a plugin reads its config before
        // it answers, so neither side waits on a full pipe. Dropping stdin is its end of file.
        if let Some(mut stdin) = child.stdin.take() {
            match stdin.write_all(config) {
                // A plugin that answered without reading its config has still answered; Go's
                // os/exec (libcni's) ignores this error the same way.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
        }
        let out = child.wait_with_output()?;
        Ok(Reply {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // System programs stand in for plugins: they show what a plugin is given.

    #[test]
    fn the_environment_a_plugin_sees() {
        let call = Call::new("DEL")
            .container_id("c1")
            .netns("/var/run/netns/x")
            .ifname("eth0")
            .args("IgnoreUnknown=1;K8S_POD_NAME=p")
            .path(["/opt/ipam", "", "/usr/lib/cni"]);
        let reply = call.run(Path::new("/usr/bin/env"), b"{}").unwrap();
        let mut env: Vec<&str> = reply.stdout.lines().collect();
        env.sort();
        assert_eq!(
            env,
            [
                "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=p",
                "CNI_COMMAND=DEL",
                "CNI_CONTAINERID=c1",
                "CNI_IFNAME=eth0",
                "CNI_NETNS=/var/run/netns/x",
                "CNI_PATH=/opt/ipam:/usr/lib/cni",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            ]
        );
        let reply = Call::new("VERSION")
            .run(Path::new("/usr/bin/env"), b"")
            .unwrap();
        assert!(reply.stdout.contains("CNI_NETNS=\n"), "{reply:?}");
    }

    #[test]
    fn stdin_stdout_stderr_and_status() {
        let reply = Call::new("ADD")
            .run(Path::new("/bin/cat"), br#"{"cniVersion":"1.0.0"}"#)
            .unwrap();
        assert_eq!(reply.stdout, r#"{"cniVersion":"1.0.0"}"#);
        assert!(reply.success());
        // sh with no arguments runs its stdin: here the config is the script.
        let reply = Call::new("ADD")
            .run(Path::new("/bin/sh"), b"echo '{}'; echo log >&2; exit 3")
            .unwrap();
        assert_eq!(
            (reply.stdout.as_str(), reply.stderr.as_str()),
            ("{}\n", "log\n")
        );
        assert_eq!(reply.status.code(), Some(3));
        assert!(!reply.success());
    }

    #[test]
    fn a_plugin_that_ignores_its_config_still_answers() {
        // More than a pipe holds, so the write meets the closed pipe.
        let config = vec![b' '; 1 << 20];
        let reply = Call::new("ADD")
            .run(Path::new("/bin/true"), &config)
            .unwrap();
        assert!(reply.success());
    }

    #[test]
    fn a_missing_plugin_is_an_error() {
        let e = Call::new("ADD")
            .run(Path::new("/nonexistent/plugin"), b"{}")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
