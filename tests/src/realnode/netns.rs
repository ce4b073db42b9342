//! Named network namespaces (`ip netns`), and moving the calling thread into one so that what
//! it starts afterwards (processes, runtime threads, listeners) lives there.

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// A namespace under `/run/netns`, deleted on drop (it lives on while a process is in it).
pub struct NetNs {
    name: String,
}

/// Runs `cmd`; an error carries its arguments and stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl NetNs {
    pub fn create(name: &str) -> anyhow::Result<NetNs> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = NetNs {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n <name> ARGS`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// A sysctl of this namespace (`net.*` keys are per namespace; the host's stay as they are).
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        run(Command::new("ip").args([
            "netns",
            "exec",
            &self.name,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ]))?;
        Ok(())
    }

    /// Moves the calling thread into this namespace until the guard drops. Threads and
    /// processes it starts meanwhile stay in it; other threads of the process are not moved.
    pub fn enter(&self) -> anyhow::Result<Entered> {
        let previous = File::open("/proc/thread-self/ns/net")
            .context("opening this thread's network namespace")?;
        let target = File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        move_into_link_name_space(target.as_fd(), Some(LinkNameSpaceType::Network))
            .with_context(|| format!("entering network namespace {}", self.name))?;
        Ok(Entered {
            previous,
            _not_send: PhantomData,
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The calling thread is in another network namespace until this drops; it must drop on the
/// thread that entered, hence not `Send`.
pub struct Entered {
    previous: File,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = move_into_link_name_space(self.previous.as_fd(), Some(LinkNameSpaceType::Network));
    }
}
