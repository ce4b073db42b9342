//! The HA install on real nodes (root): `kubectl apply -k tests/overlays/real-ha` — the shipped
//! `manifests/ha` (NetHouse as a Deployment of 3 replicas on etcd, one per node, a
//! PodDisruptionBudget) with its images retargeted and its etcd named — on 2 zones × 2 real
//! nodes, with a dedicated 3-member etcd with TLS outside the pod network (on the fabric, where
//! the control plane runs) and NetHouse's client certificate from the test's CA, the Secret
//! `nethouse-etcd-client` made as its example says. Every workload Ready; then a StatefulSet of
//! 5 fixed pods keeps IP and zone through each pod deleted and through the death of a node that
//! hosts one of NetHouse's replicas (and fixed pods): the two others serve the pods' return;
//! NetHouse's Deployment is whole again on the fourth node. Timings printed (`--nocapture`).

use std::time::{Duration, Instant};

use nethouse_e2e::etcd_cluster::{EtcdCluster, EtcdSpec};
use nethouse_e2e::pki;
use nethouse_e2e::realnode::install::base::{self, Flavor};
use nethouse_e2e::realnode::install::secrets::{self, EtcdClientFiles};
use nethouse_e2e::realnode::install::story;
use nethouse_e2e::realnode::install::{InstallStack, workloads};

/// Where `tests/overlays/real-ha` says etcd is: the fabric's address, these client ports.
const ETCD_HOST: &str = "10.61.0.1";
const ETCD_PORTS: [u16; 3] = [12379, 22379, 32379];

#[test]
fn ha_install_keeps_fixed_pods_through_the_death_of_a_nethouse_replica_node() {
    let t_test = Instant::now();
    let mut s =
        InstallStack::two_by_two().expect("images, fabric, control plane, 4 real nodes, CoreDNS");
    // Inside the fabric, like the control plane: nodes reach it, pods do not need to.
    let (etcd, client) = start_etcd(&s).expect("3-member etcd with TLS on the fabric");
    let r = run(&mut s, client);
    if let Err(e) = r {
        s.nodes.keep_logs();
        drop(etcd);
        panic!(
            "{e:#}\n{}{}",
            workloads::describe(&s.cluster, secrets::NAMESPACE),
            workloads::describe(&s.cluster, "default")
        );
    }
    println!(
        "whole test before teardown {:.1} s",
        t_test.elapsed().as_secs_f64()
    );
}

fn start_etcd(s: &InstallStack) -> anyhow::Result<(EtcdCluster, EtcdClientFiles)> {
    let ca_dir = s.cluster.dir.join("pki");
    let dir = s.dir.path().join("etcd-pki");
    let (cert, key) = pki::issue(
        &ca_dir,
        "etcd",
        "/CN=etcd",
        &pki::server_ext(&format!("IP:{ETCD_HOST},IP:127.0.0.1")),
        &dir,
    )?;
    let (client_cert, client_key) = pki::issue(
        &ca_dir,
        "nethouse-etcd",
        "/CN=nethouse",
        pki::CLIENT_EXT,
        &dir,
    )?;
    let ca = ca_dir.join("ca.crt");
    let etcd = EtcdCluster::start_with(&EtcdSpec {
        host: ETCD_HOST.into(),
        client_ports: ETCD_PORTS.to_vec(),
        tls: Some(nethouse_e2e::etcd_cluster::EtcdTls {
            ca: ca.clone(),
            cert,
            key,
        }),
    })?;
    Ok((
        etcd,
        EtcdClientFiles {
            ca,
            cert: client_cert,
            key: client_key,
        },
    ))
}

const NS: &str = secrets::NAMESPACE;
const REPLICAS: usize = 5;

/// The nodes NetHouse's Running replicas are on.
fn nethouse_nodes(s: &InstallStack) -> anyhow::Result<Vec<String>> {
    let out = s.cluster.kubectl(&[
        "-n",
        NS,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=nethouse",
        "--field-selector=status.phase=Running",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ])?;
    let mut nodes: Vec<String> = out.split_whitespace().map(String::from).collect();
    nodes.sort();
    Ok(nodes)
}

fn run(s: &mut InstallStack, client: EtcdClientFiles) -> anyhow::Result<()> {
    let b = base::apply_with(s, Flavor::Ha(client))?;
    let replicas = nethouse_nodes(s)?;
    println!("NetHouse's 3 replicas on {replicas:?}");
    let mut distinct = replicas.clone();
    distinct.dedup();
    anyhow::ensure!(
        distinct.len() == 3,
        "3 replicas on 3 nodes, not {replicas:?}"
    );

    let created = story::create(s, REPLICAS)?;
    created.judge()?;
    let deleted = story::delete_each(s, &created.after)?;
    deleted.judge()?;

    // A node with a NetHouse replica (and, if any, fixed pods) dies.
    let victim = story::busiest(&deleted.after, |n| replicas.iter().any(|r| r == n))
        .unwrap_or_else(|| replicas[0].clone());
    let failed = story::kill_node(s, &deleted.after, &victim)?;
    failed.judge()?;
    let t = Instant::now();
    workloads::wait_ready(
        &mut s.cluster,
        NS,
        &["deployment/nethouse"],
        Duration::from_secs(120),
    )?;
    let now = nethouse_nodes(s)?;
    println!(
        "NetHouse whole again {:.1} s after the pods' return: replicas on {now:?}",
        t.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        now.len() == 3 && !now.contains(&victim),
        "replicas on {now:?} after {victim} died"
    );

    let scaled = story::scale_down_up(s, &failed.after, 2)?;
    scaled.judge()?;
    let released = story::delete_statefulset(s, &b)?;
    println!(
        "StatefulSet deleted with ip-retention 0s: Locations and leases gone in {:.1} s",
        released.as_secs_f64()
    );
    Ok(())
}
