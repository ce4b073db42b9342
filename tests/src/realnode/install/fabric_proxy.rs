//! The fabric as the router that also holds the Service rules: pods on macvlan send Service
//! traffic to their zone's gateway, never through their node (see `kube_proxy`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::super::fabric::Fabric;
use super::super::kube_proxy::{self, ProxySpec};
use super::super::netns::run;
use super::super::process::Proc;

/// Sets the fabric up as a Service router and starts its kube-proxy from this thread (which is
/// in the fabric). Two kernel defaults would break Services whose backend is in the client's
/// zone: with br_netfilter loaded, frames switched inside a zone's bridge pass iptables too, so a
/// Service's DNAT turns the client's frame into one bridged back out of the port it came in —
/// which a bridge never does — when the backend sits on the client's node; and a router that
/// forwards a packet out of the interface it came in tells the client to go to the backend
/// directly (ICMP redirect), bypassing the Service address.
pub fn start(
    fabric: &Fabric,
    program: &Path,
    api_server: &str,
    ca_dir: &Path,
    dir: &Path,
) -> anyhow::Result<Proc> {
    // Only present (and per namespace) when the machine has br_netfilter loaded.
    if Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        fabric
            .netns
            .sysctl("net.bridge.bridge-nf-call-iptables", "0")?;
    }
    fabric
        .netns
        .sysctl("net.ipv4.conf.all.send_redirects", "0")?;
    for z in &fabric.zones {
        let key = format!("net.ipv4.conf.{}.send_redirects", z.bridge());
        fabric.netns.sysctl(&key, "0")?;
    }
    std::fs::create_dir_all(dir)?;
    let args = kube_proxy::prepare(
        &ProxySpec {
            name: "fabric",
            ip: fabric.address,
            api_server,
            ca_dir,
            masquerade_all: true,
        },
        dir,
    )?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    Proc::spawn("kube-proxy", cmd, &dir.join("kube-proxy.log"))
}

/// Waits until the fabric's kube-proxy has written the rule of the `kubernetes` Service
/// (10.96.0.1): before that, a pod reaches no Service. It first waits 30 s for a Node of its
/// name, which the fabric is not (kube-proxy's NodeManager), then goes on without. Returns
/// how long this waited.
pub fn wait_for_services(proxy: &mut Proc, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        proxy.check_alive()?;
        let rules = run(Command::new("iptables").args(["-t", "nat", "-S", "KUBE-SERVICES"]))
            .unwrap_or_default();
        if rules.contains("10.96.0.1/32") {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!(
                "the fabric's kube-proxy wrote no Service rule within {timeout:?}; see {}",
                proxy.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
